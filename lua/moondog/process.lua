-- moondog.process: a child process, for what starts peers: the test harness
-- (T.start), the broker helper and the demo.
--
--   local p = assert(process.start("mosquitto -c " .. process.quote(conf) .. " >log 2>&1"))
--   p.pid, p:alive()
--   local ok, how, code = p:stop(5)    -- SIGTERM, SIGKILL after 5 s; reaped
--
-- The child runs `/bin/sh -c "exec CMD"` (moondog.process.core, core/process.c),
-- so pid is the command's own. Nothing here blocks the loop: starting forks,
-- the engine reaps a child when it exits (SIGCHLD), and stop() waits with
-- md.sleep inside a task. Outside a task (a finalizer, a `<close>` run by
-- the collector) stop() only sends SIGTERM and the engine reaps the child
-- later. A dropped process object keeps running; no child outlives the
-- engine: at exit it gets SIGTERM, then SIGKILL, and a killed engine's
-- children get SIGTERM from the kernel (PR_SET_PDEATHSIG).

local core = require "moondog.process.core"
local mdcore = require "moondog.core"

local M = {}

local Process = {}
M.Process = Process
Process.__index = Process

--- process.quote(s) -> s as one word for /bin/sh.
function M.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- process.start(cmd) -> process, or nil, message, code. cmd is a shell
--- command line (with its own redirections: nothing reads its output).
function M.start(cmd)
  local child, err, code = core.spawn("exec " .. cmd)
  if not child then return nil, err, code end
  return setmetatable({ pid = child:pid(), child = child }, Process)
end

-- Its exit as io.popen's close reports it: ok, "exit" | "signal", code.
local function result(how, code)
  return how == "exit" and code == 0 or nil, how, code
end

--- p:alive() -> true until the process has exited.
function Process:alive()
  return self.child ~= nil and self.child:poll() == nil
end

local function in_task()
  return mdcore.current() ~= nil and coroutine.isyieldable()
end

--- p:stop([grace]): SIGTERM, then SIGKILL after grace seconds (default 3),
--- then reap. Returns ok, "exit" or "signal", code (as io.popen's close
--- does), or nil when it was stopped already. Outside a task it only sends
--- SIGTERM and returns nil, "stopping".
function Process:stop(grace)
  local child = self.child
  if not child then return nil end
  self.child = nil
  if child:poll() then return result(child:poll()) end
  child:kill("TERM")
  if not in_task() then return nil, "stopping" end
  local deadline = mdcore.now() + (grace or 3)
  while not child:poll() and mdcore.now() < deadline do
    mdcore.sleep(0.02)
  end
  if not child:poll() then
    child:kill("KILL")
    for _ = 1, 250 do -- SIGKILL cannot be caught: it is gone within ms
      if child:poll() then break end
      mdcore.sleep(0.02)
    end
  end
  return result(child:poll())
end

-- __close gets the error in flight as its second argument: not a grace.
function Process:__close()
  self:stop()
end

return M
