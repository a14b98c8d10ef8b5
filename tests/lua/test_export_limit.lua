-- moondog.control.export_limit on a simulated site (moondog.sim.site) in
-- simulated time: the whole file runs on the virtual clock, over real
-- loopback sockets (SunSpec meter 203, inverters with models 123 and 704).
-- A 6 kW load drop answered within the plant's own floor, no oscillation,
-- fail-safe on a silent meter, refused writes and a controller error, the
-- inverter safe by itself when moondog stops, excursions kept across a
-- restart, points owned by the controller.

local T = require "moondog.testing"
local md = require "moondog"
local simsite = require "moondog.sim.site"

md.clock.simulate { start = "2026-06-21 12:00", seed = 3 }

local DROP = 60 -- the 6 kW load switches off 60 s into the scenario

-- The scenario: 8 kW of PV on an 8 kW inverter (tau 1 s), a 6.5 kW house
-- load that drops to 500 W, a 1 Hz meter.
local function scenario(extra)
  local s = {
    name = "load drop", start = 12 * 3600,
    plant = {
      pv = { peak = 8000 }, inverters = { pv = { rating = 8000, tau = 1 } },
      house = { base = 500, steps = { { at = 0, ["until"] = 12 * 3600 + DROP, w = 6000 } } },
      meter = { period = 1 },
    },
    devices = { meter = { kind = "meter" }, pv = { kind = "inverter", models = { 123, 704 } } },
  }
  for k, v in pairs(extra or {}) do s[k] = v end
  return s
end

