-- Scenario: the MQTT broker is gone for 5 minutes. The site publishes to a
-- broker the runner starts; the event stops it and starts it again. MQTT
-- is not on the control path: export limiting goes on unaffected (a load
-- step in the middle of the outage is answered as usual), and the
-- publisher reconnects and publishes again when the broker is back.
return {
  name = "broker_gone",
  description = "the MQTT broker is gone for 5 minutes: control goes on, publishing resumes",
  start = 12 * 3600 - 120, seconds = 480, seed = 6,
  plant = {
    pv = { peak = 8000 }, inverters = { pv = { rating = 8000, tau = 1 } },
    house = { base = 800, noise = 50, steps = { { at = 12 * 3600 - 120, ["until"] = 12 * 3600, w = 4000 } } },
    meter = { period = 1 },
  },
  devices = { meter = { kind = "meter" }, pv = { kind = "inverter", models = { 123, 704 } } },
  events = { { at = 60, broker = "gone", duration = 300 } },
  mqtt = true, -- the runner publishes the site (and starts a broker when none is given)
  control = { limit_w = 0 },
  step_at = 120,
}
