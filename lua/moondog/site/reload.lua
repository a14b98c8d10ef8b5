-- moondog.site.reload: SIGHUP runs the site script again and reconciles
-- the running site with what the script declares now.
--
--   kill -HUP $(pidof moondog)     -- or systemctl reload moondog@home
--
-- The script needs no change to be reloadable. While it runs again,
-- md.site.new{name = ...} returns the running site of that name, and every
-- declaring call on it is staged instead of applied:
--   site:add       the same id with the same profile, address and options
--                  returns the running device (same object, same poll task,
--                  same poll phase: no gap); otherwise a new device is made
--                  (opened, not yet polled);
--   site:spawn     known by its name, else its position ("task 2"); the same
--                  function (bytecode and upvalues, compared by value) and
--                  arguments keeps the running task;
--   site:publish, site:serve_modbus
--                  the same options keep the running publisher / gateway;
--   site:derive    a point that exists takes the new function;
--   site:value     a point that exists keeps its value;
--   site:watch, site:on_change
--                  the watchers are replaced (they hold no timing).
-- When the script's main chunk returned without an error and no site:add
-- failed, the staged site is committed at once, in one turn of the loop:
-- devices not declared again (or declared differently) are removed (their
-- Home Assistant entities removed, their retained values cleared, polling
-- stopped), new ones attached and started, tasks, publishers, gateways and
-- watchers reconciled. Otherwise (a syntax error, an error raised, a
-- site:add that returned nil, a main chunk still running after
-- M.TIMEOUT seconds) everything staged is thrown away and the running site
-- is untouched; the log says why. A site script's main chunk must return:
-- loops belong in site:spawn.
--
-- Only what the script declares is reconciled: a device added from the
-- REPL or `moondog attach` is removed by a reload, as it would be by a
-- restart.

local md = require "moondog"
local core = require "moondog.core"

local M = {}

local format = string.format

M.TIMEOUT = 30 -- seconds the main chunk may run during a reload

-- The reload under way: { sites = {site = stage}, created = {site...} }.
local current

-- {===== comparing what the script declares =====

local same

-- Two functions are the same when their bytecode (without line numbers)
-- and their upvalues are: a controller whose code and settings did not
-- change, closed over the same site and devices, keeps running.
local function same_function(a, b, seen, depth)
  local ok_a, da = pcall(string.dump, a, true)
  local ok_b, db = pcall(string.dump, b, true)
  if not (ok_a and ok_b) or da ~= db then return false end
  for i = 1, 255 do
    local na, va = debug.getupvalue(a, i)
    local nb, vb = debug.getupvalue(b, i)
    if na ~= nb then return false end
    if na == nil then return true end
    if not same(va, vb, seen, depth + 1) then return false end
  end
  return false
end

-- a and b equal by value: plain tables key by key, functions as above,
-- anything else (userdata, objects with a metatable) only when identical.
function same(a, b, seen, depth)
  if rawequal(a, b) then return true end
  seen, depth = seen or {}, depth or 0
  if depth > 16 then return false end
  local ta, tb = type(a), type(b)
  if ta ~= tb then return false end
  if ta == "number" then return a ~= a and b ~= b end -- NaN
  if ta == "function" then
    local key = tostring(a) .. "|" .. tostring(b)
    if seen[key] then return true end
    seen[key] = true
    return same_function(a, b, seen, depth)
  end
  if ta ~= "table" or getmetatable(a) ~= nil or getmetatable(b) ~= nil then return false end
  local key = tostring(a) .. "|" .. tostring(b)
  if seen[key] then return true end
  seen[key] = true
  for k, v in pairs(a) do
    if not same(v, rawget(b, k), seen, depth + 1) then return false end
  end
  for k in pairs(b) do
    if rawget(a, k) == nil then return false end
  end
  return true
end

M.same = function(a, b) return same(a, b) end

-- }=====

