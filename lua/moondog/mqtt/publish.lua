-- moondog.mqtt.publish: a site's devices and values to MQTT, with Home
-- Assistant discovery and commands. Also md.mqtt.publish; site:publish{}
-- is the usual way in.
--
--   site:publish{ mqtt = { host = "127.0.0.1", port = 1883 }, prefix = "moondog" }
--   -- or, for devices without a site script (the publisher makes a site of its own):
--   local pub = assert(md.mqtt.publish.start{ mqtt = { host = "127.0.0.1" } })
--   pub:add(md.devices.open("sdm630", "tcp://192.168.1.60:502?unit=1", { id = "meter" }))
--
-- The publisher reads nothing itself: it follows the site (moondog.site),
-- which polls every device once for all its consumers, and publishes what
-- the site has. Topics (prefix "moondog", device "meter", site "home"):
--   moondog/status                  "online" (retained); the client's last
--                                   will sets "offline" if the engine dies
--   moondog/meter/availability      "online" / "offline" (retained): online
--                                   while the device answers or sleeps
--   moondog/meter/<point>           the value as plain text (retained): 230.1,
--                                   ON / OFF, an option name
--   moondog/meter/state             with mode = "state" (for every device, or
--                                   pub:mode(id, "state") for one): all the
--                                   device's values as ONE retained JSON
--                                   object per update instead of a message
--                                   per point; discovery then points each
--                                   entity at it with a value_template
--   moondog/meter                   with json = true: the values of a poll as
--                                   one JSON object
--   moondog/meter/diagnostics/...   device_state, last_error, poll_latency (ms)
--   moondog/meter/<point>/set       commands (writable points only)
--   moondog/meter/<point>/result    the outcome of each command, JSON:
--                                   {"ok":true,"value":50} or
--                                   {"ok":false,"error":"...","code":"out_of_range"}
--   moondog/home/health             ok / degraded / failed (retained), with
--   moondog/home/health/attributes  {"reasons": [...]} (JSON)
--
-- A point is published when its value changed by more than its deadband
-- (point.deadband, else opts.deadband, default 0: any change) but at most
-- every min_interval seconds, and at least every max_interval seconds
-- (default 60) even when unchanged (a keeper task republishes values that
-- no poll refreshed, e.g. an inverter asleep at night), so that Home
-- Assistant's expire_after (3 x max(max_interval, poll)) never fires on a
-- healthy device. What the site holds for a device that is down is what is
-- published: an energy total is never published lower than before (the
-- site holds it), a sleeping inverter's power is 0.
--
-- Discovery is sent after a device's first good read, and only for the
-- points it implements (a point it turns out not to have later is removed
-- from Home Assistant). homeassistant = { discovery = "device" } sends one
-- device-based config per device (homeassistant/device/<node>_<id>/config)
-- instead of one per entity. Site values (derived points, setpoints) are
-- announced as soon as they have a value, writable ones as number, select
-- or switch entities. The site's health is an enum sensor of a device named
-- after the site.
--
-- Commands arrive on <prefix>/+/+/set. The payload is text and only text:
-- it is parsed with moondog.devices.point.parse against the point
-- (writable, type, min/max/step, options) before the site device's write is
-- called, so a refused command never reaches the device. The outcome is
-- logged and sent to the result topic; the site reads the point back and
-- the new value is published. A retained command (the broker replays it on
-- every connect) is refused with code "retained". A point is written at
-- most once per command_interval; commands in between wait, and a newer one
-- replaces a waiting one (result code "superseded"). A point a controller
-- drives is refused with code "owned".
--
-- After every (re)connect the status, availability and discovery are
-- published again and every value is republished (the broker may have
-- restarted without its retained messages); discovery is also re-announced
-- whenever Home Assistant says "online" on homeassistant/status.
-- pub:remove(dev, {clear = true}) removes a device's entities from Home
-- Assistant; nothing else ever does.

