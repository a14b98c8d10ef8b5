-- Issue 17, item 2: `moondog demo --seconds 0` froze at start: the demo
-- dropped its broker, the collector closed the io.popen handle behind it
-- and pclose waited for mosquitto on the loop thread, so SIGTERM was never
-- handled; after SIGKILL, mosquitto and its folder stayed behind. Children
-- are now forked by moondog.process.core, reaped on SIGCHLD, stopped with
-- md.sleep, stopped at engine exit and sent SIGTERM when the engine dies.

local T = require "moondog.testing"
local process = require "moondog.process"

local q, format = T.quote, string.format

local function gone(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "rb")
  if not f then return true end
  local stat = f:read("a")
  f:close()
  return stat:match("^%d+ %b() Z") ~= nil -- a zombie waiting for init
end

-- A moondog engine running `code` as a script; prints go to its .out file.
local function engine(dir, name, code)
  local script = dir.path .. "/" .. name .. ".lua"
  T.write_file(script, code)
  return T.start(dir, name, format("%s %s", q(md.paths.exe), q(script)))
end

local function lines(p)
  local t = {}
  for l in (T.read_file(p.out) or ""):gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

T.test("a dropped broker does not block the collector; exit stops it and removes its folder", function()
  T.need("mosquitto")
  local dir <close> = T.tmpdir()
  local p <close> = engine(dir, "drop", [[
    do
      local b = assert(md.mqtt.broker.start {})
      print(b.pid, b.dir)
      io.stdout:flush()
    end
    collectgarbage()
    collectgarbage()
    print("collected")
  ]])
  T.wait_for(function() return #lines(p) >= 2 or not p:alive() end, 15, "the script to collect its broker")
  local l = lines(p)
  T.eq(l[2], "collected", "second line; stderr: " .. (T.read_file(p.err) or ""))
  local pid, folder = l[1]:match("^(%d+)\t(%S+)$")
  T.wait_for(function() return not p:alive() end, 10, "the engine to exit")
  T.wait_for(function() return gone(pid) end, 5, "mosquitto to be stopped")
  T.eq(io.open(folder .. "/mosquitto.conf") == nil, true, "the broker's folder is removed")
end)

T.test("a child gets SIGTERM when its engine is killed", function()
  local dir <close> = T.tmpdir()
  local p <close> = engine(dir, "killed", [[
    local child = assert(require("moondog.process").start("sleep 60"))
    print(child.pid)
    io.stdout:flush()
    md.sleep(60)
  ]])
  local pid = p:first_line()
  assert(not gone(pid), "the child runs")
  os.execute("kill -KILL " .. p.pid)
  T.wait_for(function() return gone(pid) end, 5, "the orphaned child to be stopped")
end)

T.test("a killed engine's broker stops, and the next broker removes its folder", function()
  T.need("mosquitto")
  local dir <close> = T.tmpdir()
  local p <close> = engine(dir, "killed-broker", [[
    local b = assert(md.mqtt.broker.start {})
    print(b.pid, b.dir)
    io.stdout:flush()
    md.sleep(60)
  ]])
  local pid, folder = p:first_line():match("^(%d+)\t(%S+)$")
  os.execute("kill -KILL " .. p.pid)
  T.wait_for(function() return gone(pid) end, 5, "mosquitto to be stopped")
  T.wait_for(function() return not p:alive() end, 5, "the engine to be gone")
  assert(T.read_file(folder .. "/mosquitto.conf"), "the folder outlived its engine")
  local _b <close> = assert(require("moondog.mqtt.broker").start {})
  T.eq(T.read_file(folder .. "/mosquitto.conf"), nil, "the stale folder is removed")
end)

T.test("stop() waits with md.sleep: other tasks run meanwhile", function()
  local p = assert(process.start("sh -c 'trap \"\" TERM; sleep 30'"))
  md.sleep(0.2) -- let the shell set its trap
  local ticks = 0
  local ticker = md.every(0.01, function() ticks = ticks + 1 end)
  local ok, how, code = p:stop(0.3) -- SIGTERM is ignored: SIGKILL after 0.3 s
  ticker:cancel()
  T.eq(ok, nil, "not a clean exit")
  T.eq(how .. " " .. code, "signal 9", "killed")
  assert(ticks >= 5, "the ticker ran while stop() waited: " .. ticks .. " ticks")
  T.eq(p:stop(), nil, "stopping twice")
end)

T.test("demo --seconds 0 without --mqtt starts, stops on SIGTERM and leaves no broker", function()
  T.need("mosquitto")
  local dir <close> = T.tmpdir()
  local p <close> = T.start(dir, "demo", format("%s demo --seconds 0 --quiet", q(md.paths.exe)))
  T.wait_for(function() return (T.read_file(p.err) or ""):find("started mosquitto", 1, true) end, 15,
    "the demo to start its broker")
  T.wait_for(function() return (T.read_file(p.out) or ""):find("soc", 1, true) end, 15,
    "the demo to print its first line")
  local pids = {}
  for pid in T.sh(format("pgrep -P %d mosquitto", p.pid)):gmatch("%d+") do pids[#pids + 1] = pid end
  T.eq(#pids, 1, "one mosquitto child")
  local _, how, code = p:stop(10)
  T.eq(how .. " " .. tostring(code), "exit 0",
    "exit status after SIGTERM; stderr: " .. (T.read_file(p.err) or ""))
  T.wait_for(function() return gone(pids[1]) end, 5, "mosquitto to be stopped")
end)
