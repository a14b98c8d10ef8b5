-- The shutdown phase (md.on_shutdown, core/engine.c begin_stop,
-- moondog.shutdown): on SIGTERM, SIGINT or md.exit the handlers run as
-- tasks while the loop still turns, so they can do I/O; one that hangs is
-- cut at md.shutdown_timeout(); a second signal stops at once; the exit
-- code is kept; the export limiter leaves its devices safe. Each test runs
-- moondog as a child process (real signals), every wait bounded.
local T = require "moondog.testing"
local md = require "moondog"
local modbus = require "moondog.modbus"

local exe = md.paths.exe
local quote = T.quote
local write, read = T.write_file, T.read_file

-- Wait (bounded) for a file the child writes when it is ready.
local function wait_file(path, what)
  T.wait_for(function() return read(path) ~= nil end, 20, what or path)
end

-- The child's exit: code (or the signal's number + 128).
local function exited(p)
  local _, how, code = p:stop(20)
  return how == "exit" and code or 128 + (code or 0)
end

T.test("a handler's Modbus write completes on SIGTERM; exit 0", function()
  local dir <close> = T.tmpdir()
  local srv <close> = assert(modbus.serve("tcp://127.0.0.1:0"))
  srv:set(1, "holding", 10, { 0 })
  write(dir.path .. "/s.lua", string.format([[
    local bus = assert(md.modbus.open(%q))
    md.on_shutdown(function()
      assert(md.stopping(), "md.stopping() in a handler")
      assert(bus:write_register(1, 10, 1234))
      local r = assert(bus:read(1, "holding", 10, 1))
      io.open(%q, "w"):write("read back " .. r[1] .. "\n"):close()
    end, "modbus")
    io.open(%q, "w"):close()
    while true do md.sleep(1) end
  ]], srv:url(), dir.path .. "/done", dir.path .. "/ready"))
  local p <close> = T.start(dir, "child", exe .. " " .. quote(dir.path .. "/s.lua"))
  wait_file(dir.path .. "/ready")
  T.eq(srv:get(1, "holding", 10)[1], 0, "nothing written before the stop")
  T.eq(exited(p), 0, "exit code after SIGTERM")
  T.eq(srv:get(1, "holding", 10)[1], 1234, "the handler's write reached the server")
  T.eq(read(dir.path .. "/done"), "read back 1234\n")
  local err = read(p.err)
  assert(err:find("SIGTERM received, shutting down", 1, true), err)
end)

T.test("md.exit(3) runs the handlers, the last registered first, and exits 3", function()
  local dir <close> = T.tmpdir()
  local log = dir.path .. "/log"
  write(dir.path .. "/s.lua", string.format([[
    local function note(s) local f = io.open(%q, "a") f:write(s, "\n") f:close() end
    md.on_shutdown(function() md.sleep(0.05) note("first") end, "first")
    md.on_shutdown(function() note("second") end, "second")
    local gone = md.on_shutdown(function() note("cancelled") end, "gone")
    assert(gone:cancel() == true and gone:cancel() == false, "cancel once")
    md.on_shutdown(function() note("raises") error("on purpose") end, "raises")
    md.spawn(function()
      local _ <close> = setmetatable({}, { __close = function() note("closed") end })
      md.sleep(60)
    end)
    md.sleep(0.01)
    md.exit(3)
  ]], log))
  local p <close> = T.start(dir, "child", exe .. " " .. quote(dir.path .. "/s.lua"))
  T.wait_for(function() return not p:alive() end, 20, "the child's exit")
  T.eq(exited(p), 3, "md.exit's code")
  -- started last registered first; "first" sleeps, so ends last; then the
  -- other tasks are cancelled (their <close> runs)
  T.eq(read(log), "raises\nsecond\nfirst\nclosed\n")
  local err = read(p.err)
  assert(err:find("shutdown handler raises failed: .*on purpose"), err)
end)

T.test("a handler that hangs is cut at md.shutdown_timeout(); the exit code stays", function()
  local dir <close> = T.tmpdir()
  write(dir.path .. "/s.lua", string.format([[
    md.shutdown_timeout(0.3)
    md.on_shutdown(function() md.sleep(3600) end, "hangs")
    md.on_shutdown(function() io.open(%q, "w"):close() end, "quick")
    md.spawn(function() md.sleep(0.01) md.exit(5) end)
  ]], dir.path .. "/quick"))
  local p <close> = T.start(dir, "child", exe .. " " .. quote(dir.path .. "/s.lua"))
  T.wait_for(function() return not p:alive() end, 20, "the child's exit")
  T.eq(exited(p), 5, "md.exit's code after the cut")
  assert(read(dir.path .. "/quick"), "the other handler ran")
  local err = read(p.err)
  assert(err:find("handler hangs did not finish within 0.3 s", 1, true), err)
end)

