-- moondog.mqtt.publish: devices to MQTT, with Home Assistant discovery and
-- commands. Also md.mqtt.publish.
--
--   local pub = assert(md.mqtt.publish.start{
--     mqtt = { host = "127.0.0.1", port = 1883 },   -- connect options (or client = c)
--     prefix = "moondog",
--   })
--   pub:add(md.devices.open("sdm630", "tcp://192.168.1.60:502?unit=1", { id = "meter" }))
--   ...
--   pub:close()
--
-- Topics (prefix "moondog", device "meter"):
--   moondog/status                  "online" (retained); the client's last
--                                   will sets "offline" if the engine dies
--   moondog/meter/availability      "online" / "offline" (retained), following
--                                   whether the device's last read succeeded
--   moondog/meter/<point>           the value as plain text (retained): 230.1,
--                                   ON / OFF, an option name
--   moondog/meter                   with json = true: all values of a cycle as
--                                   one JSON object
--   moondog/meter/<point>/set       commands (writable points only)
--   moondog/meter/<point>/result    the outcome of each command, JSON:
--                                   {"ok":true,"value":50} or
--                                   {"ok":false,"error":"...","code":"out_of_range"}
--
-- Each device is read every `poll` seconds (option, else profile.poll,
-- else 10) in a task of its own. A point is published when its value
-- changed by more than its deadband (point.deadband, else opts.deadband,
-- default 0: any change) but at most every min_interval seconds, and at
-- least every max_interval seconds (default 60) even when unchanged, so
-- that Home Assistant's expire_after (3 x max(max_interval, poll)) never
-- fires on a healthy device. A device that cannot be read is published
-- "offline" and none of its values are sent: an energy total never turns
-- into 0 because a meter went away. A total_increasing point that reads
-- exactly 0 after a positive value is held back and logged (a meter
-- answering while it boots), for the same reason.
--
-- Commands arrive on <prefix>/+/+/set. The payload is text and only text:
-- it is parsed with moondog.devices.point.parse against the point
-- (writable, type, min/max/step, options) before dev:write is called, so a
-- refused command never reaches the device. The outcome is logged, sent to
-- the result topic, and after a successful write the device is read again
-- and the new value published. A retained command (the broker replays it on
-- every connect) is refused with code "retained". A point is written at
-- most once per command_interval; commands in between wait, and a newer one
-- replaces a waiting one (result code "superseded").
--
-- After every (re)connect the status, availability and discovery are
-- published again and every value is republished on the next cycle (the
-- broker may have restarted without its retained messages); discovery is
-- also re-announced whenever Home Assistant says "online" on
-- homeassistant/status. pub:remove(dev, {clear = true}) removes a device's
-- entities from Home Assistant; nothing else ever does.

local cjson = require "cjson"
local md = require "moondog"
local mqtt = require "moondog.mqtt"
local ha = require "moondog.mqtt.homeassistant"
local point = require "moondog.devices.point"

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

function Publisher:send(topic, payload, retain)
  if self.client:status() == "closed" then return nil, "the MQTT client is closed", "closed" end
  local ok, err, code = self.client:publish(topic, payload, { qos = self.qos, retain = retain })
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

local function set_available(self, e, on, why)
  if e.available == on then return end
  e.available = on
  self:send(format("%s/%s/availability", self.prefix, e.dev.id), on and "online" or "offline", true)
  if on then
    md.log.info("%s is online", e.dev.id)
  else
    md.log.warn("%s is offline: %s", e.dev.id, tostring(why))
  end
end

local function differs(a, b, deadband)
  if type(a) == "number" and type(b) == "number" then
    return math.abs(a - b) > deadband or (deadband == 0 and a ~= b)
  end
  return a ~= b
end

