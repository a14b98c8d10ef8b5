-- moondog: the umbrella module. `local md = require "moondog"` gives the
-- task functions of the C core (spawn, sleep, every, now, ...), the log, and
-- every other moondog module on first use (md.modbus loads moondog.modbus).

local core = require "moondog.core"

local M = {}
for name, value in pairs(core) do
  M[name] = value
end
M.set_shutdown_runner = nil -- moondog.shutdown's, set once below
M.log = require "moondog.log"
local shutdown = require "moondog.shutdown"
M.on_shutdown = shutdown.on_shutdown
M.shutdown_timeout = shutdown.shutdown_timeout

-- Where moondog's files are. main.c adds `script`: the file of the site
-- script being run (not set for tools, the REPL or -e), whose folder is on
-- the profile search path (moondog.devices).
M.paths = {
  exe = core.exe,
  home = core.home,
  lua = core.home .. "/lua",
  scripts = core.home .. "/scripts",
  devices = core.home .. "/devices",
}

--- md.every(s) -> iterator over ticks: `for n in md.every(1) do ... end`.
--- md.every(s, fn, ...) -> task calling fn(...) on every tick until cancelled.
--- Ticks are drift-free: the n-th is due at start + n * s.
function M.every(period, fn, ...)
  local ticks = core.every(period)
  if fn == nil then
    return ticks
  end
  assert(type(fn) == "function", "md.every: second argument must be a function")
  local args = table.pack(...)
  return core.spawn(function()
    for _ in ticks do
      fn(table.unpack(args, 1, args.n))
    end
  end)
end

-- {===== C functions, documented for help() =====
-- help(md.sleep) finds a C function's doc by its name: the `---` block whose
-- first line starts with "md.<name>(", "md.attach.<name>(", or for methods
-- "task:<name>(" (metatable moondog.task), "listener:<name>(" (moondog.attach.listener).

--- md.spawn(fn, ...) -> task: runs fn(...) as a new task, first on the next
--- loop iteration. An error in it is logged with its traceback; the engine
--- keeps running. `local t <close> = md.spawn(...)` cancels it at scope end.

--- md.sleep(s): lets other tasks run for s seconds (loop time: simulated time
--- replaces it in tests); md.sleep(0) only yields. Outside a task it runs the
--- engine until the time has passed.

--- md.now() -> monotonic seconds (a float), for intervals and timeouts.

--- md.time() -> wall-clock seconds since 1970 (a float), for timestamps.

--- md.exit([code]): stops the engine cleanly with this exit code (0; true is
--- 0, false is 1): the calling task unwinds, the md.on_shutdown handlers run
--- (at most md.shutdown_timeout() s), then the others are cancelled and
--- their <close> variables run. In a shutdown handler it only sets the code.

--- md.stopping() -> true once the engine was asked to stop (SIGTERM,
--- SIGINT, md.exit) and runs its shutdown handlers.

--- md.current() -> the running task, or nothing outside a task.

--- md.tasks() -> array of the unfinished tasks, in spawn order.

--- md.stats() -> {tasks, timers, watches, holds, lua_kb}: what the engine
--- holds now. Tests use it to find leaks.

--- md.watchdog([s]) -> the previous limit: a task busy in Lua for more than
--- s seconds (default 30) without yielding is stopped with an error; 0 turns
--- the watchdog off.

--- task:join([timeout]) -> the task's return values, or nil, err, code with
--- code "error", "cancelled" or "timeout". A task cannot join itself.

--- task:cancel() -> true if the task was still alive: stops it where it
--- waits; its <close> variables run. A task may cancel itself.

--- task:status() -> "ready", "running", "waiting", "done", "failed" or
--- "cancelled".

--- task:name([new]) -> the task's name, used in logs; sets it first when
--- new is given.

--- md.attach.listen([path]) -> listener, or nil, message, code: lets
--- `moondog attach [SITE|PATH]` open REPL sessions into this engine over a
--- unix socket (mode 0600). The default path is md.attach.default_path().
--- A failure is also logged. Codes: "in_use" (another engine listens there),
--- "exists" (a file that is not a socket), "unsafe" (a symbolic link, another
--- user's file or directory), "io".

--- md.attach.site() -> this engine's site name: --name, else the script's
--- name without .lua, else "repl".

--- md.attach.default_path([site]) -> the socket of site (default: this
--- engine's, or $MOONDOG_ATTACH): $RUNTIME_DIRECTORY/<site>.sock, else
--- $XDG_RUNTIME_DIR/moondog/<site>.sock, else
--- ${TMPDIR:-/tmp}/moondog-<uid>/<site>.sock.

--- listener:path() -> the socket's path.

--- listener:sessions() -> the number of clients attached through it now.

--- listener:close() -> true: stops listening and removes the socket file; attached
--- sessions go on until their clients leave.

-- }=====

--- md.secret(name) -> value, or nil, message, "not_found": a secret (an MQTT
--- password) from $CREDENTIALS_DIRECTORY/<name>, $MOONDOG_<NAME> or the
--- secrets file; never logged. See moondog.service.
function M.secret(name)
  return require("moondog.service").secret(name)
end

--- md.state_dir() -> path, or nil: the folder for state kept across restarts
--- ($STATE_DIRECTORY under systemd: /var/lib/moondog).
function M.state_dir()
  return require("moondog.service").state_dir()
end

-- Modules loaded on first use; listed so that the REPL can complete them.
local lazy = {
  "attach", "clock", "control", "devices", "growatt", "modbus", "mqtt", "rct", "repl", "service", "site",
  "sunspec", "testing",
}
local is_lazy = {}
for _, name in ipairs(lazy) do
  is_lazy[name] = true
end

return setmetatable(M, {
  __index = function(t, key)
    if is_lazy[key] then
      local mod = require("moondog." .. key)
      rawset(t, key, mod)
      return mod
    end
  end,
  __complete = function()
    return lazy
  end,
})
