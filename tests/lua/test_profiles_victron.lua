-- The Victron GX profile (devices/victron/gx) read through the Modbus
-- driver from a register image this test writes by hand at the addresses
-- of Victron's Modbus-TCP register list (com.victronenergy.system on unit
-- 100), with the values of Victron's own test simulation of that service
-- (dbus_modbustcp test/sim/system.csv): raw words, scaled as the list says,
-- never encoded through the profile; and the profile's probe.

local T = require "moondog.testing"
local modbus = require "moondog.modbus"
local devices = require "moondog.devices"
local driver = require "moondog.devices.modbus"

local PROFILE = "victron/gx"
local UNIT = 100

-- Registers of an ASCII text, two characters each, first character high.
local function text(s)
  return { string.unpack(string.rep(">I2", #s // 2), s) }
end

local function gx_image(srv)
  local holding = {
    [800] = text("badbeef15bad"),          -- /Serial
    [808] = { 10, 20, 30 },                -- /Ac/PvOnOutput/L1..L3/Power
    [811] = { 110, 120, 130 },             -- /Ac/PvOnGrid/L1..L3/Power
    [817] = { 310, 320, 330 },             -- /Ac/Consumption/L1..L3/Power
    [820] = { 410, 420, 430 },             -- /Ac/Grid/L1..L3/Power
    [826] = { 1 },                         -- /Ac/ActiveIn/Source: grid
    [840] = { 500 },                       -- /Dc/Battery/Voltage 50 V, scale 10
    [841] = { 100 },                       -- /Dc/Battery/Current 10 A, scale 10
    [842] = { 600 },                       -- /Dc/Battery/Power 600 W
    [843] = { 85 },                        -- /Dc/Battery/Soc 85 %
    [844] = { 1 },                         -- /Dc/Battery/State: charging
    [850] = { 300 },                       -- /Dc/Pv/Power 300 W
  }
  for addr, regs in pairs(holding) do srv:set(UNIT, "holding", addr, regs) end
end

local function serve()
  return assert(modbus.serve("tcp://127.0.0.1:0", { units = { UNIT } }))
end

T.test("Victron GX: grid, PV, battery and AC loads of the system service on unit 100", function()
  local srv <close> = serve()
  gx_image(srv)
  local dev <close> = assert(devices.open(PROFILE, srv:url() .. "?unit=100"))
  local v = assert(dev:read())
  T.eq(v.pv_ac_out_l1_power, 10, "PV on AC-out L1")
  T.eq(v.pv_ac_out_l2_power, 20, "PV on AC-out L2")
  T.eq(v.pv_ac_out_l3_power, 30, "PV on AC-out L3")
  T.eq(v.pv_ac_in_l1_power, 110, "PV on AC-in L1")
  T.eq(v.pv_ac_in_l2_power, 120, "PV on AC-in L2")
  T.eq(v.pv_ac_in_l3_power, 130, "PV on AC-in L3")
  T.eq(v.pv_dc_power, 300, "PV on DC")
  T.eq(v.consumption_l1_power, 310, "AC loads L1")
  T.eq(v.consumption_l2_power, 320, "AC loads L2")
  T.eq(v.consumption_l3_power, 330, "AC loads L3")
  T.eq(v.grid_l1_power, 410, "grid L1")
  T.eq(v.grid_l2_power, 420, "grid L2")
  T.eq(v.grid_l3_power, 430, "grid L3")
  T.eq(v.active_input, "grid", "active input source 1")
  T.eq(v.battery_voltage, 50.0, "battery voltage")
  T.eq(v.battery_current, 10.0, "battery current")
  T.eq(v.battery_power, 600, "battery power")
  T.eq(v.battery_soc, 85, "battery SoC")
  T.eq(v.battery_state, "charging", "battery state 1")
  local d = assert(dev:describe())
  T.eq(d.serial, "badbeef15bad", "serial from 800-805")
  T.eq(d.manufacturer, "Victron Energy", "manufacturer")
end)

T.test("Victron GX: signed registers (export, discharge) and the input source codes", function()
  local srv <close> = serve()
  gx_image(srv)
  srv:set(UNIT, "holding", 820, { 0x10000 - 1234 })   -- exporting 1234 W on L1
  srv:set(UNIT, "holding", 841, { 0x10000 - 253 })    -- discharging at 25.3 A
  srv:set(UNIT, "holding", 842, { 0x10000 - 1290 })   -- -1290 W
  srv:set(UNIT, "holding", 844, { 2 })
  srv:set(UNIT, "holding", 826, { 240 })
  local dev <close> = assert(devices.open(PROFILE, srv:url() .. "?unit=100"))
  local v = assert(dev:read())
  T.eq(v.grid_l1_power, -1234, "export is negative")
  T.eq(v.battery_current, -25.3, "discharge current is negative")
  T.eq(v.battery_power, -1290, "discharge power is negative")
  T.eq(v.battery_state, "discharging", "state 2")
  T.eq(v.active_input, "not_connected", "source 240")
  local p = devices.load(PROFILE)
  T.eq(p.sleeps, nil, "a GX does not sleep")
  for _, q in ipairs(p.points) do
    assert(q.state_class ~= "total_increasing" and not q.monotonic, q.name .. " is no total")
  end
  T.eq(#devices.check(p), 0, "devices check finds no mistake")
end)

T.test("Victron GX: the probe tells a GX from a Modbus device without its registers", function()
  local srv <close> = serve()
  gx_image(srv)
  local other <close> = serve()
  other:set(UNIT, "holding", 0, { 1, 2, 3 })
  local bus <close> = assert(modbus.open(srv:url() .. "?unit=100"))
  local obus <close> = assert(modbus.open(other:url() .. "?unit=100"))
  T.eq(driver.identify(PROFILE, bus), true, "a GX")
  local ok, why = driver.identify(PROFILE, obus)
  T.eq(ok, false, "no registers 800-805: not a GX")
  assert(why:find("probe[1]: holding 800", 1, true), why)
  srv:set(UNIT, "holding", 800, text("not a mac ad"))
  ok, why = driver.identify(PROFILE, bus)
  T.eq(ok, false, "800-805 must hold a MAC address")
  assert(why:find("probe[1]", 1, true), why)
end)
