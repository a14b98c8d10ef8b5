-- Benchmark: export limiting on the shipped scenarios (moondog.sim.scenarios),
-- moondog's controller against the two peers' rules (moondog.sim.peers:
-- open-dynamic-export's 5 s average with 10-point ramps, OpenEMS's
-- grid + PV + limit with 20 % steps), each driving the same simulated plant
-- and site in simulated time, in the same run. Per scenario and controller:
-- the longest excursion (s) beside the plant's floor (one meter period +
-- 3 tau), the energy exported above the limit (Wh), the PV energy curtailed
-- beyond what the limit required (Wh), writes per hour and steady-state
-- writes per 10 s (moondog.sim.run defines each). Beside each figure its
-- floor: for the excursion the issue's (one meter period + 3 tau), for the
-- energies what the oracle of moondog.sim.peers leaves (it knows the
-- plant's true load at each meter sample and goes to the exact limit as
-- fast as the inverter can, on the same transport and bus: what it still
-- exports or curtails is the plant's own), and for the writes none (the
-- oracle writes on every change; the goal is absolute). The two energy
-- floors are one point: a controller can go under one of them only by
-- paying with the other (a margin or an over-cut trades curtailment for
-- export; writing 100 % curtails nothing). A goal below its floor is said
-- to be unreachable (at the oracle's figure for the other), and is still
-- counted as missed. The goal on
-- curtailment counts the whole figure; the part of it spent in fail-safe
-- is printed beside it (the peers have no fail-safe). Then the issue's goals
-- for moondog, met or not, and simulated seconds per real second for the
-- day scenario. The first 30 s of each run (the site finding its devices)
-- are left out of the figures. broker_gone runs without MQTT here (MQTT
-- needs real time; it is off the control path, so the figures are the
-- same).
--
--   ./moondog --log-level error tests/bench/export_limit.lua [SCENARIO...]

local run = require "moondog.sim.run"
local scenarios = require "moondog.sim.scenarios"

local CONTROLLERS = { "moondog", "ode", "openems", "oracle" }
local WARMUP = 30

local function real_now()
  local p = io.popen("date +%s.%N")
  local t = tonumber(p:read("l"))
  p:close()
  return t
end

md.clock.simulate { start = "2026-06-21", seed = 12 }

local names = { ... }
if #names == 0 then names = scenarios.list() end

local function fmt(x, p)
  if x == nil then return "-" end
  return string.format("%." .. (p or 1) .. "f", x)
end

local goals_met, goals_total = 0, 0
-- goal_v below the floor: no controller can meet it; said so, still missed.
local function goal(ok, text, goal_v, floor_v, p)
  goals_total = goals_total + 1
  if ok then goals_met = goals_met + 1 end
  local below = ""
  if not ok and goal_v and floor_v and goal_v < floor_v - 1e-9 then
    below = string.format(" (below the plant's floor of %s: unreachable by any controller that does not "
      .. "pay for it in the other energy figure)", fmt(floor_v, p))
  end
  print(string.format("    %s %s%s", ok and "met   " or "MISSED", text, below))
end

for _, name in ipairs(names) do
  local results = {}
  local speed
  for _, ctl in ipairs(CONTROLLERS) do
    local sc = scenarios.get(name)
    local r0, v0 = real_now(), md.now()
    local r = assert(run.start(sc, { controller = ctl, mqtt = false, warmup = WARMUP }))
    md.sleep(sc.seconds)
    local m = r:metrics()
    r:close()
    if ctl == "moondog" then speed = (md.now() - v0) / (real_now() - r0) end
    results[ctl] = m
  end
  local floor = results.moondog.floor_s
  local orc = results.oracle
  local floor_over, floor_curt = orc.over_wh, orc.curtailed_extra_wh
  print(string.format("== %s: %s (%d s simulated, %.0f s/s with moondog)", name,
    scenarios.get(name).description, results.moondog.seconds, speed))
  local cols = "  %-10s %11s %6s %9s %6s %13s %6s %9s %15s"
  print(string.format(cols, "controller", "excursion s", "floor", "over Wh", "floor", "curtailed+ Wh",
    "floor",
    "writes/h", "steady wr/10 s"))
  for _, ctl in ipairs(CONTROLLERS) do
    local m = results[ctl]
    print(string.format(cols, ctl, fmt(m.longest_excursion_s), fmt(floor, 0), fmt(m.over_wh, 2),
      fmt(floor_over, 2),
      fmt(m.curtailed_extra_wh), fmt(floor_curt), fmt(m.writes_per_h, 0), fmt(m.steady_writes_per_10s, 2)))
  end
  local md_m, ode, oems = results.moondog, results.ode, results.openems
  local better_over = math.min(ode.over_wh, oems.over_wh)
  local better_curt = math.min(ode.curtailed_extra_wh, oems.curtailed_extra_wh)
  print("  goals (moondog):")
  local wrong = orc.longest_excursion_s > floor + 0.05
    and string.format("; the oracle's %.1f s says the formula is too low", orc.longest_excursion_s) or ""
  goal(md_m.longest_excursion_s <= floor, string.format("longest excursion %.1f s <= floor %.0f s%s",
    md_m.longest_excursion_s, floor, wrong))
  goal(md_m.over_wh <= better_over / 3 + 1e-6, string.format("over the limit %.2f Wh <= 1/3 of the better "
    .. "peer's %.2f Wh (%.2f)", md_m.over_wh, better_over, better_over / 3), better_over / 3, floor_over, 2)
  local fs = md_m.curtailed_failsafe_wh > 0.05
    and string.format(" (%.1f Wh of it in fail-safe, which the issue requires)", md_m.curtailed_failsafe_wh)
    or ""
  goal(md_m.curtailed_extra_wh <= better_curt * 1.05 + 1e-6, string.format("curtailed beyond need %.1f Wh <= "
    .. "the better peer's %.1f Wh + 5 %%%s", md_m.curtailed_extra_wh, better_curt, fs), better_curt * 1.05,
    floor_curt, 1)
  if md_m.steady_writes_per_10s then
    goal(md_m.steady_writes_per_10s <= 1, string.format("steady-state writes %.2f per 10 s <= 1 "
      .. "(%d s steady%s)", md_m.steady_writes_per_10s, md_m.steady_s,
      md_m.steady_s < 60 and ": too few to judge, one write is 10 / that" or ""))
  end
  if name == "sunny_day" then
    print(string.format("  simulated seconds per real second (the day, moondog's controller): %.0f", speed))
  end
  print()
end
print(string.format("moondog met %d of %d goals", goals_met, goals_total))
md.exit(0)
