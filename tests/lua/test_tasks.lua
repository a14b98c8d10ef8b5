-- Tasks, sleep, every, join, cancel, errors and the blocking (nested) mode.
local T = require "moondog.testing"
local md = require "moondog"

T.test("spawned tasks run in spawn order, after the spawner yields", function()
  local order = {}
  for i = 1, 5 do
    md.spawn(function() order[#order + 1] = i end)
  end
  order[#order + 1] = "spawner"
  md.sleep(0)
  T.eq(table.concat(order, ","), "spawner,1,2,3,4,5", "order")
end)

T.test("sleeps wake in order of their due time", function()
  local order = {}
  local tasks = {}
  for _, d in ipairs({ 0.03, 0.01, 0.02, 0.0 }) do
    tasks[#tasks + 1] = md.spawn(function() md.sleep(d); order[#order + 1] = d end)
  end
  for _, t in ipairs(tasks) do t:join() end
  T.eq(table.concat(order, ","), "0.0,0.01,0.02,0.03", "wake order")
end)

T.test("sleep never returns early", function()
  local t0 = md.now()
  md.sleep(0.05)
  assert(md.now() - t0 >= 0.05 - 1e-9, "woke before the due time")
end)

T.test("sleep(0) and coroutine.yield let other tasks run", function()
  local log = {}
  local a = md.spawn(function()
    for i = 1, 3 do log[#log + 1] = "a" .. i; md.sleep(0) end
  end)
  local b = md.spawn(function()
    for i = 1, 3 do log[#log + 1] = "b" .. i; coroutine.yield() end
  end)
  a:join(); b:join()
  T.eq(table.concat(log, " "), "a1 b1 a2 b2 a3 b3", "interleaving")
end)

T.test("join returns the task's values; join of a finished task too", function()
  local t = md.spawn(function(x, y) md.sleep(0.001); return x + y, "sum", nil end, 2, 3)
  local a, b = t:join()
  T.eq(a, 5); T.eq(b, "sum")
  T.eq(select("#", t:join()), 3, "result count incl. trailing nil")
  T.eq(t:status(), "done")
end)

T.test("a failing task is isolated: others go on, join reports the error", function()
  local other = md.spawn(function() md.sleep(0.01); return "fine" end)
  local bad = md.spawn(function() md.sleep(0.001); error("boom") end)
  local v, err, code = bad:join()
  T.eq(v, nil); T.eq(code, "error")
  assert(err:find("boom"), err)
  T.eq(bad:status(), "failed")
  T.eq(other:join(), "fine")
end)

T.test("join with a timeout gives nil, err, 'timeout' and leaves the task alone", function()
  local slow = md.spawn(function() md.sleep(0.2); return 1 end)
  local v, err, code = slow:join(0.01)
  T.eq(v, nil); T.eq(code, "timeout")
  assert(err:find("timed out"), err)
  T.eq(slow:status(), "waiting")
  T.eq(slow:join(), 1)
end)

T.test("cancel a waiting task: to-be-closed variables run, joiners wake", function()
  local closed = false
  local t = md.spawn(function()
    local _guard <close> = setmetatable({}, { __close = function() closed = true end })
    md.sleep(10)
  end)
  local joiner = md.spawn(function() return t:join() end)
  md.sleep(0.001)
  T.eq(t:status(), "waiting")
  T.eq(t:cancel(), true, "cancel of a live task")
  assert(closed, "__close did not run")
  T.eq(t:status(), "cancelled")
  local v, _, code = joiner:join()
  T.eq(v, nil); T.eq(code, "cancelled")
  T.eq(t:cancel(), false, "cancel of a finished task")
end)

T.test("cancel a task that has not started yet", function()
  local ran = false
  local t = md.spawn(function() ran = true end)
  t:cancel()
  md.sleep(0.001)
  assert(not ran, "a cancelled task ran")
  T.eq(t:status(), "cancelled")
end)

T.test("a task can cancel itself; code after it does not run", function()
  local after = false
  local t = md.spawn(function()
    md.current():cancel()
    after = true
  end)
  local _, _, code = t:join()
  T.eq(code, "cancelled")
  assert(not after)
end)

T.test("a <close> task handle cancels the task at scope end", function()
  local t
  do
    local h <close> = md.spawn(function() md.sleep(10) end)
    t = h
    md.sleep(0)
  end
  T.eq(t:status(), "cancelled")
end)

T.test("md.every ticks are numbered and never early", function()
  local start = md.now()
  local seen = {}
  for n in md.every(0.01) do
    assert(md.now() >= start + n * 0.01 - 0.001, "tick " .. n .. " came early")
    seen[#seen + 1] = n
    if n == 3 then break end
  end
  T.eq(table.concat(seen, ","), "1,2,3")
end)

T.test("md.every skips missed ticks instead of bunching them", function()
  local seen = {}
  for n in md.every(0.01) do
    seen[#seen + 1] = n
    if n == 1 then md.sleep(0.035) end -- miss ticks 2 and 3
    if #seen == 2 then break end
  end
  assert(seen[2] >= 4, "missed ticks were replayed: " .. table.concat(seen, ","))
end)

T.test("md.every(s, fn) runs fn in its own task until cancelled", function()
  local count = 0
  local t = md.every(0.005, function(step) count = count + step end, 1)
  T.wait_for(function() return count >= 3 end, 5, "three ticks")
  t:cancel()
  local frozen = count
  md.sleep(0.02)
  T.eq(count, frozen, "ticks after cancel")
end)

T.test("where a task cannot yield, a wait raises instead of running the loop", function()
  local other = 0
  local bg = md.spawn(function() for _ = 1, 3 do md.sleep(0.001); other = other + 1 end end)
  local t = { 3, 1, 2 }
  local ok, err = pcall(table.sort, t, function(a, b) md.sleep(0.001); return a < b end) -- C boundary
  T.eq(ok, false, "a sort comparator cannot wait")
  assert(tostring(err):find("cannot wait for I/O here", 1, true), err)
  T.eq(other, 0, "no other task ran inside the comparator")
  bg:join()
  T.eq(other, 3, "the other task goes on afterwards")
end)

T.test("waiting inside a plain coroutine raises a clear error", function()
  local co = coroutine.create(function() md.sleep(0.01) end)
  local ok, err = coroutine.resume(co)
  assert(not ok)
  assert(err:find("plain coroutine"), err)
end)

T.test("argument errors raise with a message", function()
  local ok, err = pcall(md.sleep, "soon")
  assert(not ok and err:find("number expected"), err)
  ok, err = pcall(md.spawn, 42)
  assert(not ok and err:find("function expected"), err)
  ok, err = pcall(md.every, 0)
  assert(not ok and err:find("at least"), err)
end)

T.test("10,000 tasks sleeping 0 all finish", function()
  local done = 0
  local tasks = {}
  for i = 1, 10000 do
    tasks[i] = md.spawn(function() md.sleep(0); md.sleep(0); done = done + 1 end)
  end
  for _, t in ipairs(tasks) do t:join() end
  T.eq(done, 10000)
end)

T.test("md.tasks and md.stats describe what is running", function()
  local t = md.spawn(function() md.sleep(10) end)
  md.sleep(0)
  local found = false
  for _, x in ipairs(md.tasks()) do found = found or x == t end
  assert(found, "spawned task not listed")
  assert(md.stats().timers >= 1)
  t:name("sleeper")
  assert(tostring(t):find("sleeper %[waiting%]"), tostring(t))
  t:cancel()
end)

T.test("watchdog interrupts a task that never yields", function()
  local old = md.watchdog(0.2)
  local t = md.spawn(function() while true do end end)
  local v, err, code = t:join()
  md.watchdog(old)
  T.eq(v, nil); T.eq(code, "error")
  assert(err:find("watchdog"), err)
end, { timeout = 10 })

T.test("md.log formats and filters", function()
  local old = md.log.level("error")
  md.log.info("hidden %d", 1) -- filtered, must not raise
  T.eq(md.log.level(old), "error")
  local ok, err = pcall(md.log.level, "loud")
  assert(not ok and err:find("expected error, warn"), err)
end)
