-- Issue 17: the MQTT command parser under random input. The parser is Lua
-- (moondog.devices.point.parse, behind publish.lua's command()), so it is
-- fuzzed here rather than by libFuzzer (tests/fuzz/fuzz_mqtt.c covers the
-- C half: topic checks and subscription matching). 30000 payloads per run,
-- from a fixed seed: numbers in every notation, near the bounds and the
-- step grid, tiny and huge exponents, padding, bytes from the whole range,
-- and mutations of valid payloads.
--
-- Contracts: parse never raises; it returns a value or nil, message, code
-- with a known code; an accepted value passes check(), lies within min/max,
-- on the exact step grid, and reads back the same through format().

local T = require "moondog.testing"
local point = require "moondog.devices.point"

local CODES = { not_writable = true, bad_type = true, out_of_range = true, bad_step = true,
  bad_option = true, too_long = true, bad_value = true }

local POINTS = {
  { name = "limit", writable = true, min = 0, max = 100, step = 1, type = "integer" },
  { name = "soc", writable = true, min = 5, max = 95, step = 0.5 },
  { name = "volts", writable = true, min = -10, max = 10, step = 0.01 },
  { name = "free", writable = true },
  { name = "on", writable = true, type = "bool" },
  { name = "mode", writable = true, options = { "auto", "eco", "backup" } },
  { name = "label", writable = true, type = "string", max_length = 16 },
  { name = "ro", writable = false, min = 0, max = 1 },
}

local ATOMS = { "0", "1", "5", "4.9999999999", "1e-320", "1e308", "1e309", "-0", "+7", ".5", "5.",
  "0x10", "1e2", "1E-2", "nan", "inf", "-inf", "95.5", "94.5", "100", "101", "-10.005", "9.99",
  "ON", "off", "TRUE", "0", "auto", "eco ", " backup", "turbo", "", " ", "\0", "\255", "é",
  "return 1", "os.exit(1)", "1;2", "1 2", "--1", "1e", "e1", "..1", "1..", string.rep("9", 50) }

T.test("point.parse holds its contract on 30000 random payloads", function()
  local rng = 17 -- a fixed LCG: the same inputs on every run
  local function rand(n)
    rng = (rng * 1103515245 + 12345) % 2147483648
    return rng % n + 1
  end
  local function payload()
    local kind = rand(4)
    if kind == 1 then return ATOMS[rand(#ATOMS)] end
    if kind == 2 then -- a number near the grid
      return string.format("%." .. rand(17) - 1 .. "f", (rand(4000) - 2000) / (rand(3) == 1 and 7 or 4))
    end
    if kind == 3 then -- random bytes
      local t = {}
      for i = 1, rand(12) - 1 do t[i] = string.char(rand(256) - 1) end
      return table.concat(t)
    end
    local s = ATOMS[rand(#ATOMS)] -- a mutated atom
    local at = rand(#s + 1)
    return s:sub(1, at - 1) .. string.char(rand(256) - 1) .. s:sub(at + rand(2) - 1)
  end
  local accepted = 0
  for i = 1, 30000 do
    local p, text = POINTS[rand(#POINTS)], payload()
    local ok, v, err, code = pcall(point.parse, p, text)
    if not ok then error(string.format("case %d: parse(%s, %q) raised: %s", i, p.name, text, v)) end
    if v == nil then
      assert(CODES[code] and type(err) == "string" and #err > 0,
        string.format("case %d: %s %q: refused without a code and message", i, p.name, text))
    else
      accepted = accepted + 1
      T.eq(point.check(p, v), v, string.format("case %d: %s %q accepted, check disagrees", i, p.name, text))
      if type(v) == "number" then
        assert(v == v and (not p.min or v >= p.min) and (not p.max or v <= p.max),
          string.format("case %d: %s %q -> %s out of bounds", i, p.name, text, tostring(v)))
      end
      local again = point.parse(p, point.format(p, v))
      T.eq(again, v, string.format("case %d: %s %q does not read back", i, p.name, text))
    end
  end
  assert(accepted > 1000, "the generator reaches the accepting paths: " .. accepted)
end, { timeout = 120 })
