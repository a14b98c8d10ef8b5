-- moondog.jsonfmt against lua-cjson itself (configured as the MQTT state
-- messages use it: 14 significant digits, NaN and infinities as null):
-- the same text for every kind of number a site holds (integers, registers
-- scaled by 0.1, 0.01 and 0.001, random doubles, huge, tiny, negative
-- zero, the invalid ones), for every byte in a string and a key, and for
-- whole state messages; nil (cjson's turn) for tables that are not flat.

local T = require "moondog.testing"
local cjson = require "cjson"
local jsonfmt = require "moondog.jsonfmt"

local j = cjson.new()
j.encode_invalid_numbers("null")
j.encode_number_precision(14)

local function same(t)
  local got = jsonfmt.object(t)
  local want = j.encode(t)
  if got ~= want then error(string.format("jsonfmt %s, cjson %s", tostring(got), want), 2) end
end

T.test("numbers: the text cjson writes", function()
  local n = 0
  local function num(v)
    same { v = v }
    n = n + 1
  end
  for _, v in ipairs { 0, 1, -1, 7, 0.0, -0.0, 1.0, -1.0, 0.5, 0.1, 0.01, 0.001, 0.0001, 0.00012, 1e-7, 1e13,
    99999999999999, 1e14, 100000000000001, -1e14, 2 ^ 53, 2 ^ 63, math.maxinteger, math.mininteger, 1e300,
    -1e300, 5e-324, 0 / 0, 1 / 0, -1 / 0, 123456789.123, 12345678901.234, 9999999999999.9, 0.995,
    194207.97763889, 1 / 3, 2 / 3, 3.14159265358979 } do
    num(v)
  end
  local rnd = math.random
  math.randomseed(13)
  for _ = 1, 20000 do
    local r = rnd(-2 ^ 31, 2 ^ 31)
    num(r)
    num(r + 0.0)
    num(r / 10)
    num(r / 100)
    num(r / 1000)
    num(r * 0.1)
    num(r * 0.01)
    num(rnd() * 10 ^ rnd(-6, 16))
    num(-rnd() * 10 ^ rnd(-6, 16))
    num(rnd(0, 2 ^ 52) / 10 ^ rnd(0, 4))
  end
  T.eq(n > 200000, true, "numbers compared")
end)

T.test("strings and keys: every byte escaped as cjson does", function()
  for b = 0, 255 do
    local c = string.char(b)
    same { s = c }
    same { [c .. "k"] = "a" .. c .. "b" }
  end
  same { s = "" }
  same { s = "moondog/growatt_siminv0001/state \"quoted\" \\ tab\t" }
end)

T.test("flat tables: state messages as cjson writes them", function()
  same {}
  same { a = true, b = false, c = "text", d = 1.5, e = 3, f = 0 / 0 }
  local t = {}
  for i = 1, 60 do t["point_" .. i] = i % 3 == 0 and i / 10 or i % 3 == 1 and i or "ON" end
  same(t)
  t.point_61 = 194207.97763889
  same(t)
end)

T.test("tables that are not flat: nil, for cjson to encode", function()
  T.eq(jsonfmt.object { a = {} }, nil)
  T.eq(jsonfmt.object { 1, 2 }, nil)
  T.eq(jsonfmt.object { [1.5] = 1 }, nil)
  T.eq(jsonfmt.object { a = print }, nil)
  local ok, err = pcall(jsonfmt.object, "x")
  T.eq(ok, false, "a string raises")
  T.eq(tostring(err):find("table expected", 1, true) ~= nil, true, "the message says a table")
end)

T.test("pick: the object of the values of some keys, each noted in seen", function()
  local keys = { a = true, b = true, c = true, gone = true }
  local values = { a = 1.5, b = "x/y", c = 230.5, d = 7, e = true }
  local seen = { gone = 3 }
  local text = jsonfmt.pick(keys, values, seen)
  local want = { a = 1.5, b = "x/y", c = 230.5 }
  T.eq(#text, #j.encode(want), "the length of cjson's text")
  local back = cjson.decode(text)
  for k, v in pairs(want) do T.eq(back[k], v, k) end
  for k in pairs(back) do T.eq(want[k] ~= nil, true, "no other key: " .. k) end
  T.eq(seen.a, 1.5, "seen a")
  T.eq(seen.b, "x/y", "seen b")
  T.eq(seen.gone, nil, "seen: a key without a value is cleared")
  T.eq(seen.d, nil, "seen: only the keys asked for")
  T.eq(jsonfmt.pick({}, values, {}), "{}")
  T.eq(jsonfmt.pick({ e = true }, values, {}), nil, "a boolean: the caller's turn")
  T.eq(jsonfmt.pick({ [1] = true }, values, {}), nil, "a key that is no string")
  T.eq(jsonfmt.pick({ t = true }, { t = {} }, {}), nil, "a table value")
end)