T.test("in simulated time the bound is loop time", function()
  local dir <close> = T.tmpdir()
  write(dir.path .. "/s.lua", [[
    T0 = md.now()
    md.on_shutdown(function() md.sleep(3600) end, "hangs")
    md.on_shutdown(function()
      md.sleep(2)
      io.stderr:write(string.format("slept %g\n", md.now() - T0))
    end, "sleeps")
    md.spawn(function() md.exit(4) end)
  ]])
  local p <close> = T.start(dir, "child", exe .. " --simulated-time " .. quote(dir.path .. "/s.lua"))
  T.wait_for(function() return not p:alive() end, 20, "the child's exit")
  T.eq(exited(p), 4)
  local err = read(p.err)
  assert(err:find("slept 2\n", 1, true), err)
  assert(err:find("handler hangs did not finish within 10 s", 1, true), err)
end)

T.test("a second SIGTERM during the phase stops at once", function()
  local dir <close> = T.tmpdir()
  write(dir.path .. "/s.lua", string.format([[
    md.shutdown_timeout(600)
    md.on_shutdown(function()
      io.open(%q, "w"):close()
      md.sleep(600)
    end, "hangs")
    io.open(%q, "w"):close()
    while true do md.sleep(1) end
  ]], dir.path .. "/phase", dir.path .. "/ready"))
  local p <close> = T.start(dir, "child", exe .. " " .. quote(dir.path .. "/s.lua"))
  wait_file(dir.path .. "/ready")
  p.child:kill("TERM")
  wait_file(dir.path .. "/phase", "the handler's start")
  assert(p:alive(), "waits for its handler")
  p.child:kill("TERM")
  T.wait_for(function() return not p:alive() end, 20, "the exit after the second SIGTERM")
  T.eq(exited(p), 0)
  local err = read(p.err)
  assert(err:find("SIGTERM received again during shutdown: stopping at once", 1, true), err)
end)

T.test("SIGINT runs the handlers too", function()
  local dir <close> = T.tmpdir()
  write(dir.path .. "/s.lua", string.format([[
    md.on_shutdown(function() md.sleep(0.01) io.open(%q, "w"):close() end)
    io.open(%q, "w"):close()
    while true do md.sleep(1) end
  ]], dir.path .. "/done", dir.path .. "/ready"))
  local p <close> = T.start(dir, "child", exe .. " " .. quote(dir.path .. "/s.lua"))
  wait_file(dir.path .. "/ready")
  p.child:kill("INT")
  T.wait_for(function() return not p:alive() end, 20, "the child's exit")
  T.eq(exited(p), 0)
  assert(read(dir.path .. "/done"), "the handler ran")
end)

T.test("STOPPING=1 goes to systemd when the phase begins, before the handlers run, once", function()
  T.need("python3", "python3")
  local dir <close> = T.tmpdir()
  local sock = dir.path .. "/notify.sock"
  write(dir.path .. "/recv.py", [=[
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(30)
while True:
    print(s.recv(4096).decode().replace("\n", "|"), flush=True)
]=])
  local recv <close> = T.start(dir, "recv", "python3 " .. quote(dir.path .. "/recv.py") .. " " .. quote(sock))
  T.wait_for(function() return T.sh("test -S " .. quote(sock) .. " && echo y"):find("y") end, 10, "socket")
  write(dir.path .. "/s.lua", [[
    md.on_shutdown(function() md.service.notify("X-HANDLER=1") end)
    md.spawn(function() md.sleep(0.05) md.exit(2) end)
  ]])
  local p <close> = T.start(dir, "child", "env NOTIFY_SOCKET=" .. quote(sock) .. " " .. exe .. " "
    .. quote(dir.path .. "/s.lua"))
  T.wait_for(function() return not p:alive() end, 20, "the child's exit")
  T.eq(exited(p), 2)
  T.wait_for(function() return (read(recv.out) or ""):find("X-HANDLER=1", 1, true) end, 10, "X-HANDLER")
  local got = read(recv.out)
  assert(got:find("STOPPING=1\nX%-HANDLER=1\n"), got)
  T.eq(select(2, got:gsub("STOPPING=1", "")), 1, "STOPPING=1 once")
end)

