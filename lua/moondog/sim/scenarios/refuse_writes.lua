-- Scenario: the inverter refuses every write for a minute (exception 4, as
-- an inverter busy with a firmware task does). The controller reports it
-- and goes to fail-safe; the inverter keeps its last limit meanwhile.
return {
  name = "refuse_writes",
  description = "the inverter refuses writes for 60 s: fail-safe, reported",
  start = 12 * 3600 - 120, seconds = 240, seed = 5,
  plant = {
    pv = { peak = 8000 }, inverters = { pv = { rating = 8000, tau = 1 } },
    house = { base = 1500, noise = 50,
              steps = { { at = 12 * 3600 - 30, ["until"] = 12 * 3600 + 60, w = 2000 } } },
    meter = { period = 1 },
  },
  devices = { meter = { kind = "meter" }, pv = { kind = "inverter", models = { 123, 704 } } },
  events = { { at = 60, refuse_writes = "pv", duration = 60 } },
  control = { limit_w = 0 },
}
