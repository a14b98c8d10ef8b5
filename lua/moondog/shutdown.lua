-- moondog.shutdown: handlers that run when the engine is asked to stop
-- (SIGTERM from systemd, Ctrl-C, md.exit), while the loop still turns, so
-- that they can still do I/O: give a battery back, put inverters at their
-- fail-safe output. md.on_shutdown and md.shutdown_timeout are these.
--
-- The engine (core/engine.c, begin_stop) runs `run` below as one task on a
-- stop request and stops the loop when it returns. It starts every handler
-- as its own task, the last registered first, all at once: a handler that
-- hangs must not keep the others from running. It waits for them until
-- `timeout` seconds (loop time: simulated time too) have passed since the
-- phase began, then cancels those still running and logs them, and logs a
-- handler that raised (the engine does, with its traceback). A second SIGINT/SIGTERM stops the engine at once
-- (engine.c). md.exit in a handler sets the exit code and ends that handler.

local core = require "moondog.core"
local log = require "moondog.log"

local M = {}

local handlers = {} -- registrations in order; cancelled ones are removed
local timeout = 10  -- seconds; systemd's own stop timeout is 90 s by default
local seq = 0

local Handle = {}
Handle.__index = Handle

--- handle:cancel() -> true if the handler was still registered: it will not
--- run on shutdown. Cancelling from inside the running handler is allowed.
function Handle:cancel()
  for i, h in ipairs(handlers) do
    if h == self then
      table.remove(handlers, i)
      return true
    end
  end
  return false
end

function Handle:__tostring()
  return "shutdown handler " .. self.name
end

--- md.on_shutdown(fn [, name]) -> handle: fn() runs as a task when the engine
--- is asked to stop (SIGTERM, SIGINT/Ctrl-C, md.exit), before the other tasks
--- are cancelled and while I/O still works. Handlers run concurrently, the
--- last registered started first, for at most md.shutdown_timeout() seconds
--- in all; one that raises or is still running then is logged (and
--- cancelled), and the engine stops with its exit code. A second
--- SIGINT/SIGTERM during that phase stops at once. handle:cancel() removes it.
--- Not run when the engine ends because nothing is left to do.
function M.on_shutdown(fn, name)
  assert(type(fn) == "function", "md.on_shutdown: expected a function")
  assert(name == nil or type(name) == "string", "md.on_shutdown: name must be a string")
  seq = seq + 1
  local h = setmetatable({ fn = fn, name = name or ("#" .. seq) }, Handle)
  handlers[#handlers + 1] = h
  return h
end

--- md.shutdown_timeout([s]) -> the previous bound: how long the shutdown
--- handlers may run in all (default 10 s; systemd's stop timeout is 90 s).
function M.shutdown_timeout(s)
  local old = timeout
  if s ~= nil then
    assert(type(s) == "number" and s >= 0 and s <= 3600, "md.shutdown_timeout: seconds 0..3600")
    timeout = s
  end
  return old
end

-- The shutdown phase (a task started by the engine).
function M.run()
  local list = {}
  for i = #handlers, 1, -1 do
    list[#list + 1] = handlers[i]
  end
  if #list == 0 then return end
  log.debug("shutdown: running %d handler(s), for at most %g s", #list, timeout)
  local deadline = core.now() + timeout
  local tasks = {}
  for i, h in ipairs(list) do
    tasks[i] = core.spawn(h.fn)
    tasks[i]:name("shutdown handler " .. h.name)
  end
  for i, t in ipairs(tasks) do
    -- one that raised is logged with its traceback by the engine
    local _, _, code = t:join(math.max(0, deadline - core.now()))
    if code == "timeout" then
      t:cancel()
      log.error("shutdown: handler %s did not finish within %g s (md.shutdown_timeout); stopping without it",
        list[i].name, timeout)
    end
  end
end

core.set_shutdown_runner(M.run)

return M
