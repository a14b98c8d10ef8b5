-- moondog.site.device: one device of a site: its poll task, the latest
-- value of every point with its time and state, and the device's life
-- cycle. Made by site:add; consumers reach it as site.<id>.
--
--   site.meter.power                        -- the value (nil when unknown)
--   local w, age, state = site.meter:get("power")
--   local w = site.meter:wait("power", { newer_than = t, timeout = 5 })
--   site.meter:refresh{ "power" }           -- one read now, shared by callers
--   site.pv:write("power_limit", 50)        -- or write{ power_limit = 50, ... }
--   site.pv:stats()                         -- polls, errors by code, latency ...
--
-- Life cycle. A device starts "starting"; its first good read makes it
-- "ok". A failed poll makes it "stale" (values kept, marked old); after
-- `offline_after` failed polls in a row (default 3) it is "offline", or
-- "asleep" when its profile says it sleeps (`sleeps = true`: an inverter
-- at night) and the failures are silence (timeouts, refused connections).
-- A device that does not answer its very first poll is down at once
-- (absent at start): it is kept, reported once, and tried again with
-- backoff, `retry = {min, max}` seconds (default 10 growing to 300), never
-- dropped; a device that went down later is tried the same way. It comes
-- back by itself on its next good read. While a device is down its points
-- show what their policy says (moondog.site.policy: zero, hold or nothing).
--
-- One owner: every read and write of the device goes through its site
-- device, one at a time (a per-device lock), so a refresh, a write and the
-- poll never interleave on the device; the bus below serialises the
-- transactions of all devices that share it.
--
-- Values. A reading that is NaN or infinite is no value (logged once per
-- point). A total that reads lower than before is held back (logged once)
-- unless the point says it `resets`. A point the device does not implement
-- (absent from two good reads in a row) is no longer polled and is
-- reported to consumers (Home Assistant drops its entity); it is looked at
-- again when the device comes back from being down.

local md = require "moondog"
local event = require "moondog.event"
local point = require "moondog.devices.point"
local policy = require "moondog.site.policy"
local schedule = require "moondog.site.schedule"

local M = {}

local format = string.format
local math_type, monotonic = math.type, policy.monotonic

-- Names that are the device's own and cannot be point names.
M.reserved = {
  id = true, profile = true, get = true, wait = true, refresh = true, write = true, stats = true,
  describe = true, points = true, own = true, owner = true, update = true, expire = true,
}

local Device = {}

