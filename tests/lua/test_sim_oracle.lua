-- The oracle of moondog.sim.peers, which gives the benchmark its floors: it
-- knows the plant's true house load at each meter sample and goes to the
-- exact limit as fast as the inverter can, through the same site and
-- sockets as moondog's controller; and the frontier its margins trace
-- (moondog.sim.frontier), which says whether a pair of energy goals can be
-- met together. In simulated time over loopback.

local T = require "moondog.testing"
local md = require "moondog"
local scenarios = require "moondog.sim.scenarios"
local run = require "moondog.sim.run"
local peers = require "moondog.sim.peers"
local frontier = require "moondog.sim.frontier"

md.clock.simulate { start = "2026-06-21 12:00", seed = 12 }

local function oracle_run(name, ctl_opts)
  local sc = scenarios.get(name)
  local r <close> = assert(run.start(sc, { controller = "oracle", mqtt = false, warmup = 30,
    ctl_opts = ctl_opts }))
  md.sleep(sc.seconds)
  return r:metrics(), r
end

T.test("the oracle answers the 6 kW drop within the floor and curtails next to nothing", function()
  local m = oracle_run("load_drop")
  assert(m.longest_excursion_s > 1 and m.longest_excursion_s <= m.floor_s,
    "longest excursion " .. m.longest_excursion_s .. " s, floor " .. m.floor_s)
  -- the drop itself: 6 kW falling with the inverter's lag exports some Wh whatever acts
  assert(m.over_wh > 1 and m.over_wh < 5, "over the limit " .. m.over_wh)
  -- 240 s at the exact limit: only the house noise (+-30 W), followed a sample late
  assert(m.curtailed_extra_wh < 1, "curtailed beyond need " .. m.curtailed_extra_wh)
end, { timeout = 3600 })

T.test("the oracle with a margin trades curtailment for export", function()
  local exact = oracle_run("load_drop")
  local safe = oracle_run("load_drop", { margin_w = 80 })
  assert(safe.over_wh < exact.over_wh, string.format("export %.2f < %.2f", safe.over_wh, exact.over_wh))
  -- 80 W under the house for about 270 s: some 6 Wh more
  assert(safe.curtailed_extra_wh > exact.curtailed_extra_wh + 4,
    string.format("curtailed %.1f vs %.1f", safe.curtailed_extra_wh, exact.curtailed_extra_wh))
end, { timeout = 3600 })

T.test("the oracle writes again what an inverter refused", function()
  local m = oracle_run("refuse_writes")
  -- a refused write kept as written would hold the last limit after the fault (49 Wh curtailed)
  assert(m.curtailed_extra_wh < 25, "curtailed beyond need " .. m.curtailed_extra_wh)
end, { timeout = 3600 })

T.test("peers.start: the oracle needs the plant's truth", function()
  local ok, err = pcall(peers.start, "oracle",
    { site = {}, grid = "meter.power", inverters = {}, limit_w = 0 })
  T.eq(ok, false, "refused")
  assert(tostring(err):find("truth", 1, true), err)
  ok, err = pcall(peers.start, "pid", {})
  T.eq(ok, false, "unknown rule")
  assert(tostring(err):find("'oracle'", 1, true), err)
end)

T.test("the oracle's margin is monotone both ways: what the frontier search relies on", function()
  local below = oracle_run("load_drop", { margin_w = -40 })
  local exact = oracle_run("load_drop")
  local above = oracle_run("load_drop", { margin_w = 40 })
  assert(below.over_wh > exact.over_wh and exact.over_wh > above.over_wh,
    string.format("over %.2f > %.2f > %.2f", below.over_wh, exact.over_wh, above.over_wh))
  local bc, ec, ac = below.curtailed_extra_wh, exact.curtailed_extra_wh, above.curtailed_extra_wh
  assert(bc < ec and ec < ac, string.format("curtailed %.2f < %.2f < %.2f", bc, ec, ac))
end, { timeout = 3600 })

