-- moondog.rct.codec from Lua: the frame vectors of ../shared/reference/rct
-- (frames.tsv, payloads.tsv; skipped when that folder is absent), round
-- trips of every data type, and the streaming parser fed the same stream
-- split at every byte boundary and with noise between the frames.

local T = require "moondog.testing"
local codec = require "moondog.rct.codec"

local format = string.format

local ref = dofile(md.paths.home .. "/tests/lua/rct_reference.lua")
local unhex, hex, reference = ref.unhex, ref.hex, ref.rows

-- What a parser makes of bytes fed in chunks of `chunk` bytes: frames as
-- "command oid address payload" strings and errors as "!code", in order.
local function events(bytes, chunk)
  local p = codec.parser()
  local out = {}
  chunk = chunk or #bytes
  for i = 1, math.max(#bytes, 1), math.max(chunk, 1) do
    p:push(bytes:sub(i, i + chunk - 1))
    while true do
      local command, oid, payload, address = p:next()
      if command == nil then break end
      if command then
        out[#out + 1] = format("%02x %08x %s %s", command, oid, address and format("%08x", address) or "-",
          hex(payload))
      else
        out[#out + 1] = "!" .. payload
      end
    end
  end
  return out, p:pending()
end

-- decode that fails the test on malformed bytes (assert would on false too).
local function decode(t, bytes)
  local v, err = codec.decode(t, bytes)
  if v == nil then error(err, 2) end
  return v
end

local function same_list(a, b, what)
  T.eq(table.concat(a, " | "), table.concat(b, " | "), what)
end

-- {===== frames.tsv =====

-- The value column of frames.tsv against a decoded value.
local function check_value(row, value)
  local want, t = row.value, row.type
  if t == "FLOAT" then
    local f = string.unpack(">f", string.pack(">f", tonumber(want)))
    T.eq(value, f, row.name .. " float")
  elseif t == "BOOL" then
    T.eq(value, want == "True", row.name .. " bool")
  elseif t == "UINT8" or t == "UINT32" or t == "INT32" then
    T.eq(value, math.tointeger(tonumber(want)), row.name .. " integer")
  elseif t == "STRING" then
    T.eq(value, want, row.name .. " string")
  elseif t == "TIMESERIES" then
    local q, rest = want:match("^query_ts=(%d+);(.*)$")
    T.eq(value.query, math.tointeger(tonumber(q)), "series query time")
    local i = 0
    for ts, v in rest:gmatch("(%d+):([-%d.]+)") do
      i = i + 1
      T.eq(value[i].time, math.tointeger(tonumber(ts)), "entry time")
      T.eq(value[i].value, tonumber(v), "entry value")
    end
    T.eq(#value, i, "entries")
  elseif t == "EVENT_TABLE" then
    local q = want:match("^query_ts=(%d+)")
    T.eq(value.query, math.tointeger(tonumber(q)), "event query time")
    local ty, tm, e2, e3, e4 = want:match("row%(type=0x(%x+),t=(%d+),e2=0x(%x+),e3=0x(%x+),e4=0x(%x+)%)")
    T.eq(#value, 1, "rows")
    T.eq(value[1].type, tonumber(ty, 16), "row type")
    T.eq(value[1].time, math.tointeger(tonumber(tm)), "row time")
    T.eq(value[1].data[1], tonumber(e2, 16), "row word 3")
    T.eq(value[1].data[2], tonumber(e3, 16), "row word 4")
    T.eq(value[1].data[3], tonumber(e4, 16), "row word 5")
  else
    error("no check for type " .. t)
  end
end

T.test("frames.tsv: valid frames parse to their fields, build back byte for byte, decode", function()
  local n = 0
  for _, row in ipairs(reference("frames.tsv")) do
    if row.status == "valid" then
      n = n + 1
      local bytes = unhex(row.frame_hex)
      local list, pending = codec.parse(bytes)
      T.eq(#list, 1, row.frame_hex .. ": frames")
      T.eq(pending, 0, "pending")
      local f = list[1]
      T.eq(f.command, tonumber(row.command), "command")
      T.eq(f.name, row.command_name:lower(), "command name")
      T.eq(f.oid, tonumber(row.object_id), "object id")
      T.eq(f.address, row.address ~= "" and tonumber(row.address) or nil, "address")
      T.eq(hex(f.payload), row.payload_hex, "payload")
      local built = codec.build(f.command, f.oid, f.payload, f.address)
      T.eq(hex(built), row.frame_hex:gsub("^00", ""), "built frame")
      if row.type ~= "" then
        check_value(row, decode(row.type, f.payload))
        -- and the value encodes back to the same payload (strings: their bytes)
        local value = codec.decode(row.type, f.payload)
        local size = row.type == "STRING" and #f.payload or nil
        T.eq(hex(codec.encode(row.type, value, size)), row.payload_hex, "encoded " .. row.type)
      end
    end
  end
  assert(n >= 40, "expected the valid vectors of frames.tsv, found " .. n)
end)

T.test("frames.tsv: every other status gives its outcome, at every split", function()
  local seen = {}
  for _, row in ipairs(reference("frames.tsv")) do
    local bytes = unhex(row.frame_hex)
    local list, pending = events(bytes)
    local status = row.status
    seen[status] = true
    local errors, frames = {}, {}
    for _, e in ipairs(list) do
      if e:sub(1, 1) == "!" then errors[e:sub(2)] = true else frames[#frames + 1] = e end
    end
    local what = status .. " " .. row.frame_hex
    if status == "valid_stream" then
      T.eq(#frames, 7, what)
      T.eq(frames[1]:match("^01 (%x+)"), row.object_id:sub(3):lower(), what)
    elseif status == "extension" then
      same_list(list, { "3c 00000000 - e1" }, what)
    elseif status == "crc_error" then
      same_list(list, { "!crc" }, what)
    elseif status == "truncated" or status == "length_mismatch" then
      T.eq(#list, 0, what)
      T.eq(pending, #bytes - (bytes:find("+", 1, true) - 1), what .. ": bytes held")
    elseif status == "bad_escape" then
      T.eq(#frames, 0, what)
      assert(errors.escape, what .. ": no escape error")
    elseif status == "invalid_command" then
      same_list(list, { "!command" }, what)
    elseif status == "noise_prefix" then
      same_list(list, { "!command", "01 959930bf - " }, what)
    else
      assert(status == "valid", "unknown status " .. status)
    end
    -- the same outcome whatever the chunk size
    for chunk = 1, #bytes - 1 do
      local again = events(bytes, chunk)
      same_list(again, list, what .. " in chunks of " .. chunk)
    end
  end
  for _, status in ipairs({ "valid", "valid_stream", "extension", "crc_error", "truncated", "bad_escape",
      "invalid_command", "noise_prefix", "length_mismatch" }) do
    assert(seen[status], "frames.tsv has no " .. status .. " vector")
  end
end)

T.test("payloads.tsv: every vector decodes to its value", function()
  local n = 0
  for _, row in ipairs(reference("payloads.tsv")) do
    n = n + 1
    local v = decode(row.type, unhex(row.payload_hex))
    local want = row.decoded
    if row.type == "BOOL" then
      T.eq(v, want == "true", row.payload_hex)
    elseif row.type == "UINT8" then
      T.eq(v, math.tointeger(tonumber(want)), row.payload_hex)
    elseif row.type == "STRING" then
      T.eq(v, want, row.payload_hex)
    elseif row.type == "BATTERY_MODULE_STATUS" then
      local i = 0
      for cell, temp, mv, st in want:gmatch("(%d+):(%d+),(%d+),(%d+)") do
        i = i + 1
        T.eq(i - 1, tonumber(cell), "cell order")
        T.eq(v[i].temp, tonumber(temp), "temp")
        T.eq(v[i].mv, tonumber(mv), "mV")
        T.eq(v[i].status, tonumber(st), "status")
      end
      T.eq(i, 24, "cells")
    elseif row.type == "BATTERY_MODULE_STATISTICS" then
      for name, cell, time, value in want:gmatch("(%a_%a+)%(cell=(%d+),t=(%d+),%a=([%d.]+)%)") do
        T.eq(v[name].cell, tonumber(cell), name .. " cell")
        T.eq(v[name].time, tonumber(time), name .. " time")
        assert(math.abs(v[name].value - tonumber(value)) < 0.0005, name .. " value " .. v[name].value)
      end
    elseif row.type == "BATTERY_MODULE_RESISTANCE" then
      local i = 0
      for cell, mohm in want:gmatch("(%d+):([%d.]+)") do
        i = i + 1
        T.eq(i - 1, tonumber(cell), "cell order")
        assert(math.abs(v[i] - tonumber(mohm)) < 0.00005, "cell " .. cell .. ": " .. v[i])
      end
      T.eq(i, 24, "cells")
    else
      error("no check for " .. row.type)
    end
    -- every vector encodes back to its bytes, except where decoding drops
    -- bytes (the string cut at its NUL)
    if row.type ~= "STRING" and row.type ~= "BOOL" then
      T.eq(hex(codec.encode(row.type, v)), row.payload_hex, row.type .. " round trip")
    end
  end
  T.eq(n, 13, "vectors")
end)

-- }=====

-- {===== round trips and errors =====

T.test("every data type round-trips through encode and decode", function()
  local cells, res = {}, {}
  for i = 1, 24 do
    cells[i] = { temp = i, mv = 3000 + i * 7, status = i % 3 }
    res[i] = i / 8
  end
  local cases = {
    { "BOOL", true }, { "BOOL", false },
    { "UINT8", 0 }, { "UINT8", 255 }, { "INT8", -128 }, { "INT8", 127 }, { "ENUM", 13 },
    { "UINT16", 65535 }, { "INT16", -32768 }, { "INT16", 32767 },
    { "UINT32", 0xFFFFFFFF }, { "INT32", -0x80000000 }, { "INT32", 0x7FFFFFFF },
    { "FLOAT", 0.5 }, { "FLOAT", -1234.25 }, { "FLOAT", 0.0 }, { "FLOAT", math.huge },
    { "STRING", "PS 6.0 BA3L" }, { "STRING", "" }, { "UNKNOWN", "\0\1\2+-" },
    { "TIMESERIES", { query = 1601510400, { time = 1601510100, value = 1234.5 }, { time = 1, value = -2 } } },
    { "TIMESERIES", { query = 7 } },
    { "EVENT_TABLE", { query = 5, { type = 0x31, time = 9, data = { 1, 2, 0xFFFFFFFF } } } },
    { "BATTERY_MODULE_STATUS", cells },
    { "BATTERY_MODULE_STATISTICS", {
      u_min = { cell = 0, time = 1650184774, value = 3.25 }, u_max = { cell = 1, time = 0, value = 3.5 },
      t_min = { cell = 2, time = 3, value = 18 }, t_max = { cell = 14, time = 4, value = 41 } } },
    { "BATTERY_MODULE_RESISTANCE", res },
  }
  local function same(a, b, where)
    if type(a) == "table" then
      for k, v in pairs(a) do same(v, b[k], where .. "." .. tostring(k)) end
      for k in pairs(b) do assert(a[k] ~= nil, where .. ": extra key " .. tostring(k)) end
    else
      T.eq(b, a, where)
    end
  end
  for _, c in ipairs(cases) do
    local t, v = c[1], c[2]
    local bytes = codec.encode(t, v)
    local back = decode(t, bytes)
    same(v, back, t)
    T.eq(codec.encode(t, back), bytes, t .. " bytes")
  end
  -- NaN stays NaN; an unterminated and a NUL-padded string read the same
  local nan = codec.decode("FLOAT", codec.encode("FLOAT", 0 / 0))
  assert(nan ~= nan, "NaN")
  T.eq(#codec.encode("STRING", "abc", 64), 64, "padded string")
  T.eq(codec.decode("STRING", codec.encode("STRING", "abc", 64)), "abc", "padded string decoded")
end)

T.test("bad payloads return malformed, values that do not fit range; bad arguments raise", function()
  local v, err, code = codec.decode("FLOAT", "\1\2\3")
  assert(v == nil and code == "malformed" and err:find("3 bytes", 1, true), err)
  v, err, code = codec.decode("UINT16", "")
  assert(v == nil and code == "malformed" and err:find("empty", 1, true), err)
  v, err, code = codec.decode("TIMESERIES", string.rep("\0", 4 + 7)) -- cut short
  assert(v == nil and code == "malformed" and err:find("11 bytes", 1, true), err)
  v, err, code = codec.decode("BATTERY_MODULE_STATUS", string.rep("\0", 95))
  assert(v == nil and code == "malformed" and err:find("96 bytes", 1, true), err)
  -- A value that does not fit is data: nil, message, "range", as from the
  -- Modbus and SunSpec codecs (docs/errors.md).
  for _, args in ipairs({
    { "UINT8", 256 }, { "INT8", -129 }, { "UINT8", 1.5 },
    { "FLOAT", 1e39 }, { "BOOL", 2 }, { "STRING", "abcd", 3 },
    { "TIMESERIES", { { time = 1, value = 1 } } }, -- no query
    { "BATTERY_MODULE_RESISTANCE", { 1, 2 } },
  }) do
    local r, msg, c = codec.encode(table.unpack(args, 1, 3))
    assert(r == nil and c == "range" and type(msg) == "string",
      args[1] .. ": " .. tostring(msg))
  end
  err = select(2, codec.encode("UINT8", 256))
  assert(err:find("256 is out of range for UINT8", 1, true), err)
  -- A value of the wrong kind: "type", as from the SunSpec codec.
  for _, args in ipairs({ { "FLOAT", "1" }, { "UINT8", {} }, { "STRING", 5 }, { "TIMESERIES", 1 } }) do
    local r, msg, c = codec.encode(args[1], args[2])
    assert(r == nil and c == "type", args[1] .. ": " .. tostring(msg))
  end
  for _, bad in ipairs({
    function() codec.decode("DOUBLE", "") end,
    function() codec.encode("UINT8", 1, 4) end,
    function() codec.encode("NOTATYPE", 1) end,
    function() codec.build("read", 1, "payload") end,
    function() codec.build("write", 1, string.rep("x", 252)) end,
    function() codec.build("nonsense", 1) end,
    function() codec.build(0x04, 1) end,
    function() codec.build("plant_read", 1) end, -- no address
    function() codec.build("read", 1, "", 5) end, -- an address on a non-plant command
    function() codec.build("read", -1) end,
  }) do
    assert(not pcall(bad), "should raise")
  end
  T.eq(hex(codec.build("long_write", 1, string.rep("x", 252))):sub(1, 8), "2b030100", "long form")
  T.eq(hex(codec.build("extension", nil, "\xE1")), "2b3ce1", "extension")
  T.eq(codec.commands.plant_long_response, 0x46, "command table")
  T.eq(codec.commands[0x46], "plant_long_response", "command table, back")
  T.eq(codec.crc("\1\4\x95\x99\x30\xBF"), 0x0D65, "crc")
end)

-- }=====

-- {===== the streaming parser =====

-- A stream of every command, with bytes that need escaping everywhere.
local function mixed_stream()
  local frames = {
    codec.build("read", 0xDB2D69AE),
    codec.build("write", 0xCE266F0F, "\x42\x2d\x00\x00"),
    codec.build("response", 0x959930BF, "\x3f\x59\x0f\x86"),
    codec.build("long_response", 0x2B2D2B2D, string.rep("+-", 200)),
    codec.build("read_periodically", 0x959930BF),
    codec.build("plant_read", 0x959930BF, "", 0x2B2D0001),
    codec.build("plant_long_write", 0x011F41DB, "abc", 1),
    codec.build("extension", nil, "\xE1"),
    codec.build("read", 0x3AFEF139),
  }
  return frames
end

T.test("the parser finds the same frames at every split of a stream", function()
  local stream = table.concat(mixed_stream())
  local whole = events(stream)
  T.eq(#whole, 9, "frames")
  for i = 1, 9 do
    assert(whole[i]:sub(1, 1) ~= "!", "frame " .. i .. " failed: " .. whole[i])
  end
  for cut = 0, #stream do
    local p = codec.parser()
    local got = {}
    for _, part in ipairs({ stream:sub(1, cut), stream:sub(cut + 1) }) do
      p:push(part)
      while true do
        local command, oid = p:next()
        if command == nil then break end
        got[#got + 1] = format("%02x %08x", command, oid)
      end
    end
    T.eq(#got, 9, "frames with the cut at " .. cut)
    T.eq(p:pending(), 0, "pending")
  end
  for _, chunk in ipairs({ 1, 2, 3, 7, 64 }) do
    same_list(events(stream, chunk), whole, "chunks of " .. chunk)
  end
end)

T.test("noise between frames: every frame is still found", function()
  local frames = mixed_stream()
  local noises = { "\0", "AT+\r", "+", "-", "--", "+-+", "\0\0\0AT+\r\0", "+\5\8", "+\1\4\0" }
  local plain = events(table.concat(frames))
  for _, noise in ipairs(noises) do
    local mixed = noise .. table.concat(frames, noise) .. noise
    local got = events(mixed)
    local found = {}
    for _, e in ipairs(got) do
      if e:sub(1, 1) ~= "!" then found[#found + 1] = e end
    end
    same_list(found, plain, "frames with noise " .. hex(noise))
    for _, chunk in ipairs({ 1, 5 }) do
      same_list(events(mixed, chunk), got, "noise " .. hex(noise) .. " in chunks of " .. chunk)
    end
  end
end)

T.test("after a bad frame the next good one is never lost", function()
  local good = codec.build("response", 0x959930BF, "\x3f\x59\x0f\x86")
  local bad = {
    crc = good:sub(1, -2) .. string.char(good:byte(-1) ~ 1),
    escape = good:sub(1, 9), -- cut short: the next start byte arrives inside
    command = "+\4\4\x95\x99\x30\xBF\0\0",
    length = "+\1\5\x95\x99\x30\xBF\0\0\0",
  }
  for code, b in pairs(bad) do
    local list = events(b .. good .. good)
    T.eq(list[1], "!" .. code, "first event for a " .. code .. " error")
    T.eq(#list, 3, code .. ": events " .. table.concat(list, ","))
    T.eq(list[2], list[3], code .. ": both good frames")
    T.eq(list[2]:sub(1, 2), "05", code .. ": a response")
  end
  -- pending bytes and reset
  local p = codec.parser()
  p:push(good:sub(1, 5))
  T.eq(p:next(), nil, "incomplete")
  T.eq(p:pending(), 5, "held")
  p:reset()
  T.eq(p:pending(), 0, "reset")
  p:push("\0\0" .. good)
  T.eq(p:next(), 0x05, "after reset")
  T.eq(p:noise(), 2, "noise bytes counted")
end)

-- }=====
