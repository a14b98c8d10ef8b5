-- An RCT Power battery in the simulated site (moondog.sim.site, kind
-- "battery", protocol "rct"), in simulated time over real loopback
-- sockets: what the site reads over RCT matches the plant; the profile's
-- battery_charge_setpoint drives the plant battery; writes the device does
-- not take change nothing and are answered with the value kept (RCT sends
-- no error frames); and the export limiter (scenario battery_rct) charges
-- it before PV is curtailed, sets it idle on fail-safe, and goes fail-safe
-- when a battery write is refused or unanswered; a silent battery never
-- holds the control step; ctl:stop() and disabling give the battery back
-- (0 W, its own strategy; a SunSpec storage gets charge_rate 0 too).

local T = require "moondog.testing"
local md = require "moondog"
local scenarios = require "moondog.sim.scenarios"
local simsite = require "moondog.sim.site"
local run = require "moondog.sim.run"
local rct = require "moondog.rct"
local codec = require "moondog.rct.codec"
local stream = require "moondog.stream"

md.clock.simulate { start = "2026-06-21 12:00", seed = 21 }

local function server_of(sim, id)
  for _, d in ipairs(sim.devices) do
    if d.id == id then return d.server end
  end
end

-- Run battery_rct with moondog's controller; events added to the scenario;
-- ctl_opts: more options for the controller.
local function run_rct(events, ctl_opts)
  local sc = scenarios.get("battery_rct")
  sc.events = events
  local states, grid = {}, {}
  local r = assert(run.start(sc, { ctl_opts = ctl_opts, on_second = function(_, row)
    states[row.t], grid[row.t] = row.state, row.grid_w
  end }))
  return r, states, grid
end

T.test("values read back over RCT match the plant; battery_charge_setpoint drives its battery", function()
  local sim <close> = assert(simsite.start(scenarios.get("battery_rct")))
  local site <close> = md.site.new { name = "rb" }
  sim:add_to(site, { poll = 1 })
  md.sleep(3)
  local bat, p = site.bat, sim.plant
  T.eq(bat.battery_strategy, "Internal", "the device's own strategy at first")
  T.eq(p.battery.setpoint_w or 0, 0, "idle")
  -- a site script charges it: strategy External, then the setpoint
  assert(bat:write({ battery_strategy = "External", battery_charge_setpoint = 2000 }))
  T.eq(p.battery.setpoint_w, 2000, "the plant battery follows the RCT write")
  T.eq(server_of(sim, "bat"):get("power_mng.battery_power_extern"), -2000.0, "RCT: < 0 charges")
  md.sleep(3)
  local c <close> = assert(rct.connect(sim:url("bat")))
  local v = assert(c:read_many({ "battery.soc", "g_sync.p_acc_lp", "g_sync.p_ac_grid_sum_lp",
    "g_sync.p_ac_load_sum_lp", "battery.stored_energy" }))
  assert(math.abs(v["battery.soc"] * 100 - p.battery.soc) < 0.01, "soc " .. v["battery.soc"])
  local acc = v["g_sync.p_acc_lp"]
  assert(math.abs(acc + 2000) < 1, "battery power (> 0 discharges): " .. acc)
  assert(math.abs(v["g_sync.p_ac_grid_sum_lp"] - p.grid_w) < 100, "grid " .. v["g_sync.p_ac_grid_sum_lp"])
  assert(math.abs(v["g_sync.p_ac_load_sum_lp"] - p.house_w) < 100, "house " .. v["g_sync.p_ac_load_sum_lp"])
  assert(v["battery.stored_energy"] > 1000000, "lifetime charge counter")
  -- the site's points, in the profile's units and signs
  T.eq(bat.battery_power, -2000, "battery_power (RCT sign: > 0 discharges)")
  T.eq(bat.battery_charge_setpoint, 2000, "the setpoint reads back")
  assert(math.abs(bat.battery_soc - p.battery.soc) < 0.1, "soc % " .. bat.battery_soc)
  T.eq(bat.battery_max_charge_current * bat.battery_voltage, 3000, "current x voltage = the charge power")
  -- the profile's limits are checked before anything is sent
  local ok, err, code = bat:write("battery_charge_setpoint", 20000)
  T.eq(ok, nil, "out of range")
  T.eq(code, "out_of_range", tostring(err))
  -- another strategy: the simulated battery idles
  assert(bat:write("battery_strategy", "Internal"))
  T.eq(p.battery.setpoint_w, 0, "idle under Internal")
end, { timeout = 600 })

