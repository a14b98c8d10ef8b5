-- moondog.mqtt.homeassistant: Home Assistant MQTT discovery for devices.
-- Also md.mqtt.homeassistant. The publishing layer (moondog.mqtt.publish)
-- uses it; scripts may too.
--
--   local ha = require "moondog.mqtt.homeassistant"
--   local list = ha.entities(dev, dev:describe(), { prefix = "moondog", expire_after = 90 })
--   ha.announce(client, dev, desc, opts)   -- retained config messages, QoS 1
--   ha.clear(client, dev, opts)            -- empty retained configs: entities go away
--   ha.on_online(client, fn, opts)         -- fn() whenever HA says it (re)started
--
-- One entity per profile point, announced on
-- <discovery_prefix>/<component>/<node>/<device>_<point>/config with:
--   - unique_id <node>_<device>_<point>, stable across restarts;
--   - a device block: identifiers {<node>_<device>}, name, manufacturer,
--     model, serial_number, sw_version, hw_version (what dev:describe()
--     read from the device, else the profile's facts);
--   - availability: the engine status topic <prefix>/status (its last will
--     is "offline") AND the device's <prefix>/<device>/availability, both
--     required (availability_mode "all"): when the engine dies or the
--     device stops answering, the entities turn unavailable. An energy
--     total is never published as 0 for an offline device: its entity is
--     unavailable instead, so the Energy dashboard counts nothing wrong;
--   - read-only points: sensor (enum sensors with their options) or
--     binary_sensor, with device_class, state_class and unit checked
--     against what Home Assistant accepts, and expire_after so that a value
--     nobody refreshes turns unavailable;
--   - writable points: number (min, max, step always explicit: Home
--     Assistant's own default minimum is 1, which would make 0 impossible),
--     select (options), switch (ON/OFF) or text, each with the command
--     topic <prefix>/<device>/<point>/set.
-- Point fields used besides the contract's: label (entity name; default
-- from the point name), precision (suggested_display_precision), icon,
-- entity_category, mode ("box" | "slider" for numbers, default "box").
--
-- A profile whose device_class, state_class and unit do not go together
-- raises (the profile is part of the program): e.g. an energy point needs
-- state_class total_increasing or total and a unit Wh/kWh/MWh to appear in
-- the Energy dashboard.

local cjson = require "cjson"
local mdcore = require "moondog.core"
local point = require "moondog.devices.point"

local M = {}

M.DISCOVERY_PREFIX = "homeassistant"

local format = string.format

local function set(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

local measurement = set { "measurement" }
local energy_units = set { "Wh", "kWh", "MWh", "MJ", "GJ" }

-- device_class -> accepted units (false: no unit allowed, "optional": a
-- unit is not needed) and state classes. Home Assistant's sensor classes
-- that moondog's devices use; an unknown class raises.
local classes = {
  power = { units = set { "W", "kW", "MW" }, states = measurement },
  apparent_power = { units = set { "VA", "kVA" }, states = measurement },
  reactive_power = { units = set { "var", "kvar" }, states = measurement },
  energy = { units = energy_units, states = set { "total", "total_increasing" }, need_state = true },
  energy_storage = { units = energy_units, states = measurement },
  voltage = { units = set { "V", "mV", "kV" }, states = measurement },
  current = { units = set { "A", "mA" }, states = measurement },
  frequency = { units = set { "Hz", "kHz", "MHz", "GHz" }, states = measurement },
  battery = { units = set { "%" }, states = measurement },
  power_factor = { units = set { "%" }, unitless = true, states = measurement },
  temperature = { units = set { "°C", "°F", "K" }, states = measurement },
  humidity = { units = set { "%" }, states = measurement },
  duration = { units = set { "s", "ms", "min", "h", "d" },
               states = set { "measurement", "total", "total_increasing" } },
  enum = { units = false, states = {} },
}
local state_classes = set { "measurement", "total", "total_increasing" }

local function where(dev, p)
  return format("device %s, point %s", dev.id, p.name)
end

-- The mistakes in how device_class, state_class and unit go together (an
-- array of messages, empty when they fit).
local function class_mistakes(p)
  local out = {}
  local function add(fmt, ...) out[#out + 1] = format(fmt, ...) end
  local sc, dc, unit = p.state_class, p.device_class, p.unit
  if sc ~= nil and not state_classes[sc] then
    add("state_class must be measurement, total or total_increasing, got %s", tostring(sc))
  end
  if dc == nil then return out end
  local c = classes[dc]
  if not c then
    add("device_class '%s' is not one moondog knows Home Assistant accepts", tostring(dc))
    return out
  end
  if c.units == false and unit ~= nil then
    add("device_class %s takes no unit", dc)
  end
  if c.units and unit == nil and not c.unitless then
    add("device_class %s needs a unit", dc)
  end
  if c.units and unit ~= nil and not c.units[unit] then
    local list = {}
    for u in pairs(c.units) do list[#list + 1] = u end
    table.sort(list)
    add("device_class %s takes the units %s, not '%s'", dc, table.concat(list, ", "), tostring(unit))
  end
  if sc ~= nil and state_classes[sc] and not c.states[sc] then
    add("device_class %s does not go with state_class %s", dc, sc)
  end
  if c.need_state and sc == nil then
    add("device_class %s needs state_class total_increasing (or total) for the Energy dashboard", dc)
  end
  return out
end

-- Raise unless device_class, state_class and unit go together.
local function check_classes(dev, p)
  local mistakes = class_mistakes(p)
  if mistakes[1] then error(format("%s: %s", where(dev, p), mistakes[1]), 0) end
end

local function humanize(name)
  local s = name:gsub("_", " ")
  return (s:gsub("^%l", string.upper))
end

local function topic_safe(s)
  return (tostring(s):gsub("[^%w_%-]", "_"))
end

local function component_of(p)
  local kind = point.kind(p)
  if p.writable then
    if kind == "bool" then return "switch" end
    if kind == "enum" then return "select" end
    if kind == "string" then return "text" end
    return "number"
  end
  if kind == "bool" then return "binary_sensor" end
  return "sensor"
end

--- ha.component_of(p) -> the entity kind of a point: "sensor", "number", ...
M.component_of = component_of

local function device_block(node, dev, desc)
  local profile = dev.profile or {}
  desc = desc or {}
  return {
    identifiers = { node .. "_" .. dev.id },
    name = profile.label or dev.id,
    manufacturer = desc.manufacturer or profile.manufacturer,
    model = desc.model or profile.model,
    serial_number = desc.serial,
    sw_version = desc.sw_version,
    hw_version = desc.hw_version,
  }
end

local NUMBER_LIMITS = "a writable number needs min, max and step (Home Assistant would otherwise "
  .. "assume 1..100 in steps of 1)"

local function number_config(dev, p, c)
  local kind = point.kind(p)
  local step = p.step or (kind == "integer" and 1) or nil
  if type(p.min) ~= "number" or type(p.max) ~= "number" or type(step) ~= "number" then
    error(format("%s: %s", where(dev, p), NUMBER_LIMITS), 0)
  end
  c.min, c.max, c.step = p.min, p.max, step
  c.mode = p.mode or "box"
  c.unit_of_measurement = p.unit
  c.device_class = p.device_class
end

--- ha.check(p) -> the mistakes that keep a point from being announced (an
--- array of messages, empty when it can be): for a sensor, device_class,
--- state_class and unit that Home Assistant does not accept together; for
--- a writable number, a missing min, max or step. entities() raises with
--- the first of them.
function M.check(p)
  local component = component_of(p)
  if component == "sensor" then return class_mistakes(p) end
  if component == "number" then
    local step = p.step or (point.kind(p) == "integer" and 1) or nil
    if type(p.min) ~= "number" or type(p.max) ~= "number" or type(step) ~= "number" then
      return { NUMBER_LIMITS }
    end
  end
  return {}
end

-- The diagnostic entities of a polled device: its state, last error and
-- latency, under <prefix>/<device>/diagnostics/. Their availability is the
-- engine's alone, so that they stay visible while the device is offline:
-- that is when they matter.
M.diagnostics = {
  { name = "device_state", label = "Device state", type = "enum",
    options = { "starting", "ok", "stale", "offline", "asleep" }, entity_category = "diagnostic" },
  { name = "last_error", label = "Last error", type = "string", entity_category = "diagnostic" },
  { name = "poll_latency", label = "Poll latency", unit = "ms", device_class = "duration",
    state_class = "measurement",
    precision = 1, entity_category = "diagnostic" },
}

local function entity(dev, p, component, state_topic, availability, device, origin, node, opts)
  local c = {
    name = p.label or humanize(p.name),
    unique_id = node .. "_" .. dev.id .. "_" .. p.name,
    state_topic = state_topic,
    availability = availability,
    availability_mode = "all",
    device = device,
    origin = origin,
    icon = p.icon,
    entity_category = p.entity_category,
  }
  if p.writable then
    c.command_topic = state_topic .. "/set"
  end
  if component == "sensor" then
    check_classes(dev, p)
    if point.kind(p) == "enum" then
      c.device_class = "enum"
      c.options = p.options
    else
      c.device_class = p.device_class
      c.state_class = p.state_class
      c.unit_of_measurement = p.unit
      c.suggested_display_precision = p.precision
    end
    if p.entity_category ~= "diagnostic" then c.expire_after = opts.expire_after end
  elseif component == "binary_sensor" then
    c.payload_on, c.payload_off = "ON", "OFF"
    c.device_class = p.device_class
    c.expire_after = opts.expire_after
  elseif component == "number" then
    number_config(dev, p, c)
  elseif component == "select" then
    c.options = p.options
  elseif component == "switch" then
    c.payload_on, c.payload_off = "ON", "OFF"
    c.state_on, c.state_off = "ON", "OFF"
  elseif component == "text" then
    c.max = p.max_length or 255
  end
  return c
end

--- ha.entities(dev, desc, opts) -> array of {component, object_id, topic,
--- config, point}. desc is dev:describe()'s result (nil: the profile's
--- facts). opts: prefix (state topics, default "moondog"), discovery_prefix
--- ("homeassistant"), node (default: the prefix made topic-safe),
--- expire_after (seconds, for sensors; nil: none), points (the points to
--- announce; default the profile's), diagnostics (true: add the device's
--- diagnostic entities), availability (false: the engine status only),
--- state (true: the points' values are in one JSON object on
--- <prefix>/<device>/state, read with value_template; commands stay on
--- <prefix>/<device>/<point>/set).
function M.entities(dev, desc, opts)
  opts = opts or {}
  local prefix = opts.prefix or "moondog"
  local node = topic_safe(opts.node or prefix)
  local dprefix = opts.discovery_prefix or M.DISCOVERY_PREFIX
  local device = device_block(node, dev, desc)
  local availability = {
    { topic = prefix .. "/status" },
    { topic = format("%s/%s/availability", prefix, dev.id) },
  }
  if opts.availability == false then availability = { availability[1] } end
  local origin = { name = "moondog", sw_version = mdcore.version }
  local out = {}
  local function add(p, component, state_topic, avail)
    local object_id = dev.id .. "_" .. p.name
    out[#out + 1] = {
      component = component, object_id = object_id, point = p,
      config = entity(dev, p, component, state_topic, avail, device, origin, node, opts),
      topic = format("%s/%s/%s/%s/config", dprefix, component, node, object_id),
    }
  end
  local state_topic = opts.state and format("%s/%s/state", prefix, dev.id)
  for _, p in ipairs(opts.points or dev.profile.points) do
    add(p, component_of(p), format("%s/%s/%s", prefix, dev.id, p.name), availability)
    if state_topic then -- one JSON state message per device (publish's mode "state")
      local c = out[#out].config
      c.state_topic, c.value_template = state_topic, format("{{ value_json.%s }}", p.name)
    end
  end
  if opts.diagnostics then
    for _, p in ipairs(M.diagnostics) do
      add(p, "sensor", format("%s/%s/diagnostics/%s", prefix, dev.id, p.name), { availability[1] })
    end
  end
  return out
end

local function publish_all(client, list, payload_of, opts)
  local n = 0
  for _, e in ipairs(list) do
    local payload = payload_of(e)
    local ok, err, code = client:publish(e.topic, payload, { qos = 1, retain = true })
    if not ok then return nil, err, code end
    if opts.on_publish then opts.on_publish(e.topic, payload) end
    n = n + 1
  end
  return n
end

--- ha.announce(client, dev, desc, opts) -> number of entities, or nil,
--- message, code. Retained QoS 1 config messages (queued while the broker
--- is away).
function M.announce(client, dev, desc, opts)
  opts = opts or {}
  return publish_all(client, M.entities(dev, desc, opts), function(e) return cjson.encode(e.config) end, opts)
end

--- ha.device_config(dev, desc, opts [, removed]) -> topic, payload: the
--- whole device in one message (Home Assistant's device-based discovery,
--- homeassistant/device/<node>_<device>/config with its components under
--- cmps). removed: {object_id = component} of entities to take away (sent
--- as a component with only its platform, which removes it).
function M.device_config(dev, desc, opts, removed)
  local list = M.entities(dev, desc, opts)
  local node = topic_safe(opts.node or opts.prefix or "moondog")
  local dprefix = opts.discovery_prefix or M.DISCOVERY_PREFIX
  local cmps, device, origin = {}, nil, nil
  for _, e in ipairs(list) do
    local c = {}
    for k, v in pairs(e.config) do c[k] = v end
    device, origin = c.device, c.origin
    c.device, c.origin = nil, nil
    c.p = e.component
    cmps[e.object_id] = c
  end
  for object_id, component in pairs(removed or {}) do
    if not cmps[object_id] then cmps[object_id] = { p = component } end
  end
  device = device or device_block(node, dev, desc)
  origin = origin or { name = "moondog", sw_version = mdcore.version }
  return format("%s/device/%s_%s/config", dprefix, node, dev.id),
    cjson.encode({ dev = device, o = origin, cmps = cmps })
end

--- ha.clear(client, dev, opts) -> number of entities: an empty retained
--- config for each, which removes the entity from Home Assistant. Only
--- for a device that is gone for good.
function M.clear(client, dev, opts)
  opts = opts or {}
  return publish_all(client, M.entities(dev, nil, opts), function() return "" end, opts)
end

--- ha.on_online(client, fn, opts) -> subscription: fn() runs whenever Home
--- Assistant publishes "online" on <discovery_prefix>/status (it started or
--- reconnected and may have lost its entities).
function M.on_online(client, fn, opts)
  opts = opts or {}
  local topic = (opts.discovery_prefix or M.DISCOVERY_PREFIX) .. "/status"
  return client:subscribe(topic, function(_, payload)
    if payload == "online" then fn() end
  end, { qos = 1 })
end

return M
