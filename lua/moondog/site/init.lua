-- moondog.site: a site owns its devices. It polls each point once, at the
-- rate its consumers need, keeps the latest value with its time and state,
-- and every consumer (MQTT and Home Assistant, control logic, the REPL)
-- reads from it. Also md.site.
--
--   local site = md.site.new{ name = "home" }
--   site:add("meter", "sdm630", "rtu:///dev/ttyUSB0?baud=9600&unit=1", { poll = 1 })
--   site:add("pv", "sunspec_inverter", "tcp://192.168.1.50?unit=1")
--   site:add("battery", "rct_power", "192.168.1.60")
--   site:derive("house.load", { unit = "W", device_class = "power", state_class = "measurement" },
--     function(v) return v.meter.power + v.pv.power - v.battery.power end)
--   site:publish{ mqtt = { host = "127.0.0.1" } }     -- MQTT + Home Assistant from the site
--   site:spawn(function() ... end, { critical = true, name = "control" })
--   print(site.meter.power, site.meter:get("power"))  -- value; value, age, state
--   print(site:status())                              -- a table per device, bus and task
--
-- Buses. Devices whose addresses name the same serial line or the same
-- TCP/UDP endpoint share one bus: one connection, one master, whoever
-- opened it (moondog.modbus.shared; a script's own md.modbus.open bus is
-- found too). RCT Power devices at one host:port share one connection.
-- Another program holding a serial line makes site:add fail ("busy").
--
-- Devices and their values: moondog.site.device. Poll timing:
-- moondog.site.schedule. Offline/asleep values and totals:
-- moondog.site.policy. Supervised tasks and health: moondog.site.supervise.
--
-- Consumers that follow the site (the MQTT publisher) register with
-- site:_listen(listener): listener.device(sd), .sample(sd, names, changed),
-- .state(sd, old, new, err), .unimplemented(sd, names), .error(sd, err,
-- code), .health(state, reasons), .removed(sd) are called, when present,
-- synchronously from the task that made the change; they must not wait.

local md = require "moondog"
local devices = require "moondog.devices"
local event = require "moondog.event"
local base = require "moondog.devices.base"
local device = require "moondog.site.device"
local supervise = require "moondog.site.supervise"
local status = require "moondog.site.status"

local M = {}

local format = string.format

local Site = {}
M.Site = Site

-- The open sites by name: a reload's md.site.new{name = ...} returns the
-- running one (moondog.site.reload).
local live = {}

local function check_id(what, id)
  if type(id) ~= "string" or not id:match("^[a-z0-9_]+$") then
    error(format("%s must be lowercase letters, digits and _ (it becomes an MQTT topic level), got %s",
      what, tostring(id)), 3)
  end
end

