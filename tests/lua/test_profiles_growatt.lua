-- The Growatt MIN/MIC TL-X profile (devices/growatt/min_tlx), and the
-- three-phase MOD TL3-X in the same register range (growatt/mod_tl3x), read through
-- the Modbus driver from a register image this test writes by hand (raw
-- register words at the protocol's addresses, 32-bit values high word
-- first, text packed with string.pack), never through the profile; its
-- writable points as the registers they change; its probe.

local T = require "moondog.testing"
local modbus = require "moondog.modbus"
local devices = require "moondog.devices"
local driver = require "moondog.devices.modbus"

local PROFILE = "growatt/min_tlx"

-- Two registers of a 32-bit unsigned value, high word first.
local function u32(v)
  return { v >> 16, v & 0xFFFF }
end

-- Registers of an ASCII text, two characters each, first character high.
local function text(s)
  return { string.unpack(string.rep(">I2", #s // 2), s) }
end

local function growatt_image(srv)
  local input = {
    [3000] = { 1 },                        -- normal
    [3001] = u32(67000),                   -- PV input power 6700.0 W
    [3003] = { 3605 }, [3004] = { 87 },    -- PV1 360.5 V, 8.7 A
    [3005] = u32(31363),                   -- PV1 3136.3 W
    [3007] = { 2981 }, [3008] = { 120 },   -- PV2 298.1 V, 12.0 A
    [3009] = u32(35772),                   -- PV2 3577.2 W
    [3023] = u32(65432),                   -- AC 6543.2 W
    [3025] = { 5002 },                     -- 50.02 Hz
    [3026] = { 2318 }, [3027] = { 282 },   -- 231.8 V, 28.2 A
    [3049] = u32(187),                     -- today 18.7 kWh
    [3051] = u32(1234567),                 -- total 123456.7 kWh (uses the high word)
    [3093] = { 0x10000 - 52 },             -- -5.2 °C, an int16
    [3105] = { 117 }, [3106] = { 0 },
  }
  for addr, regs in pairs(input) do srv:set(1, "input", addr, regs) end
  local holding = {
    [3] = { 255 },                         -- no power limit
    [9] = text("TJAA10"),                  -- firmware
    [23] = text("AB12345678"),             -- serial
    [44] = { 0x0201 },                     -- 2 trackers, 1 phase
    [122] = { 3 },                         -- export limit by CT
    [123] = { 0 },                         -- 0 %: no export
  }
  for addr, regs in pairs(holding) do srv:set(1, "holding", addr, regs) end
end

local function serve()
  return assert(modbus.serve("tcp://127.0.0.1:0", { units = { 1 } }))
end

T.test("MIN TL-X: PV strings, AC side, energy today and total, status and codes", function()
  local srv <close> = serve()
  growatt_image(srv)
  local dev <close> = assert(devices.open(PROFILE, srv:url()))
  local v = assert(dev:read())
  T.eq(v.status, "normal", "status 1")
  T.eq(v.pv_power, 6700.0, "PV input power")
  T.eq(v.pv1_voltage, 360.5, "PV1 voltage")
  T.eq(v.pv1_current, 8.7, "PV1 current")
  T.eq(v.pv1_power, 3136.3, "PV1 power")
  T.eq(v.pv2_voltage, 298.1, "PV2 voltage")
  T.eq(v.pv2_current, 12.0, "PV2 current")
  T.eq(v.pv2_power, 3577.2, "PV2 power")
  T.eq(v.power, 6543.2, "AC power")
  T.eq(v.grid_frequency, 50.02, "grid frequency")
  T.eq(v.grid_voltage, 231.8, "grid voltage")
  T.eq(v.grid_current, 28.2, "grid current")
  T.eq(v.energy_today, 18.7, "energy today")
  T.eq(v.energy_total, 123456.7, "energy total, high word included")
  T.eq(v.temperature, -5.2, "a temperature below zero")
  T.eq(v.fault_code, 117, "fault main code")
  T.eq(v.warning_code, 0, "warning main code")
  T.eq(v.active_power_rate, 255, "255: no limit set")
  T.eq(v.export_limit_mode, "ct", "export limit by CT")
  T.eq(v.export_limit, 0, "export limit 0 %")
  local d = assert(dev:describe())
  T.eq(d.serial, "AB12345678", "serial from holding 23-27")
  T.eq(d.sw_version, "TJAA10", "firmware from holding 9-11")
  local p = devices.load(PROFILE)
  T.eq(p.sleeps, true, "the inverter sleeps at night")
  for _, q in ipairs(p.points) do
    if q.name == "energy_today" then T.eq(q.resets, true, "today's energy resets at midnight") end
    if q.name == "energy_total" then T.eq(q.state_class, "total_increasing", "a total") end
  end
end)

T.test("MIN TL-X: active power rate and export limit write the documented registers", function()
  local srv <close> = serve()
  growatt_image(srv)
  local dev <close> = assert(devices.open(PROFILE, srv:url()))
  assert(dev:write("active_power_rate", 80))
  T.eq(srv:get(1, "holding", 3, 1)[1], 80, "holding 3 in %")
  assert(dev:write("export_limit", 50.5))
  T.eq(srv:get(1, "holding", 123, 1)[1], 505, "holding 123 in 0.1 %")
  assert(dev:write("export_limit_mode", "rs485"))
  T.eq(srv:get(1, "holding", 122, 1)[1], 1, "holding 122: 1 = meter on RS-485")
  assert(dev:write("export_limit_mode", "disabled"))
  T.eq(srv:get(1, "holding", 122, 1)[1], 0, "holding 122: 0 = no export limit")
  local ok, _, code = dev:write("export_limit", 100.5)
  T.eq(ok, nil, "above 100 %")
  T.eq(code, "out_of_range", "code")
  ok, _, code = dev:write("export_limit", 12.34)
  T.eq(ok, nil, "not on the grid")
  T.eq(code, "bad_step", "steps of 0.1 %")
  ok, _, code = dev:write("active_power_rate", 255)
  T.eq(code, "out_of_range", "255 is read, never written")
  T.eq(ok, nil, "refused")
  T.eq(srv:get(1, "holding", 3, 1)[1], 80, "nothing written by a refused write")
  local v = assert(dev:read { "active_power_rate", "export_limit", "export_limit_mode" })
  T.eq(v.active_power_rate, 80, "read back")
  T.eq(v.export_limit, 50.5, "read back")
  T.eq(v.export_limit_mode, "disabled", "read back")
end)

T.test("MIN TL-X: the probe identifies the image, and not an Eastron meter's", function()
  local srv <close> = serve()
  growatt_image(srv)
  local meter <close> = serve()
  meter:set(1, "input", 0, { string.unpack(">I2I2", string.pack(">f", 230.1)) })
  local bus <close> = assert(modbus.open(srv:url() .. "?unit=1"))
  local mbus <close> = assert(modbus.open(meter:url() .. "?unit=1"))
  T.eq(driver.identify(PROFILE, bus), true, "a TL-X")
  local ok, why = driver.identify(PROFILE, mbus)
  T.eq(ok, false, "not a meter")
  assert(why:find("probe[1]: holding 44 reads 0", 1, true), why)
  srv:set(1, "holding", 44, { 0x0203 })       -- three phases
  T.eq((driver.identify(PROFILE, bus)), false, "a three-phase inverter is not a TL-X")
end)

-- The MOD TL3-X in the TL-X register range: the three-phase registers of
-- the protocol's 3000-3124 input table, written by hand.
local TL3 = "growatt/mod_tl3x"

local function tl3_image(srv)
  local input = {
    [3000] = { 1 },                        -- normal
    [3001] = u32(102345),                  -- PV input power 10234.5 W
    [3003] = { 6012 }, [3004] = { 85 },    -- PV1 601.2 V, 8.5 A
    [3005] = u32(51102),                   -- PV1 5110.2 W
    [3007] = { 5987 }, [3008] = { 86 },    -- PV2 598.7 V, 8.6 A
    [3009] = u32(51243),                   -- PV2 5124.3 W
    [3023] = u32(99876),                   -- AC 9987.6 W
    [3025] = { 4998 },                     -- 49.98 Hz
    [3026] = { 2301 }, [3027] = { 145 },   -- L1 230.1 V, 14.5 A
    [3028] = u32(33365),                   -- L1 3336.5 VA
    [3030] = { 2325 }, [3031] = { 143 },   -- L2 232.5 V, 14.3 A
    [3032] = u32(33247),                   -- L2 3324.7 VA
    [3034] = { 2289 }, [3035] = { 146 },   -- L3 228.9 V, 14.6 A
    [3036] = u32(33419),                   -- L3 3341.9 VA
    [3049] = u32(412),                     -- today 41.2 kWh
    [3051] = u32(2345678),                 -- total 234567.8 kWh
    [3093] = { 421 },                      -- 42.1 °C
    [3105] = { 0 }, [3106] = { 206 },
  }
  for addr, regs in pairs(input) do srv:set(1, "input", addr, regs) end
  local holding = {
    [3] = { 100 },
    [9] = text("TLAB11"),
    [23] = text("MOD1234567"),
    [44] = { 0x0203 },                     -- 2 trackers, 3 phases
    [122] = { 1 },                         -- export limit by a meter on RS-485
    [123] = { 250 },                       -- 25.0 %
  }
  for addr, regs in pairs(holding) do srv:set(1, "holding", addr, regs) end
end

T.test("MOD TL3-X: three phases, PV strings, totals and control points from the 3000 range", function()
  local srv <close> = serve()
  tl3_image(srv)
  local dev <close> = assert(devices.open(TL3, srv:url()))
  local v = assert(dev:read())
  T.eq(v.status, "normal", "status 1")
  T.eq(v.pv_power, 10234.5, "PV input power")
  T.eq(v.pv1_voltage, 601.2, "PV1 voltage")
  T.eq(v.pv1_power, 5110.2, "PV1 power")
  T.eq(v.pv2_current, 8.6, "PV2 current")
  T.eq(v.power, 9987.6, "AC power")
  T.eq(v.grid_frequency, 49.98, "grid frequency")
  T.eq(v.l1_voltage, 230.1, "L1 voltage")
  T.eq(v.l1_current, 14.5, "L1 current")
  T.eq(v.l1_power, 3336.5, "L1 output")
  T.eq(v.l2_voltage, 232.5, "L2 voltage")
  T.eq(v.l2_power, 3324.7, "L2 output")
  T.eq(v.l3_voltage, 228.9, "L3 voltage")
  T.eq(v.l3_current, 14.6, "L3 current")
  T.eq(v.l3_power, 3341.9, "L3 output")
  T.eq(v.energy_today, 41.2, "energy today")
  T.eq(v.energy_total, 234567.8, "energy total, high word included")
  T.eq(v.temperature, 42.1, "temperature")
  T.eq(v.warning_code, 206, "warning main code")
  T.eq(v.active_power_rate, 100, "no limit")
  T.eq(v.export_limit_mode, "rs485", "export limit by a meter")
  T.eq(v.export_limit, 25.0, "25 %")
  local d = assert(dev:describe())
  T.eq(d.serial, "MOD1234567", "serial")
  assert(dev:write { export_limit_mode = "ct", export_limit = 0 })
  T.eq(srv:get(1, "holding", 122, 2)[1], 3, "holding 122: CT")
  T.eq(srv:get(1, "holding", 123, 1)[1], 0, "holding 123: no export")
  local p = devices.load(TL3)
  T.eq(p.sleeps, true, "the inverter sleeps at night")
  T.eq(#devices.check(p), 0, "devices check finds no mistake")
end)

T.test("MOD TL3-X and MIN TL-X probes tell three phases from one", function()
  local one <close> = serve()
  growatt_image(one)
  local three <close> = serve()
  tl3_image(three)
  local b1 <close> = assert(modbus.open(one:url() .. "?unit=1"))
  local b3 <close> = assert(modbus.open(three:url() .. "?unit=1"))
  T.eq(driver.identify(TL3, b3), true, "a MOD TL3-X")
  T.eq(driver.identify(PROFILE, b3), false, "not a TL-X")
  T.eq(driver.identify(TL3, b1), false, "a TL-X is not a MOD")
  -- a MAX/MID/MAC TL3-X: three phases, but no 3000 input range
  local max <close> = assert(modbus.serve("tcp://127.0.0.1:0", { units = { 1 }, strict = true }))
  max:set(1, "holding", 44, { 0x0203 })
  max:set(1, "input", 0, { 1 })
  local bm <close> = assert(modbus.open(max:url() .. "?unit=1"))
  local ok, why = driver.identify(TL3, bm)
  T.eq(ok, false, "a MAX answers no input 3000")
  assert(why:find("probe[2]: input 3000", 1, true), why)
  three:set(1, "input", 3000, { 0x0501 })  -- a hybrid's mode in the high byte, status normal
  T.eq(driver.identify(TL3, b3), true, "the status is the low byte")
end)
