-- moondog.site.supervise: tasks a site keeps alive, and the site's health.
--
--   local sup = supervise.new(site_name, { exit_after = 5, on_health = fn })
--   sup:spawn(fn, { name = "export limit", critical = true })
--   sup:health()   --> "ok" | "degraded" | "failed", { reasons... }
--
-- A supervised task runs fn() in a task of its own. When it raises, the
-- error is logged with its traceback (by the engine, as for any task) and
-- counted; a critical task is then started again after a backoff (1 s,
-- doubling to 60 s; back to 1 s once a run lasted 60 s), and the site's
-- health says so meanwhile. A task that returns normally is done and not
-- restarted. With exit_after = N the engine exits with code 3 after the
-- N-th failure of critical tasks, so that a service manager (systemd's
-- Restart=on-failure) starts a fresh process.
--
-- Health: "failed" while a critical task is down (waiting to restart) or
-- after the site script's main chunk raised (the script never finished
-- setting the site up, so whatever it should have started is missing);
-- "degraded" while a device is offline or stale, or for 5 minutes after a
-- critical task was restarted; "ok" otherwise. A device asleep is healthy.

local md = require "moondog"

local M = {}

local format = string.format

M.EXIT_CODE = 3
local RECENT = 300 -- seconds a restart keeps the site "degraded"

local Sup = {}
Sup.__index = Sup

local function changed(self)
  if self.on_health then self.on_health() end
end

local function run_supervised(self, s)
  local backoff = 1
  while true do
    local started = md.now()
    s.running = true
    s.task = md.spawn(s.fn, table.unpack(s.args, 1, s.args.n))
    s.task:name(s.name)
    local ok, err, code = s.task:join()
    s.running = false
    if ok ~= nil or code == nil or code == "cancelled" then -- returned (or was cancelled)
      s.done = true
      changed(self)
      return
    end
    s.failures = s.failures + 1
    s.last_error = err
    s.last_failure = md.now()
    self.failures = self.failures + (s.critical and 1 or 0)
    if not s.critical then
      md.log.error("site %s: task '%s' failed and is not restarted (it is not critical): %s", self.name,
        s.name, tostring(err))
      s.done = true
      changed(self)
      return
    end
    if self.exit_after and self.failures >= self.exit_after then
      md.log.error("site %s: critical task '%s' failed (%d failures of critical tasks, exit_after = %d); "
        .. "exiting with code %d so that the service manager restarts moondog", self.name, s.name,
        self.failures, self.exit_after, M.EXIT_CODE)
      md.exit(M.EXIT_CODE)
      return
    end
    if md.now() - started >= 60 then backoff = 1 end
    md.log.error("site %s: critical task '%s' failed (%d times so far); restarting it in %g s: %s", self.name,
      s.name, s.failures, backoff, tostring(err))
    s.restart_at = md.now() + backoff
    changed(self)
    md.sleep(backoff)
    s.restart_at = nil
    s.restarts = s.restarts + 1
    backoff = math.min(backoff * 2, 60)
    md.log.info("site %s: task '%s' restarted", self.name, s.name)
    changed(self)
  end
end

-- The handle site:spawn returns for the supervised record s.
local function handle_of(s)
  local handle = {}
  function handle.cancel()
    s.done = true
    s.keeper:cancel()
    if s.task then s.task:cancel() end
  end
  function handle.status()
    return s.done and "done" or s.restart_at and "restarting" or "running", s.failures
  end
  return setmetatable(handle, { __index = { name = s.name }, __close = handle.cancel })
end

local function record(fn, opts, args, position)
  assert(type(fn) == "function", "site:spawn: expected a function")
  opts = opts or {}
  return {
    fn = fn, args = args, name = opts.name or ("task " .. position),
    critical = opts.critical == true, failures = 0, restarts = 0,
  }
end

local function start(self, s)
  s.keeper = md.spawn(run_supervised, self, s)
  s.keeper:name("supervisor of " .. s.name)
end