-- One raw RCT frame on a fresh connection; the answer's payload, or nil.
local function raw(port, frame)
  local conn = assert(stream.connect("127.0.0.1", port, { timeout = 2 }))
  local _ <close> = setmetatable({}, { __close = function() conn:close() end })
  assert(conn:write(frame, 2))
  local parser = codec.parser()
  for _ = 1, 10 do
    local data = conn:read(4096, 2)
    if not data then return nil end
    parser:push(data)
    local command, _, payload = parser:next()
    if command then return payload end
  end
end

T.test("RCT writes the device does not take: answered with the value kept, the plant unchanged", function()
  local sim <close> = assert(simsite.start(scenarios.get("battery_rct")))
  local srv = server_of(sim, "bat")
  local extern, soc = rct.lookup("power_mng.battery_power_extern"), rct.lookup("battery.soc")
  assert(raw(srv:port(), codec.build("write", soc.id, codec.encode("FLOAT", 0.1))))
  local kept = codec.decode("FLOAT", raw(srv:port(), codec.build("read", soc.id)))
  assert(math.abs(kept - 0.5) < 1e-6, "a read-only object keeps its value: " .. kept)
  -- a FLOAT object written with 2 bytes: no error frame, the value kept
  local answer = raw(srv:port(), codec.build("write", extern.id, "\xC5\x00"))
  T.eq(codec.decode("FLOAT", answer), 0.0, "wrong length: answered with the value kept")
  T.eq(sim.plant.battery.setpoint_w or 0, 0, "the plant battery untouched")
  -- the client never sends either
  local c <close> = assert(rct.connect(sim:url("bat")))
  local ok, _, code = c:write("battery.soc", 0.1)
  T.eq(ok, nil, "read-only")
  T.eq(code, "not_writable", "refused before sending")
  -- a refused write (the scenario's refuse_writes): the value kept, counted
  sim.plant.battery.refuse_writes = true
  local took, held = c:write("power_mng.battery_power_extern", -1000)
  T.eq(took, true, "answered, as a device does")
  T.eq(held, 0.0, "with the value it kept")
  T.eq(srv:stats().refused, 1, "counted")
end, { timeout = 600 })

T.test("battery_rct: the battery absorbs the load drop before PV is curtailed, through RCT writes", function()
  local r <close>, _, grid = run_rct()
  md.sleep(150)
  local p, m = r.sim.plant, r:metrics()
  -- before the drop the sun limits PV: the battery takes the surplus, and
  -- its probes for more do not charge it from the grid for long
  local import = 0
  for t = 80, 118 do import = import + math.max(0, grid[t]) end
  assert(import / 39 < 200, string.format("mean import before the drop %.0f W", import / 39))
  assert(math.abs(p.battery_w - 3000) < 1, "the battery charges at its power: " .. p.battery_w)
  assert(p.pv_w > p.house_w + 2800 and p.pv_w < p.house_w + 3100,
    string.format("PV %.0f W = house %.0f W + the battery's 3 kW", p.pv_w, p.house_w))
  assert(p.grid_w > -50 and p.grid_w < 200, "no export: " .. p.grid_w)
  assert(m.longest_excursion_s <= m.floor_s, "longest excursion " .. m.longest_excursion_s)
  local srv = server_of(r.sim, "bat")
  T.eq(srv:get("power_mng.soc_strategy"), 2, "External, over RCT")
  T.eq(srv:get("power_mng.battery_power_extern"), -3000.0, "charging 3 kW, over RCT")
  assert(srv:stats().writes >= 3, "RCT writes: " .. srv:stats().writes)
  T.eq(r.site.bat.battery_charge_setpoint, 3000, "read back over RCT")
  local _, err, code = r.site.bat:write("battery_charge_setpoint", 0)
  T.eq(code, "owned", "the controller owns the setpoint: " .. tostring(err))
end, { timeout = 3600 })

T.test("battery_rct: fail-safe sets the RCT battery idle; charging again when the meter is back", function()
  local r <close>, states = run_rct({ { at = 150, meter = "silent", duration = 30 } })
  md.sleep(149)
  local srv, p = server_of(r.sim, "bat"), r.sim.plant
  assert(p.battery_w > 2900, "charging before: " .. p.battery_w)
  md.sleep(5) -- the bound (3 s) and a sample
  T.eq(states[153] or states[154], "fail-safe", "fail-safe within the bound + one sample")
  T.eq(srv:get("power_mng.battery_power_extern"), 0.0, "0 W written over RCT")
  T.eq(p.battery_w, 0, "the plant battery idle")
  md.sleep(3) -- the inverter's lag (tau 1 s)
  assert(p.pv_w < 100, "PV at the fail-safe output: " .. p.pv_w)
  md.sleep(60) -- the meter is back at 180; 10 s of fresh data
  assert(r.ctl:status().state ~= "fail-safe", "normal control again")
  assert(p.battery_w > 2900, "charging again: " .. p.battery_w)
end, { timeout = 3600 })

T.test("battery_rct: a refused RCT write is reported and leads to fail-safe; PV keeps the limit", function()
  local r <close>, states = run_rct({ { at = 100, refuse_writes = "bat" } })
  md.sleep(150)
  local st = r.ctl:status()
  assert(st.write_errors >= 1, "the refused write counted")
  local fs
  for t = 100, 150 do fs = fs or (states[t] == "fail-safe" and t) end
  assert(fs, "fail-safe after the refused write")
  assert(server_of(r.sim, "bat"):stats().refused >= 1, "the device turned it down")
  md.sleep(30)
  local p = r.sim.plant
  assert(p.grid_w > -100, "no export with the battery left out: " .. p.grid_w)
  assert(r.ctl:status().state ~= "fail-safe", "control without the battery: " .. r.ctl:status().state)
end, { timeout = 3600 })

T.test("battery_rct: an unanswered RCT write (the client's timeout) leads to fail-safe", function()
  local r <close>, states = run_rct()
  md.sleep(100)
  server_of(r.sim, "bat").faults.silent = 1000000
  md.sleep(50)
  assert(r.ctl:status().write_errors >= 1, "the failed write counted")
  local fs
  for t = 100, 150 do fs = fs or (states[t] == "fail-safe" and t) end
  assert(fs, "fail-safe after the unanswered write")
  server_of(r.sim, "bat").faults.silent = 0
end, { timeout = 3600 })

T.test("battery_rct: a silent RCT battery does not hold the controller: PV answers the load drop", function()
  -- the battery stops answering 1 s before the 6 kW load drop (at 120): the
  -- drop asks it for more charge, a write that waits for the RCT client's
  -- timeout (2 s x 3 tries) in the battery's own task, not in the step
  local steps, sim = {}, nil -- control steps (meter samples handled) per second of the run
  local r <close>, states = run_rct(nil, { on_step = function()
    local t = math.floor(sim:time())
    steps[t] = (steps[t] or 0) + 1
  end })
  sim = r.sim
  md.sleep(119)
  local srv, p = server_of(r.sim, "bat"), r.sim.plant
  local writes_before = srv:stats().writes
  srv.faults.silent = 1000000
  md.sleep(11)
  local handled = 0
  for t = 120, 122 do handled = handled + (steps[t] or 0) end
  local fs
  for t = 120, 129 do fs = fs or (states[t] == "fail-safe" and t) end
  local m = r:metrics()
  md.log.info("silent battery: %d control steps in 120..122 s, fail-safe at %s s, longest excursion %g s "
    .. "(floor %g s)", handled, tostring(fs), m.longest_excursion_s, m.floor_s)
  T.eq(srv:stats().writes, writes_before, "the battery took no write meanwhile")
  assert(handled >= 3, "meter samples handled while the battery write waits: " .. handled)
  assert(m.longest_excursion_s <= m.floor_s, "longest excursion " .. m.longest_excursion_s)
  -- the bound (3 s) after the write that is not answered, + one sample
  assert(fs and fs <= 120 + 3 + 2, "fail-safe after the unanswered write: " .. tostring(fs))
  local st = r.ctl:status()
  assert(tostring(st.battery_error):find("did not answer", 1, true), tostring(st.battery_error))
  assert(st.write_errors >= 1, "counted")
  md.sleep(40)
  local health, reasons = r.site:health()
  T.eq(health, "degraded", "the site's health")
  assert(table.concat(reasons, "; "):find("bat is offline", 1, true), table.concat(reasons, "; "))
  assert(p.grid_w > -100, "PV alone keeps the limit: " .. p.grid_w)
  assert(r.ctl:status().state ~= "fail-safe", "control without the battery")
  srv.faults.silent = 0
  md.sleep(120) -- tried again every 30 s; the device back online
  assert(r.ctl:status().battery_error == nil, "the battery is used again")
  assert(p.battery_w > 2900, "charging again: " .. p.battery_w)
end, { timeout = 3600 })

T.test("battery_rct: ctl:stop() sets the RCT battery idle and gives it back its own strategy", function()
  local r <close> = run_rct()
  md.sleep(150)
  local srv, p = server_of(r.sim, "bat"), r.sim.plant
  T.eq(srv:get("power_mng.soc_strategy"), 2, "External while controlled")
  assert(p.battery_w > 2900, "charging: " .. p.battery_w)
  r.ctl:stop()
  T.eq(srv:get("power_mng.battery_power_extern"), 0.0, "0 W written over RCT")
  T.eq(srv:get("power_mng.soc_strategy"), 4, "Internal again, as found at start")
  T.eq(p.battery.setpoint_w or 0, 0, "the plant battery idle")
  assert(r.site.bat:write("battery_charge_setpoint", 100), "no longer owned")
end, { timeout = 3600 })

T.test("battery_rct: disabling the controller gives the RCT battery back; enabling takes it again", function()
  local r <close>, states = run_rct()
  md.sleep(150)
  local srv, p = server_of(r.sim, "bat"), r.sim.plant
  assert(r.site.export_limit:write("enabled", false))
  md.sleep(3)
  T.eq(states[152], "disabled", "disabled")
  T.eq(srv:get("power_mng.battery_power_extern"), 0.0, "0 W written over RCT")
  T.eq(srv:get("power_mng.soc_strategy"), 4, "Internal again")
  T.eq(p.battery.setpoint_w or 0, 0, "the plant battery idle")
  assert(r.site.export_limit:write("enabled", true))
  md.sleep(30)
  T.eq(srv:get("power_mng.soc_strategy"), 2, "External again")
  assert(p.battery_w > 2900, "charging again: " .. p.battery_w)
end, { timeout = 3600 })

T.test("battery_rct: an RCT battery left External (moondog killed) gets its own strategy on stop", function()
  local dir <close> = T.tmpdir()
  local file = dir.path .. "/state.json"
  do
    local r <close> = run_rct(nil, { state_file = file })
    server_of(r.sim, "bat"):set("power_mng.soc_strategy", 1) -- the site's own: Constant
    md.sleep(20)
    -- killed: nothing gives the battery back
    r.ctl.handle.cancel()
    r.ctl.on_shutdown:cancel() -- nor the engine's shutdown
    r.ctl = nil
  end
  local r <close> = run_rct(nil, { state_file = file })
  local srv = server_of(r.sim, "bat")
  srv:set("power_mng.soc_strategy", 2) -- as the killed run left it
  md.sleep(20)
  r.ctl:stop()
  T.eq(srv:get("power_mng.soc_strategy"), 1, "Constant, as kept in the state file")
end, { timeout = 3600 })

T.test("battery_first (SunSpec storage, for comparison): ctl:stop() sets the battery idle", function()
  local r <close> = assert(run.start(scenarios.get("battery_first")))
  md.sleep(150)
  local p = r.sim.plant
  assert(p.battery_w > 2900, "charging: " .. p.battery_w)
  r.ctl:stop()
  T.eq(r.site.bat.charge_rate, 0, "InWRte 0 read back")
  md.sleep(3)
  T.eq(p.battery_w, 0, "the plant battery idle")
end, { timeout = 3600 })
