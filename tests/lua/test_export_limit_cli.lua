-- `moondog export-limit` (scripts/export-limit.lua) against simulated
-- devices (moondog.sim.site, the load_drop scenario), in a child process
-- in simulated time: the child serves the devices and runs the tool on
-- their addresses, exactly as on a site. Plus --help and bad arguments.

local T = require "moondog.testing"

local CHILD = [[
md.clock.simulate { start = "2026-06-21 11:58", seed = 1 }
local sim = assert(require("moondog.sim.site").start(require("moondog.sim.scenarios").get("load_drop")))
md.spawn(function()
  md.sleep(175) -- the 6 kW load switched off at 120 s
  local p = sim.plant
  print(string.format("plant: pv %.0f W, house %.0f W, grid %.0f W, limit %.1f %%", p.pv_w, p.house_w,
    p.grid_w, p.inverters.pv.limit_pct))
end)
local tool = assert(loadfile(md.paths.scripts .. "/export-limit.lua"))
tool("--grid", sim:url("meter"), "--grid-profile", "sunspec_meter", "--inverter", sim:url("pv"),
  "--inverter-profile", "sunspec_inverter", "--limit", "0", "--seconds", "180")
]]

local function run(dir, cmd)
  local proc <close> = T.start(dir, "export-limit", cmd)
  T.wait_for(function() return not proc:alive() end, 60, "the tool to finish")
  local _, how, code = proc:stop()
  return how .. " " .. code, T.read_file(proc.out), T.read_file(proc.err)
end

-- Run a child script (it serves the devices and runs the tool); it must
-- exit 0. Returns its stdout and stderr.
local function run_child(source)
  local dir <close> = T.tmpdir()
  local script = dir.path .. "/child.lua"
  T.write_file(script, source)
  local status, out, err = run(dir, md.paths.exe .. " " .. T.quote(script))
  T.eq(status, "exit 0", "exit status; stderr: " .. err)
  return out, err
end

T.test("limits the export of a simulated site to 0 W, through the 6 kW load drop", function()
  local out, err = run_child(CHILD)
  local pv, house, grid = out:match("plant: pv (%d+) W, house (%d+) W, grid (%-?%d+) W")
  assert(pv, out)
  assert(tonumber(house) < 700 and tonumber(pv) < 1000, "curtailed to the house after the drop: " .. out)
  assert(math.abs(tonumber(grid)) < 200, "grid near 0 W: " .. out)
  assert(out:find("state limiting", 1, true), out)
  assert(err:find("export limit: limiting", 1, true), "the state change is logged: " .. err)
end, { timeout = 60 })

-- An inverter with SunSpec model 123 only: it reverts to full power when
-- moondog stops, which the log must say at start (issue 12, section 3).
local CHILD_123 = [[
md.clock.simulate { start = "2026-06-21 11:58", seed = 1 }
local sc = require("moondog.sim.scenarios").get("load_drop")
sc.devices.pv.models = { 123 }
local sim = assert(require("moondog.sim.site").start(sc))
md.spawn(function()
  md.sleep(40)
  local inv = sim.plant.inverters.pv
  print(string.format("plant: limit %.0f %%, revert %s s to %s %%", inv.limit_pct, tostring(inv.revert_s),
    tostring(inv.revert_to)))
end)
local tool = assert(loadfile(md.paths.scripts .. "/export-limit.lua"))
tool("--grid", sim:url("meter"), "--grid-profile", "sunspec_meter", "--inverter", sim:url("pv"),
  "--inverter-profile", "sunspec_inverter", "--limit", "0", "--seconds", "45")
]]

T.test("model 123 only: the log says loudly that the inverter reverts to full power", function()
  local out, err = run_child(CHILD_123)
  assert(err:find("has only SunSpec model 123: if moondog stops it goes back to FULL power", 1, true), err)
  assert(err:find("own export limit as the backstop", 1, true), err)
  local limit, revert, to = out:match("plant: limit (%d+) %%, revert (%d+) s to (%d+) %%")
  assert(limit and tonumber(limit) < 100, "limiting through model 123: " .. out)
  T.eq(tonumber(revert), 30, "the 123 revert timer set (WMaxLimPct_RvrtTms)")
  T.eq(tonumber(to), 100, "and it goes to full power: " .. out)
end, { timeout = 60 })