T.test("growatt_min: no controller in the harness curtails less than the oracle's frontier at its over-limit",
  function()
  local pts = {}
  for _, m in ipairs { -80, -40, -20, 0, 20, 40, 80 } do
    local r = oracle_run("growatt_min", { margin_w = m })
    pts[#pts + 1] = { m = m, over = r.over_wh, curt = r.curtailed_extra_wh }
  end
  local compared = 0
  for _, ctl in ipairs { "moondog", "ode", "openems" } do
    local sc = scenarios.get("growatt_min")
    local r <close> = assert(run.start(sc, { controller = ctl, mqtt = false, warmup = 30 }))
    md.sleep(sc.seconds)
    local m = r:metrics()
    local z = frontier.curve_at(pts, m.over_wh)
    if z then
      compared = compared + 1
      assert(m.curtailed_extra_wh >= z, string.format("%s: %.2f Wh over, %.2f curtailed; the oracle's "
        .. "curve %.2f", ctl, m.over_wh, m.curtailed_extra_wh, z))
    end
  end
  -- moondog's 0.9 Wh over, the peers' 2.4 and 3.4 all lie between the margins run
  T.eq(compared, 3, "controllers compared with the curve")
end, { timeout = 3600 })

T.test("an oracle that knows when the house's noise changes beats the constant margin's frontier", function()
  -- ten minutes of the sunny day with nothing but the house's noise (+-120 W every 5 s)
  local function sunny(ctl_opts)
    local sc = scenarios.get("sunny_day")
    sc.start, sc.seconds = 10 * 3600 + 1800, 600
    local r <close> = assert(run.start(sc, { controller = "oracle", mqtt = false, warmup = 30,
      ctl_opts = ctl_opts }))
    md.sleep(sc.seconds)
    return r:metrics()
  end
  local pts = {}
  for _, m in ipairs { 0, 40, 80, 160 } do
    local r = sunny { margin_w = m }
    pts[#pts + 1] = { m = m, over = r.over_wh, curt = r.curtailed_extra_wh }
  end
  -- the margin only in the 2 s before a change: what a controller that learnt the period could do
  local a = sunny { margin_w = 120, anticipate_s = 2 }
  local z = frontier.curve_at(pts, a.over_wh)
  assert(z, string.format("%.2f Wh over outside the margins run", a.over_wh))
  assert(a.curtailed_extra_wh < 0.9 * z, string.format("anticipating: %.2f Wh over, %.2f curtailed; the "
    .. "constant margin's curve there %.2f", a.over_wh, a.curtailed_extra_wh, z))
end, { timeout = 3600 })

T.test("after the 6 kW drop moondog's over-cut exports as little as the oracle at 80 W for less curtailment",
  function()
    -- the oracle's constant margin is no bound for a margin placed in time (docs/control.md)
    local orc = oracle_run("load_drop", { margin_w = 80 })
    local sc = scenarios.get("load_drop")
    local r <close> = assert(run.start(sc, { controller = "moondog", mqtt = false, warmup = 30 }))
    md.sleep(sc.seconds)
    local m = r:metrics()
    assert(m.over_wh <= orc.over_wh + 0.05 and m.curtailed_extra_wh < orc.curtailed_extra_wh - 1,
      string.format("moondog %.2f Wh over, %.2f curtailed; the oracle at 80 W %.2f, %.2f", m.over_wh,
        m.curtailed_extra_wh, orc.over_wh, orc.curtailed_extra_wh))
  end, { timeout = 3600 })

-- A frontier with a known answer: over = 100 - m, curtailed = 10 + m / 4
-- (the goal pair (x, y) is reachable at margins 100 - x .. 4 (y - 10)).
local function line(m) return 100 - m, 10 + m / 4 end

T.test("frontier.search: reachable, unreachable and undecided on a known curve", function()
  local v = frontier.search(line, 50, 30)
  T.eq(v.reachable, true, "margins 50..80 meet both")
  assert(v.point.over <= 50 and v.point.curt <= 30, frontier.describe(v))
  v = frontier.search(line, 150, 6)
  T.eq(v.reachable, true, "below the limit: margins -16..-50")
  assert(v.point.m < 0, frontier.describe(v))
  -- over <= 50 takes m >= 50: curtailed >= 22.5, the goal 20
  v = frontier.search(line, 50, 20, { bisect = 6 })
  T.eq(v.reachable, false, frontier.describe(v))
  assert(v.min_curt > 20 and v.min_curt <= 22.5, "a lower bound above the goal: " .. v.min_curt)
  assert(frontier.describe(v):find("unreachable", 1, true))
  -- the same pair and no bisection: a bracket, said so
  v = frontier.search(line, 50, 20, { bisect = 0 })
  T.eq(v.reachable, nil)
  assert(frontier.describe(v):find("undecided", 1, true), frontier.describe(v))
  -- margin 0 misses both: decided without another run
  local runs = 0
  v = frontier.search(function(m) runs = runs + 1 return line(m) end, 80, 5)
  T.eq(v.reachable, false)
  T.eq(runs, 1, "margin 0 only")
  T.eq(v.min_curt, 10)
  -- the curve between the margins run
  T.eq(frontier.curve_at({ { m = 0, over = 100, curt = 10 }, { m = 40, over = 60, curt = 20 } }, 80), 15)
  T.eq(frontier.curve_at({ { m = 0, over = 100, curt = 10 } }, 80), nil)
end)
