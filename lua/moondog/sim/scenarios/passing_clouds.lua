-- Scenario: passing clouds around noon. The PV's sun drops to 20-60 %
-- under a cloud and comes back at once when it has passed (fast ramps of
-- several kW), every 40-90 s for half an hour, over a 2.5 kW house. When a
-- cloud passes the export jumps while the inverter is still allowed more
-- than the house takes.
local clouds = {}
local t, x = 12 * 3600 - 600 + 30, 7
for _ = 1, 40 do
  x = (x * 1103515245 + 12345) % 2147483648 -- a fixed sequence: the scenario is data
  local duration = 10 + x % 30
  clouds[#clouds + 1] = { at = t, duration = duration, factor = 0.2 + (x >> 8) % 41 / 100 }
  t = t + duration + 30 + (x >> 16) % 40
end

return {
  name = "passing_clouds",
  description = "clouds pass every 40-90 s for half an hour: PV ramps of several kW",
  start = 12 * 3600 - 600, seconds = 1800, seed = 3,
  plant = {
    pv = { peak = 8000, clouds = clouds }, inverters = { pv = { rating = 8000, tau = 1 } },
    house = { base = 2500, noise = 150, noise_period = 3 },
    meter = { period = 1 },
  },
  devices = { meter = { kind = "meter" }, pv = { kind = "inverter", models = { 123, 704 } } },
  control = { limit_w = 0 },
}