local cjson = require "cjson"
local md = require "moondog"
local mqtt = require "moondog.mqtt"
local ha = require "moondog.mqtt.homeassistant"
local point = require "moondog.devices.point"
local jsonfmt = require "moondog.jsonfmt"

-- Codes of a first connection attempt that a later one may not meet: the
-- broker is not up yet, or not reachable yet. Anything else (refused
-- credentials, TLS files, a port that is no broker) is a setting to fix.
local BROKER_AWAY = { refused = true, unreachable = true, connect_timeout = true, timeout = true, dns = true,
  connection_lost = true }

local M = {}

local format = string.format

local Publisher = {}
Publisher.__index = Publisher

--- publish.will(prefix) -> the last will for mqtt.connect: "offline",
--- retained, on <prefix>/status.
function M.will(prefix)
  return { topic = (prefix or "moondog") .. "/status", payload = "offline", qos = 1, retain = true }
end

-- {===== sending =====

function Publisher:send(topic, payload, retain, qos)
  if self.client:status() == "closed" then return nil, "the MQTT client is closed", "closed" end
  local opts = self.popts[qos or self.qos][retain and true or false] -- no table per message
  local ok, err, code = self.client:publish(topic, payload, opts)
  if not ok then
    self.counts.failed = self.counts.failed + 1
    -- queue_full is logged by the client itself
    if code ~= "queue_full" then md.log.debug("mqtt publish %s: %s", topic, err) end
    return nil, err, code
  end
  self.counts.published = self.counts.published + 1
  if self.on_publish then self.on_publish(topic, payload) end
  return true
end

local function is_up(state)
  return state == "ok" or state == "stale" or state == "asleep"
end

local function set_available(self, e, on)
  if e.available == on then return end
  e.available = on
  self:send(format("%s/%s/availability", self.prefix, e.sd.id), on and "online" or "offline", true)
end

local function differs(a, b, deadband)
  if type(a) == "number" and type(b) == "number" then
    return math.abs(a - b) > deadband or (deadband == 0 and a ~= b)
  end
  return a ~= b
end

-- Publish one value on topic if the policy says so (or force).
local function consider(self, e, key, topic, p, v, force)
  local now = md.now()
  local last = e.last[key]
  local age = last and now - last.time or math.huge
  local changed = last == nil or differs(v, last.value, p.deadband or self.deadband)
  if force or (changed and age >= self.min_interval) or age >= self.max_interval then
    if self:send(topic, point.format(p, v), self.retain) then
      e.last[key] = { value = v, time = now }
    end
  end
end

-- {===== state mode: one JSON message per device and update =====

-- A cjson of its own for state messages: NaN and infinities as null (the
-- site never holds them; a script's site value might), numbers with 14
-- significant digits (cjson's most; point.format gives 15 on the
-- per-point topics).
local state_json = cjson.new()
state_json.encode_invalid_numbers("null")
state_json.encode_number_precision(14)
-- The same text, 3-4 times faster for the flat tables state messages are
-- (moondog.jsonfmt: no printf for integers and values with up to three
-- decimals); nil for any other table, which state_json then encodes.

-- Publish the device's state (every announced point that has a value) if
-- a value changed past its deadband and min_interval passed, or
-- max_interval passed, or force. `names`: the points to compare (nil:
-- all). The buffer and the last values are reused from update to update.
local function publish_state(self, e, names, force)
  local sd, last = e.sd, e.slast
  local now = md.now()
  local age = e.stime and now - e.stime or math.huge
  if not force and age < self.max_interval then
    if age < self.min_interval then return end
    local changed = false
    for _, name in ipairs(names or sd._names) do
      if e.announced[name] then
        local v = sd._v[name]
        local deadband = sd._points[name].deadband or self.deadband
        if v ~= nil and (last[name] == nil or differs(v, last[name], deadband)) then
          changed = true
          break
        end
      end
    end
    if not changed then return end
  end
  -- numbers as they are, booleans and options as their text (ON/OFF, the
  -- option name), into a table reused from update to update
  -- (obj holds announced names only: one pass sets or clears each, and
  -- notes the value in last, the values sent: only announced names are
  -- ever compared)
  -- (jsonfmt.pick does all that in one pass in C while every value is a
  -- number or a string, which point.format leaves as it is)
  local vals = sd._v
  local text = jsonfmt.pick(e.announced, vals, last)
  if not text then
    local obj, pts = e.sobj, sd._points
    for name in pairs(e.announced) do
      local v = vals[name]
      last[name] = v
      if v ~= nil and type(v) ~= "number" then v = point.format(pts[name], v) end
      obj[name] = v
    end
    text = jsonfmt.object(obj) or state_json.encode(obj)
  end
  if self:send(e.state_topic, text, self.retain, self.state_qos) then
    e.stime = now
  else -- not sent: every value counts as changed for the next update
    for name in pairs(last) do last[name] = nil end
  end
end

-- }=====

local function publish_point(self, e, name, force)
  if e.state then return publish_state(self, e, { name }, force) end
  local v = e.sd._v[name]
  if v == nil or not e.announced[name] then return end
  consider(self, e, name, format("%s/%s/%s", self.prefix, e.sd.id, name), e.sd._points[name], v, force)
end

local diag_points = {}
for _, p in ipairs(ha.diagnostics) do diag_points[p.name] = p end

local function publish_diag(self, e, name, v, force)
  if not e.polled or v == nil then return end
  consider(self, e, "diagnostics/" .. name, format("%s/%s/diagnostics/%s", self.prefix, e.sd.id, name),
    diag_points[name], v, force)
end

-- }=====

-- {===== discovery =====

-- The points to announce: those the device has shown it implements (a
-- site value: those that have a value).
local function implemented(e)
  local list = {}
  for _, p in ipairs(e.sd:points()) do
    if e.sd._impl[p.name] == true then list[#list + 1] = p end
  end
  return list
end

local function ha_options(self, e, list)
  local poll = 0
  for _, s in pairs(e.sd._intervals) do poll = math.max(poll, s) end
  return setmetatable({
    points = list, diagnostics = e.polled, availability = e.polled,
    expire_after = math.ceil(3 * math.max(self.max_interval, poll)), state = e.state,
  }, { __index = self.ha_opts })
end

-- Announce (again) every implemented point; with `removed`, also take those
-- entities away. Returns true once sent.
local function announce(self, e, removed)
  if not self.ha then
    e.announced, e.announced_n = {}, 0
    for _, p in ipairs(implemented(e)) do
      if not e.announced[p.name] then e.announced_n = e.announced_n + 1 end
      e.announced[p.name] = true
    end
    if e.sobj then e.sobj = {} end
    e.announced_once = true
    return true
  end
  local profile = e.sd.profile
  local desc = { manufacturer = profile.manufacturer, model = profile.model, serial = profile.serial,
                 sw_version = profile.sw_version }
  if e.polled then
    local err
    desc, err = e.sd:describe()
    if not desc then
      md.log.debug("%s: no description yet, discovery waits: %s", e.sd.id, tostring(err))
      return false
    end
  end
  local list = implemented(e)
  if #list == 0 and not e.polled then return false end
  local opts = ha_options(self, e, list)
  local ok, aerr
  if self.ha_mode == "device" then
    local topic, payload = ha.device_config(e.sd, desc, opts, removed)
    ok, aerr = self.client:publish(topic, payload, { qos = 1, retain = true })
    if ok and self.on_publish then self.on_publish(topic, payload) end
  else
    ok, aerr = ha.announce(self.client, e.sd, desc, opts)
    for object_id, component in pairs(removed or {}) do
      local topic = format("%s/%s/%s/%s/config", opts.discovery_prefix or ha.DISCOVERY_PREFIX, component,
        (opts.node or self.prefix):gsub("[^%w_%-]", "_"), object_id)
      self:send(topic, "", true)
    end
  end
  if not ok then
    md.log.warn("%s: discovery not sent: %s", e.sd.id, tostring(aerr))
    return false
  end
  e.announced, e.announced_n = {}, 0
  for _, p in ipairs(list) do
    if not e.announced[p.name] then e.announced_n = e.announced_n + 1 end
    e.announced[p.name] = true
  end
  if e.sobj then e.sobj = {} end -- the state message's table holds announced names only
  e.announced_once = true
  return true
end

-- Points the device now has that were not announced: announce again.
-- A device announced before (a broker that came back, a mode switch):
-- its discovery again, then every value it has, whatever was sent before.
local function reannounce(self, e)
  if not e.announced_once then return end
  e.announced_once = false
  if announce(self, e) then
    if e.state then
      publish_state(self, e, nil, true)
    else
      for name in pairs(e.announced) do publish_point(self, e, name, true) end
    end
  end
end

local function announce_new(self, e, names)
  if e.announced_n == #e.sd._names then return end -- every point is announced: none is new
  for _, name in ipairs(names) do
    if e.sd._impl[name] == true and not e.announced[name] then
      announce(self, e)
      return
    end
  end
end

local function announce_health(self)
  if not self.ha or not self.site_health then return end
  local tprefix = self.ha_opts.prefix -- the topics as Home Assistant sees them (topic_prefix)
  local node = (self.ha_opts.node or tprefix):gsub("[^%w_%-]", "_")
  local dprefix = self.ha_opts.discovery_prefix or ha.DISCOVERY_PREFIX
  local name = self.site.name
  local topic = format("%s/sensor/%s/%s_health/config", dprefix, node, name)
  local config = cjson.encode({
    name = "Health", unique_id = format("%s_%s_health", node, name),
    state_topic = format("%s/%s/health", tprefix, name),
    json_attributes_topic = format("%s/%s/health/attributes", tprefix, name),
    device_class = "enum", options = { "ok", "degraded", "failed" }, icon = "mdi:heart-pulse",
    availability = { { topic = tprefix .. "/status" } },
    device = { identifiers = { node .. "_" .. name }, name = name, manufacturer = "moondog",
               model = "site", sw_version = md.version },
    origin = { name = "moondog", sw_version = md.version },
  })
  local ok = self.client:publish(topic, config, { qos = 1, retain = true })
  if ok and self.on_publish then self.on_publish(topic, config) end
end

local function publish_health(self, state, reasons)
  if not self.site_health then return end
  local text = state .. "\n" .. table.concat(reasons, "\n")
  if text == self.last_health then return end
  self.last_health = text
  local name = self.site.name
  self:send(format("%s/%s/health", self.prefix, name), state, true)
  self:send(format("%s/%s/health/attributes", self.prefix, name),
    #reasons > 0 and cjson.encode({ reasons = reasons }) or '{"reasons":[]}', true)
end

-- }=====

-- {===== following the site =====

local function set_mode(self, e, mode)
  e.state = mode == "state"
  e.last, e.slast, e.sobj, e.stime = {}, {}, {}, nil
  e.state_topic = format("%s/%s/state", self.prefix, e.sd.id)
end

local function entry(self, sd)
  local e = self.devices[sd.id]
  if e then return e end
  for _, p in ipairs(sd:points()) do
    if p.name == "availability" or p.name == "diagnostics" then
      error(format("publish: device %s: a point may not be called '%s' (the topic is taken)", sd.id,
        p.name), 0)
    end
  end
  if self.ha then
    -- raises on a profile Home Assistant would refuse
    ha.entities(sd, nil, setmetatable({ points = sd:points() }, { __index = self.ha_opts }))
  end
  e = { sd = sd, last = {}, announced = {}, polled = rawget(sd, "_dev") ~= nil }
  self.devices[sd.id] = e
  set_mode(self, e, self.modes[sd.id] or self.default_mode)
  return e
end

local function on_sample(self, sd, names, changed)
  local e = self.devices[sd.id]
  if not e then return end
  if e.polled then
    set_available(self, e, is_up(sd._state))
  end
  if not e.announced_once then
    if not announce(self, e) then return end
  else
    announce_new(self, e, changed)
  end
  if e.state then
    publish_state(self, e, names)
  else
    for _, name in ipairs(names) do publish_point(self, e, name) end
  end
  if e.polled then
    publish_diag(self, e, "device_state", sd._state)
    publish_diag(self, e, "last_error", sd._last_error and tostring(sd._last_error):sub(1, 255) or "none")
    if sd._latency then
      publish_diag(self, e, "poll_latency", tonumber(format("%.1f", sd._latency * 1000)))
    end
  end
  if self.json and e.polled then
    local values = {}
    for _, name in ipairs(names) do values[name] = sd._v[name] end
    self:send(format("%s/%s", self.prefix, sd.id), cjson.encode(values), false)
  end
end

local function listener(self)
  return {
    device = function(sd) entry(self, sd) end,
    points = function(sd)
      local e = self.devices[sd.id]
      if e then e.polled = rawget(sd, "_dev") ~= nil end -- a device of profile "auto" identified late
      if e and self.ha then
        ha.entities(sd, nil, setmetatable({ points = sd:points() }, { __index = self.ha_opts }))
      end
    end,
    sample = function(sd, names, changed) on_sample(self, sd, names, changed) end,
    state = function(sd, _, new)
      local e = self.devices[sd.id]
      if not e then return end
      set_available(self, e, is_up(new))
      publish_diag(self, e, "device_state", new, true)
    end,
    error = function(sd, err)
      local e = self.devices[sd.id]
      if e then publish_diag(self, e, "last_error", tostring(err):sub(1, 255)) end
    end,
    unimplemented = function(sd, names)
      local e = self.devices[sd.id]
      if not e or not e.announced_once then return end
      local removed = {}
      for _, name in ipairs(names) do
        if e.announced[name] then
          local p = sd._points[name]
          removed[sd.id .. "_" .. name] = ha.component_of(p)
          if not e.state then self:send(format("%s/%s/%s", self.prefix, sd.id, name), "", true) end
        end
      end
      if next(removed) then
        md.log.info("%s: removing %d Home Assistant entities of points the device does not have", sd.id,
          #names)
        announce(self, e, removed)
      end
    end,
    removed = function(sd) self:_forget(sd.id) end,
    health = function(state, reasons) publish_health(self, state, reasons) end,
  }
end

-- Republish what no poll refreshed within max_interval (a device asleep or
-- down, site values that rarely change).
local function keeper(self)
  local period = math.max(1, self.max_interval / 3)
  for _ in md.every(period) do
    if self.site_health then publish_health(self, self.site:health()) end -- a restart ages
    for _, e in pairs(self.devices) do
      if e.announced_once and (not e.polled or e.available) then
        if e.state then
          publish_state(self, e)
        else
          for name in pairs(e.announced) do publish_point(self, e, name) end
        end
      end
    end
  end
end

-- }=====

-- {===== commands =====

local function result(self, dev_id, name, body)
  self:send(format("%s/%s/%s/result", self.prefix, dev_id, name), cjson.encode(body), false)
end

local function command(self, topic, payload, msg)
  local dev_id, name = topic:sub(#self.prefix + 2):match("^([^/]+)/([^/]+)/set$")
  if not dev_id then return end
  self.counts.commands = self.counts.commands + 1
  local e = self.devices[dev_id]
  local p = e and e.sd._points[name]
  local value, err, code
  if msg and msg.retain then -- a stale command the broker kept: not the user's now
    err, code = format("%s: a retained command is ignored; publish commands without retain", name),
      "retained"
  elseif not e then
    err, code = format("no device '%s' is published here", dev_id), "unknown_device"
  elseif not p then
    err, code = format("%s has no point '%s'", dev_id, name), "unknown_point"
  elseif #payload > 256 then
    err, code = format("%s: a command payload of %d bytes is too long", name, #payload), "too_long"
  else
    value, err, code = point.parse(p, payload)
  end
  if value == nil then
    self.counts.refused = self.counts.refused + 1
    md.log.warn("command %s refused: %s", topic, err)
    return result(self, dev_id, name, { ok = false, error = err, code = code })
  end
  -- at most one device write per point every command_interval s, of the latest value
  self.gate = self.gate or point.throttle(self.command_interval or 1)
  self.gate:submit(dev_id .. "/" .. name, value, function(v)
    local ok, werr, wcode = e.sd:write(name, v)
    if not ok then
      self.counts.failed_writes = self.counts.failed_writes + 1
      md.log.warn("command %s = %s failed: %s", topic, point.format(p, v), werr)
      return result(self, dev_id, name, { ok = false, error = werr, code = wcode })
    end
    md.log.info("command %s = %s written", topic, point.format(p, v))
    result(self, dev_id, name, { ok = true, value = v })
    publish_point(self, e, name, true) -- show the new state at once
  end, function(old)
    result(self, dev_id, name, { ok = false, code = "superseded",
      error = format("%s = %s was replaced by a newer command before it was written", name,
        point.format(p, old)) })
  end)
end

-- }=====

-- {===== life cycle =====

function Publisher:listen(sub, err)
  if sub then
    self.subs[#self.subs + 1] = sub
  else
    md.log.warn("mqtt: cannot subscribe: %s", tostring(err))
  end
end

local function on_connect(self)
  if self.closed then return end
  self:send(self.prefix .. "/status", "online", true)
  announce_health(self)
  self.last_health = nil
  if self.site_health then publish_health(self, self.site:health()) end
  for _, e in pairs(self.devices) do
    if e.available ~= nil then
      self:send(format("%s/%s/availability", self.prefix, e.sd.id), e.available and "online" or "offline",
        true)
    end
    e.last, e.stime = {}, nil
    reannounce(self, e)
  end
end

--- pub:add(dev [, {poll = s}]) starts publishing a device (an md.devices
--- object) that has no site: the publisher's own site polls it. Raises if
--- its profile cannot be announced to Home Assistant or the id is taken.
function Publisher:add(dev, opts)
  opts = opts or {}
  assert(type(dev) == "table" and type(dev.id) == "string" and dev.profile, "add: expected a device object")
  if not self.own_site then
    error("add: this publisher follows site " .. self.site.name .. "; add the device to the site instead", 2)
  end
  if self.devices[dev.id] then
    error(format("add: a device with id '%s' is already published", dev.id), 2)
  end
  for _, p in ipairs(dev.profile.points) do
    if p.name == "availability" then
      error(format("add: device %s: a point may not be called 'availability' (the topic is taken)",
        dev.id), 2)
    end
  end
  if self.ha then
    ha.entities(dev, nil, self.ha_opts) -- raises on a profile Home Assistant would refuse
  end
  self.site:add(dev.id, dev, { poll = opts.poll or self.poll })
  return self
end

function Publisher:_forget(id)
  local e = self.devices[id]
  if not e then return nil end
  self.devices[id] = nil
  return e
end

--- pub:remove(dev_or_id [, {clear = true}]): stop publishing it; "offline"
--- on its availability. clear also removes its Home Assistant entities and
--- retained values.
function Publisher:remove(dev, opts)
  local id = type(dev) == "table" and dev.id or dev
  local e = self:_forget(id)
  if not e then return false end
  if self.own_site then self.site:remove(id, { keep_open = true }) end
  local base = format("%s/%s", self.prefix, id)
  local avail = e.polled and base .. "/availability" or nil
  if opts and opts.clear then
    if self.ha then
      if self.ha_mode == "device" then
        local topic = ha.device_config(e.sd, nil, ha_options(self, e, {}))
        self:send(topic, "", true)
      else
        ha.clear(self.client, e.sd, ha_options(self, e, e.sd:points()))
      end
    end
    for _, p in ipairs(e.sd:points()) do self:send(base .. "/" .. p.name, "", true) end
    self:send(base .. "/state", "", true)
    if avail then self:send(avail, "", true) end
  elseif avail then
    self:send(avail, "offline", true)
  end
  return true
end

--- pub:mode(id, "state" | "points"): how device id's values go out, whether
--- it is published yet or not: "state", all values as one retained JSON
--- message on <prefix>/<id>/state per update (Home Assistant's entities
--- read it with value_template); "points", a message per point on
--- <prefix>/<id>/<point>. The default is publish.start's mode.
function Publisher:mode(id, mode)
  if type(id) ~= "string" then error("pub:mode: expected a device id", 2) end
  if mode ~= "state" and mode ~= "points" then error('pub:mode: mode must be "state" or "points"', 2) end
  self.modes[id] = mode
  local e = self.devices[id]
  if e and e.state ~= (mode == "state") then
    -- the old mode's retained values go: they would never change again
    if e.state then
      self:send(e.state_topic, "", true)
    else
      for key in pairs(e.last) do -- (diagnostics keep their topics)
        if not key:find("/", 1, true) then self:send(format("%s/%s/%s", self.prefix, id, key), "", true) end
      end
    end
    set_mode(self, e, mode)
    reannounce(self, e)
  end
  return self
end

--- pub:stats() -> {published, failed, withheld, commands, refused, failed_writes, devices}
function Publisher:stats()
  local s = {}
  for k, v in pairs(self.counts) do s[k] = v end
  s.devices = 0
  for _ in pairs(self.devices) do s.devices = s.devices + 1 end
  local held = 0
  for _, e in pairs(self.devices) do held = held + (rawget(e.sd, "_held") or 0) end
  s.withheld = held
  return s
end

--- pub:close(): every device "offline", the status "offline", and the
--- client closed if the publisher opened it. Devices are not closed.
function Publisher:close()
  if self.closed then return end
  self.closed = true
  self.unlisten()
  self.keeper:cancel()
  local ids = {}
  for id in pairs(self.devices) do ids[#ids + 1] = id end
  for _, id in ipairs(ids) do self:remove(id) end
  if self.own_site then self.site:close() end
  for _, s in ipairs(self.subs) do s:close() end
  if self.gate then self.gate:close() end
  self:send(self.prefix .. "/status", "offline", true)
  if self.client:status() == "closed" then return end
  if self.own_client then
    self.client:close(5) -- flushes only where it may wait
  elseif require("moondog.core").can_wait() then
    self.client:flush(5)
  end
end
Publisher.__close = Publisher.close

--- publish.start(opts) -> publisher, or nil, message, code (connecting).
--- opts: site (the site to follow; without one the publisher has a site of
--- its own for pub:add), mqtt (connect options; the will is added) or
--- client (connected with will = publish.will(prefix)); prefix
--- ("moondog"); qos (1); retain (true); mode ("points", or "state": a
--- device's values as one JSON message, see pub:mode); state_qos (the QoS
--- of state messages; default qos); json (false); deadband (0);
--- min_interval (0 s); max_interval (60 s); poll (for pub:add: profile.poll
--- or 10 s); homeassistant (true, or {discovery_prefix =, node =,
--- discovery = "entity" | "device"}); commands (true); on_publish
--- (fn(topic, payload), e.g. to print what goes out); devices ({dev, ...});
--- command_interval (1 s: the least time between two writes to one point;
--- commands in between coalesce to the latest).
function M.start(opts)
  opts = opts or {}
  local prefix = opts.prefix or "moondog"
  if type(prefix) ~= "string" or not mqtt.check_topic(prefix) or prefix:find("/$") then
    error("publish.start: prefix must be a topic such as 'moondog' or 'site/garage'", 2)
  end
  local hopts = type(opts.homeassistant) == "table" and opts.homeassistant or {}
  if hopts.discovery ~= nil and hopts.discovery ~= "entity" and hopts.discovery ~= "device" then
    error("publish.start: homeassistant.discovery must be \"entity\" or \"device\"", 2)
  end
  local mode = opts.mode or "points"
  if mode ~= "points" and mode ~= "state" then
    error('publish.start: mode must be "points" or "state"', 2)
  end
  local qos, state_qos = opts.qos or 1, opts.state_qos or opts.qos or 1
  for _, q in ipairs { qos, state_qos } do
    if q ~= 0 and q ~= 1 and q ~= 2 then error("publish.start: qos and state_qos must be 0, 1 or 2", 2) end
  end
  local popts = {}
  for q = 0, 2 do
    popts[q] = { [true] = { qos = q, retain = true }, [false] = { qos = q, retain = false } }
  end
  -- Behind a bridge that remaps topics (docs/fleet.md), Home Assistant sees
  -- the state and command topics under another prefix than the one published.
  local tp = hopts.topic_prefix
  if tp ~= nil and (type(tp) ~= "string" or not mqtt.check_topic(tp) or tp:find("/$")) then
    error("publish.start: homeassistant.topic_prefix must be a topic such as 'sites/home/moondog'", 2)
  end
  local self = setmetatable({
    prefix = prefix, qos = qos, state_qos = state_qos, popts = popts, default_mode = mode, modes = {},
    retain = opts.retain ~= false, json = opts.json,
    deadband = opts.deadband or 0, min_interval = opts.min_interval or 0,
    max_interval = opts.max_interval or 60, poll = opts.poll, on_publish = opts.on_publish,
    command_interval = opts.command_interval,
    devices = {}, subs = {}, ha_mode = hopts.discovery or "entity",
    counts = { published = 0, failed = 0, withheld = 0, commands = 0, refused = 0, failed_writes = 0 },
  }, Publisher)
  if opts.homeassistant ~= false then
    self.ha = true
    self.ha_opts = {
      prefix = tp or prefix, discovery_prefix = hopts.discovery_prefix, node = hopts.node,
      on_publish = opts.on_publish,
    }
  end
  if opts.site then
    self.site, self.site_health = opts.site, true
  else
    self.site = require("moondog.site").new { name = "publisher" }
    self.own_site = true
  end
  for _, sd in ipairs(self.site:devices()) do entry(self, sd) end -- raises on a refused profile
  if opts.client then
    self.client = opts.client
  else
    local conn = {}
    for k, v in pairs(opts.mqtt or {}) do conn[k] = v end
    conn.will = conn.will or M.will(prefix)
    local client, err, code = mqtt.connect(conn)
    if not client and conn.wait == nil and BROKER_AWAY[code] then
      -- a site started before its broker (at boot, or the broker restarting)
      -- publishes once the broker answers: the client keeps trying
      md.log.warn("mqtt: %s; publishing starts once the broker answers (tried again in the background)",
        tostring(err))
      conn.wait = false
      client, err, code = mqtt.connect(conn)
    end
    if not client then
      if self.own_site then self.site:close() end
      return nil, err, code
    end
    self.client, self.own_client = client, true
  end
  if self.ha then
    self:listen(ha.on_online(self.client, function()
      md.log.info("Home Assistant is online: announcing %s's devices again", prefix)
      announce_health(self)
      for _, e in pairs(self.devices) do
        if e.announced_once then announce(self, e) end
      end
    end, self.ha_opts))
  end
  if opts.commands ~= false then
    self:listen(self.client:subscribe(prefix .. "/+/+/set", function(topic, payload, msg)
      command(self, topic, payload, msg)
    end, { qos = 1 }))
  end
  self.client:on("connect", function() on_connect(self) end)
  self.unlisten = self.site:_listen(listener(self))
  self.keeper = md.spawn(keeper, self)
  self.keeper:name("mqtt keeper " .. prefix)
  for _, dev in ipairs(opts.devices or {}) do self:add(dev) end
  -- Values the site already has (a publisher started after the site).
  for _, e in pairs(self.devices) do
    if e.sd._state ~= "starting" then
      local names = {}
      for _, p in ipairs(e.sd:points()) do names[#names + 1] = p.name end
      on_sample(self, e.sd, names, names)
    end
  end
  return self
end

-- }=====

return M
