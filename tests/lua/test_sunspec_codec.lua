-- moondog.sunspec.codec from Lua: layouts, decoding of every SunSpec type
-- with its not-implemented value, scale factors from constants and from
-- points of the same block, short blocks, encoding with range and type
-- checks, sentinels, and the reference device image of ../shared decoded
-- with the shipped model definitions, value by value.
-- The C codec itself is tested in tests/c/test_sscodec.c.
local T = require "moondog.testing"
local codec = require "moondog.sunspec.codec"
local models = require "moondog.sunspec.models"

local function raises(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error")
  return tostring(err)
end

local function has(text, part)
  assert(tostring(text):find(part, 1, true), string.format("%q does not contain %q", text, part))
end

-- Register bytes from 16-bit words.
local function words(...)
  local t = {}
  for i, w in ipairs({ ... }) do t[i] = string.pack(">I2", w) end
  return table.concat(t)
end

-- Decode one point of type (and size) from bytes; the value alone.
local function one(ptype, bytes, size)
  local layout = codec.compile({ { type = ptype, size = size, offset = 0 } })
  local values, n = codec.decode(layout, bytes)
  T.eq(n, 1, "n")
  return values[1]
end

T.test("types: registers per value", function()
  T.eq(codec.types.int16, 1)
  T.eq(codec.types.acc32, 2)
  T.eq(codec.types.uint64, 4)
  T.eq(codec.types.ipv6addr, 8)
  T.eq(codec.types.string, 0, "strings: the definition gives the size")
end)

T.test("integers decode, and their not-implemented values are holes", function()
  local cases = {
    { "int16", words(0xFFFE), -2 }, { "int16", words(0x7FFF), 32767 }, { "int16", words(0x8000), nil },
    { "int16", words(0x8001), -32767 },
    { "uint16", words(0xFFFE), 65534 }, { "uint16", words(0xFFFF), nil }, { "uint16", words(0), 0 },
    { "count", words(3), 3 }, { "count", words(0xFFFF), nil },
    { "acc16", words(0), nil }, { "acc16", words(0xFFFF), 65535 },
    { "enum16", words(7), 7 }, { "enum16", words(0xFFFF), nil },
    { "bitfield16", words(0x8001), 0x8001 }, { "bitfield16", words(0xFFFF), nil },
    { "sunssf", words(0xFFFE), -2 }, { "sunssf", words(0x8000), nil }, { "sunssf", words(10), 10 },
    { "pad", words(0x8000), 0x8000 }, { "pad", words(0), 0 }, { "raw16", words(0xFFFF), 0xFFFF },
    { "int32", words(0xFFFF, 0xFFFF), -1 }, { "int32", words(0x8000, 0), nil },
    { "int32", words(0x7FFF, 0xFFFF), 2147483647 },
    { "uint32", words(0xFFFF, 0xFFFE), 4294967294 }, { "uint32", words(0xFFFF, 0xFFFF), nil },
    { "acc32", words(0x0012, 0xD687), 1234567 }, { "acc32", words(0, 0), nil },
    { "enum32", words(0, 1), 1 }, { "enum32", words(0xFFFF, 0xFFFF), nil },
    { "bitfield32", words(0x8000, 0), 0x80000000 }, { "bitfield32", words(0xFFFF, 0xFFFF), nil },
    { "int64", words(0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF), -1 }, { "int64", words(0x8000, 0, 0, 0), nil },
    { "int64", words(0x7FFF, 0xFFFF, 0xFFFF, 0xFFFF), math.maxinteger },
    { "uint64", words(0x7FFF, 0xFFFF, 0xFFFF, 0xFFFF), math.maxinteger },
    { "uint64", words(0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF), nil },
    { "acc64", words(0, 0, 0, 5), 5 }, { "acc64", words(0, 0, 0, 0), nil },
    { "bitfield64", words(0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF), nil },
  }
  for _, c in ipairs(cases) do
    local got = one(c[1], c[2])
    T.eq(got, c[3], c[1] .. " " .. c[2]:gsub(".", function(b) return string.format("%02x", b:byte()) end))
    if got ~= nil then T.eq(math.type(got), "integer", c[1] .. " gives an integer") end
  end
end)

T.test("uint64 above math.maxinteger comes as a float, without a sign error", function()
  local v = one("uint64", words(0x8000, 0, 0, 0))
  T.eq(math.type(v), "float")
  T.eq(v, 2.0 ^ 63)
  T.eq(one("acc64", words(0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF)), 2.0 ^ 64, "acc64 all ones is a value")
  T.eq(one("uint32", words(0xFFFF, 0xFFFE)) > 0, true, "uint32 never negative")
end)

T.test("floats, strings and addresses", function()
  T.eq(one("float32", words(0x3F59, 0x0F86)), 0.8478931188583374)
  T.eq(one("float32", words(0x7FC0, 0)), nil, "float32 NaN")
  T.eq(one("float32", words(0xFFC0, 1)), nil, "any NaN")
  T.eq(one("float32", words(0x7F80, 0)), math.huge, "inf is a value")
  T.eq(one("float64", words(0x400E, 0x0000, 0x0000, 0x0000)), 3.75)
  T.eq(one("float64", words(0x7FF8, 0, 0, 0)), nil)
  T.eq(one("string", "SunSpec\0\0\0\0\0\0\0\0\0", 8), "SunSpec")
  T.eq(one("string", "abcd", 2), "abcd", "no NUL at all")
  T.eq(one("string", "ab\0garbage\0\0", 6), "ab", "text ends at the first NUL")
  T.eq(one("string", "\0bc\0", 2), nil, "a first NUL means not implemented")
  T.eq(one("string", "AB  ", 2), "AB", "trailing spaces trimmed")
  T.eq(one("ipaddr", "\192\168\1\20"), "192.168.1.20")
  T.eq(one("ipaddr", "\0\0\0\0"), nil)
  T.eq(one("eui48", "\0\0\0\27\99\170\187\204"), "00:1b:63:aa:bb:cc")
  T.eq(one("eui48", "\0\0\255\255\255\255\255\255"), nil)
  T.eq(one("eui48", "\255\255\255\255\255\255\255\255"), nil)
  T.eq(one("ipv6addr", "\32\1\13\184" .. ("\0"):rep(11) .. "\1"), "2001:db8::1")
  T.eq(one("ipv6addr", ("\0"):rep(16)), nil)
end)

T.test("scale factors: constants, points of the block, unusable ones", function()
  -- block: W (int16) at 0, W_SF at 1, Hz (uint16) at 2 with sf -2, WH (acc32) at 3..4
  -- with WH_SF at 5, A at 6 with A_SF at 7
  local layout = codec.compile({
    { type = "int16", offset = 0, sf = { index = 2 } },
    { type = "sunssf", offset = 1 },
    { type = "uint16", offset = 2, sf = -2 },
    { type = "acc32", offset = 3, sf = { index = 5 } },
    { type = "sunssf", offset = 5 },
    { type = "uint16", offset = 6, sf = { index = 7 } },
    { type = "sunssf", offset = 7 },
  })
  local v, n, bad = codec.decode(layout, words(2970, 0, 5999, 0x0012, 0xD687, 1, 2401, 0xFFFF))
  T.eq(n, 7)
  T.eq(v[1], 2970, "sf 0: the raw value")
  T.eq(math.type(v[1]), "integer", "sf 0 keeps an integer")
  T.eq(v[3], 59.99, "constant sf -2")
  T.eq(v[4], 12345670.0, "sf +1")
  T.eq(math.type(v[4]), "float")
  T.eq(v[6], 240.1, "2401 * 10^-1 is the double nearest 240.1")
  T.eq(bad, nil, "every scale factor usable")

  v, n, bad = codec.decode(layout, words(2970, 0x8000, 5999, 0, 0, 11, 2401, 0xFFF5))
  T.eq(v[1], nil, "SF not implemented: no value")
  T.eq(v[2], nil)
  T.eq(v[4], nil, "acc32 0 is not implemented")
  T.eq(v[5], 11, "an out-of-range SF still decodes as itself")
  T.eq(v[6], nil, "SF -11 is out of range")
  T.eq(table.concat(bad, ","), "1,6", "indexes with unusable SFs (not the n/i acc32)")
  T.eq(n, 7)
end)

T.test("short blocks and blocks that start later: never out of bounds", function()
  local layout = codec.compile({
    { type = "uint16", offset = 0 },
    { type = "uint32", offset = 1 },
    { type = "string", size = 4, offset = 3 },
    { type = "int16", offset = 7, sf = { index = 5 } },
    { type = "sunssf", offset = 8 },
  })
  local full = words(1, 0, 2, 0x4142, 0x4344, 0x4500, 0, 100, 0xFFFF)
  local v, n, bad = codec.decode(layout, full)
  T.eq(v[1], 1); T.eq(v[2], 2); T.eq(v[3], "ABCDE"); T.eq(v[4], 10.0); T.eq(v[5], -1); T.eq(n, 5)
  T.eq(bad, nil)
  for cut = 0, #full // 2 do
    v, n, bad = codec.decode(layout, full:sub(1, 2 * cut))
    T.eq(n, 5)
    T.eq(v[1] ~= nil, cut >= 1, "uint16 with " .. cut .. " registers")
    T.eq(v[2] ~= nil, cut >= 3, "uint32 with " .. cut)
    T.eq(v[3] ~= nil, cut >= 7, "string with " .. cut)
    T.eq(v[4] ~= nil, cut >= 9, "scaled int16 with " .. cut)
    T.eq(bad ~= nil, cut == 8, "value there, its SF not, with " .. cut)
  end
  -- bytes that start at register 7 of the block
  v, n, bad = codec.decode(layout, full:sub(15), 7)
  T.eq(n, 5); T.eq(v[1], nil); T.eq(v[3], nil); T.eq(v[4], 10.0); T.eq(v[5], -1); T.eq(bad, nil)
  v = codec.decode(layout, full:sub(3), 1)
  T.eq(v[2], 2, "first = 1")
  T.eq(v[1], nil, "before the bytes")
  v = codec.decode(layout, "", 100)
  T.eq(next(v), nil, "nothing at all")
end)

T.test("decode and compile misuse raises", function()
  local layout = codec.compile({ { type = "uint16", offset = 0 } })
  has(raises(codec.decode, layout, "abc"), "odd length")
  has(raises(codec.decode, layout, "ab", -1), "0 or more")
  has(raises(codec.decode, {}, "ab"), "moondog.sunspec.layout")
  has(raises(codec.compile, { { type = "int17", offset = 0 } }), "unknown SunSpec type 'int17'")
  has(raises(codec.compile, { { type = "uint32", size = 1, offset = 0 } }),
    "uint32 takes 2 register(s), not 1")
  has(raises(codec.compile, { { type = "string", offset = 0 } }), "a string needs a size")
  has(raises(codec.compile, { { type = "uint16" } }), "offset must be")
  has(raises(codec.compile, { { type = "uint16", offset = -1 } }), "offset must be")
  has(raises(codec.compile, { { type = "uint16", offset = 0, sf = 11 } }), "outside -10..10")
  has(raises(codec.compile, { { type = "uint16", offset = 0, sf = "W_SF" } }), "resolve scale factor names")
  local scaled = { type = "uint16", offset = 0, sf = { index = 2 } }
  has(raises(codec.compile, { scaled }), "not a point of the layout")
  has(raises(codec.compile, { scaled, { type = "int16", offset = 1 } }), "is not a sunssf point")
  has(raises(codec.compile, { { type = "string", size = 2, offset = 0, sf = -1 } }),
    "cannot have a scale factor")
  has(raises(codec.compile, { 5 }), "point 1 is a number")
  T.eq(#codec.compile({}), 0, "an empty layout")
  T.eq(#codec.decode(codec.compile({}), "ab"), 0)
end)

T.test("encode: every type round-trips through decode", function()
  local cases = {
    { "int16", -32767 }, { "int16", 32767 }, { "uint16", 0 }, { "uint16", 65534 }, { "count", 9 },
    { "acc16", 65535 }, { "enum16", 4 }, { "bitfield16", 0x8001 }, { "sunssf", -10 }, { "sunssf", 10 },
    { "pad", 0 }, { "raw16", 0xFFFF }, { "int32", -2147483647 }, { "uint32", 4294967294 },
    { "acc32", 4294967295 }, { "enum32", 3 }, { "bitfield32", 0x80000000 }, { "int64", math.mininteger + 1 },
    { "int64", math.maxinteger }, { "uint64", math.maxinteger }, { "uint64", 2.0 ^ 63 }, { "acc64", 1 },
    { "bitfield64", 1 << 62 }, { "float32", 0.5 }, { "float32", -2.0 ^ 100 }, { "float64", 1 / 3 },
    { "ipaddr", "10.0.0.1" }, { "eui48", "00:1b:63:aa:bb:cc" }, { "ipv6addr", "2001:db8::1" },
    { "string", "SN-1", 4 }, { "string", "12345678", 4 },
  }
  for _, c in ipairs(cases) do
    local bytes, err = codec.encode(c[1], c[3], c[2])
    assert(bytes, err)
    T.eq(#bytes, 2 * (c[3] or codec.types[c[1]]), c[1] .. " length")
    T.eq(one(c[1], bytes, c[3]), c[2], c[1] .. " " .. tostring(c[2]))
  end
  T.eq(codec.encode("eui48", nil, "00-1B-63-AA-BB-CC"), "\0\0\0\27\99\170\187\204", "dashes, capitals")
  T.eq(codec.encode("int32", nil, -2), "\255\255\255\254", "big-endian, high word first")
  T.eq(codec.encode("string", 3, "ab"), "ab\0\0\0\0", "NUL padded")
end)

T.test("encode: scale factors in reverse, rounding", function()
  T.eq(codec.encode("uint16", 1, 12.4, -1), words(124))
  T.eq(codec.encode("uint16", 1, 240.1, -1), words(2401), "240.1 * 10 rounds to 2401, not 2400")
  T.eq(codec.encode("int16", 1, -0.05, -1), words(0xFFFF), "halves away from zero: -0.5 -> -1")
  T.eq(codec.encode("uint16", 1, 59.99, -2), words(5999))
  T.eq(codec.encode("acc32", 2, 12345670, 1), words(0x0012, 0xD687))
  T.eq(codec.encode("uint16", 1, 3.4), words(3), "an unscaled measure rounds")
  T.eq(codec.encode("float32", 2, 2.5, 1), codec.encode("float32", 2, 0.25), "floats scale too")
  T.eq(codec.encode("uint16", 1, 5, 0), words(5))
end)

T.test("encode: values the type cannot carry return range or type", function()
  local cases = {
    { "uint16", 1, 70000, nil, "range", "0..65534; 65535 means not implemented" },
    { "uint16", 1, 65535, nil, "range", "out of range for uint16" },
    { "uint32", 2, -1, nil, "range", "0..4294967294" },
    { "int16", 1, -32768, nil, "range", "-32768 means not implemented" },
    { "acc32", 2, 0, nil, "range", "1..4294967295; 0 means not implemented" },
    { "sunssf", 1, 11, nil, "range", "-10..10" },
    { "uint16", 1, 7000.5, -1, "range", "raw 70005 with scale factor -1" },
    { "uint16", 1, 0 / 0, nil, "range", "not a number" },
    { "float32", 2, 0 / 0, nil, "range", "NaN means not implemented" },
    { "float32", 2, 1e39, nil, "range", "out of range for float32" },
    { "enum16", 1, 2.5, nil, "range", "not a whole number" },
    { "uint16", 1, 5, 11, "range", "scale factor 11 is outside -10..10" },
    { "uint64", 4, 2.0 ^ 64, nil, "range", "out of range" },
    { "uint64", 4, -1, nil, "range", "out of range" },
    { "string", 2, "hello", nil, "range", "text of 5 bytes does not fit a string of 2 registers" },
    { "string", 2, "", nil, "range", "means not implemented" },
    { "ipaddr", 2, "1.2.3", nil, "range", "is not an IPv4 address" },
    { "ipaddr", 2, "0.0.0.0", nil, "range", "means not implemented" },
    { "eui48", 4, "ff:ff:ff:ff:ff:ff", nil, "range", "means not implemented" },
    { "eui48", 4, "00:11:22:33:44", nil, "range", "is not a MAC address" },
    { "ipv6addr", 8, "::", nil, "range", "means not implemented" },
    { "uint16", 1, "12", nil, "type", "needs a number, not a string" },
    { "uint16", 1, true, nil, "type", "needs a number, not a boolean" },
    { "string", 2, 12, nil, "type", "needs text, not a number" },
  }
  for _, c in ipairs(cases) do
    local bytes, err, code = codec.encode(c[1], c[2], c[3], c[4])
    T.eq(bytes, nil, c[1] .. " " .. tostring(c[3]))
    T.eq(code, c[5], c[1] .. " " .. tostring(c[3]) .. " code")
    has(err, c[6])
  end
  has(raises(codec.encode, "int17", 1, 1), "unknown SunSpec type")
  has(raises(codec.encode, "uint16", 2, 1), "uint16 takes 1 register(s), not 2")
  has(raises(codec.encode, "string", 2, "ab", -1), "has no scale factor")
  has(raises(codec.encode, "uint16", 1, 1, 0.5), "number has no integer representation")
end)

T.test("sentinels decode as not implemented", function()
  for name, regs in pairs(codec.types) do
    local size = regs > 0 and regs or 3
    local s = codec.sentinel(name, size)
    T.eq(#s, 2 * size, name .. " sentinel length")
    if name ~= "pad" and name ~= "raw16" then
      T.eq(one(name, s, size), nil, name .. " sentinel is a hole")
    end
  end
  T.eq(codec.sentinel("int16"), "\128\0")
  T.eq(codec.sentinel("uint32"), "\255\255\255\255")
  T.eq(codec.sentinel("acc32"), "\0\0\0\0")
  T.eq(codec.sentinel("float32"), "\127\192\0\0")
  T.eq(codec.sentinel("pad"), "\128\0", "pad is 0x8000, as in SunSpec test data")
end)

-- {===== the reference device image =====

-- The image of a *.regs.tsv file: base address and register bytes.
local function load_image(path)
  local first, parts = nil, {}
  for line in assert(T.read_file(path)):gmatch("[^\n]+") do
    local addr, hex = line:match("^(%d+)\t%d+\t([%x ]+)$")
    if addr then
      first = first or tonumber(addr)
      for w in hex:gmatch("%x%x%x%x") do parts[#parts + 1] = string.pack(">I2", tonumber(w, 16)) end
    end
  end
  return first, table.concat(parts)
end

-- A layout for one model instance of L registers: the points of the model
-- and of every group instance, named like the reference ("module[2].DCA"),
-- with scale factors resolved in the point's group first, then upwards.
local function model_layout(model, L)
  local points, names = {}, {}
  local function add(g, base, prefix, scopes, len_left)
    local own = {}
    scopes = { own, table.unpack(scopes) }
    for _, p in ipairs(g.points) do
      points[#points + 1] = { type = p.type, size = p.size, offset = base + p.offset, sf = p.sf }
      names[#points] = prefix .. p.name
      own[p.name] = #points
    end
    for i = #points - #g.points + 1, #points do
      local sf = points[i].sf
      if type(sf) == "string" then
        local at
        for _, scope in ipairs(scopes) do at = at or scope[sf] end
        points[i].sf = { index = assert(at, "no scale factor " .. sf) }
      end
    end
    local at = base + g.size
    for _, sub in ipairs(g.groups) do
      local count = sub.count
      if count == 0 then count = (len_left - g.size) // sub.size end
      assert(math.type(count) == "integer", "group counts from points are not needed here")
      for k = 1, count do
        at = add(sub, at, prefix .. sub.name .. "[" .. k .. "].", scopes, 0)
      end
    end
    return at
  end
  local stop = add(model.group, 0, "", {}, L + 2)
  T.eq(stop, L + 2, "model " .. model.id .. " layout covers L")
  return points, names
end

T.test("the reference inverter image decodes to the reference values", function()
  local shared = T.shared_dir()
  if not shared then T.skip("../shared is absent") end
  local dir = shared .. "/reference/sunspec/devices/"
  local base, image = load_image(dir .. "inverter_1_103_160.regs.tsv")
  T.eq(image:sub(1, 4), "SunS", "marker")
  -- walk the chain: decode each model's block with its own layout
  local decoded = {} -- model id -> name -> value
  local at = 2
  while true do
    local id, L = string.unpack(">I2I2", image, 2 * at + 1)
    if id == 0xFFFF then break end
    local model = assert(models.get(id), "no definition for model " .. id)
    local points, names = model_layout(model, L)
    local layout = codec.compile(points)
    local values, n = codec.decode(layout, image:sub(2 * at + 1, 2 * (at + L + 2)))
    T.eq(n, #points)
    local by = {}
    for i = 1, n do by[names[i]] = { value = values[i], index = i } end
    decoded[id] = { by = by, values = values, points = points }
    at = at + L + 2
  end
  T.eq(base + at, 40192, "end marker where the reference says")

  local rows = 0
  for line in assert(T.read_file(dir .. "inverter_1_103_160.decoded.tsv")):gmatch("[^\n]+") do
    local f = {}
    for field in (line .. "\t"):gmatch("([^\t]*)\t") do f[#f + 1] = field end
    local id = tonumber(f[1])
    if id then
      rows = rows + 1
      local what = f[1] .. " " .. f[4]
      local d = assert(decoded[id], "model " .. id .. " decoded").by[f[4]]
      assert(d, what .. " decoded")
      local want = f[12]
      if f[9] == "N" then
        T.eq(d.value, nil, what .. " not implemented")
      elseif f[5] == "string" then
        T.eq(d.value, want, what)
      else
        T.eq(d.value, tonumber(want), what)
        T.eq(math.type(d.value), want:find(".", 1, true) and "float" or "integer", what .. " number kind")
      end
      if f[13] ~= "" then
        local p = decoded[id].points[d.index]
        T.eq(decoded[id].values[p.sf.index], tonumber(f[13]), what .. " scale factor")
      end
    end
  end
  T.eq(rows, 93, "reference rows compared")
end)

-- }=====
