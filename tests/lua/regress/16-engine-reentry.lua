-- Issue 16, item 4: an I/O call where the caller cannot yield (a __gc
-- handler, a table.sort comparator, a metamethod called from C) ran the
-- whole loop, every task, with the collector stopped: RSS went from 8 MB to
-- 75 MB in half a second. It now raises "cannot wait for I/O here"; other
-- tasks and the collector are unaffected. And moondog.process: an error
-- raised inside a `<close>` process block surfaces unchanged.

local T = require "moondog.testing"
local md = require "moondog"
local process = require "moondog.process"

local function rss_kb()
  local f = assert(io.open("/proc/self/status", "rb"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

T.test("an I/O call in a __gc handler raises; no task runs inside the collector", function()
  local other, errors = 0, {}
  local bg = md.spawn(function() for _ = 1, 5 do md.sleep(0.001); other = other + 1 end end)
  local before = rss_kb()
  for _ = 1, 200 do
    setmetatable({}, { __gc = function()
      local ok, err = pcall(md.sleep, 0.001)
      if not ok then errors[#errors + 1] = tostring(err) end
    end })
  end
  collectgarbage()
  collectgarbage()
  T.eq(#errors, 200, "every finalizer's wait raised")
  assert(errors[1]:find("cannot wait for I/O here", 1, true), errors[1])
  T.eq(other, 0, "no other task ran inside the finalizers")
  T.eq(collectgarbage("isrunning"), true, "the collector runs again")
  bg:join()
  T.eq(other, 5, "the other task goes on afterwards")
  -- Before the fix RSS grew by tens of MB here; allow ordinary noise only.
  assert(rss_kb() - before < 16 * 1024, "RSS grew by " .. (rss_kb() - before) .. " kB")
end)

T.test("an I/O call in a sort comparator and in a metamethod called from C raises", function()
  local ok, err = pcall(table.sort, { 2, 1 }, function(a, b) md.sleep(0); return a < b end)
  T.eq(ok, false, "sort comparator")
  assert(tostring(err):find("cannot wait for I/O here", 1, true), err)
  local obj = setmetatable({}, { __tostring = function() md.sleep(0); return "x" end })
  ok, err = pcall(tostring, obj) -- tostring calls __tostring from C
  T.eq(ok, false, "__tostring from C")
  assert(tostring(err):find("cannot wait for I/O here", 1, true), err)
end)

T.test("on the main thread, a finalizer's wait raises too; the top level still waits", function()
  local dir <close> = T.tmpdir()
  local script = dir.path .. "/gc.lua"
  T.write_file(script, [[
    setmetatable({}, { __gc = function()
      local ok, err = pcall(md.sleep, 0.01)
      print(ok, (tostring(err):match("cannot wait for I/O here")))
    end })
    collectgarbage()
    md.sleep(0.01)
    print("top level waited")
  ]])
  local out = T.sh(string.format("%s %s 2>&1", T.quote(md.paths.exe), T.quote(script)))
  T.eq(out, "false\tcannot wait for I/O here\ntop level waited\n")
end)

T.test("an error inside a <close> process block surfaces unchanged", function()
  local ok, err = pcall(function()
    local _p <close> = assert(process.start("sleep 30"))
    error({ tag = "the real failure" })
  end)
  T.eq(ok, false)
  T.eq(type(err), "table", "the error object itself, not a message about __close")
  T.eq(err.tag, "the real failure")
  local ok2, err2 = pcall(function()
    local _p <close> = assert(process.start("sleep 30"))
    error("plain message", 0)
  end)
  T.eq(ok2, false)
  T.eq(err2, "plain message")
end)

T.test("stopping a child does not block the loop", function()
  -- A shell that ignores SIGTERM: stop needs SIGKILL after its grace.
  local p = assert(process.start([[sh -c "trap '' TERM; while :; do sleep 0.1; done"]]))
  T.wait_for(function() -- the shell has set its trap: SIGTERM (bit 15) ignored
    local f = io.open("/proc/" .. p.pid .. "/status", "rb")
    local ign = f and f:read("a"):match("SigIgn:%s*(%x+)")
    if f then f:close() end
    return ign ~= nil and (tonumber(ign, 16) >> 14) & 1 == 1
  end, 5, "the child to ignore SIGTERM")
  local ticks = 0
  local ticker = md.spawn(function() while true do md.sleep(0.01); ticks = ticks + 1 end end)
  local ok, how, code = p:stop(0.2)
  ticker:cancel()
  T.eq(ok, nil)
  T.eq(how, "signal", "killed")
  T.eq(code, 9, "SIGKILL after the grace")
  assert(ticks >= 2, "other tasks ran while stop waited (" .. ticks .. " ticks)")
end)

T.test("can_wait: true in a task, false where nothing may wait", function()
  local core = require "moondog.core"
  T.eq(core.can_wait(), true, "a task")
  local in_sort
  table.sort({ 2, 1 }, function(a, b) in_sort = core.can_wait(); return a < b end)
  T.eq(in_sort, false, "a sort comparator")
  local in_gc
  setmetatable({}, { __gc = function() in_gc = core.can_wait() end })
  collectgarbage()
  collectgarbage()
  T.eq(in_gc, false, "a finalizer")
  local co = coroutine.wrap(function() return core.can_wait() end)
  T.eq(co(), false, "a plain coroutine")
end)
