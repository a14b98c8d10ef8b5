-- Scenario: battery first, with an RCT Power battery. The battery_first
-- site (a 6 kW load switches off at 12:00 under 8 kW of PV) whose 10 kWh,
-- 3 kW battery sits behind an RCT Power inverter, served over the RCT
-- protocol (moondog.sim.site: power_mng.soc_strategy External and
-- power_mng.battery_power_extern). The controller charges it through the
-- rct_power profile's battery_charge_setpoint before it curtails PV.
return {
  name = "battery_rct",
  description = "a 6 kW load switches off; an RCT Power battery (3 kW) charges before PV is curtailed",
  start = 12 * 3600 - 120, seconds = 300, seed = 8,
  plant = {
    pv = { peak = 8000 }, inverters = { pv = { rating = 8000, tau = 1 } },
    house = { base = 500, noise = 30, steps = { { at = 0, ["until"] = 12 * 3600, w = 6000 } } },
    battery = { capacity_wh = 10000, max_w = 3000, soc = 50 },
    meter = { period = 1 },
  },
  devices = { meter = { kind = "meter" }, pv = { kind = "inverter", models = { 123, 704 } },
              bat = { kind = "battery", protocol = "rct" } },
  control = { limit_w = 0 },
  step_at = 120,
}