-- {===== buses =====

-- RCT connections by "host:port", shared by every site in the process.
local rct_clients = setmetatable({}, { __mode = "v" })

local function modbus_bus(self, url)
  local modbus = require "moondog.modbus"
  local existed = modbus.held(url) ~= nil
  local bus, err, code = modbus.shared(url)
  if not bus then return nil, err, code end
  local key = modbus.endpoint(url)
  local b = self._buses[key]
  if not b then
    -- a bus the script opened itself stays open when the site closes
    b = { endpoint = key, kind = "modbus", handle = bus, devices = 0, own = not existed }
    self._buses[key] = b
    self._bus_order[#self._bus_order + 1] = b
  end
  b.devices = b.devices + 1
  return bus, key
end

local function rct_client(self, target)
  local rct = require "moondog.rct"
  local host, port = rct.parse_target(target)
  if not host then return nil, "rct: " .. port, "bad_address" end
  local key = format("rct://%s:%d", host, port)
  local client = rct_clients[key]
  if not client then
    client = rct.client(host, port, {})
    rct_clients[key] = client
  end
  local b = self._buses[key]
  if not b then
    b = { endpoint = key, kind = "rct", handle = client, devices = 0 }
    self._buses[key] = b
    self._bus_order[#self._bus_order + 1] = b
  end
  b.devices = b.devices + 1
  return client, key
end

-- The driver device for a profile at target, on the site's shared buses.
local function open_device(self, id, profile, target, opts)
  local protocol = profile.protocol
  local handle, key, err, code
  local unit = opts.unit
  if protocol == "modbus" or protocol == "sunspec" then
    if type(target) ~= "string" then
      error(format("site:add: device %s: target must be a Modbus address such as "
        .. "'tcp://192.168.1.50?unit=1'", id), 3)
    end
    local cfg, perr = require("moondog.modbus.address").parse(target)
    if not cfg then return nil, format("%s: %s", id, perr), "bad_address" end
    unit = unit or cfg.unit or 1
    handle, key, code = modbus_bus(self, target)
    if not handle then return nil, format("%s: %s", id, key), code end
  elseif protocol == "rct" then
    if type(target) ~= "string" then
      error(format("site:add: device %s: target must be 'host[:port]' of an RCT Power inverter", id), 3)
    end
    handle, key, code = rct_client(self, target)
    if not handle then return nil, format("%s: %s", id, key), code end
  else
    handle = target
  end
  local dev
  dev, err, code = devices.open(profile, handle, {
    id = id, unit = unit, timeout = opts.timeout, base = opts.base, retries = opts.retries,
  })
  if not dev then return nil, err, code end
  dev.site_bus = key
  return dev
end

-- Of the profiles that fit (rows), the one to use: its name, or nil,
-- message, code ("no_profile", "ambiguous").
local function pick(self, id, target, unit, rows)
  if #rows == 1 then
    md.log.info("site %s: %s at %s is %s", self.name, id, target, rows[1].name)
    return rows[1].name
  end
  local names = {}
  for i, row in ipairs(rows) do names[i] = row.name end
  if #rows == 0 then
    return nil, format("%s: the device at %s (unit %d) answers, but none matched: no profile's probe fits "
      .. "it; name its profile instead of 'auto' (`moondog devices` lists them, `moondog probe %s` shows "
      .. "what answers)", id, target, unit, target), "no_profile"
  end
  return nil, format("%s: several profiles match the device at %s (unit %d): %s; name one of them instead "
    .. "of 'auto'", id, target, unit, table.concat(names, ", ")), "ambiguous"
end

-- An RCT Power device at rct://host[:port] is one when it answers its
-- identity objects (its serial number); every rct profile on the search
-- path fits it. -> profile name, "host:port" to open; or nil, message, code.
local function auto_rct(self, id, target)
  local hostport = target:sub(7):gsub("/+$", "")
  local client, key, code = rct_client(self, hostport)
  if not client then return nil, format("%s: %s", id, key), code end
  self._buses[key].devices = self._buses[key].devices - 1 -- open_device counts the device
  local sn, err
  sn, err, code = client:read("inverter_sn")
  if not sn then
    return nil, format("%s: no device answered at %s to identify: %s", id, target, tostring(err)), code
  end
  local rows = {}
  for _, row in ipairs(devices.list()) do
    if row.profile.protocol == "rct" then rows[#rows + 1] = row end
  end
  local name, perr, pcode = pick(self, id, target, 0, rows)
  if not name then return nil, perr, pcode end
  return name, hostport
end

-- The one profile whose probe fits the device at target (profile "auto"):
-- a Modbus device by the profiles' probes, found with devices.identify on
-- the site's bus for the line, an RCT device (rct://) by its identity
-- objects. -> profile name, the target to open it at; or nil, message,
-- code: nothing answers (the bus's code), no profile fits, or several do.
local function auto_profile(self, id, target, opts)
  if type(target) == "string" and target:match("^rct://") then return auto_rct(self, id, target) end
  if type(target) ~= "string" or not target:match("^%a[%w+]*://") then
    error(format("site:add: device %s: profile 'auto' identifies Modbus devices (or RCT Power devices at "
      .. "rct://host[:port]); target must be an address such as 'tcp://192.168.1.50?unit=1'", id), 3)
  end
  local cfg, perr = require("moondog.modbus.address").parse(target)
  if not cfg then return nil, format("%s: %s", id, perr), "bad_address" end
  local unit = opts.unit or cfg.unit or 1
  local bus, key, code = modbus_bus(self, target)
  if not bus then return nil, format("%s: %s", id, key), code end
  local rows, err
  rows, err, code = devices.identify(bus, unit)
  self._buses[key].devices = self._buses[key].devices - 1 -- open_device counts the device
  if not rows then
    return nil, format("%s: no device answered at %s (unit %d) to identify: %s", id, target, unit, err), code
  end
  local name
  name, err, code = pick(self, id, target, unit, rows)
  if not name then return nil, err, code end
  return name, target
end

-- Codes of auto_profile that are answers, not silence: probing again
-- would find the same.
local settled = { no_profile = true, ambiguous = true, bad_address = true }

-- }=====

-- {===== devices =====

-- A device added with profile "auto" that did not answer: kept as a site
-- device without a profile, down ("offline", absent at start), probed
-- again with the site's retry backoff until it answers; then it becomes
-- the profile that fits and is polled as if it had been named.
local function add_pending(self, id, target, opts, err, code)
  local function bare(e) return (tostring(e):gsub("^" .. id .. ": ", "")) end -- the device logs its id
  self._index = self._index + 1
  local sd = device.new(self, id, nil, {
    profile = { name = "auto", points = {} }, pending = true, poll = opts.poll,
    offline_after = opts.offline_after or self._defaults.offline_after,
    retry = opts.retry or self._defaults.retry, index = self._index, epoch = self._epoch,
  })
  -- site:_attach starts the probing (a reload may make a device it never attaches)
  rawset(sd, "_identify", function()
    local name, where, pcode = auto_profile(self, id, target, opts)
    if not name then return nil, bare(where), pcode, settled[pcode] end
    local p = self._profiles[name] or devices.load(name)
    self._profiles[name] = p
    local dev, oerr, ocode = open_device(self, id, p, where, opts)
    if not dev then return nil, bare(oerr), ocode, true end
    return dev
  end)
  rawset(sd, "_first_error", { bare(err), code })
  return sd
end

--- site:add(id, profile, target [, opts]) -> the site device, or nil,
--- message, code. profile: a name under devices/, a path or a table;
--- target: the device's address (Modbus URL with ?unit=N, or "host[:port]"
--- for RCT Power). Or site:add(id, dev [, opts]) with a device already
--- opened by md.devices.open. opts: poll (seconds, for points without their
--- own), offline_after (failed polls, 3), retry = {min, max} (seconds
--- between tries while down, 10 and 300), timeout, base (SunSpec).
--- A wrong argument or a broken profile raises; a device that cannot be
--- reached is added all the same and tried again with backoff.
--- profile "auto": the profile probes run against the device now
--- (devices.identify; an rct://host[:port] target is an RCT Power device
--- when it answers its identity objects) and the one that fits is used;
--- nil, message, code when no probe fits ("no_profile") or several do
--- ("ambiguous", naming them). A device that does not answer is added all
--- the same, down and without points (stats().profile "auto"), probed
--- again with the retry backoff until it answers; then it takes the
--- profile that fits (its points appear: the "points" event) and is polled.
function Site:add(id, profile, target, opts)
  check_id("site:add: the device id", id)
  local stage = rawget(self, "_stage")
  if stage then return stage:add(id, profile, target, opts) end
  if self._devices[id] then error(format("site:add: the site already has a device '%s'", id), 2) end
  local sd, err, code = self:_make_device(id, profile, target, opts)
  if not sd then return nil, err, code end
  self._sigs[id] = { profile = profile, target = target, opts = opts } -- what a reload compares
  self:_attach(sd)
  return sd
end

-- The site device for site:add's arguments, not yet part of the site nor
-- polling (site:_attach does both); or nil, message, code. A reload
-- (moondog.site.reload) makes devices this way and attaches them only when
-- the whole script ran.
function Site:_make_device(id, profile, target, opts)
  if Site[id] ~= nil or id == self.name then
    error(format("site:add: '%s' is a name the site uses itself; pick another device id", id), 3)
  end
  local dev
  if type(profile) == "table" and profile.profile and profile.read then
    dev, opts = profile, target
  else
    opts = opts or {}
    if profile == "auto" then
      local name, where, code = auto_profile(self, id, target, opts)
      if not name and settled[code] then
        md.log.error("site %s: cannot add %s: %s", self.name, id, tostring(where))
        return nil, where, code
      elseif not name then
        return add_pending(self, id, target, opts, where, code)
      end
      profile, target = name, where
    end
    -- One copy of a named profile per site: a thousand meters of one model
    -- share their point tables (about 6 KB each) instead of each loading its own.
    local p = type(profile) == "string" and self._profiles[profile] or devices.load(profile)
    if type(profile) == "string" then self._profiles[profile] = p end
    local err, code
    dev, err, code = open_device(self, id, p, target, opts)
    if not dev then
      md.log.error("site %s: cannot add %s: %s", self.name, id, tostring(err))
      return nil, err, code
    end
  end
  opts = opts or {}
  self._index = self._index + 1
  return device.new(self, id, dev, {
    poll = opts.poll, offline_after = opts.offline_after or self._defaults.offline_after,
    retry = opts.retry or self._defaults.retry, index = self._index, epoch = self._epoch,
  })
end

-- Make sd (from site:_make_device) part of the site and start polling it
-- (or probing it, for a device of profile "auto" that did not answer yet).
function Site:_attach(sd)
  self._devices[sd.id] = sd
  self._order[#self._order + 1] = sd
  self:_emit("device", sd)
  local identify = rawget(sd, "_identify")
  if identify then
    local first = sd._first_error
    rawset(sd, "_identify", nil)
    rawset(sd, "_first_error", nil)
    sd:_probe(identify, first[1], first[2])
  else
    sd:_start()
  end
end

-- A device of site values (derived points, setpoints), made on first use.
local function values_device(self, id)
  local sd = self._devices[id]
  if sd then
    if rawget(sd, "_dev") ~= nil or rawget(sd, "_pending") then
      error(format("site: '%s' is a polled device; site values need a name of their own", id), 3)
    end
    return sd
  end
  check_id("site: a site value's device", id)
  if Site[id] ~= nil then error(format("site: '%s' is a name the site uses itself", id), 3) end
  sd = device.new(self, id, nil, { profile = { name = "site values", points = {} } })
  self._devices[id] = sd
  self._order[#self._order + 1] = sd
  self:_emit("device", sd)
  return sd
end

local function split_name(name)
  local id, pname = tostring(name):match("^([a-z0-9_]+)%.([a-z0-9_]+)$")
  if not id then
    error(format("site: expected 'device.point' (lowercase letters, digits and _), got %s",
      tostring(name)), 3)
  end
  return id, pname
end

local function point_def(def, pname)
  local p = base.copy(def or {})
  p.name = pname
  return p
end

--- site:value("device.point", def [, initial]) -> the site device holding
--- it. A value the site holds rather than reads (a control script's
--- setpoint): published and announced like any point; def is a profile
--- point without source (writable = true with min/max/step makes it a
--- Home Assistant number whose commands are checked). Set it with
--- site.device:write("point", v).
function Site:value(name, def, initial)
  local stage = rawget(self, "_stage")
  if stage then return stage:value(name, def, initial) end
  local id, pname = split_name(name)
  local sd = values_device(self, id)
  device.add_point(sd, point_def(def, pname))
  self:_emit("points", sd)
  if initial ~= nil then assert(sd:write(pname, initial)) end
  return sd
end

--- site:add_pushed(id, profile) -> the site device: a device fed by its
--- source (records it pushes: the Growatt proxy) rather than polled.
--- profile: {manufacturer, model, label, serial, sw_version, points =
--- {...}} (points without a source). Its source calls dev:update(values
--- [, t]) and, when it goes quiet, dev:expire(why). More points: add them
--- with site:value("id.point", def), or many at once: site:add_pushed(id,
--- {points = {...}}) again adds those the device does not have yet.
function Site:add_pushed(id, profile)
  check_id("site:add_pushed", id)
  local known = self._devices[id]
  if known and rawget(known, "_pushed") then
    local added = false
    for _, p in ipairs(profile and profile.points or {}) do
      if not known._points[p.name] then
        device.add_point(known, point_def(p, p.name))
        added = true
      end
    end
    if added then self:_emit("points", known) end
    return known
  end
  if known or Site[id] ~= nil then
    error(format("site:add_pushed: '%s' is taken", id), 2)
  end
  local prof = base.copy(profile or {})
  prof.name = prof.name or "pushed"
  local points = prof.points or {}
  prof.points = {}
  local sd = device.new(self, id, nil, { profile = prof })
  rawset(sd, "_pushed", true)
  rawset(sd, "_state", "starting")
  for _, p in ipairs(points) do device.add_point(sd, point_def(p, p.name)) end
  self._devices[id] = sd
  self._order[#self._order + 1] = sd
  self:_emit("device", sd)
  return sd
end

-- }=====

-- {===== derived points =====

local function dep_view(self, deps)
  return setmetatable({}, {
    __index = function(_, id)
      local sd = self._devices[id] or error(format("the site has no device '%s'", tostring(id)), 2)
      return setmetatable({}, {
        __index = function(_, pname)
          deps[id .. "." .. tostring(pname)] = true
          return sd[pname]
        end,
      })
    end,
  })
end

local function compute(self, d)
  local deps = {}
  local ok, v = pcall(d.fn, dep_view(self, deps))
  for key in pairs(d.deps) do
    if self._dependents[key] then self._dependents[key][d] = nil end
  end
  d.deps = deps
  for key in pairs(deps) do
    self._dependents[key] = self._dependents[key] or {}
    self._dependents[key][d] = true
  end
  if not ok then
    if d.last_error ~= v then
      d.last_error = v
      md.log.debug("site %s: %s has no value: %s", self.name, d.full, tostring(v))
    end
    v = nil
  elseif type(v) == "number" and (v ~= v or v == math.huge or v == -math.huge) then
    v = nil
  else
    d.last_error = nil
  end
  d.sd:_set(d.name, v)
end

-- Compute derived point d again (a reload gave it a new function).
function Site:_compute(d) compute(self, d) end

--- site:derive("device.point", def, fn) -> the site device holding it.
--- fn(v) computes the value from other site values (v.meter.power ...);
--- it runs again whenever one of the values it read changes. An error in
--- fn, or a missing input, leaves the point without a value.
function Site:derive(name, def, fn)
  assert(type(fn) == "function", "site:derive: third argument must be a function")
  local stage = rawget(self, "_stage")
  if stage then return stage:derive(name, def, fn) end
  local id, pname = split_name(name)
  local sd = values_device(self, id)
  local p = point_def(def, pname)
  if p.writable then error("site:derive: a derived point is computed, not writable", 2) end
  device.add_point(sd, p)
  local d = { sd = sd, name = pname, fn = fn, deps = {}, full = name }
  self._derived[#self._derived + 1] = d
  self:_emit("points", sd)
  compute(self, d)
  return sd
end

-- }=====

-- {===== watchers =====

local function start_watcher(self, name, fn)
  local w = { pending = {}, keys = {}, ev = event.new(), fn = fn }
  w.task = md.spawn(function()
    while true do
      w.ev:wait()
      w.ev = event.new()
      local batch = w.pending
      w.pending, w.keys = {}, {}
      for _, args in ipairs(batch) do
        local ok, err = xpcall(fn, debug.traceback, table.unpack(args, 1, args.n))
        if not ok then
          w.failures = (w.failures or 0) + 1
          md.log.error("site %s: %s raised: %s", self.name, name, tostring(err))
        end
      end
    end
  end)
  w.task:name(name)
  self._watchers[#self._watchers + 1] = w
  return w
end

-- Queue a call of the watcher; a key already queued is updated in place,
-- so a slow handler sees the latest value once, not every change.
local function notify(w, key, ...)
  local i = w.keys[key]
  if i then
    w.pending[i] = table.pack(...)
  else
    w.pending[#w.pending + 1] = table.pack(...)
    w.keys[key] = #w.pending
  end
  w.ev:set()
end

--- site:watch("device.point", fn) -> handle with :cancel(). fn(value, age,
--- state) runs as a task whenever the point's value changes (and when its
--- device goes down). An error in fn is logged; the watch goes on.
function Site:watch(name, fn)
  assert(type(fn) == "function", "site:watch: second argument must be a function")
  local stage = rawget(self, "_stage")
  if stage then return stage:watch(name, fn) end
  local id, pname = split_name(name)
  local sd = self._devices[id] or error(format("site:watch: the site has no device '%s'", id), 2)
  sd:get(pname) -- raises on an unknown point
  local w = start_watcher(self, "watch " .. name, fn)
  w.match, w.match_id, w.match_point = name, id, pname
  return { cancel = function() w.task:cancel(); w.cancelled = true end }
end

--- site:on_change(fn) -> handle with :cancel(). fn(device_id, point,
--- value, state) runs as a task for every point whose value changes.
function Site:on_change(fn)
  assert(type(fn) == "function", "site:on_change: expected a function")
  local stage = rawget(self, "_stage")
  if stage then return stage:on_change(fn) end
  local w = start_watcher(self, "on_change handler", fn)
  return { cancel = function() w.task:cancel(); w.cancelled = true end }
end

-- }=====

-- {===== events to consumers =====

local function recompute(self, sd, changed)
  -- no derived points: nothing to look up (this runs for every poll)
  if next(self._dependents) == nil then return end
  self._depth = self._depth + 1
  if self._depth <= 8 then -- derived points of derived points, never a loop forever
    local todo, list = {}, {}
    for _, name in ipairs(changed) do
      for d in pairs(self._dependents[sd.id .. "." .. name] or {}) do
        if not todo[d] then
          todo[d] = true
          list[#list + 1] = d
        end
      end
    end
    for _, d in ipairs(list) do compute(self, d) end
  end
  self._depth = self._depth - 1
end

-- A watch of one point looks at the device's changes only when it is that
-- point's device, without making a "device.point" key per changed value
-- (a Growatt record changes ~50 values; the proxy watches 3 writable points).
local function watchers_see(self, sd, changed)
  local id, prefix = sd.id, nil
  for _, w in ipairs(self._watchers) do
    if not w.cancelled then
      if w.match == nil then
        prefix = prefix or id .. "."
        for _, name in ipairs(changed) do
          local v, _, st = sd:get(name)
          notify(w, prefix .. name, id, name, v, st)
        end
      elseif w.match_id == id then
        local pname = w.match_point
        for _, name in ipairs(changed) do
          if name == pname then notify(w, w.match, sd:get(name)) end
        end
      end
    end
  end
end

function Site:_emit(what, sd, ...)
  for _, l in ipairs(self._listeners) do
    local fn = l[what]
    if fn then fn(sd, ...) end
  end
  if what == "sample" then
    local _, changed = ...
    if #changed > 0 then
      recompute(self, sd, changed)
      watchers_see(self, sd, changed)
    end
  elseif what == "state" then
    self:_health_changed()
  end
end

function Site:_health_changed()
  if #self._listeners == 0 then return end
  local state, reasons = self:health()
  for _, l in ipairs(self._listeners) do
    if l.health then l.health(state, reasons) end
  end
end

--- site:_listen(listener) -> function that stops listening.
function Site:_listen(l)
  self._listeners[#self._listeners + 1] = l
  return function()
    for i, x in ipairs(self._listeners) do
      if x == l then table.remove(self._listeners, i) return end
    end
  end
end

-- }=====

-- {===== supervision, status =====

--- site:spawn(fn [, {critical = true, name = "..."}], ...) -> handle with
--- :cancel() and :status(). fn(...) runs supervised: a critical task that
--- raises is restarted with backoff and the site's health says so.
function Site:spawn(fn, opts, ...)
  local stage = rawget(self, "_stage")
  if stage then return stage:spawn(fn, opts, ...) end
  return self._sup:spawn(fn, opts, ...)
end

--- site:health() -> "ok" | "degraded" | "failed", reasons (sentences).
function Site:health()
  return self._sup:health(self._order)
end

--- site:devices() -> the site's devices in the order they were added.
function Site:devices()
  return table.move(self._order, 1, #self._order, 1, {})
end

local function bus_row(b)
  local row = { endpoint = b.endpoint, kind = b.kind, devices = b.devices }
  if b.kind == "modbus" and b.handle.stats then
    local ok, s = pcall(b.handle.stats, b.handle)
    if ok and s then
      row.transactions, row.failed = s.requests, s.failed
      row.latency_mean_ms, row.latency_max_ms, row.errors = s.latency_mean_ms, s.latency_max_ms, s.errors
    end
  end
  return row
end

--- site:status() -> {name, health, reasons, devices = {...}, buses = {...},
--- tasks = {...}}; per device its dev:stats(), per bus its transactions,
--- failures and latency. Printed (REPL, attach) it is an aligned table.
function Site:status()
  local health, reasons = self:health()
  local devs, buses = {}, {}
  for _, sd in ipairs(self._order) do
    if rawget(sd, "_dev") or rawget(sd, "_pending") then devs[#devs + 1] = sd:stats() end
  end
  for _, b in ipairs(self._bus_order) do buses[#buses + 1] = bus_row(b) end
  local gateways = {}
  for _, gw in ipairs(self._gateways) do
    if gw.server then
      local s = gw:stats()
      s.listen = gw:url()
      gateways[#gateways + 1] = s
    end
  end
  local st = status.make {
    name = self.name, health = health, reasons = reasons, devices = devs, buses = buses,
    tasks = self._sup:list(), gateways = gateways, sections = {},
  }
  for _, sec in ipairs(self._sections) do
    local ok, t = pcall(sec.fn)
    if ok and t then
      st[sec.name] = t.data
      st.sections[#st.sections + 1] = { header = t.header, rows = t.rows }
    end
  end
  return st
end

--- site:_status_section(name, fn): fn() -> {header = {...}, rows = {{...}},
--- data = ...} adds a table to site:status() (its data as status[name]),
--- for consumers with figures of their own (the Growatt proxy).
function Site:_status_section(name, fn)
  self._sections[#self._sections + 1] = { name = name, fn = fn }
end

--- site:publish(opts) -> publisher, or nil, message, code: every device and
--- site value to MQTT with Home Assistant discovery, read from the site
--- (options as md.mqtt.publish.start; the site's health is published too).
function Site:publish(opts)
  opts = opts or {}
  local stage = rawget(self, "_stage")
  if stage then return stage:publish(opts) end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.site = self
  local pub, err, code = require("moondog.mqtt.publish").start(o)
  if not pub then
    md.log.error("site %s: cannot publish to MQTT: %s", self.name, tostring(err))
    return nil, err, code
  end
  self._publishers[#self._publishers + 1] = pub
  self._publish_opts[pub] = opts -- a reload keeps a publisher whose options did not change
  return pub
end

--- site:remove(id [, {keep_open = true}]) -> true, or false when there is
--- no such device: it is no longer polled, its consumers drop it, and its
--- connection is closed unless keep_open (a device the caller opened).
function Site:remove(id, opts)
  local sd = self._devices[id]
  if not sd then return false end
  self._devices[id] = nil
  for i, x in ipairs(self._order) do
    if x == sd then table.remove(self._order, i) break end
  end
  sd:_stop()
  self:_emit("removed", sd)
  local dev = rawget(sd, "_dev")
  local b = dev and dev.site_bus and self._buses[dev.site_bus]
  if b then b.devices = b.devices - 1 end
  if dev and not (opts and opts.keep_open) then dev:close() end
  return true
end

--- site:serve_modbus{listen = "tcp://0.0.0.0:1502", ...} -> gateway, or
--- nil, message, code: the site's Modbus devices served to any number of
--- Modbus clients from the site's one connection to each (cached
--- registers, merged requests, an allow-list for writes); see
--- moondog.site.gateway for the options.
function Site:serve_modbus(opts)
  local stage = rawget(self, "_stage")
  if stage then return stage:serve_modbus(opts) end
  local gw, err, code = require("moondog.site.gateway").for_site(self, opts)
  if not gw then
    md.log.error("site %s: cannot serve Modbus: %s", self.name, tostring(err))
    return nil, err, code
  end
  self._gateways[#self._gateways + 1] = gw
  self._gateway_opts[gw] = opts
  return gw
end

--- site:close(): stop polling, publishing and supervised tasks; close the
--- connections the site opened.
function Site:close()
  if self._closed then return end
  self._closed = true
  if live[self.name] == self then live[self.name] = nil end
  for i = #self._publishers, 1, -1 do self._publishers[i]:close() end
  for _, gw in ipairs(self._gateways) do gw:close() end
  self._sup:close()
  for _, w in ipairs(self._watchers) do w.task:cancel() end
  for _, sd in ipairs(self._order) do
    sd:_stop()
    local dev = rawget(sd, "_dev")
    if dev then dev:close() end
  end
  for _, b in ipairs(self._bus_order) do
    if b.kind == "modbus" then
      if b.own then b.handle:close() end
    elseif b.kind == "rct" then
      b.handle:close()
      rct_clients[b.endpoint] = nil
    end
  end
end

-- }=====

local mt = {
  __index = function(t, k)
    local m = Site[k]
    if m ~= nil then return m end
    local stage = rawget(t, "_stage")
    local sd = stage and stage:device(k) or rawget(t, "_devices")[k]
    if sd then return sd end
    if type(k) == "string" and k:sub(1, 1) == "_" then return nil end
    local ids = {}
    for _, d in ipairs(rawget(t, "_order")) do ids[#ids + 1] = d.id end
    error(format("site %s has no device '%s' (devices: %s)", rawget(t, "name"), tostring(k),
      #ids > 0 and table.concat(ids, ", ") or "none yet"), 2)
  end,
  __tostring = function(t) return format("site %s (%d devices)", t.name, #t._order) end,
  __close = function(t) t:close() end,
  __complete = function(t)
    local names = {}
    for k in pairs(Site) do
      if k:sub(1, 1) ~= "_" then names[#names + 1] = k end
    end
    for _, d in ipairs(rawget(t, "_order")) do names[#names + 1] = d.id end
    return names
  end,
}

-- The methods on the metatable too, so that help(site) lists them.
for k, v in pairs(Site) do
  if k:sub(1, 1) ~= "_" then mt[k] = v end
end

--- site.new{name = "home" [, exit_after = N] [, offline_after = 3]
--- [, retry = {10, 300}]} -> site. name: lowercase letters, digits and _
--- (used in topics and logs). exit_after: exit the engine (code 3) after
--- the N-th failure of a critical task.
function M.new(opts)
  opts = opts or {}
  local name = opts.name or "site"
  check_id("site.new: name", name)
  local reload = package.loaded["moondog.site.reload"]
  local again = reload and reload.existing(live[name])
  if again then return again end
  local self = setmetatable({
    name = name, _devices = {}, _order = {}, _buses = {}, _bus_order = {}, _listeners = {},
    _watchers = {}, _derived = {}, _dependents = {}, _publishers = {}, _gateways = {}, _profiles = {},
    _sections = {}, _index = 0, _depth = 0, _publish_opts = setmetatable({}, { __mode = "k" }),
    _gateway_opts = setmetatable({}, { __mode = "k" }), _sigs = {},
    _defaults = { offline_after = opts.offline_after, retry = opts.retry },
  }, mt)
  self._epoch = md.now() -- the devices' poll ticks count from here (moondog.site.schedule)
  self._sup = supervise.new(name, {
    exit_after = opts.exit_after, on_health = function() self:_health_changed() end,
  })
  local current = md.current()
  if current and current:name() == "main chunk" then
    self._sup:watch_main(current)
    -- the site script run as `moondog SCRIPT.lua` reloads on SIGHUP
    if md.paths.script then require("moondog.site.reload").start(md.paths.script) end
  end
  if not live[name] then live[name] = self end
  if reload then reload.created(self) end
  return self
end

return M