-- A Growatt MIN (growatt_min: 2 kW of load off at 12:00) with a meter of
-- its own: its rating from the command line, its export limit the backstop.
local CHILD_GROWATT = [[
md.clock.simulate { start = "2026-06-21 11:58", seed = 1 }
local sc = require("moondog.sim.scenarios").get("growatt_min")
sc.devices.gw.own_meter = "ct"
local sim = assert(require("moondog.sim.site").start(sc))
md.spawn(function()
  md.sleep(170)
  local p = sim.plant
  print(string.format("plant: pv %.0f W, grid %.0f W, own export limit %s W", p.pv_w, p.grid_w,
    tostring(p.inverters.gw.export_limit_w)))
end)
local tool = assert(loadfile(md.paths.scripts .. "/export-limit.lua"))
tool("--grid", sim:url("meter"), "--grid-profile", "sunspec_meter", "--inverter", sim:url("gw"),
  "--inverter-profile", "growatt/min_tlx", "--inverter-rating", "3000", "--limit", "0", "--seconds", "175")
]]

T.test("a Growatt MIN: --inverter-rating, limiting through its rate, its own export limit as the backstop",
  function()
  local out, err = run_child(CHILD_GROWATT)
  assert(err:find("own export limit set to 0.0 % (0 W, from its ct meter)", 1, true), err)
  local pv, grid, own = out:match("plant: pv (%d+) W, grid (%-?%d+) W, own export limit (%S+) W")
  assert(pv, out)
  assert(math.abs(tonumber(grid)) < 200, "grid near 0 W after the drop: " .. out)
  T.eq(tonumber(own), 0, "the inverter's own limit")
  assert(out:find("state limiting", 1, true), out)
end, { timeout = 60 })

T.test("--help and bad arguments: exit 2 with the reason and a pointer to --help (moondog.cli)", function()
  local dir <close> = T.tmpdir()
  local exe = md.paths.exe .. " export-limit "
  local status, out = run(dir, exe .. "--help")
  T.eq(status, "exit 0", "help")
  assert(out:find("--grid URL", 1, true) and out:find("fail-safe", 1, true), out)
  for _, case in ipairs({
    { "--grid tcp://127.0.0.1:1 --grid-profile sunspec_meter --limit 0", "--inverter URL is required" },
    { "--grid tcp://127.0.0.1:1 --grid-profile sunspec_meter --inverter tcp://127.0.0.1:2 --limit 0",
      "needs --inverter-profile" },
    { "--limit -5", "--limit needs watts >= 0" },
    { "--limit=-5", "--limit needs watts >= 0, got '-5'" },
    { "--inverter-profile sunspec_inverter --limit 0", "--inverter-profile must follow its --inverter URL" },
    { "--frobnicate", "unknown option '--frobnicate'" },
    { "--grid tcp://127.0.0.1:1 --grid-profile sunspec_meter --inverter tcp://127.0.0.1:2 "
      .. "--inverter-profile growatt/min_tlx --inverter-rating many --limit 0",
      "--inverter-rating needs watts > 0, got 'many'" },
    { "--limit 0 --grid", "option --grid needs a value (URL)" },
    { "--limit 0 stray", "unexpected argument 'stray'" },
    { "--grid tcp://127.0.0.1:1 --grid-profile sunspec --inverter tcp://127.0.0.1:2 "
      .. "--inverter-profile sunspec_inverter --limit 0",
      "--grid-profile: no device profile 'sunspec'; the profiles are: " },
    { "--grid tcp://127.0.0.1:1 --grid-profile sunspec_meter --inverter tcp://127.0.0.1:2 "
      .. "--inverter-profile ./nowhere.lua --limit 0",
      "--inverter-profile: cannot open the profile file './nowhere.lua'" },
  }) do
    local st, _, err = run(dir, exe .. case[1])
    T.eq(st, "exit 2", case[1])
    T.usage_error(err, "moondog export-limit", case[2], case[1])
  end
end, { timeout = 60 })
