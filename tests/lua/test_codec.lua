-- moondog.modbus.codec from Lua: typed decode/encode of registers given as
-- arrays or raw byte strings, every type x order round trip, strings, CRC,
-- bit fields, SunSpec scale factors, and the messages of misuse errors.
-- The C codec itself is tested in tests/c/test_mbcodec.c; these tests check
-- the binding: argument handling, Lua number types and error texts.
local T = require "moondog.testing"
local codec = require "moondog.modbus.codec"

-- Call fn(...) and return its error message; fail if it did not raise.
local function raises(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error")
  return tostring(err)
end

local function has(text, part)
  assert(text:find(part, 1, true), string.format("%q does not contain %q", text, part))
end

local function same_regs(got, want)
  T.eq(#got, #want, "register count")
  for i = 1, #want do
    T.eq(got[i], want[i], "register " .. i)
  end
end

-- float32 0.8479 (0x3F590F86) widened to a double
local F = 0.8478931188583374

T.test("float32 ABCD", function()
  T.eq(codec.decode({ 0x3F59, 0x0F86 }, "float32"), F)
  T.eq(codec.decode({ 0x3F59, 0x0F86 }, "float32", "ABCD"), F)
end)

T.test("float32 in the other orders", function()
  T.eq(codec.decode({ 0x0F86, 0x3F59 }, "float32", "CDAB"), F)
  T.eq(codec.decode({ 0x593F, 0x860F }, "float32", "BADC"), F)
  T.eq(codec.decode({ 0x860F, 0x593F }, "float32", "DCBA"), F)
  T.eq(codec.decode({ 0x0F86, 0x3F59 }, "float32", "cdab"), F, "order names ignore case")
  T.eq(codec.decode({ 0x3F59, 0x0F86 }, "FLOAT32"), F, "type names ignore case")
end)

T.test("raw byte strings and offsets", function()
  T.eq(codec.decode("\x3F\x59\x0F\x86", "float32"), F)
  T.eq(codec.decode("\0\1\x3F\x59\x0F\x86", "float32", "ABCD", 2), F)
  T.eq(codec.decode({ 7, 0x3F59, 0x0F86 }, "float32", nil, 2), F)
  T.eq(codec.decode("\0\1\0\2\0\3", "uint16", "ABCD", 3), 3)
  -- a whole FC3 reply's data, as string.unpack would see it
  local raw = string.pack(">i2I4", -5, 123456)
  T.eq(codec.decode(raw, "int16"), -5)
  T.eq(codec.decode(raw, "uint32", "ABCD", 2), 123456)
end)

T.test("integer types give integers", function()
  T.eq(codec.decode({ 0xFFFF }, "int16"), -1)
  T.eq(codec.decode({ 0xFFFF }, "uint16"), 65535)
  T.eq(codec.decode({ 0x8000 }, "int16"), -32768)
  T.eq(codec.decode({ 0xFFFE, 0xFFFF }, "int32", "CDAB"), -2)
  T.eq(codec.decode({ 0x1122, 0x3344 }, "uint32"), 0x11223344)
  T.eq(codec.decode({ 0x3344, 0x1122 }, "uint32", "CDAB"), 0x11223344)
  T.eq(codec.decode({ 0x2211, 0x4433 }, "uint32", "BADC"), 0x11223344)
  T.eq(codec.decode({ 0x4433, 0x2211 }, "uint32", "DCBA"), 0x11223344)
  T.eq(codec.decode({ 0x0708, 0x0506, 0x0304, 0x0102 }, "int64", "CDAB"), 0x0102030405060708)
  T.eq(codec.decode({ 0x8000, 0, 0, 0 }, "int64"), math.mininteger)
  T.eq(codec.decode({ 0x7FFF, 0xFFFF, 0xFFFF, 0xFFFF }, "uint64"), math.maxinteger)
  T.eq(math.type(codec.decode({ 0x7FFF, 0xFFFF, 0xFFFF, 0xFFFF }, "uint64")), "integer")
  T.eq(math.type(codec.decode({ 0x1234 }, "uint16")), "integer")
end)

T.test("uint64 above math.maxinteger comes back as a float", function()
  local v = codec.decode({ 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF }, "uint64")
  T.eq(math.type(v), "float")
  T.eq(v, 2.0 ^ 64)
  local w = codec.decode({ 0x8000, 0, 0, 0 }, "uint64")
  T.eq(w, 2.0 ^ 63)
  -- and encodes back
  same_regs(codec.encode(w, "uint64"), { 0x8000, 0, 0, 0 })
  same_regs(codec.encode(2.0 ^ 63 + 2048, "uint64", "DCBA"), { 0x0008, 0, 0, 0x0080 })
end)

T.test("floats: NaN, -0.0, infinities, denormals, float64", function()
  local nan = codec.decode({ 0x7FC0, 0 }, "float32")
  assert(nan ~= nan, "NaN stays NaN")
  local z = codec.decode({ 0x8000, 0 }, "float32")
  T.eq(z, 0.0); T.eq(1 / z, -math.huge, "sign of -0.0")
  T.eq(codec.decode({ 0x7F80, 0 }, "float32"), math.huge)
  T.eq(codec.decode({ 0, 1 }, "float32"), 2.0 ^ -149)
  T.eq(codec.decode({ 0x3FF0, 0, 0, 0 }, "float64"), 1.0)
  T.eq(codec.decode({ 0, 0, 0, 0x3FF0 }, "float64", "CDAB"), 1.0)
  T.eq(codec.decode({ 0, 0, 0, 1 }, "float64"), 2.0 ^ -1074)
  T.eq(math.type(codec.decode({ 0x4000, 0 }, "float32")), "float")
  same_regs(codec.encode(-0.0, "float32"), { 0x8000, 0 })
  same_regs(codec.encode(math.huge, "float32"), { 0x7F80, 0 })
  local n = codec.encode(0 / 0, "float64")
  local back = codec.decode(n, "float64")
  assert(back ~= back, "NaN round trip")
end)

T.test("encode known vectors", function()
  same_regs(codec.encode(230.5, "float32"), { 0x4366, 0x8000 })
  same_regs(codec.encode(230.5, "float32", "CDAB"), { 0x8000, 0x4366 })
  same_regs(codec.encode(-2, "int32", "CDAB"), { 0xFFFE, 0xFFFF })
  same_regs(codec.encode(0x11223344, "uint32", "BADC"), { 0x2211, 0x4433 })
  same_regs(codec.encode(0x1234, "uint16", "DCBA"), { 0x3412 })
  same_regs(codec.encode(math.mininteger, "int64"), { 0x8000, 0, 0, 0 })
  same_regs(codec.encode(3.0, "int16"), { 3 })
end)

T.test("every type x order round trip", function()
  local values = {
    int16 = { -32768, -1, 0, 1, 32767 },
    uint16 = { 0, 1, 0x8000, 65535 },
    int32 = { -2147483648, -65536, -1, 0, 65536, 2147483647 },
    uint32 = { 0, 0xFFFF, 0x10000, 0xFFFFFFFF },
    int64 = { math.mininteger, -1, 0, 1, math.maxinteger },
    uint64 = { 0, 1, math.maxinteger, 2.0 ^ 63, 2.0 ^ 64 - 2048 },
    float32 = { 0.0, 1.5, -1.5, F, 2.0 ^ -149, 3.4028234663852886e38, math.huge, -math.huge },
    float64 = { 0.0, math.pi, -1e300, 2.0 ^ -1074, 1.7976931348623157e308, -math.huge },
  }
  for _, order in ipairs(codec.orders) do
    for type, list in pairs(values) do
      for _, v in ipairs(list) do
        local regs = codec.encode(v, type, order)
        for i, r in ipairs(regs) do
          assert(math.type(r) == "integer" and r >= 0 and r <= 0xFFFF, "register " .. i)
        end
        local back = codec.decode(regs, type, order)
        T.eq(back, v, string.format("%s %s %s", type, order, tostring(v)))
        -- the same registers as a raw string decode the same
        local raw = string.pack(">" .. string.rep("I2", #regs), table.unpack(regs))
        T.eq(codec.decode(raw, type, order), v, "raw " .. type)
      end
    end
  end
end)

T.test("strings", function()
  local regs = codec.encode("SN12345", "string", "ABCD", 4)
  same_regs(regs, { 0x534E, 0x3132, 0x3334, 0x3500 })
  T.eq(codec.decode(regs, "string", "ABCD", 1, 4), "SN12345")
  T.eq(codec.decode(regs, "string"), "SN12345", "count defaults to the rest")
  T.eq(codec.decode(regs, "string", "ABCD", 2, 2), "1234")
  same_regs(codec.encode("SN123", "string"), { 0x534E, 0x3132, 0x3300 }, "default count")
  same_regs(codec.encode("AB", "string", "BADC"), { 0x4241 })
  T.eq(codec.decode({ 0x4241 }, "string", "DCBA", 1, 1), "AB")
  T.eq(codec.decode({ 0x4142, 0x2020, 0 }, "string", "ABCD", 1, 3), "AB", "trailing blanks")
  T.eq(codec.decode({ 0x4100, 0x4243 }, "string"), "A", "text ends at the first NUL")
  T.eq(codec.decode("Fronius\0\0\0", "string"), "Fronius")
  T.eq(codec.decode({}, "string"), "")
  T.eq(codec.decode({ 0x4142 }, "string", "ABCD", 1, 0), "")
  T.eq(codec.decode({ 0x4142 }, "string", "ABCD", 2), "", "offset just past the end")
  same_regs(codec.encode("", "string", "ABCD", 2), { 0, 0 })
end)

T.test("crc16", function()
  local crc = codec.crc16("\1\3\0\0\0\10")
  T.eq(crc, 0xCDC5)
  T.eq(string.pack("<I2", crc), "\xC5\xCD", "sent low byte first")
  T.eq(codec.crc16("123456789"), 0x4B37)
  T.eq(codec.crc16(""), 0xFFFF)
  local frame = "\1\3\0\0\0\10\xC5\xCD"
  T.eq(codec.crc16(frame), 0, "a frame with its CRC sums to 0")
end)

T.test("bits", function()
  T.eq(codec.bits(0xABCD, 4, 8), 0xBC)
  T.eq(codec.bits(0xABCD, 0), 1, "n defaults to 1")
  T.eq(codec.bits(0xABCD, 1), 0)
  T.eq(codec.bits(-1, 63, 1), 1)
  T.eq(codec.bits(-1, 0, 64), -1)
  T.eq(codec.bits(math.mininteger, 60, 4), 8)
  has(raises(codec.bits, 1, 64), "first bit must be 0..63")
  has(raises(codec.bits, 1, -1), "first bit must be 0..63")
  has(raises(codec.bits, 1, 60, 5), "bit count must be 1..64 - first")
  has(raises(codec.bits, 1, 0, 0), "bit count must be 1..64 - first")
end)

T.test("scale", function()
  T.eq(codec.scale(2305, -1), 230.5)
  T.eq(codec.scale(1234, -2), 12.34)
  T.eq(codec.scale(5, 3), 5000.0)
  T.eq(math.type(codec.scale(5, 0)), "float")
  T.eq(codec.scale(-7, 10), -7e10)
  T.eq(codec.scale(1, -10), 1e-10)
  has(raises(codec.scale, 1, 11), "scale factor 11 out of range -10..10")
  has(raises(codec.scale, 1, -32768), "0x8000: not implemented")
  has(raises(codec.scale, 1, 1.5), "number has no integer representation")
end)

T.test("types and orders", function()
  T.eq(table.concat(codec.types, ","),
    "int16,uint16,int32,uint32,int64,uint64,float32,float64,string")
  T.eq(table.concat(codec.orders, ","), "ABCD,CDAB,BADC,DCBA")
end)

-- A value that does not fit is data, not a bug: nil, message, "range", as
-- from the SunSpec and RCT codecs (docs/errors.md).
local function refuses(...)
  local r, err, code = codec.encode(...)
  T.eq(r, nil, "no registers")
  T.eq(code, "range", "code of " .. tostring(err))
  return err
end

T.test("encode: a value that does not fit returns nil, message, range", function()
  has(refuses(70000, "uint16"), "value 70000 out of range for uint16")
  has(refuses(-1, "uint32"), "value -1 out of range for uint32")
  has(refuses(32768, "int16"), "value 32768 out of range for int16")
  has(refuses(1e39, "float32"), "value 1e+39 out of range for float32")
  has(refuses(2.0 ^ 64, "uint64"), "out of range for uint64")
  has(refuses(2.0 ^ 63, "int64"), "out of range for int64")
  has(refuses(1.5, "int16"), "value 1.5 is not an integer (type int16)")
  has(refuses(0 / 0, "int32"), "is not an integer")
  has(refuses("toolong", "string", "ABCD", 3), "string of 7 bytes does not fit in 3 register(s)")
end)

T.test("encode: a value of the wrong kind returns nil, message, type", function()
  local r, err, code = codec.encode("12", "int16")
  T.eq(r, nil)
  T.eq(code, "type")
  has(err, "value 12 is not a number (type int16)")
end)

T.test("encode: misuse raises and says what to fix", function()
  has(raises(codec.encode, 1, "flaot32"),
    "unknown type 'flaot32' (expected int16, uint16, int32, uint32, int64, uint64, " ..
    "float32, float64, string)")
  has(raises(codec.encode, 1, "int16", "ABDC"),
    "unknown order 'ABDC' (expected ABCD, CDAB, BADC, DCBA)")
  has(raises(codec.encode, 1, "int16", "ABCD", 2), "a register count applies only to strings")
  has(raises(codec.encode, "x", "string", "ABCD", -1), "register count must be 0..65536")
end)

T.test("decode: misuse errors say what to fix", function()
  has(raises(codec.decode, { 1 }, "int32"), "2 register(s) needed from offset 1, 1 given")
  has(raises(codec.decode, { 1, 2, 3 }, "int32", "ABCD", 3),
    "2 register(s) needed from offset 3, 3 given")
  has(raises(codec.decode, { 1, 70000 }, "int32"),
    "register 2 is 70000, expected an integer 0..65535")
  has(raises(codec.decode, { 1, -1 }, "int32"), "register 2 is -1")
  has(raises(codec.decode, { 1.5 }, "int16"), "register 1 is 1.5")
  has(raises(codec.decode, { "1" }, "int16"), "register 1 is string, expected an integer")
  has(raises(codec.decode, { 1, nil, 3 }, "uint64", "ABCD", 1), "needed from offset 1")
  has(raises(codec.decode, "\1\2\3", "int16"), "register string has odd length 3")
  has(raises(codec.decode, 42, "int16"), "table or string expected, got number")
  has(raises(codec.decode, { 1 }, "int16", "ABCD", 0), "offset counts registers from 1")
  has(raises(codec.decode, { 1 }, "string", "ABCD", 3), "offset is past the last register")
  has(raises(codec.decode, { 1 }, "int16", "ABCD", 2), "1 register(s) needed from offset 2, 1 given")
  has(raises(codec.decode, { 1 }, "int16", "ABCD", 1, 1), "a register count applies only to strings")
  has(raises(codec.decode, { 1 }, "string", "ABCD", 1, 2), "2 register(s) needed from offset 1")
  has(raises(codec.decode, { 1 }, "float16"), "unknown type 'float16'")
  local err = raises(codec.decode, { 1 })
  has(err, "bad argument #2 to"); has(err, "decode")
  -- a float that is a whole number is a fine register value
  T.eq(codec.decode({ 2.0 }, "uint16"), 2)
end)
