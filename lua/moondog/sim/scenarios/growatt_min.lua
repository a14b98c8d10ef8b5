-- Scenario: a Growatt MIN on its Modbus profile. A 3 kW Growatt MIN TL-X
-- (devices/growatt/min_tlx.lua: the active power rate, holding register 3,
-- is its limit; it has no revert timer) next to a SunSpec grid meter, over
-- a 2.5 kW house; at 12:00 a 2 kW load switches off and the export jumps
-- by 2 kW. The inverter follows its rate with a first-order lag (tau 1 s):
-- the floor is 4 s, as for load_drop. Its rate is in whole percent (30 W
-- steps here).
return {
  name = "growatt_min",
  description = "a Growatt MIN 3000TL-X limited through its Modbus profile; a 2 kW load switches off",
  start = 12 * 3600 - 120, seconds = 300, seed = 9,
  plant = {
    pv = { peak = 3200 }, inverters = { gw = { rating = 3000, tau = 1 } },
    house = { base = 500, noise = 30, steps = { { at = 0, ["until"] = 12 * 3600, w = 2000 } } },
    meter = { period = 1 },
  },
  devices = { meter = { kind = "meter" }, gw = { kind = "inverter", protocol = "growatt_min" } },
  -- the rate every second, the rest of the inverter's registers at the profile's own intervals
  poll = { gw = { power = 1, active_power_rate = 10 } },
  control = { limit_w = 0 },
  step_at = 120,
}
