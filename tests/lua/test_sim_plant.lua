-- moondog.sim.plant: the site model under simulators and control tests.
-- The inverter's lag, ramp, limit and revert timers; the meter's sampling
-- period and latency; house steps and noise from a seed; energy totals.

local T = require "moondog.testing"
local plant = require "moondog.sim.plant"

local NOON = 13 * 3600 -- the middle of the default 06:00-20:00 sun

local function near(got, want, tol, what)
  assert(math.abs(got - want) <= tol, string.format("%s: %.3f, want %.3f +- %.3f", what, got, want, tol))
end

T.test("an inverter follows a step as a first-order lag: 63 % after tau, 95 % after 3 tau", function()
  local p = plant.new { start = NOON, dt = 0.01, pv = { peak = 5000 },
    inverters = { pv = { rating = 5000, tau = 1 } } }
  p:run_until(NOON + 1)
  near(p.inverters.pv.output_w / p.pv_available_w, 1 - math.exp(-1), 0.01, "after tau")
  p:run_until(NOON + 3)
  near(p.inverters.pv.output_w / p.pv_available_w, 1 - math.exp(-3), 0.01, "after 3 tau")
  assert(p.inverters.pv.output_w / p.pv_available_w >= 0.94, "95 % after 3 tau")
end)

T.test("a limit cuts the output with the same lag; a ramp rate bounds it", function()
  local p = plant.new { start = NOON, pv = { peak = 5000 },
    inverters = { pv = { rating = 5000, tau = 1, output = 5000 } } }
  assert(p.inverters.pv:set_limit(20))
  p:run_until(NOON + 5)
  near(p.inverters.pv.output_w, 1000, 40, "20 % of 5000 W")
  local r = plant.new { start = NOON, pv = { peak = 5000 },
    inverters = { pv = { rating = 5000, tau = 0.1, ramp = 100, output = 5000 } } }
  assert(r.inverters.pv:set_limit(0))
  r:run_until(NOON + 10)
  near(r.inverters.pv.output_w, 4000, 20, "100 W/s for 10 s")
end)

T.test("revert timers: model 123 goes back to full power, model 704 to its revert level", function()
  local p = plant.new { start = NOON, pv = { peak = 5000 },
    inverters = { pv = { rating = 5000, tau = 0.5, output = 5000 } } }
  local inv = p.inverters.pv
  assert(inv:set_limit(10, { revert = 60 })) -- 123: revert to 100 %
  p:run_until(NOON + 59)
  near(inv.output_w, 500, 10, "limited before the revert time")
  p:run_until(NOON + 65)
  T.eq(inv.limit_pct, 100, "reverted to no limit")
  T.eq(inv.reverts, 1, "counted")
  near(inv.output_w, p.pv_available_w, 50, "full power again")
  assert(inv:set_limit(10, { revert = 30, revert_to = 0 })) -- 704 with WMaxLimPctRvrt = 0
  p:run_until(NOON + 100)
  T.eq(inv.limit_pct, 0, "reverted to the fail-safe level")
  near(inv.output_w, 0, 5, "safe on its own")
  assert(inv:set_limit(30, { revert = 30 })) -- refreshed in time: never reverts
  for k = 1, 10 do
    p:run_until(NOON + 100 + k * 15)
    assert(inv:set_limit(30, { revert = 30 }))
  end
  T.eq(inv.limit_pct, 30, "a refreshed limit holds")
end)

T.test("the meter shows its last sample, taken every period, after its latency", function()
  local p = plant.new { start = NOON, pv = { peak = 0 },
    house = { base = 500, steps = { { at = NOON + 10.2, w = 6000 } } },
    meter = { period = 1, latency = 0.5 } }
  p:run_until(NOON + 11.4)
  T.eq(p.meter:reading(), 500, "the step is not shown before the sample after it plus the latency")
  p:run_until(NOON + 11.6)
  local w, at = p.meter:reading()
  T.eq(w, 6500, "shown at 11.5")
  near(at, NOON + 11, 1e-6, "measured at 11")
end)

T.test("noise comes from the seed: the same seed repeats, another differs", function()
  local function series(seed)
    local p = plant.new { start = NOON, seed = seed, house = { base = 400, noise = 100, noise_period = 1 } }
    local out = {}
    for k = 1, 20 do
      p:run_until(NOON + k)
      out[k] = string.format("%.3f", p.house_w)
    end
    return table.concat(out, " ")
  end
  T.eq(series(5), series(5), "same seed")
  assert(series(5) ~= series(6), "another seed")
end)

T.test("energy: export and import totals follow the grid power", function()
  local p = plant.new { start = NOON, pv = { peak = 4000 }, house = { base = 400 },
    inverters = { pv = { rating = 5000, tau = 0.1, output = 4000 } } }
  p:run_until(NOON + 3600)
  assert(p.export_wh > 3000 and p.export_wh < 3700, "about 3.6 kWh exported in an hour: " .. p.export_wh)
  T.eq(p.import_wh, 0, "nothing imported")
  near(p.grid_w, p.house_w - p.pv_w, 1e-6, "grid = house - pv")
end)
