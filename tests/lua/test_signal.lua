-- moondog.signal: tasks wait for SIGUSR1/SIGUSR2 sent to this process
-- (kill from a shell); every waiter is woken; a cancelled waiter leaves
-- nothing behind (the harness checks for leaked tasks and refs); a wrong
-- name raises; the process keeps running.

local T = require "moondog.testing"
local md = require "moondog"
local signal = require "moondog.signal"

local function own_pid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = tonumber(f:read("l"):match("^(%d+)"))
  f:close()
  return pid
end

T.test("SIGUSR1 wakes every waiting task, SIGUSR2 only its own", function()
  local got = {}
  local a = md.spawn(function()
    local name = signal.wait("USR1")
    got[#got + 1] = "a:" .. name
  end)
  local b = md.spawn(function()
    local name = signal.wait("USR1")
    got[#got + 1] = "b:" .. name
  end)
  local c = md.spawn(function()
    local name = signal.wait("USR2")
    got[#got + 1] = "c:" .. name
  end)
  md.sleep(0.05) -- let them wait
  T.sh("kill -USR1 " .. own_pid())
  T.wait_for(function() return #got == 2 end, 5, "both USR1 waiters woken")
  table.sort(got)
  T.eq(table.concat(got, ","), "a:USR1,b:USR1")
  assert(not c:status():match("done"), "the USR2 waiter still waits")
  T.sh("kill -USR2 " .. own_pid())
  T.wait_for(function() return #got == 3 end, 5, "the USR2 waiter woken")
  T.eq(got[3], "c:USR2")
  a:cancel(); b:cancel(); c:cancel()
end)

T.test("a cancelled waiter, then a signal: nothing left behind", function()
  local t = md.spawn(function() signal.wait("USR1") end)
  md.sleep(0.05)
  t:cancel()
  T.sh("kill -USR1 " .. own_pid())
  md.sleep(0.05)
end)

T.test("misuse raises", function()
  local ok, err = pcall(signal.wait, "HUP")
  T.eq(ok, false)
  assert(tostring(err):find("USR1", 1, true), err)
end)