T.test("md.on_shutdown and md.shutdown_timeout check their arguments", function()
  assert(not pcall(md.on_shutdown, 42))
  assert(not pcall(md.shutdown_timeout, -1))
  local h = md.on_shutdown(function() end, "x")
  T.eq(tostring(h), "shutdown handler x")
  T.eq(h:cancel(), true)
  T.eq(md.shutdown_timeout(), 10, "the default")
  T.eq(md.stopping(), false)
end)

-- The export limiter on a simulated site (battery_rct with an inverter of
-- model 123 only) in a child in simulated time. What the devices were left
-- at is read from the simulators after the phase, when the tasks are
-- cancelled (a <close>: no I/O needed).
local function limiter_child(dir, disable)
  write(dir.path .. "/s.lua", string.format([[
    md.clock.simulate { start = "2026-06-21 12:00", seed = 21 }
    local scenarios = require "moondog.sim.scenarios"
    local run = require "moondog.sim.run"
    local r
    local function server_of(id)
      for _, d in ipairs(r.sim.devices) do
        if d.id == id then return d.server end
      end
    end
    md.spawn(function()
      local _ <close> = setmetatable({}, { __close = function()
        local bat, pv = server_of("bat"), server_of("pv")
        io.open(%q, "w"):write(string.format("%%s %%g %%g %%g %%s %%g\n",
          bat:get("power_mng.soc_strategy"), bat:get("power_mng.battery_power_extern") + 0.0,
          r.sim.plant.battery.setpoint_w or 0, pv:get(123, "WMaxLimPct"), pv:get(123, "WMaxLim_Ena"),
          pv:get(123, "WMaxLimPct_RvrtTms"))):close()
      end })
      md.sleep(1e9)
    end)
    local sc = scenarios.get("battery_rct")
    sc.devices.pv.models = { 123 }
    r = assert(run.start(sc))
    md.sleep(150)
    if arg[1] == "disable" then
      assert(r.site.export_limit:write("enabled", false))
      md.sleep(3)
    end
    local bat = server_of("bat")
    -- written whole, then renamed: the test reads it as soon as it exists
    io.open(%q, "w"):write(string.format("%%s %%g %%s\n", r.ctl:status().state,
      r.ctl:status().setpoint_pct, bat:get("power_mng.soc_strategy"))):close()
    assert(os.rename(%q, %q))
  ]], dir.path .. "/left", dir.path .. "/ready.tmp", dir.path .. "/ready.tmp", dir.path .. "/ready"))
  local cmd = exe .. " " .. quote(dir.path .. "/s.lua") .. (disable and " disable" or "")
  local p = T.start(dir, "child", cmd)
  wait_file(dir.path .. "/ready")
  return p
end

T.test("export limiter on SIGTERM: 123 inverter at the fail-safe limit, RCT battery at 0 W, own strategy",
  function()
  local dir <close> = T.tmpdir()
  local p <close> = limiter_child(dir)
  local state, pct, strategy = read(dir.path .. "/ready"):match("^(%S+) (%S+) (%S+)")
  T.eq(state, "limiting", "PV curtailed before the stop")
  assert(tonumber(pct) > 10, "setpoint " .. pct)
  T.eq(strategy, "2", "the battery External (controlled) before the stop")
  T.eq(exited(p), 0)
  local err = read(p.err)
  -- soc_strategy 4: Internal, as found at start; 0 W; 123 at 0 % (limit_w
  -- 0: the fail-safe limit), enabled, its revert timer off
  T.eq(read(dir.path .. "/left"), "4 0 0 0 ENABLED 0\n", "what the devices were left at; the child's log:\n"
    .. err:sub(-3000))
  assert(err:find("export limit: engine stopping: left pv at 0 %% %(fail%-safe limit, no revert%); "
    .. "battery bat at 0 W, battery_strategy = Internal"), err)
end, { timeout = 120 })

T.test("export limiter disabled, then SIGTERM: the inverter keeps 100 %, the battery stays given back",
  function()
  local dir <close> = T.tmpdir()
  local p <close> = limiter_child(dir, true)
  T.eq(read(dir.path .. "/ready"):match("^%S+"), "disabled")
  T.eq(exited(p), 0)
  T.eq(read(dir.path .. "/left"), "4 0 0 100 ENABLED 50\n")
  local err = read(p.err)
  assert(err:find("left the inverters as disabling left them (100 %)", 1, true), err)
end, { timeout = 120 })
