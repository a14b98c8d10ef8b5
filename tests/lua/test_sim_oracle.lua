-- The oracle of moondog.sim.peers, which gives the benchmark its floors: it
-- knows the plant's true house load at each meter sample and goes to the
-- exact limit as fast as the inverter can, through the same site and
-- sockets as moondog's controller. In simulated time over loopback.

local T = require "moondog.testing"
local md = require "moondog"
local scenarios = require "moondog.sim.scenarios"
local run = require "moondog.sim.run"
local peers = require "moondog.sim.peers"

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
