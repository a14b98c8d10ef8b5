-- The rct_power profile and the moondog.devices.rct driver: the device
-- object contract of devices/README.md against the RCT simulator.

local T = require "moondog.testing"
local devices = require "moondog.devices"
local driver = require "moondog.devices.rct"

local function sim_and_device(values, opts)
  local sim = assert(driver.simulate("rct_power", "127.0.0.1:0", { values = values }))
  local dev = devices.open("rct_power", sim:target(), opts or { timeout = 0.3, retries = 0 })
  return setmetatable({ sim = sim, dev = dev }, {
    __close = function(s) s.dev:close(); s.sim:close() end,
  })
end

T.test("the profile: every point is in the registry, energy points fit the Energy dashboard", function()
  local profile = devices.load("rct_power")
  T.eq(profile.protocol, "rct", "protocol")
  local names, energy = {}, 0
  for _, p in ipairs(profile.points) do
    assert(not names[p.name], "point listed twice: " .. p.name)
    names[p.name] = true
    local e = assert(md.rct.lookup(p.source), p.source)
    if p.device_class == "energy" then
      energy = energy + 1
      T.eq(p.state_class, "total_increasing", p.name .. " state_class")
      assert(p.unit == "kWh" or p.unit == "Wh", p.name .. " unit")
      T.eq(e.unit, "Wh", p.name .. ": the device counts Wh")
      T.eq(p.scale, p.unit == "kWh" and 0.001 or nil, p.name .. " scale")
    elseif p.device_class == "power" then
      T.eq(p.unit, "W", p.name .. " unit")
      T.eq(p.state_class, "measurement", p.name .. " state_class")
    end
    if p.writable then
      assert(e.writable, p.name .. ": writable in the registry")
    end
  end
  assert(energy >= 5, "energy points: " .. energy)
  for _, want in ipairs({ "battery_soc", "battery_power", "grid_power", "grid_import_energy",
      "grid_export_energy", "pv_a_power", "pv_b_power", "house_power", "inverter_state" }) do
    assert(names[want], "missing point " .. want)
  end
end)

T.test("read: scaled values, enum symbols, bools", function()
  local s <close> = sim_and_device({
    battery_soc = 55, grid_import_energy = 1234.5, inverter_state = "Standby",
  })
  local v = assert(s.dev:read())
  T.eq(v.battery_soc, 55, "percent from a fraction")
  T.eq(v.grid_import_energy, 1234.5, "kWh from Wh")
  T.eq(v.grid_export_energy, 1523.4, "default kWh")
  T.eq(v.grid_power, 120.0, "W")
  T.eq(v.inverter_state, "Standby", "enum symbol")
  T.eq(v.grid_connected, true, "bool")
  T.eq(v.battery_strategy, "Internal", "writable enum")
  T.eq(s.dev:online(), true, "online")
  T.eq(s.sim:get("battery_soc"), 55, "simulator speaks points too")
end)

T.test("describe: device facts read from the device, enum options from the registry", function()
  local s <close> = sim_and_device()
  local d = assert(s.dev:describe())
  T.eq(d.manufacturer, "RCT Power", "manufacturer")
  T.eq(d.serial, "SIM0000000000001", "serial")
  T.eq(d.sw_version, "moondog-sim-1", "sw version")
  T.eq(d.model, "moondog RCT simulator", "model from the device")
  local by_name = {}
  for _, p in ipairs(d.points) do by_name[p.name] = p end
  local strategy = by_name.battery_strategy
  T.eq(strategy.options[1], "SOC target = SOC", "first option")
  T.eq(#strategy.options, 6, "options")
  -- the state enum lists "Standby" twice in the registry: once in the options
  local seen = {}
  for _, o in ipairs(by_name.inverter_state.options) do
    assert(not seen[o], "option listed twice: " .. o)
    seen[o] = true
  end
  T.eq(s.dev.id, "rct_power", "id from the profile name")
end)

T.test("write: checked against the point, scaled, refused when not allowed", function()
  local s <close> = sim_and_device()
  T.eq(s.dev:write("battery_soc_min", 12), true, "write")
  T.eq(s.sim:get("battery_soc_min"), 12, "point value")
  T.eq(s.sim.server:get("power_mng.soc_min"), string.unpack(">f", string.pack(">f", 0.12)), "object value")
  T.eq(s.dev:write("battery_strategy", "Schedule"), true, "enum")
  T.eq(s.sim.server:get("power_mng.soc_strategy"), 5, "enum value")
  local ok, err, code = s.dev:write("battery_soc_min", 120)
  T.eq(ok, nil, "out of range")
  T.eq(code, "out_of_range", "code: " .. tostring(err))
  for point, value, want in string.gmatch([[
      battery_soc 50 not_writable
      battery_strategy Nonsense bad_option
      nonsense 1 unknown_point]], "(%S+) (%S+) (%S+)") do
    ok, err, code = s.dev:write(point, tonumber(value) or value)
    T.eq(ok, nil, point .. " refused")
    T.eq(code, want, point .. ": " .. tostring(err))
  end
end)

T.test("an unreachable device: read fails, the device is offline, then recovers", function()
  local s <close> = sim_and_device()
  s.sim.server.faults.silent = 1000
  local v, err, code = s.dev:read()
  T.eq(v, nil, "no values")
  T.eq(code, "timeout", "code: " .. tostring(err))
  assert(err:find("^rct_power: "), err)
  T.eq(s.dev:online(), false, "offline")
  s.sim.server.faults.silent = 0
  assert(s.dev:read(), "read again")
  T.eq(s.dev:online(), true, "online again")
end)

T.test("broken profiles and targets raise", function()
  local base = { protocol = "rct", name = "broken", points = {} }
  local function with(p)
    local copy = {}
    for k, v in pairs(base) do copy[k] = v end
    copy.points = { p }
    return copy
  end
  for _, bad in ipairs({
    with({ name = "x", source = "no.such.object" }),
    with({ name = "Bad Name", source = "battery.soc" }),
    with({ name = "x", source = "battery.soc", writable = true }), -- not writable in the registry
    with({ name = "x", source = "battery.soc", type = "enum" }), -- not an enumeration
    with({ name = "x", source = 0x959930BF }),
  }) do
    assert(not pcall(devices.open, bad, "127.0.0.1:1"), "should raise")
  end
  assert(not pcall(devices.open, "rct_power", "192.168.1.60:99999"), "bad port")
  assert(not pcall(devices.open, "rct_power", "host:1:2"), "bad target")
  assert(not pcall(devices.open, "rct_power", 42), "bad target type")
end)

T.test("battery energy in and out: the Energy dashboard's battery totals", function()
  -- The device's own objects, set by name on a plain RCT simulator (not
  -- through the profile): Wh as float32.
  local srv <close> = assert(md.rct.serve {
    port = 0, values = { ["battery.stored_energy"] = 2500000.0, ["battery.used_energy"] = 1750000.5 },
  })
  local dev <close> = devices.open("rct_power", "127.0.0.1:" .. srv:port(), { timeout = 0.3, retries = 0 })
  local v = assert(dev:read { "battery_charge_energy", "battery_discharge_energy" })
  T.eq(v.battery_charge_energy, 2500, "battery.stored_energy in kWh")
  T.eq(v.battery_discharge_energy, 1750.0005, "battery.used_energy in kWh")
  for _, p in ipairs(devices.load("rct_power").points) do
    if p.name:match("^battery_.*_energy$") then
      T.eq(p.state_class, "total_increasing", p.name .. ": a total")
      T.eq(p.device_class, "energy", p.name .. ": energy")
    end
  end
end)