-- {===== lock =====

-- A FIFO lock over the device's driver calls. Waiters queue on events.
local function lock(self)
  if not self._busy then
    self._busy = true
    return
  end
  local ev = event.new()
  self._queue[#self._queue + 1] = ev
  ev:wait()
end

local function unlock(self)
  local ev = table.remove(self._queue, 1)
  if ev then
    ev:set() -- hand over: _busy stays true
  else
    self._busy = false
  end
end

-- Run fn(...) holding the lock; errors raised by fn still release it.
-- fn is a driver call: it returns at most three values (a result, or nil,
-- message, code), so they are passed on in locals, not a packed table
-- (this runs for every poll of every device).
local function locked(self, fn, ...)
  lock(self)
  local ok, a, b, c = pcall(fn, ...)
  unlock(self)
  if not ok then error(a, 0) end
  return a, b, c
end

-- }=====

-- {===== values =====

local function emit(self, what, ...)
  self._site:_emit(what, self, ...)
end

local function wake(self, name, ...)
  local ev = self._events[name]
  if ev then
    self._events[name] = nil
    ev:set(...)
  end
end

local function wake_all(self, ...)
  local events = self._events
  self._events = {}
  for _, ev in pairs(events) do ev:set(...) end
end

-- One point's new reading. Returns true when what consumers see changed.
local function take(self, p, raw, now)
  local name = p.name
  if not policy.is_number_value(raw) then
    if not self._nan[name] then
      self._nan[name] = true
      md.log.warn("%s.%s read %s; that is no value, so the point has none until a real reading",
        self.id, name, tostring(raw))
    end
    local changed = self._v[name] ~= nil
    self._v[name] = nil
    return changed
  end
  self._nan[name] = nil
  local good = self._good[name]
  if good ~= nil and type(raw) == "number" and raw < good and policy.monotonic(p) then
    self._held = self._held + 1
    if not self._lower[name] then
      self._lower[name] = true
      md.log.warn("%s.%s read %s after %s; holding %s (a total never goes down: set resets = true on "
        .. "the point if this counter can reset)", self.id, name, point.format(p, raw),
        point.format(p, good), point.format(p, good))
    end
    self._t[name] = now
    local changed = self._v[name] ~= good
    self._v[name] = good
    return changed
  end
  self._lower[name] = nil
  local changed = self._v[name] ~= raw
  self._good[name], self._v[name], self._t[name] = raw, raw, now
  return changed
end

-- Points absent from two good reads in a row are not implemented.
local function note_absent(self, names, values)
  local gone, back
  for _, name in ipairs(names) do
    if values[name] == nil then
      local n = (self._absent[name] or 0) + 1
      self._absent[name] = n
      if n >= 2 and self._impl[name] ~= false then
        self._impl[name] = false
        self._v[name] = nil
        gone = gone or {}
        gone[#gone + 1] = name
      end
    else
      self._absent[name] = nil
      if self._impl[name] == false then back = true end -- a write made it appear
      self._impl[name] = true
    end
  end
  if back then self:_reschedule() end
  if gone then
    md.log.info("%s does not implement %s; no longer polled", self.id, table.concat(gone, ", "))
    self:_reschedule()
    emit(self, "unimplemented", gone)
  end
end

-- Apply a good read of `names`: values, waiters, listeners, derived points.
local function apply(self, names, values, now)
  local changed = {}
  for _, name in ipairs(names) do
    local raw = values[name]
    if raw ~= nil then
      if take(self, self._points[name], raw, now) then changed[#changed + 1] = name end
      wake(self, name, self._v[name], 0, "ok")
    end
  end
  note_absent(self, names, values)
  emit(self, "sample", names, changed)
  return changed
end

-- Every point shows its policy's value for a device that went down.
local function apply_down(self, state)
  local names, changed = {}, {}
  for _, p in ipairs(self._order) do
    local v = policy.apply(p, state, self._good[p.name])
    if self._impl[p.name] == false then v = nil end
    if v ~= self._v[p.name] then changed[#changed + 1] = p.name end
    self._v[p.name] = v
    names[#names + 1] = p.name
  end
  emit(self, "sample", names, changed)
end

-- }=====

-- {===== life cycle =====

local function set_state(self, state, err)
  local old = self._state
  if old == state then return end
  self._state = state
  if state == "ok" then
    if old == "starting" then
      md.log.info("%s is online", self.id)
    else
      md.log.info("%s is back (%s before)", self.id, old)
    end
  elseif state == "offline" and self._pushed then
    md.log.warn("%s is offline: %s", self.id, tostring(err))
  elseif state == "offline" then
    if old == "starting" then
      md.log.warn("%s does not answer at start: %s; trying again in %g s (it is kept, not dropped)",
        self.id, tostring(err), self._retry_in)
    else
      md.log.warn("%s is offline: %s; trying again in %g s", self.id, tostring(err), self._retry_in)
    end
  elseif state == "asleep" then
    md.log.info("%s is asleep (%s); its profile says it sleeps, as an inverter does at night. "
      .. "Checking again every %g-%g s", self.id, tostring(err), self._retry[1], self._retry[2])
  end
  if state == "offline" or state == "asleep" then
    apply_down(self, state)
    wake_all(self, nil, format("%s is %s: %s", self.id, state, tostring(err)), state)
  end
  emit(self, "state", old, state, err)
end

local function down(self, err, code)
  local state = (self._profile.sleeps and policy.is_no_answer(code)) and "asleep" or "offline"
  self._retry_in = self._retry[1]
  self._retry_at = md.now() + self._retry_in
  set_state(self, state, err)
end

local function succeeded(self, names, values, t0)
  local now = md.now()
  local s = self._stats
  s.polls = s.polls + 1
  local latency = now - t0
  s.latency_sum, s.latency_n = s.latency_sum + latency, s.latency_n + 1
  s.latency_max = math.max(s.latency_max, latency)
  s.last_good = md.time()
  self._fails = 0
  self._latency = latency
  if self._state ~= "ok" then
    local was_down = self._retry_at ~= nil
    self._retry_at = nil
    if was_down then -- look at every point again, on the normal schedule from now
      self._absent = {}
      for name, impl in pairs(self._impl) do
        if impl == false then self._impl[name] = nil end
      end
      self:_reschedule(now)
    end
    set_state(self, "ok")
  end
  apply(self, names, values, now)
end

local function failed(self, err, code)
  local s = self._stats
  s.polls, s.failed = s.polls + 1, s.failed + 1
  s.errors[code or "error"] = (s.errors[code or "error"] or 0) + 1
  self._fails = self._fails + 1
  self._last_error, self._last_code = err, code
  local state = self._state
  if state == "starting" then
    down(self, err, code)
  elseif state == "ok" or state == "stale" then
    if self._fails >= self._offline_after then
      down(self, err, code)
    else
      set_state(self, "stale", err)
    end
  else -- already down: back off further
    self._retry_in = math.min(self._retry_in * 2, self._retry[2])
    self._retry_at = md.now() + self._retry_in
  end
  emit(self, "error", err, code)
end

-- A driver call under the lock, its transactions counted (at most three
-- results, as locked).
local function counted(self, fn, ...)
  local before = self._dev.transactions or 0
  local ok, a, b, c = pcall(locked, self, fn, self._dev, ...)
  self._stats.transactions = self._stats.transactions + (self._dev.transactions or 0) - before
  if not ok then error(a, 0) end
  return a, b, c
end

-- One read of `names` on the device.
local function read(self, names)
  local t0 = md.now()
  local values, err, code = counted(self, self._dev.read, names)
  if values then
    succeeded(self, names, values, t0)
    return true
  end
  failed(self, err, code)
  return nil, err, code
end

-- The points not polled: not implemented ones.
local function skip_set(self)
  local skip = {}
  for name, impl in pairs(self._impl) do
    if impl == false then skip[name] = true end
  end
  return skip
end

function Device:_reschedule(start)
  local sched = self._sched
  self._sched = schedule.new(self._order, {
    poll = self._poll, profile_poll = self._profile.poll, phase = self._phase, skip = skip_set(self),
    start = start or (sched and sched.start) or self._epoch or md.now(),
  })
  if sched then self._sched.skipped = sched.skipped end
end

local function sleep_until(t)
  local d = t - md.now()
  if d > 0 then md.sleep(d) else md.sleep(0) end
end

-- The poll task: on schedule while up, with backoff while down.
local function run(self)
  while true do
    if self._retry_at then
      sleep_until(self._retry_at)
      local names = {}
      for _, p in ipairs(self._order) do names[#names + 1] = p.name end
      read(self, names)
    else
      local t = self._sched:next_due()
      if t == math.huge then return end -- a device with nothing to poll
      sleep_until(t)
      local names = self._sched:due(md.now())
      if names then
        read(self, names)
        if not self._retry_at then self._sched:advance(md.now()) end
      end
    end
  end
end

function Device:_start()
  self._task = md.spawn(run, self)
  self._task:name("site poll " .. self.id)
end

-- The device's profile is known now (profile "auto"): its points, and a
-- read at once; a good one brings it back from being down.
function Device:_become(dev)
  self._pending = nil
  self._dev = dev
  rawset(self, "profile", dev.profile)
  self._profile = dev.profile
  for _, p in ipairs(dev.profile.points) do M.add_point(self, p) end
  self._retry_at = md.now()
  self:_reschedule()
  md.log.info("%s answers now; it is a %s (profile %s)", self.id, dev.profile.model or "?",
    dev.profile.name or "?")
  emit(self, "points")
  self:_start()
end

--- sd:_probe(identify, err, code): a device added with profile "auto"
--- whose device did not answer (err, code). identify() -> a driver device,
--- or nil, message, code, final; it runs with the backoff of a down
--- device until it gives a device, which this site device then becomes.
--- A final failure (the device answers, but no profile fits) ends the
--- probing: the device stays offline with that error.
function Device:_probe(identify, err, code)
  self._pending = true
  local s = self._stats
  local function note(e, c)
    s.polls, s.failed = s.polls + 1, s.failed + 1
    s.errors[c or "error"] = (s.errors[c or "error"] or 0) + 1
    self._last_error, self._last_code = e, c
  end
  note(err, code)
  down(self, err, code)
  self._task = md.spawn(function()
    while true do
      sleep_until(self._retry_at)
      local dev, e, c, final = identify()
      if dev then return self:_become(dev) end
      note(e, c)
      emit(self, "error", e, c)
      if final then
        self._retry_at = nil
        md.log.error("%s answers now, but cannot be added: %s", self.id, tostring(e))
        return
      end
      self._retry_in = math.min(self._retry_in * 2, self._retry[2])
      self._retry_at = md.now() + self._retry_in
    end
  end)
  self._task:name("site probe " .. self.id)
end

function Device:_stop()
  if self._task then self._task:cancel() end
  self._task = nil
  wake_all(self, nil, self.id .. " was removed from the site", "closed")
end

-- }=====

-- {===== consumers' API =====

--- dev:get(name) -> value, age in seconds, state ("ok", "stale", "offline",
--- "asleep"). The value is nil when unknown; age is nil before a first
--- reading.
function Device:get(name)
  local p = self._points[name]
  if not p then error(format("%s has no point '%s'", self.id, tostring(name)), 2) end
  local t = self._t[name]
  local age = t and md.now() - t or nil
  local state = self._state
  if state == "starting" then
    state = "stale"
  elseif state == "ok" and age and age > 2.5 * (self._intervals[name] or 10) + 1 then
    state = "stale"
  end
  return self._v[name], age, state
end

--- dev:wait(name [, {newer_than = t, timeout = s}]) -> value, age, state
--- of the next sample (one newer than engine time t, default now), or nil,
--- message, code ("timeout", "offline", "asleep", "closed").
function Device:wait(name, opts)
  local p = self._points[name]
  if not p then error(format("%s has no point '%s'", self.id, tostring(name)), 2) end
  opts = opts or {}
  local t = self._t[name]
  if opts.newer_than and t and t > opts.newer_than then
    return self:get(name)
  end
  local ev = self._events[name]
  if not ev then
    ev = event.new()
    self._events[name] = ev
  end
  local v, err, code = ev:wait(opts.timeout, format("waiting for %s.%s", self.id, name))
  if v == nil and err ~= nil and code ~= nil then
    return nil, err, code
  end
  return self:get(name)
end

-- The refresh in flight, shared by callers that ask while it runs.
local function refresh_once(self, names)
  local r = { names = {}, done = event.new() }
  for _, n in ipairs(names) do r.names[n] = true end
  self._refreshing = r
  local ok, err, code = read(self, names)
  self._refreshing = nil
  r.done:set(ok, err, code)
  return ok, err, code
end

--- dev:refresh([names]) -> true, or nil, message, code: read these points
--- (default all) now, in one read. Callers asking while a refresh of the
--- same points runs share it.
function Device:refresh(names)
  if self._dev == nil then return true end -- virtual: nothing to read
  if type(names) == "string" then names = { names } end
  if names == nil then
    names = {}
    for _, p in ipairs(self._order) do names[#names + 1] = p.name end
  end
  for _, n in ipairs(names) do
    if not self._points[n] then error(format("%s has no point '%s'", self.id, tostring(n)), 2) end
  end
  local r = self._refreshing
  if r then
    local covered = true
    for _, n in ipairs(names) do covered = covered and r.names[n] == true end
    if covered then return r.done:wait() end
  end
  return refresh_once(self, names)
end

-- Whether `owner` may write the point: it exists and no other owner holds it.
local function may_write(self, name, owner)
  if not self._points[name] then
    return nil, format("%s has no point '%s'", self.id, tostring(name)), "unknown_point"
  end
  local held_by = self._owners[name]
  if held_by and held_by ~= owner then
    return nil, format("%s.%s is driven by %s; change its settings instead of writing the point", self.id,
      name, held_by), "owned"
  end
  return true
end

local function write_one(self, name, value, owner)
  local allowed, why, why_code = may_write(self, name, owner)
  if not allowed then return nil, why, why_code end
  local p = self._points[name]
  if self._dev == nil then -- a site value: the site holds it
    local v, err, code = point.check(p, value)
    if v == nil then return nil, format("%s: %s", self.id, err), code end
    self:_set(name, v)
    return true
  end
  return counted(self, self._dev.write, name, value)
end

--- dev:write(name, value [, opts]) or dev:write({name = value, ...} [, opts])
--- -> true, or nil, message, code. Checked against the point before
--- anything is sent; the written points are read back at once so that
--- every consumer sees them. A point a controller owns (dev:own) is
--- written only with opts.owner naming it; others get code "owned".
function Device:write(name, value, opts)
  local names = {}
  if type(name) == "table" then
    opts = value
    for n in pairs(name) do names[#names + 1] = n end
    table.sort(names)
    if self._dev and self._dev._write_many then
      -- the driver checks every value, then sends adjacent registers together
      for _, n in ipairs(names) do
        local ok, err, code = may_write(self, n, opts and opts.owner)
        if not ok then return nil, err, code end
      end
      local ok, err, code = counted(self, self._dev.write, name)
      if not ok then return nil, err, code end
    else
      for _, n in ipairs(names) do
        local ok, err, code = write_one(self, n, name[n], opts and opts.owner)
        if not ok then return nil, err, code end
      end
    end
  else
    local ok, err, code = write_one(self, name, value, opts and opts.owner)
    if not ok then return nil, err, code end
    names[1] = name
  end
  if self._dev then self:refresh(names) end
  return true
end

--- dev:own(names, owner) -> true: from now on only writes naming owner
--- (a controller's name) change these points; dev:own(names, nil) frees
--- them. Raises when another owner holds one.
function Device:own(names, owner)
  if type(names) == "string" then names = { names } end
  for _, n in ipairs(names) do
    if not self._points[n] then error(format("%s has no point '%s'", self.id, tostring(n)), 2) end
    local held = self._owners[n]
    if owner and held and held ~= owner then
      error(format("%s.%s is already driven by %s", self.id, n, held), 2)
    end
  end
  for _, n in ipairs(names) do self._owners[n] = owner end
  return true
end

--- dev:owner(name) -> the controller that drives the point, or nil.
function Device:owner(name)
  return self._owners[name]
end

--- dev:describe() -> the device's facts (manufacturer, model, serial, ...).
function Device:describe()
  if self._pending then
    return nil, format("%s has not answered yet, so its profile is not known", self.id), "offline"
  end
  if self._dev == nil then
    return { manufacturer = "moondog", model = "site values", points = self._order }
  end
  return counted(self, self._dev.describe)
end

--- dev:points() -> the profile's points, in order (the profile's tables).
function Device:points()
  return self._order
end

--- dev:stats() -> {state, polls, failed, transactions, errors = {code = n},
--- latency_mean_ms, latency_max_ms, last_good (wall-clock time), skipped,
--- held, last_error, last_code, retry_in}.
function Device:stats()
  local s = self._stats
  local errors = {}
  for k, v in pairs(s.errors) do errors[k] = v end
  return {
    id = self.id, profile = self._profile.name, state = self._state, polls = s.polls,
    failed = s.failed, transactions = s.transactions, errors = errors,
    latency_mean_ms = s.latency_n > 0 and s.latency_sum / s.latency_n * 1000 or nil,
    latency_max_ms = s.latency_n > 0 and s.latency_max * 1000 or nil,
    latency_ms = self._latency and self._latency * 1000 or nil,
    last_good = s.last_good, skipped = self._sched and self._sched.skipped or 0, held = self._held,
    last_error = self._last_error, last_code = self._last_code,
    retry_in = self._retry_at and math.max(0, self._retry_at - md.now()) or nil,
  }
end

-- }=====

-- {===== the object =====

local function index(t, k)
  local m = Device[k]
  if m ~= nil then return m end
  local points = rawget(t, "_points")
  if points[k] then return rawget(t, "_v")[k] end
  if type(k) == "string" and k:sub(1, 1) == "_" then return nil end
  error(format("%s has no point '%s' (points: %s)", rawget(t, "id"), tostring(k),
    table.concat(rawget(t, "_names"), ", ")), 2)
end

local mt = {
  __index = index,
  __newindex = function(t, k, v)
    if type(k) == "string" and k:sub(1, 1) == "_" then return rawset(t, k, v) end
    error(format("%s.%s is read-only here; use %s:write(\"%s\", value)", rawget(t, "id"), tostring(k),
      rawget(t, "id"), tostring(k)), 2)
  end,
  __tostring = function(t)
    return format("site device %s (%s): %s", t.id, t.profile.name or "?", t._state)
  end,
  __complete = function(t)
    local names = {}
    for k in pairs(Device) do
      if k:sub(1, 1) ~= "_" then names[#names + 1] = k end
    end
    for _, n in ipairs(rawget(t, "_names")) do names[#names + 1] = n end
    return names
  end,
}

-- The methods on the metatable too, so that help(site.meter) lists them.
for k, v in pairs(Device) do
  if k:sub(1, 1) ~= "_" then mt[k] = v end
end

--- device.new(site, id, dev, opts) -> site device (not yet polling: _start).
--- dev: a driver device (md.devices), or nil for a device of site values.
--- opts: poll, offline_after (3), retry = {min, max} (10, 300), index
--- (phase spreading), profile (for a site-values device), pending (a
--- device of profile "auto" not identified yet: see _probe).
function M.new(site, id, dev, opts)
  local profile = dev and dev.profile or opts.profile
  local self = {
    id = id, profile = profile, _site = site, _dev = dev, _profile = profile, _points = {},
    _order = {}, _names = {}, _v = {}, _good = {}, _t = {}, _impl = {}, _absent = {}, _nan = {},
    _lower = {}, _events = {}, _queue = {}, _intervals = {}, _owners = {}, _held = 0, _fails = 0,
    _state = (dev or opts.pending) and "starting" or "ok",
    _poll = opts.poll, _offline_after = opts.offline_after or 3,
    _retry = opts.retry or { 10, 300 }, _phase = schedule.phase(opts.index or 1), _epoch = opts.epoch,
    _stats = { polls = 0, failed = 0, transactions = 0, errors = {}, latency_sum = 0, latency_n = 0,
               latency_max = 0 },
  }
  self._retry_in = self._retry[1]
  if type(self._retry) ~= "table" or type(self._retry[1]) ~= "number" or type(self._retry[2]) ~= "number"
      or self._retry[1] <= 0 or self._retry[2] < self._retry[1] then
    error(format("device %s: retry must be {min, max} seconds with 0 < min <= max", id), 3)
  end
  setmetatable(self, mt)
  for _, p in ipairs(profile.points) do
    M.add_point(self, p)
  end
  if dev then self:_reschedule() end
  return self
end

--- device.add_point(sd, p): one more point (site values, derived points).
function M.add_point(self, p)
  if M.reserved[p.name] then
    error(format("device %s: a point may not be called '%s' (a method of every site device has that "
      .. "name); rename it in the profile", self.id, p.name), 0)
  end
  if self._points[p.name] then
    error(format("device %s already has a point '%s'", self.id, p.name), 0)
  end
  policy.check(p)
  self._points[p.name] = p
  self._order[#self._order + 1] = p
  self._names[#self._names + 1] = p.name
  self._intervals[p.name] = schedule.interval(p, self._poll, self._profile.poll)
end

-- Internal, for site values and derived points: set a value the site holds.
function Device:_set(name, v)
  local now = md.now()
  local changed = self._v[name] ~= v
  if v ~= nil then self._good[name], self._t[name] = v, now end
  self._v[name] = v
  self._impl[name] = v ~= nil or self._impl[name]
  if v ~= nil then wake(self, name, v, 0, "ok") end
  emit(self, "sample", { name }, changed and { name } or {})
end

-- {===== pushed devices =====

-- A pushed device (site:add_pushed) is fed by its source (a Growatt
-- datalogger's records) rather than polled: dev:update takes what came,
-- through the same policy as a poll (totals never go down, no NaN), and
-- dev:expire says the source went quiet.

--- dev:update(values [, t]) -> names whose value changed. values: {point =
--- value}; points not in it keep theirs. The device is "ok" from now. t:
--- when the values were measured (md.now() clock; default now).
function Device:update(values, t)
  if not self._pushed then error(format("%s is not a pushed device (site:add_pushed)", self.id), 2) end
  local now = t or md.now()
  -- the list of names is kept from update to update (a record's ~50 names
  -- grew a new table 7 times); taken out while in use, so that an update
  -- from a listener makes its own
  local names, changed = self._unames or {}, {}
  self._unames = nil
  local n = 0
  for name in pairs(values) do
    local p = self._points[name]
    if not p then error(format("%s has no point '%s'", self.id, tostring(name)), 2) end
    n = n + 1
    names[n] = name
  end
  for i = n + 1, #names do names[i] = nil end
  if self._state ~= "ok" then set_state(self, "ok") end
  -- take()'s usual case inline (an integer or a finite float, no total
  -- going down, no warning to clear): a Growatt record brings ~50 values
  local points, v, good, ts = self._points, self._v, self._good, self._t
  local impl, events = self._impl, self._events
  local clean = next(self._nan) == nil and next(self._lower) == nil -- no warning to clear
  local nc = 0
  for i = 1, n do
    local name = names[i]
    local raw = values[name]
    local g = good[name]
    -- a number whose difference with itself is 0: neither NaN nor infinite
    if clean and math_type(raw) and raw - raw == 0
        and not (g ~= nil and raw < g and monotonic(points[name])) then
      if v[name] ~= raw then
        nc = nc + 1
        changed[nc] = name
      end
      good[name], v[name], ts[name] = raw, raw, now
    elseif take(self, points[name], raw, now) then
      nc = nc + 1
      changed[nc] = name
    end
    impl[name] = true
    if events[name] then wake(self, name, v[name], 0, "ok") end
  end
  emit(self, "sample", names, changed)
  self._unames = names
  return changed
end

--- dev:expire(why): a pushed device's source went quiet: the device is
--- offline (each point shows its offline policy) until the next update.
function Device:expire(why)
  if not self._pushed then error(format("%s is not a pushed device (site:add_pushed)", self.id), 2) end
  set_state(self, "offline", why)
end

-- }=====

M.Device = Device

return M
