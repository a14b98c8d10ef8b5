-- Scenario: a sunny day from 06:00 to 20:00 with the appliances of a
-- household: a kettle, a washing machine, an oven at lunch, a heat pump in
-- the afternoon. 7 kW of PV on an 8 kW inverter, zero export allowed: the
-- inverter is curtailed to the house load for most of the day.
return {
  name = "sunny_day",
  description = "a clear day 06:00-20:00 with load steps (kettle, washing, oven, heat pump)",
  start = 6 * 3600, seconds = 14 * 3600, seed = 2,
  plant = {
    pv = { peak = 7000, sunrise = 6 * 3600, sunset = 20 * 3600 },
    inverters = { pv = { rating = 8000, tau = 1 } },
    house = { base = 350, noise = 120, noise_period = 5, steps = {
      { at = 7 * 3600, ["until"] = 7 * 3600 + 180, w = 2000 },         -- kettle
      { at = 9 * 3600, ["until"] = 10 * 3600 + 1800, w = 1800 },       -- washing machine
      { at = 12 * 3600, ["until"] = 12 * 3600 + 2400, w = 3000 },      -- oven
      { at = 13 * 3600 + 600, ["until"] = 13 * 3600 + 780, w = 2000 }, -- kettle
      { at = 15 * 3600, ["until"] = 17 * 3600, w = 1500 },             -- heat pump
    } },
    meter = { period = 1 },
  },
  devices = { meter = { kind = "meter" }, pv = { kind = "inverter", models = { 123, 704 } } },
  control = { limit_w = 0 },
}