-- Publish one point's value if the policy says so (or force). The clock
-- is read per point: a slow read earlier in the cycle must not make a
-- point look older or younger than it is.
local function consider(self, e, p, v, force)
  local now = md.now()
  local last = e.last[p.name]
  if p.state_class == "total_increasing" and v == 0 and last and type(last.value) == "number"
      and last.value > 0 then
    self.counts.withheld = self.counts.withheld + 1
    if not e.zero_warned[p.name] then
      e.zero_warned[p.name] = true
      md.log.warn("%s: %s read 0 after %s; not published (a total never falls to 0)", e.dev.id, p.name,
        tostring(last.value))
    end
    return
  end
  e.zero_warned[p.name] = nil
  local age = last and now - last.time or math.huge
  local changed = last == nil or differs(v, last.value, p.deadband or self.deadband)
  if force or (changed and age >= self.min_interval) or age >= self.max_interval then
    if self:send(format("%s/%s/%s", self.prefix, e.dev.id, p.name), point.format(p, v), self.retain) then
      e.last[p.name] = { value = v, time = now }
    end
  end
end

local function announce(self, e)
  if not self.ha then return end
  local desc, err = e.dev:describe()
  if not desc then
    md.log.debug("%s: no description yet, discovery waits: %s", e.dev.id, tostring(err))
    return
  end
  local opts = setmetatable({ expire_after = math.ceil(3 * math.max(self.max_interval, e.poll)) },
    { __index = self.ha_opts })
  local n, aerr = ha.announce(self.client, e.dev, desc, opts)
  if n then
    e.announced = true
  else
    md.log.warn("%s: discovery not sent: %s", e.dev.id, tostring(aerr))
  end
end

-- One poll of a device: read, availability, discovery, values.
local function cycle(self, e, force_point)
  local values, err = e.dev:read()
  if not values then
    set_available(self, e, false, err)
    return
  end
  if not e.announced then announce(self, e) end
  set_available(self, e, true)
  for _, p in ipairs(e.dev.profile.points) do
    local v = values[p.name]
    if v ~= nil then consider(self, e, p, v, p.name == force_point) end
  end
  if self.json then
    self:send(format("%s/%s", self.prefix, e.dev.id), cjson.encode(values), false)
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
  local p = e and e.points[name]
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
    local ok, werr, wcode = e.dev:write(name, v)
    if not ok then
      self.counts.failed_writes = self.counts.failed_writes + 1
      md.log.warn("command %s = %s failed: %s", topic, point.format(p, v), werr)
      return result(self, dev_id, name, { ok = false, error = werr, code = wcode })
    end
    md.log.info("command %s = %s written", topic, point.format(p, v))
    result(self, dev_id, name, { ok = true, value = v })
    cycle(self, e, name) -- show the new state at once
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
  for _, e in pairs(self.devices) do
    if e.available ~= nil then
      self:send(format("%s/%s/availability", self.prefix, e.dev.id),
        e.available and "online" or "offline", true)
    end
    e.last = {}
    e.announced = false
    if e.available then announce(self, e) end
  end
end

--- pub:add(dev [, {poll = s}]) starts publishing a device (an md.devices
--- object). Raises if its profile cannot be announced to Home Assistant or
--- the id is taken.
function Publisher:add(dev, opts)
  opts = opts or {}
  assert(type(dev) == "table" and type(dev.id) == "string" and dev.profile, "add: expected a device object")
  if self.devices[dev.id] then
    error(format("add: a device with id '%s' is already published", dev.id), 2)
  end
  local points = {}
  for _, p in ipairs(dev.profile.points) do
    if p.name == "availability" then
      error(format("add: device %s: a point may not be called 'availability' (the topic is taken)",
        dev.id), 2)
    end
    points[p.name] = p
  end
  if self.ha then
    ha.entities(dev, nil, self.ha_opts) -- raises on a profile Home Assistant would refuse
  end
  local e = { dev = dev, points = points, last = {}, zero_warned = {},
              poll = opts.poll or self.poll or dev.profile.poll or 10 }
  self.devices[dev.id] = e
  e.task = md.spawn(function()
    cycle(self, e)
    for _ in md.every(e.poll) do cycle(self, e) end
  end)
  e.task:name("mqtt publish " .. dev.id)
  return self
end