--- sup:spawn(fn [, opts], ...) -> handle {name, cancel = fn}: fn(...) runs
--- supervised. opts: name, critical (restart on failure).
function Sup:spawn(fn, opts, ...)
  local s = record(fn, opts, table.pack(...), #self.tasks + 1)
  self.tasks[#self.tasks + 1] = s
  start(self, s)
  return handle_of(s)
end

--- sup:reconcile(wanted, same) -> handles: the tasks of a reloaded script.
--- wanted: {{fn, opts, args}} in the order the script spawned them; a task
--- is known by its name, else its position ("task 3"). A running task the
--- script asks for again with an equal function and arguments (same(old,
--- new), moondog.site.reload) keeps running; others are stopped, and new or
--- changed ones started. Returns the handle of each wanted task and the
--- counts kept, started, stopped.
function Sup:reconcile(wanted, same)
  local old = {}
  for _, s in ipairs(self.tasks) do old[s.name] = s end
  local tasks, handles, kept, started, stopped = {}, {}, 0, 0, 0
  for i, w in ipairs(wanted) do
    local s = record(w.fn, w.opts, w.args, i)
    local o = old[s.name]
    if o and o.critical == s.critical and same(o.fn, s.fn) and same(o.args, s.args) then
      s = o
      kept = kept + 1
    else
      if o then
        handle_of(o).cancel()
        stopped = stopped + 1
      end
      start(self, s)
      started = started + 1
    end
    old[s.name] = nil
    tasks[#tasks + 1] = s
    handles[i] = handle_of(s)
  end
  for _, o in pairs(old) do
    handle_of(o).cancel()
    stopped = stopped + 1
  end
  self.tasks = tasks
  changed(self)
  return handles, kept, started, stopped
end

--- sup:watch_main(task): the site script's main chunk; when it raises, the
--- site is failed (with its message) for good.
function Sup:watch_main(task)
  local watcher = md.spawn(function()
    local ok, err, code = task:join()
    if ok == nil and code == "error" then
      self.main_error = err
      md.log.error("site %s: the site script raised an error, so the site is only partly set up; its "
        .. "health is 'failed' until moondog is restarted with a fixed script: %s", self.name, tostring(err))
      changed(self)
    end
  end)
  watcher:name("site " .. self.name .. " watches its script")
  self.main_watcher = watcher
end

--- sup:health(devices) -> state, reasons (an array of sentences).
--- devices: the site's devices (their _state).
function Sup:health(devices)
  local failed, degraded = {}, {}
  if self.main_error then
    failed[#failed + 1] = "the site script raised: " .. tostring(self.main_error):match("^[^\n]*")
  end
  local now = md.now()
  for _, s in ipairs(self.tasks) do
    if s.restart_at then
      failed[#failed + 1] = format("task '%s' failed and restarts in %.0f s", s.name,
        math.max(0, s.restart_at - now))
    elseif s.last_failure and now - s.last_failure < RECENT then
      degraded[#degraded + 1] = format("task '%s' was restarted after failing: %s", s.name,
        tostring(s.last_error):match("^[^\n]*"))
    end
  end
  for _, d in ipairs(devices) do
    local st = rawget(d, "_state")
    if st == "offline" or st == "stale" then
      degraded[#degraded + 1] = format("%s is %s", d.id, st)
    end
  end
  if #failed > 0 then
    table.move(degraded, 1, #degraded, #failed + 1, failed)
    return "failed", failed
  end
  if #degraded > 0 then return "degraded", degraded end
  return "ok", {}
end

--- sup:list() -> {{name, critical, state, failures, restarts, last_error}}
function Sup:list()
  local out = {}
  for _, s in ipairs(self.tasks) do
    out[#out + 1] = {
      name = s.name, critical = s.critical, failures = s.failures, restarts = s.restarts,
      state = s.done and "done" or s.restart_at and "restarting" or "running", last_error = s.last_error,
    }
  end
  return out
end

function Sup:close()
  for _, s in ipairs(self.tasks) do
    s.done = true
    s.keeper:cancel()
    if s.task then s.task:cancel() end
  end
  if self.main_watcher then self.main_watcher:cancel() end
end

--- supervise.new(name, opts) -> supervisor. opts: exit_after, on_health.
function M.new(name, opts)
  opts = opts or {}
  if opts.exit_after ~= nil and (math.type(opts.exit_after) ~= "integer" or opts.exit_after < 1) then
    error("site: exit_after must be a whole number >= 1", 3)
  end
  return setmetatable({
    name = name, tasks = {}, failures = 0, exit_after = opts.exit_after, on_health = opts.on_health,
  }, Sup)
end

return M
