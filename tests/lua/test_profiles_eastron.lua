-- The Eastron profiles (devices/eastron/sdm120, sdm230, sdm72d) read
-- through the Modbus driver from register images this test writes by hand
-- (string.pack of the example values, in the meters' float32 high-word-
-- first layout at the documents' addresses), never through the profile;
-- and each profile's probe against its own image and the others'.

local T = require "moondog.testing"
local modbus = require "moondog.modbus"
local devices = require "moondog.devices"
local driver = require "moondog.devices.modbus"

-- A float32 as the two registers an Eastron meter sends: high word first.
local function f32(v)
  local hi, lo = string.unpack(">I2I2", string.pack(">f", v))
  return { hi, lo }
end

-- Put floats = {[addr] = value} into input registers, and raw holding
-- registers = {[addr] = {words}}.
local function image(srv, floats, holding)
  for addr, v in pairs(floats) do
    srv:set(1, "input", addr, f32(v))
  end
  for addr, regs in pairs(holding or {}) do
    srv:set(1, "holding", addr, regs)
  end
end

local function serve()
  return assert(modbus.serve("tcp://127.0.0.1:0", { units = { 1 } }))
end

-- The single-phase map (SDM120 and SDM230), with example readings.
local single_phase = {
  [0x00] = 230.1, [0x06] = 5.25, [0x0C] = 1150.5, [0x12] = 1208.0, [0x18] = -120.0, [0x1E] = 0.952,
  [0x24] = 17.8, [0x46] = 50.01, [0x48] = 1234.5, [0x4A] = 678.25, [0x4C] = 12.5, [0x4E] = 3.75,
  [0x156] = 1912.75,
}

local function read_profile(name, srv)
  local dev <close> = assert(devices.open(name, srv:url()))
  local v = assert(dev:read())
  local d = assert(dev:describe())
  return v, d, dev.transactions
end

T.test("SDM120: every point decodes to the value written at its documented address", function()
  local srv <close> = serve()
  image(srv, single_phase, { [0xFC00] = { 0x0129, 0x4E2A } })   -- serial 19484202
  local v, d = read_profile("eastron/sdm120", srv)
  T.eq(v.voltage, 230.1, "voltage")
  T.eq(v.current, 5.25, "current")
  T.eq(v.power, 1150.5, "power")
  T.eq(v.apparent_power, 1208.0, "apparent power")
  T.eq(v.reactive_power, -120.0, "reactive power")
  T.eq(v.power_factor, 0.952, "power factor")
  T.eq(v.phase_angle, 17.8, "phase angle")
  T.eq(v.frequency, 50.01, "frequency")
  T.eq(v.import_energy, 1234.5, "import energy")
  T.eq(v.export_energy, 678.25, "export energy")
  T.eq(v.import_reactive_energy, 12.5, "import reactive energy")
  T.eq(v.export_reactive_energy, 3.75, "export reactive energy")
  T.eq(v.total_energy, 1912.75, "total energy")
  T.eq(d.serial, "19484202", "serial from holding 0xFC00")
  T.eq(d.manufacturer, "Eastron", "manufacturer")
end)

T.test("SDM230: the single-phase map and the demand registers", function()
  local srv <close> = serve()
  image(srv, single_phase)
  image(srv, { [0x54] = 850.5, [0x56] = 3120.0, [0x102] = 3.5, [0x108] = 13.75 })
  local v = read_profile("eastron/sdm230", srv)
  T.eq(v.voltage, 230.1, "voltage")
  T.eq(v.power, 1150.5, "power")
  T.eq(v.frequency, 50.01, "frequency")
  T.eq(v.import_energy, 1234.5, "import energy")
  T.eq(v.export_energy, 678.25, "export energy")
  T.eq(v.power_demand, 850.5, "power demand")
  T.eq(v.max_power_demand, 3120.0, "max power demand")
  T.eq(v.current_demand, 3.5, "current demand")
  T.eq(v.max_current_demand, 13.75, "max current demand")
  T.eq(v.total_energy, 1912.75, "total energy")
end)

local three_phase = {
  [0x00] = 231.2, [0x02] = 229.8, [0x04] = 230.5, [0x06] = 4.5, [0x08] = 2.25, [0x0A] = 0.75,
  [0x0C] = 1010.0, [0x0E] = 505.5, [0x10] = -150.25, [0x34] = 1365.25, [0x46] = 49.98,
  [0x48] = 45678.5, [0x4A] = 1200.25, [0x156] = 46878.75, [0x184] = 321.5, [0x186] = 12.25,
  [0x500] = 1515.5, [0x502] = 150.25,
}

T.test("SDM72D-M: phases, totals, resettable energies, in reads of at most 60 registers", function()
  local largest = 0
  local srv <close> = assert(modbus.serve("tcp://127.0.0.1:0", {
    units = { 1 }, on_read = function(_, _, _, count) largest = math.max(largest, count) end,
  }))
  image(srv, three_phase, { [0xFC02] = { 0x0089 } })
  local v = read_profile("eastron/sdm72d", srv)
  for addr, want in pairs(three_phase) do
    local found = false
    for _, p in ipairs(devices.load("eastron/sdm72d").points) do
      if p.source.addr == addr then
        T.eq(v[p.name], want, p.name)
        found = true
      end
    end
    assert(found, string.format("a point reads input 0x%X", addr))
  end
  assert(largest > 0 and largest <= 60, "reads of at most 60 registers, got " .. largest)
  local p = devices.load("eastron/sdm72d")
  local resets = 0
  for _, q in ipairs(p.points) do
    if q.resets then resets = resets + 1 end
  end
  T.eq(resets, 2, "the resettable energies say resets = true")
end)

T.test("probes: each profile identifies its own image and not the others'", function()
  local one <close> = serve()
  image(one, single_phase)
  local three <close> = serve()
  image(three, three_phase, { [0xFC02] = { 0x0089 } })
  local other <close> = serve()          -- a device with nothing at these addresses
  local bus1 <close> = assert(modbus.open(one:url() .. "?unit=1"))
  local bus3 <close> = assert(modbus.open(three:url() .. "?unit=1"))
  local bus0 <close> = assert(modbus.open(other:url() .. "?unit=1"))
  T.eq(driver.identify("eastron/sdm120", bus1), true, "SDM120 on a single-phase image")
  T.eq(driver.identify("eastron/sdm230", bus1), true, "SDM230 on a single-phase image (same map)")
  T.eq(driver.identify("eastron/sdm72d", bus3), true, "SDM72D-M by its meter code")
  local ok, why = driver.identify("eastron/sdm72d", bus1)
  T.eq(ok, false, "no meter code on the single-phase image")
  assert(why:find("holding 64514 reads 0", 1, true), why)
  T.eq((driver.identify("eastron/sdm120", bus0)), false, "zeros are not a mains voltage")
end)
