-- Scenario: battery first. The load_drop site with a 10 kWh battery (3 kW
-- of charge power, at 50 %) behind a SunSpec storage interface (models 124
-- and 802). At 12:00 a 6 kW load switches off: the battery takes the first
-- 3 kW of the export, and the PV is curtailed only by what the battery
-- cannot take.
return {
  name = "battery_first",
  description = "a 6 kW load switches off; a 3 kW battery charges before PV is curtailed",
  start = 12 * 3600 - 120, seconds = 300, seed = 8,
  plant = {
    pv = { peak = 8000 }, inverters = { pv = { rating = 8000, tau = 1 } },
    house = { base = 500, noise = 30, steps = { { at = 0, ["until"] = 12 * 3600, w = 6000 } } },
    battery = { capacity_wh = 10000, max_w = 3000, soc = 50 },
    meter = { period = 1 },
  },
  devices = { meter = { kind = "meter" }, pv = { kind = "inverter", models = { 123, 704 } },
              bat = { kind = "battery" } },
  control = { limit_w = 0 },
  step_at = 120,
}
