-- Scenario: a 9600-baud RS-485 bus shared by the grid meter and two
-- inverters (4 kW with model 123, 6 kW with models 123 and 704). Every
-- transaction costs its wire time and the devices answer one at a time,
-- so a meter read takes about a quarter of a second and polls queue
-- behind each other. At 12:00 a 3 kW load switches off.
return {
  name = "rs485_9600",
  description = "meter and two inverters on one 9600-baud bus; a 3 kW load switches off at noon",
  start = 12 * 3600 - 120, seconds = 300, seed = 7,
  plant = {
    pv = { peak = 9000 },
    inverters = { pv1 = { rating = 4000, tau = 1 }, pv2 = { rating = 6000, tau = 1 } },
    house = { base = 1000, noise = 50, steps = { { at = 0, ["until"] = 12 * 3600, w = 3000 } } },
    meter = { period = 1 },
  },
  lines = { bus = { baud = 9600, turnaround = 0.02 } },
  devices = {
    meter = { kind = "meter", line = "bus" },
    pv1 = { kind = "inverter", models = { 123 }, line = "bus" },
    pv2 = { kind = "inverter", models = { 123, 704 }, line = "bus" },
  },
  -- the inverters' output every second, the rest of their registers at the
  -- profile's 5 s: all of them every second would take more than the line
  poll = { meter = 0.5, pv1 = { power = 1 }, pv2 = { power = 1 } },
  control = { limit_w = 0 },
  step_at = 120,
}
