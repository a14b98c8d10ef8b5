-- Scenario: the grid meter goes silent for 30 s (its gateway stops
-- answering) while the inverter is curtailed. The controller must put the
-- inverter at the fail-safe output (the limit itself) within its bound
-- (3 s) plus one sample, and take up normal control once the meter has
-- answered again for a while.
return {
  name = "meter_silent",
  description = "the grid meter does not answer for 30 s: fail-safe, then normal control",
  start = 12 * 3600 - 120, seconds = 240, seed = 4,
  plant = {
    pv = { peak = 8000 }, inverters = { pv = { rating = 8000, tau = 1 } },
    house = { base = 1500, noise = 50 },
    meter = { period = 1 },
  },
  devices = { meter = { kind = "meter" }, pv = { kind = "inverter", models = { 123, 704 } } },
  events = { { at = 90, meter = "silent", duration = 30 } },
  control = { limit_w = 0 },
}