-- A site on the simulated devices, the true grid power recorded every 0.1 s.
local function start(extra, ctl_opts)
  local trace = {}
  local sc = scenario(extra)
  sc.on_tick = function(s)
    trace[#trace + 1] = { t = s:time(), grid = s.plant.grid_w, pv = s.plant.pv_w }
  end
  local sim = assert(simsite.start(sc))
  local site = md.site.new { name = "el" }
  assert(site:add("meter", "sunspec_meter", sim:url("meter"), { poll = 0.2, offline_after = 2 }))
  assert(site:add("pv", "sunspec_inverter", sim:url("pv"), { poll = 0.5 }))
  local o = { site = site, grid = "meter.power", inverters = { "pv" }, limit_w = 0 }
  for k, v in pairs(ctl_opts or {}) do o[k] = v end
  local ctl = md.control.export_limit(o)
  return sim, site, ctl, trace
end

local function stop(sim, site, ctl)
  ctl:stop()
  site:close()
  sim:close()
end

-- The first time after t0 from which the export stays at or below w.
local function settled_below(trace, t0, w)
  local since
  for _, s in ipairs(trace) do
    if s.t >= t0 then
      if -s.grid <= w then since = since or s.t else since = nil end
    end
  end
  return since
end

T.test("a 6 kW load drop: export back under the limit within the plant's floor, no oscillation", function()
  local sim, site, ctl, trace = start()
  md.sleep(DROP + 60)
  local st = ctl:status()
  T.eq(st.state, "limiting", "limiting")
  -- floor: one meter period before the step is seen, then 3 tau for 95 % of the inverter's step
  local back = settled_below(trace, DROP, 0 + 0.05 * 6000)
  assert(back, "export never came back under the limit")
  local took = back - DROP
  assert(took <= 4.5, string.format("back under limit + 5 %% of the step after %.1f s (floor 4 s)", took))
  -- settled: no sustained oscillation, few writes
  local lo, hi = math.huge, -math.huge
  for _, s in ipairs(trace) do
    if s.t >= DROP + 20 then lo, hi = math.min(lo, s.grid), math.max(hi, s.grid) end
  end
  assert(hi - lo < 100, string.format("grid settled within %.0f W (min %.0f, max %.0f)", hi - lo, lo, hi))
  assert(lo > -100, "no export in steady state: " .. lo)
  local writes = st.writes
  md.sleep(60)
  local per_10s = (ctl:status().writes - writes) / 6
  assert(per_10s <= 1, "steady-state writes per 10 s: " .. per_10s)
  T.eq(site.pv:write("der_limit", 50), nil, "the controller owns the limit")
  local _, err, code = site.pv:write("der_limit", 50)
  T.eq(code, "owned", err)
  assert(err:find("export_limit", 1, true), err)
  T.eq(site.export_limit.state, "limiting", "state entity")
  stop(sim, site, ctl)
end, { timeout = 3600 })

T.test("the meter goes silent: fail-safe within the bound plus one sample, normal once it is back", function()
  local sim, site, ctl, trace = start({ events = { { at = DROP + 30, meter = "silent", duration = 30 } } })
  md.sleep(DROP + 29)
  T.eq(ctl:status().state, "limiting", "limiting before")
  local t_fs
  for _ = 1, 100 do
    md.sleep(0.1)
    if ctl:status().state == "fail-safe" then t_fs = sim:time() break end
  end
  assert(t_fs, "fail-safe")
  assert(t_fs - (DROP + 30) <= 3 + 1, "fail-safe after " .. (t_fs - DROP - 30) .. " s (bound 3 s + a sample)")
  md.sleep(5)
  assert(sim.plant.inverters.pv.output_w <= 50, "the inverter at the fail-safe output (the 0 W limit)")
  T.eq(site.export_limit.state, "fail-safe", "the state entity says so")
  md.sleep(40) -- the meter is back after 30 s; 10 s of fresh data
  T.eq(ctl:status().state, "limiting", "normal control again")
  assert(sim.plant.inverters.pv.output_w > 300, "PV back up to the house load")
  local excursion = false
  for _, s in ipairs(trace) do
    if s.t > DROP + 5 and -s.grid > 300 then excursion = true end
  end
  T.eq(excursion, false, "no export while the meter was silent")
  stop(sim, site, ctl)
end, { timeout = 3600 })

T.test("writes refused: fail-safe, reported", function()
  local sim, site, ctl = start({ events = { { at = DROP - 10, refuse_writes = "pv" } } })
  md.sleep(DROP + 10)
  local st = ctl:status()
  T.eq(st.state, "fail-safe", "fail-safe")
  assert(st.write_errors >= 1, "write errors counted")
  T.eq(site.export_limit.state, "fail-safe", "state entity")
  stop(sim, site, ctl)
end, { timeout = 3600 })

T.test("writes refused for a while: the fail-safe write tried every second, control back when it is taken",
  function()
  -- the cut after the drop is refused: fail-safe; writes are taken again 15 s after the drop
  local sim, site, ctl = start({ events = { { at = DROP - 5, refuse_writes = "pv", duration = 20 } } })
  md.sleep(DROP + 10)
  local st = ctl:status()
  T.eq(st.state, "fail-safe", "fail-safe while writes are refused")
  assert(st.write_errors >= 5, "the fail-safe write tried again every second: " .. st.write_errors)
  md.sleep(7) -- writes taken again 2 s ago; the meter stayed fresh all along (recover_s is 10)
  T.eq(ctl:status().state, "limiting", "normal control as soon as the fail-safe write was taken")
  md.sleep(7)
  local inv = sim.plant.inverters.pv
  assert(inv.limit_pct > 3 and inv.limit_pct < 10, "limited to the 500 W house: " .. inv.limit_pct .. " %")
  stop(sim, site, ctl)
end, { timeout = 3600 })

T.test("steady state under a constant load: no more writes than the revert refresh", function()
  local sim, site, ctl = start()
  md.sleep(DROP + 30)
  local writes = sim.plant.inverters.pv.writes
  md.sleep(60) -- a house of constant load: nothing but the revert refresh every revert/2 (15 s)
  local n = sim.plant.inverters.pv.writes - writes
  assert(n >= 3 and n <= 5, "writes in a minute of steady state: " .. n)
  stop(sim, site, ctl)
end, { timeout = 3600 })

T.test("a controller error: fail-safe at once, restarted, and the site's health says so", function()
  local calls = 0
  local sim, site, ctl = start(nil, { on_step = function()
    calls = calls + 1
    if calls == 30 then error("bug in a site script's hook") end
  end })
  md.sleep(10)
  local health, reasons = site:health()
  assert(health == "failed" or health == "degraded", health)
  assert(table.concat(reasons, " "):find("export limit", 1, true), table.concat(reasons, " "))
  md.sleep(30)
  T.eq(ctl:status().state, "limiting", "back at work after the restart")
  T.eq(site:status().tasks[1].failures, 1, "one failure")
  stop(sim, site, ctl)
end, { timeout = 3600 })

T.test("moondog stops: a 704 inverter reverts to the fail-safe level by itself", function()
  local sim, site, ctl = start(nil, { revert_s = 20 })
  md.sleep(DROP - 10) -- limiting at about 6.5 kW of 8 kW
  assert(sim.plant.inverters.pv.output_w > 5000, "limiting at the house load")
  ctl.handle.cancel() -- the controller dies without a word
  ctl.on_shutdown:cancel() -- and leaves nothing for the engine's shutdown
  site:close()         -- nothing polls, nothing writes
  md.sleep(25)
  local inv = sim.plant.inverters.pv
  T.eq(inv.limit_pct, 0, "reverted to the fail-safe limit (0 W export = 0 %)")
  assert(inv.output_w < 100, "output down by itself: " .. inv.output_w)
  sim:close()
end, { timeout = 3600 })

T.test("excursions are counted, timestamped and survive a restart", function()
  local dir <close> = T.tmpdir()
  local file = dir.path .. "/export_limit.json"
  -- the inverter refuses every write: the export stays far over the limit
  local sim, site, ctl = start({ events = { { at = 0, refuse_writes = "pv" } } },
    { state_file = file, excursion_s = 5 })
  md.sleep(DROP + 20)
  T.eq(ctl:status().excursions, 1, "one excursion")
  local f = assert(io.open(file))
  local saved = require("cjson").decode(f:read("a"))
  f:close()
  T.eq(saved.excursions, 1, "persisted")
  assert(saved.last.start > 1782000000 and saved.last.peak_w > 1000, "timestamped, with its peak")
  stop(sim, site, ctl)
  sim, site, ctl = start(nil, { state_file = file })
  md.sleep(5)
  T.eq(ctl:status().excursions, 1, "still counted after a restart")
  T.eq(site.export_limit.excursions, 1, "and shown")
  stop(sim, site, ctl)
end, { timeout = 3600 })

T.test("G100 escalation: an excursion not corrected in time holds the fail-safe until reset", function()
  local dir <close> = T.tmpdir()
  local file = dir.path .. "/export_limit.json"
  -- the inverter refuses writes for 40 s around the load drop: the export stays far over the limit
  -- (revert_s 120: its own 704 revert timer, the backstop, would end the excursion after 30 s)
  local sim, site, ctl = start({ events = { { at = DROP - 10, refuse_writes = "pv", duration = 40 } } },
    { state_file = file, excursion_s = 5, escalate_s = 20, revert_s = 120 })
  md.sleep(DROP + 19)
  T.eq(ctl:status().latched, nil, "not yet: 19 s over the limit")
  T.eq(site.export_limit.alarm, false, "no alarm yet")
  md.sleep(4) -- the drop is seen up to a meter period after it
  local st = ctl:status()
  assert(st.latched and st.latched.reason:find("20 s", 1, true), "latched after 20 s over the limit")
  T.eq(st.state, "fail-safe", "fail-safe")
  T.eq(site.export_limit.alarm, true, "the alarm entity is on")
  md.sleep(38) -- writes are taken again at DROP + 30; fresh samples for far longer than recover_s
  T.eq(ctl:status().state, "fail-safe", "held: fresh data does not clear an escalation")
  T.eq(sim.plant.inverters.pv.limit_pct, 0, "the inverter at the fail-safe level")
  local f = assert(io.open(file))
  local saved = require("cjson").decode(f:read("a"))
  f:close()
  assert(saved.latched and saved.latched.at > 1782000000, "the latch is persisted, timestamped")
  stop(sim, site, ctl)
  -- a restart keeps it
  sim, site, ctl = start(nil, { state_file = file, escalate_s = 20 })
  md.sleep(20)
  T.eq(ctl:status().state, "fail-safe", "still held after a restart")
  T.eq(site.export_limit.alarm, true, "and the alarm shown")
  assert(site.export_limit:write("alarm", false)) -- what the Home Assistant switch sends
  md.sleep(15) -- recover_s of fresh data
  T.eq(ctl:status().latched, nil, "reset")
  T.eq(ctl:status().state, "limiting", "normal control again")
  stop(sim, site, ctl)
end, { timeout = 3600 })

T.test("G100 escalation by count: the n-th excursion within the window latches the fail-safe", function()
  local dir <close> = T.tmpdir()
  local file = dir.path .. "/export_limit.json"
  local f = assert(io.open(file, "w"))
  -- two excursions already counted an hour ago (a state file from before a restart)
  f:write(require("cjson").encode { excursions = 2, starts = { md.time() - 3600, md.time() - 3500 } })
  f:close()
  local sim, site, ctl = start({ events = { { at = DROP - 10, refuse_writes = "pv", duration = 30 } } },
    { state_file = file, excursion_s = 5, escalate_count = 3 })
  md.sleep(DROP + 4)
  T.eq(ctl:status().latched, nil, "two excursions: no escalation")
  md.sleep(3)
  local st = ctl:status()
  T.eq(st.excursions, 3, "the third excursion")
  assert(st.latched and st.latched.reason:find("3 excursions", 1, true), "latched on the third")
  T.eq(site.export_limit.alarm, true, "alarm")
  stop(sim, site, ctl)
end, { timeout = 3600 })

T.test("an inverter silent at start: fail-safe while waiting, no crash, control once it answers",
  function()
  local sim, site, ctl = start({ events = { { at = 0, silent = "pv", duration = 20 } } })
  md.sleep(5)
  local st = ctl:status()
  T.eq(st.state, "fail-safe", "waiting for the inverter")
  T.eq(site:status().tasks[1].failures, 0, "the controller waits; it does not fail and restart")
  md.sleep(DROP - 15) -- the inverter answers from 20 s; the site retries it
  T.eq(ctl:status().state, "limiting", "normal control once the inverter has answered")
  T.eq(site:status().tasks[1].failures, 0, "no failure")
  assert(sim.plant.inverters.pv.output_w < 7000, "curtailed to the house load")
  stop(sim, site, ctl)
end, { timeout = 3600 })

-- A Growatt MIN (its active power rate, no revert timer) on the load drop;
-- own_meter: the meter of its own that its export limit works from.
local function start_growatt(own_meter)
  local sc = scenario({
    plant = {
      pv = { peak = 3200 }, inverters = { gw = { rating = 3000, tau = 1 } },
      house = { base = 500, steps = { { at = 0, ["until"] = 12 * 3600 + DROP, w = 2000 } } },
      meter = { period = 1 },
    },
    devices = { meter = { kind = "meter" },
                gw = { kind = "inverter", protocol = "growatt_min", own_meter = own_meter } },
  })
  local sim = assert(simsite.start(sc))
  local site = md.site.new { name = "elg" }
  assert(site:add("meter", "sunspec_meter", sim:url("meter"), { poll = 0.2, offline_after = 2 }))
  assert(site:add("gw", "growatt/min_tlx", sim:url("gw"), { poll = 0.5 }))
  local ctl = md.control.export_limit { site = site, grid = "meter.power", limit_w = 0,
    inverters = { { id = "gw", rating = 3000 } } } -- a TL-X's profile has no rating
  return sim, site, ctl
end

-- The controller dies before the load drop; the export after it, in W.
local function export_after_death(sim, site, ctl)
  md.sleep(DROP - 10)
  ctl.handle.cancel()
  ctl.on_shutdown:cancel()
  site:close()
  md.sleep(30) -- the drop, and 20 s for the inverter's own control to act
  return -sim.plant.grid_w
end

T.test("a Growatt with a meter of its own: its export limit is the backstop, holding when moondog dies",
  function()
  local sim, site, ctl = start_growatt("ct")
  md.sleep(5)
  T.eq(site.gw.export_limit, 0, "its own export limit: 0 % (the 0 W limit)")
  T.eq(site.gw:owner("export_limit"), "export_limit", "owned by the controller")
  local export = export_after_death(sim, site, ctl)
  assert(export < 100, "the inverter keeps the export down by itself: " .. export .. " W")
  sim:close()
end, { timeout = 3600 })

T.test("a Growatt without a meter of its own: said loudly, its export limit untouched", function()
  local sim, site, ctl = start_growatt(nil)
  md.sleep(5)
  T.eq(site.gw.export_limit, 100, "untouched (100 %)")
  local export = export_after_death(sim, site, ctl)
  assert(export > 1000, "nothing holds the export when moondog dies: " .. export .. " W")
  sim:close()
end, { timeout = 3600 })