-- {===== staging =====

local Stage = {}
Stage.__index = Stage

local function stage_error(self, msg)
  self.failures[#self.failures + 1] = msg
end

--- stage:device(id) -> the device site.<id> names during the reload.
function Stage:device(id)
  return self.new[id] or self.kept[id] or rawget(self.site, "_devices")[id]
end

function Stage:add(id, profile, target, opts)
  local site = self.site
  if self.new[id] or self.kept[id] then
    error(format("site:add: the site already has a device '%s'", id), 3)
  end
  local sig = { profile = profile, target = target, opts = opts }
  local old = site._devices[id]
  if old and rawget(old, "_dev") and site._sigs[id] and same(site._sigs[id], sig) then
    self.kept[id] = old
    return old
  end
  local sd, err, code = site:_make_device(id, profile, target, opts)
  if not sd then
    stage_error(self, format("site:add(%q) failed: %s", id, tostring(err)))
    return nil, err, code
  end
  self.new[id] = sd
  self.new_order[#self.new_order + 1] = sd
  self.sigs[id] = sig
  return sd
end

function Stage:value(name, def, initial)
  local id = tostring(name):match("^([a-z0-9_]+)%.")
  self.values[id or name] = true
  self.actions[#self.actions + 1] = function(site)
    local sd = rawget(site, "_devices")[id]
    local pname = tostring(name):match("%.(.+)$")
    if sd and rawget(sd, "_points")[pname] then return end -- kept, with its value
    site:value(name, def, initial)
  end
  return self.site._devices[id]
end

function Stage:derive(name, def, fn)
  local id = tostring(name):match("^([a-z0-9_]+)%.")
  self.values[id or name] = true
  self.actions[#self.actions + 1] = function(site)
    for _, d in ipairs(site._derived) do
      if d.full == name then
        d.fn = fn
        site:_compute(d)
        return
      end
    end
    site:derive(name, def, fn)
  end
  return self.site._devices[id]
end

-- A handle for something started only at commit: cancel() reaches it then.
local function later(kind)
  local h = { kind = kind }
  function h.cancel()
    h.cancelled = true
    if h.real then h.real.cancel() end
  end
  function h.status()
    if h.real then return h.real.status() end
    return "staged", 0
  end
  return h
end

function Stage:watch(name, fn)
  local h = later("watch")
  self.watchers[#self.watchers + 1] = { name = name, fn = fn, handle = h }
  return h
end

function Stage:on_change(fn)
  local h = later("on_change")
  self.watchers[#self.watchers + 1] = { fn = fn, handle = h }
  return h
end

function Stage:spawn(fn, opts, ...)
  assert(type(fn) == "function", "site:spawn: expected a function")
  local h = later("task")
  self.tasks[#self.tasks + 1] = { fn = fn, opts = opts, args = table.pack(...), handle = h }
  return h
end

-- publish and serve_modbus return the running object when kept; a new one
-- exists only after the commit, so the script gets a placeholder then.
function Stage:publish(opts)
  for pub, o in pairs(self.site._publish_opts) do
    if not pub.closed and not self.pubs_kept[pub] and same(o, opts) then
      self.pubs_kept[pub] = true
      return pub
    end
  end
  self.pubs_new[#self.pubs_new + 1] = opts
  return later("publisher")
end

function Stage:serve_modbus(opts)
  for gw, o in pairs(self.site._gateway_opts) do
    if not self.gws_kept[gw] and same(o, opts) then
      self.gws_kept[gw] = true
      return gw
    end
  end
  self.gws_new[#self.gws_new + 1] = opts
  return later("gateway")
end

local function new_stage(site)
  return setmetatable({
    site = site, new = {}, new_order = {}, kept = {}, sigs = {}, failures = {}, tasks = {},
    watchers = {}, values = {}, actions = {}, pubs_kept = {}, pubs_new = {}, gws_kept = {}, gws_new = {},
  }, Stage)
end

-- Throw away what a failed reload staged: the devices it opened.
local function discard(stage)
  local site = stage.site
  rawset(site, "_stage", nil)
  for _, sd in ipairs(stage.new_order) do
    local dev = rawget(sd, "_dev")
    local b = dev and dev.site_bus and site._buses[dev.site_bus]
    if b then b.devices = b.devices - 1 end
    if dev then dev:close() end
  end
end

-- }=====

-- {===== commit =====

local function remove_device(site, id)
  for _, pub in ipairs(site._publishers) do
    if not pub.closed then pub:remove(id, { clear = true }) end
  end
  site:remove(id)
end

local function commit(stage)
  local site = stage.site
  rawset(site, "_stage", nil)
  local report = { kept = 0, added = 0, removed = 0, changed = 0 }
  -- devices
  for _, sd in ipairs(site:devices()) do
    local id = sd.id
    if rawget(sd, "_dev") then
      if stage.kept[id] then
        report.kept = report.kept + 1
      else
        local k = stage.new[id] and "changed" or "removed"
        report[k] = report[k] + 1
        md.log.info("site %s: reload: %s %s", site.name, id, k == "changed" and "changed, restarted" or k)
        remove_device(site, id)
        site._sigs[id] = nil
      end
    elseif not stage.values[id] then
      md.log.info("site %s: reload: site values %s removed", site.name, id)
      remove_device(site, id)
      local derived = {}
      for _, d in ipairs(site._derived) do
        if d.sd == sd then
          for key in pairs(d.deps) do
            if site._dependents[key] then site._dependents[key][d] = nil end
          end
        else
          derived[#derived + 1] = d
        end
      end
      site._derived = derived
    end
  end
  for _, sd in ipairs(stage.new_order) do
    if not site._sigs[sd.id] then report.added = report.added + 1 end
    site._sigs[sd.id] = stage.sigs[sd.id]
    site:_attach(sd)
  end
  report.added = report.added - report.changed
  -- watchers (before the derived points, so that they see their new values)
  for _, w in ipairs(site._watchers) do
    w.task:cancel()
    w.cancelled = true
  end
  site._watchers = {}
  for _, w in ipairs(stage.watchers) do
    if not w.handle.cancelled then
      w.handle.real = w.name and site:watch(w.name, w.fn) or site:on_change(w.fn)
    end
  end
  -- site values and derived points
  for _, act in ipairs(stage.actions) do act(site) end
  -- tasks
  local wanted = {}
  for _, t in ipairs(stage.tasks) do wanted[#wanted + 1] = t end
  local handles, kept, started, stopped = site._sup:reconcile(wanted, same)
  for i, t in ipairs(stage.tasks) do
    t.handle.real = handles[i]
    if t.handle.cancelled then handles[i].cancel() end
  end
  report.tasks = format("%d kept, %d started, %d stopped", kept, started, stopped)
  -- publishers and gateways
  local pubs = {}
  for _, pub in ipairs(site._publishers) do
    if stage.pubs_kept[pub] then
      pubs[#pubs + 1] = pub
    else
      pub:close()
    end
  end
  site._publishers = pubs
  for _, opts in ipairs(stage.pubs_new) do site:publish(opts) end
  local gws = {}
  for _, gw in ipairs(site._gateways) do
    if stage.gws_kept[gw] then gws[#gws + 1] = gw else gw:close() end
  end
  site._gateways = gws
  for _, opts in ipairs(stage.gws_new) do site:serve_modbus(opts) end
  site._sup.main_error = nil -- the script ran to its end this time
  site:_health_changed()
  md.log.info("site %s: reloaded: devices %d kept, %d added, %d changed, %d removed; tasks %s", site.name,
    report.kept, report.added, report.changed, report.removed, report.tasks)
  return report
end

-- }=====

-- {===== hooks for moondog.site =====

--- reload.existing(site, opts) -> site during a reload (staged), else nil.
function M.existing(site)
  if not current or not site or rawget(site, "_closed") then return nil end
  if not current.sites[site] then
    current.sites[site] = new_stage(site)
    current.order[#current.order + 1] = site
    rawset(site, "_stage", current.sites[site])
  end
  return site
end

--- reload.created(site): a site the reloading script made anew.
function M.created(site)
  if current then current.created[#current.created + 1] = site end
end

-- }=====

--- reload.run(path [, args]) -> report (a table per site), or nil, message:
--- run the site script at path again and reconcile (see above).
function M.run(path, args)
  if current then return nil, "a reload is already under way" end
  local chunk, err = loadfile(path)
  if not chunk then
    md.log.error("reload of %s failed, nothing changed: %s", path, tostring(err))
    return nil, err
  end
  current = { sites = {}, order = {}, created = {} }
  local ctx = current
  args = args or {}
  local task = md.spawn(chunk, table.unpack(args, 1, args.n or #args))
  task:name("site reload")
  local ok, jerr, code = task:join(M.TIMEOUT)
  current = nil
  local why
  if ok == nil then
    if code == "timeout" then
      task:cancel()
      why = format("the script's main chunk still ran after %g s (a site script must return; run loops "
        .. "with site:spawn)", M.TIMEOUT)
    else
      why = tostring(jerr)
    end
  else
    for _, site in ipairs(ctx.order) do
      local st = ctx.sites[site]
      if #st.failures > 0 then why = table.concat(st.failures, "; ") break end
    end
  end
  if why then
    for _, site in ipairs(ctx.order) do discard(ctx.sites[site]) end
    for _, site in ipairs(ctx.created) do site:close() end
    md.log.error("reload of %s failed, the running site is unchanged: %s", path, why)
    return nil, why
  end
  local reports = {}
  for _, site in ipairs(ctx.order) do reports[site.name] = commit(ctx.sites[site]) end
  return reports
end

local started = false

--- reload.start(path): reload on every SIGHUP from now on (once per
--- process; moondog.site starts it for a site made by the main chunk of
--- `moondog SCRIPT.lua`).
function M.start(path)
  if started then return end
  started = true
  local args = table.pack(table.unpack(rawget(_G, "arg") or {}))
  local t = md.spawn(function()
    while true do
      core.wait_signal("HUP")
      md.log.info("SIGHUP: reloading %s", path)
      M.run(path, args)
    end
  end)
  t:name("site reload on SIGHUP")
end

return M
