-- Scenario: a 6 kW load switches off at noon. 8 kW of PV on one 8 kW
-- inverter (tau 1 s) feeds a 6.5 kW house; at 12:00 the house drops to
-- 500 W and the export jumps by 6 kW. The plant's floor is one meter
-- period (1 s) plus the inverter's 95 % response (3 tau): 4 s.
return {
  name = "load_drop",
  description = "a 6 kW load switches off at noon: export jumps by 6 kW",
  start = 12 * 3600 - 120, seconds = 300, seed = 1,
  plant = {
    pv = { peak = 8000 }, inverters = { pv = { rating = 8000, tau = 1 } },
    house = { base = 500, noise = 30, steps = { { at = 0, ["until"] = 12 * 3600, w = 6000 } } },
    meter = { period = 1 },
  },
  devices = { meter = { kind = "meter" }, pv = { kind = "inverter", models = { 123, 704 } } },
  control = { limit_w = 0 },
  step_at = 120, -- the step, for tests and the benchmark: seconds from the start
}