--- pub:remove(dev_or_id [, {clear = true}]): stop publishing it; "offline"
--- on its availability. clear also removes its Home Assistant entities and
--- retained values.
function Publisher:remove(dev, opts)
  local id = type(dev) == "table" and dev.id or dev
  local e = self.devices[id]
  if not e then return false end
  self.devices[id] = nil
  e.task:cancel()
  local base = format("%s/%s", self.prefix, id)
  if opts and opts.clear then
    if self.ha then ha.clear(self.client, e.dev, self.ha_opts) end
    for _, p in ipairs(e.dev.profile.points) do self:send(base .. "/" .. p.name, "", true) end
    self:send(base .. "/availability", "", true)
  else
    self:send(base .. "/availability", "offline", true)
  end
  return true
end

--- pub:stats() -> {published, failed, withheld, commands, refused, failed_writes, devices}
function Publisher:stats()
  local s = {}
  for k, v in pairs(self.counts) do s[k] = v end
  s.devices = 0
  for _ in pairs(self.devices) do s.devices = s.devices + 1 end
  return s
end

--- pub:close(): every device "offline", the status "offline", and the
--- client closed if the publisher opened it. Devices are not closed.
function Publisher:close()
  if self.closed then return end
  self.closed = true
  for id in pairs(self.devices) do self:remove(id) end
  for _, s in ipairs(self.subs) do s:close() end
  if self.gate then self.gate:close() end
  self:send(self.prefix .. "/status", "offline", true)
  if self.client:status() == "closed" then return end
  if self.own_client then
    self.client:close(5)
  else
    self.client:flush(5)
  end
end
Publisher.__close = Publisher.close

--- publish.start(opts) -> publisher, or nil, message, code (connecting).
--- opts: mqtt (connect options; the will is added) or client (connected
--- with will = publish.will(prefix)); prefix ("moondog"); qos (1); retain
--- (true); json (false); deadband (0); min_interval (0 s); max_interval
--- (60 s); poll (default per device: profile.poll or 10 s); homeassistant
--- (true, or {discovery_prefix =, node =}); commands (true); on_publish
--- (fn(topic, payload), e.g. to print what goes out); devices ({dev, ...});
--- command_interval (1 s: the least time between two writes to one point;
--- commands in between coalesce to the latest).
function M.start(opts)
  opts = opts or {}
  local prefix = opts.prefix or "moondog"
  if type(prefix) ~= "string" or not mqtt.check_topic(prefix) or prefix:find("/$") then
    error("publish.start: prefix must be a topic such as 'moondog' or 'site/garage'", 2)
  end
  local self = setmetatable({
    prefix = prefix, qos = opts.qos or 1, retain = opts.retain ~= false, json = opts.json,
    deadband = opts.deadband or 0, min_interval = opts.min_interval or 0,
    max_interval = opts.max_interval or 60, poll = opts.poll, on_publish = opts.on_publish,
    command_interval = opts.command_interval,
    devices = {}, subs = {},
    counts = { published = 0, failed = 0, withheld = 0, commands = 0, refused = 0, failed_writes = 0 },
  }, Publisher)
  if opts.client then
    self.client = opts.client
  else
    local conn = {}
    for k, v in pairs(opts.mqtt or {}) do conn[k] = v end
    conn.will = conn.will or M.will(prefix)
    local client, err, code = mqtt.connect(conn)
    if not client then return nil, err, code end
    self.client, self.own_client = client, true
  end
  if opts.homeassistant ~= false then
    local hopts = type(opts.homeassistant) == "table" and opts.homeassistant or {}
    self.ha = true
    self.ha_opts = {
      prefix = prefix, discovery_prefix = hopts.discovery_prefix, node = hopts.node,
      on_publish = opts.on_publish,
    }
    self:listen(ha.on_online(self.client, function()
      md.log.info("Home Assistant is online: announcing %s's devices again", prefix)
      for _, e in pairs(self.devices) do announce(self, e) end
    end, self.ha_opts))
  end
  if opts.commands ~= false then
    self:listen(self.client:subscribe(prefix .. "/+/+/set", function(topic, payload, msg)
      command(self, topic, payload, msg)
    end, { qos = 1 }))
  end
  self.client:on("connect", function() on_connect(self) end)
  for _, dev in ipairs(opts.devices or {}) do self:add(dev) end
  return self
end

-- }=====

return M
