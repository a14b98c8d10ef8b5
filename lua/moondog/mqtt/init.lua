-- moondog.mqtt: MQTT clients for scripts, the REPL and the publishing layer.
--
--   local mqtt = require "moondog.mqtt"                -- also md.mqtt
--   local c = assert(mqtt.connect{ host = "127.0.0.1", port = 1883 })
--   c:publish("site/pv/power", 1234)                  -- QoS 0, fire and forget
--   c:publish("site/log", "x", { qos = 1, wait = true }) -- returns once the broker has it
--   local sub = c:subscribe("site/+/set", function(topic, payload, msg) ... end)
--   c:on("connect", function(session_present) ... end)
--   print(c:status(), c:stats().queued)
--   c:close()
--
-- The client runs in C on the engine's event loop (core/mqtt.c, libmosquitto
-- without its own thread). It connects in the background and reconnects
-- forever with backoff; QoS 1/2 messages published meanwhile wait in a
-- bounded queue and are delivered after the reconnect. Each subscription's
-- handler runs in a task of its own, one message after the other, so a
-- slow handler holds up only its own subscription.
--
-- Errors: a wrong argument raises; a failure of the network or the broker
-- returns nil, message, code. Codes: "refused" (nothing listens there),
-- "connect_timeout", "unreachable", "dns", "tls", "bad_credentials",
-- "not_authorized", "refused_by_broker", "connection_lost", "protocol",
-- "not_connected" (QoS 0 while disconnected), "queue_full", "timeout",
-- "closed", "no_library", "invalid". docs/mqtt.md is the user guide.

local core = require "moondog.mqtt.core"
local mdcore = require "moondog.core"
local log = require "moondog.log"

local M = {}

local Client = core.client_methods
local c_publish, c_subscribe, c_close = Client.publish, Client.subscribe, Client.close
local c_unsubscribe = Client.unsubscribe

-- Lua-side state per client: subscriptions, event handlers.
local state = setmetatable({}, { __mode = "k" })

-- {===== options =====

local function opt_type(opts, key, want, where)
  local v = opts[key]
  if v ~= nil and type(v) ~= want then
    error(string.format("%s: option %s must be a %s, got %s", where, key, want, type(v)), 4)
  end
  return v
end

-- "host", "host:port", "[v6]:port", "mqtt://user:pass@host:port", "mqtts://host".
local function parse_address(s)
  local scheme, rest = s:match("^(mqtts?)://(.*)$")
  rest = rest or s
  local user, pass, hostport = rest:match("^([^:@/]*):?([^@/]*)@(.*)$")
  hostport = (hostport or rest):gsub("/$", "")
  local host, port = hostport:match("^%[([^%]]+)%]:?(%d*)$")
  if not host then
    host, port = hostport:match("^([^:]+):(%d+)$")
  end
  host = host or hostport
  if host == "" or host:find("[%s/]") then
    error(string.format("mqtt.connect: cannot read the broker address '%s' (expected host, host:port "
      .. "or mqtt://[user:password@]host[:port])", s), 3)
  end
  local out = { host = host, port = tonumber(port), tls = scheme == "mqtts" or nil }
  if user and user ~= "" then out.username, out.password = user, pass ~= "" and pass or nil end
  return out
end

--- mqtt.parse_address(s) -> {host=, port=, tls=, username=, password=}
M.parse_address = parse_address

-- The table core.new wants, from the user's options.
local function core_config(opts)
  local where = "mqtt.connect"
  local cfg = {}
  if opts.url then
    for k, v in pairs(parse_address(opts.url)) do cfg[k] = v end
  end
  for _, k in ipairs({ "host", "client_id", "username", "password", "name" }) do
    cfg[k] = opt_type(opts, k, "string", where) or cfg[k]
  end
  for _, k in ipairs({ "port", "keepalive", "max_inflight", "max_queued", "max_queued_bytes",
                       "max_pending", "max_pending_bytes", "connect_timeout", "protocol" }) do
    cfg[k] = opt_type(opts, k, "number", where) or cfg[k]
  end
  cfg.host = cfg.host or "127.0.0.1"
  if cfg.password then log.secret(cfg.password) end -- never in a log line
  if opts.clean ~= nil then cfg.clean = opts.clean and true or false end
  if cfg.clean == false and not cfg.client_id then
    error("mqtt.connect: a persistent session (clean = false) needs a client_id, so that the "
      .. "broker knows the client again", 3)
  end
  local queue = opt_type(opts, "queue", "table", where)
  if queue then
    cfg.max_queued = queue.messages or cfg.max_queued
    cfg.max_queued_bytes = queue.bytes or cfg.max_queued_bytes
  end
  local reconnect = opt_type(opts, "reconnect", "table", where)
  if reconnect then
    cfg.backoff_min, cfg.backoff_max = reconnect.min, reconnect.max
  end
  local tls = opts.tls
  if tls == true then tls = {} end
  if tls ~= nil and tls ~= false then
    if type(tls) ~= "table" then
      error("mqtt.connect: option tls must be true or a table "
        .. "{ca_file=, cert_file=, key_file=, insecure=}", 3)
    end
    cfg.tls = true
    cfg.ca_file, cfg.ca_path = tls.ca_file, tls.ca_path
    cfg.cert_file, cfg.key_file = tls.cert_file, tls.key_file
    cfg.tls_insecure = tls.insecure and true or false
  end
  local will = opt_type(opts, "will", "table", where)
  if will then
    if type(will.topic) ~= "string" then
      error("mqtt.connect: will needs a topic: will = {topic=, payload=, qos=1, retain=true}", 3)
    end
    cfg.will_topic = will.topic
    cfg.will_payload = M.payload(will.payload)
    cfg.will_qos = will.qos or 1
    cfg.will_retain = will.retain ~= false
  end
  return cfg
end

--- mqtt.payload(v) -> string: what a value looks like on the wire. Strings as
--- they are, integers in decimal, other numbers with up to 15 significant
--- digits, booleans as true/false, tables as JSON, nil as the empty payload.
function M.payload(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "nil" then return "" end
  if t == "number" then
    if math.type(v) == "integer" then return string.format("%d", v) end
    if v ~= v or v == math.huge or v == -math.huge then return tostring(v) end
    if v == math.floor(v) and math.abs(v) < 2^53 then return string.format("%d", math.tointeger(v)) end
    return string.format("%.15g", v)
  end
  if t == "boolean" then return tostring(v) end
  if t == "table" then return require("cjson").encode(v) end
  error("mqtt: cannot send a " .. t .. " as a payload", 3)
end

-- }=====

--- mqtt.connect(opts) -> client, or nil, message, code.
--- opts: host (default 127.0.0.1), port (1883, 8883 with TLS), or url =
--- "mqtt://user:pass@host:port" / "mqtts://host"; client_id, username,
--- password, keepalive (30 s: a silent broker is noticed within 1.5 times
--- this), clean (true; false: persistent session, needs
--- client_id), protocol (3 = MQTT 3.1.1, 5), tls = true | {ca_file=,
--- ca_path=, cert_file=, key_file=, insecure=}, will = {topic=, payload=,
--- qos=1, retain=true}, queue = {messages = 10000, bytes = 16 MiB},
--- max_inflight (20), max_pending (10000 incoming per subscription),
--- max_pending_bytes (16 MiB incoming over all subscriptions),
--- reconnect = {min = 1, max = 5} (s; a stable connection that is lost, and
--- a network change during the backoff, retry at once), connect_timeout (10 s),
--- wait (true: return once connected, or nil, message, code when the first
--- attempt fails; false: return at once and connect in the background).
function M.connect(opts)
  if type(opts) == "string" then opts = { url = opts } end
  if type(opts) ~= "table" then
    error("mqtt.connect: expected an options table such as {host = '127.0.0.1', port = 1883}", 2)
  end
  local client, err, code = core.new(core_config(opts))
  if not client then
    return nil, err, code
  end
  state[client] = { subs = {}, handlers = { connect = {}, disconnect = {} } }
  if opts.wait ~= false then
    -- the client's own connect timer reports first, with a better reason
    local ok, werr, wcode = client:wait_connected((opts.connect_timeout or 10) + 1)
    if not ok then
      c_close(client)
      return nil, werr, wcode
    end
  end
  return client
end

-- {===== client methods =====

--- c:publish(topic, payload [, {qos = 0, retain = false, wait = false, timeout = s}])
--- c:publish{topic =, payload =, qos =, retain =, wait =, timeout =}
--- Returns the message id; with wait (QoS 1/2), once the broker acknowledged
--- it. nil, message, code: "not_connected" (QoS 0 while disconnected),
--- "queue_full", "timeout", "closed".
function Client.publish(c, topic, payload, opts)
  if type(topic) == "table" then
    opts, payload, topic = topic, topic.payload, topic.topic
  end
  if type(topic) ~= "string" then
    error("publish: expected a topic string, got " .. type(topic), 2)
  end
  if type(payload) ~= "string" then payload = M.payload(payload) end
  if not opts then return c_publish(c, topic, payload, 0) end
  return c_publish(c, topic, payload, opts.qos or 0, opts.retain, opts.wait, opts.timeout)
end

local Subscription = {}
Subscription.__index = Subscription

function Subscription:close()
  if self.id then
    if self.client:status() ~= "closed" then
      c_unsubscribe(self.client, self.id)
    end
    self.id = nil
  end
end
Subscription.unsubscribe = Subscription.close
Subscription.__close = Subscription.close

function Subscription:__tostring()
  return string.format("mqtt subscription %s%s", self.filter, self.id and "" or " (closed)")
end

--- c:subscribe(filter, handler [, {qos = 0}]) -> subscription, or nil, message, code.
--- handler(topic, payload, {qos=, retain=, topic=}) runs in the
--- subscription's own task, one message after another; an error in it is
--- logged and the next message is handled. Wildcards + and # work as in MQTT.
--- Subscriptions are made again after every reconnect.
function Client.subscribe(c, filter, handler, opts)
  if type(filter) ~= "string" then
    error("subscribe: expected a topic filter string, got " .. type(filter), 2)
  end
  if type(handler) ~= "function" then
    error("subscribe: expected a handler function, got " .. type(handler), 2)
  end
  opts = opts or {}
  local id, err, code = c_subscribe(c, filter, opts.qos or 0)
  if not id then
    return nil, err, code
  end
  local sub = setmetatable({ client = c, filter = filter, id = id }, Subscription)
  sub.task = mdcore.spawn(function()
    while true do
      local topic, payload, qos, retain = c:receive(id)
      if topic == nil then break end
      local ok, herr = xpcall(handler, debug.traceback, topic, payload,
        { topic = topic, qos = qos, retain = retain })
      -- md.exit inside a handler raises the engine's stop marker (a light
      -- userdata): that is a stop, not a failure of the handler
      if not ok and type(herr) == "userdata" then error(herr, 0) end
      if not ok then
        log.error("mqtt handler for '%s' failed on %s: %s", filter, topic, tostring(herr))
      end
    end
  end)
  sub.task:name("mqtt subscription " .. filter)
  state[c].subs[sub] = true
  return sub
end

--- c:unsubscribe(subscription)
function Client.unsubscribe(c, sub)
  if getmetatable(sub) ~= Subscription or sub.client ~= c then
    error("unsubscribe: expected a subscription returned by this client's subscribe", 2)
  end
  sub:close()
  state[c].subs[sub] = nil
  return true
end

-- One task per client delivers connection events to the on() handlers.
local function run_events(c, st)
  if c:status() == "connected" then
    for _, fn in ipairs(st.handlers.connect) do
      local ok, err = xpcall(fn, debug.traceback, false)
      if not ok then log.error("mqtt connect handler failed: %s", err) end
    end
  end
  while true do
    local ev, a, b = c:next_event()
    if ev == nil then break end
    for _, fn in ipairs(st.handlers[ev == "connected" and "connect" or "disconnect"]) do
      local ok, err = xpcall(fn, debug.traceback, a, b)
      if not ok then log.error("mqtt %s handler failed: %s", ev, err) end
    end
  end
end

--- c:on("connect", fn(session_present)) or c:on("disconnect", fn(message, code)).
--- A connect handler also runs once at once if the client is connected.
--- Handlers run in the client's event task.
function Client.on(c, event, fn)
  local st = state[c]
  if not st or not st.handlers[event] then
    error("on: expected 'connect' or 'disconnect' and a function", 2)
  end
  assert(type(fn) == "function", "on: expected a function")
  table.insert(st.handlers[event], fn)
  if not st.events_task then
    st.events_task = mdcore.spawn(run_events, c, st)
    st.events_task:name("mqtt events")
  elseif event == "connect" and c:status() == "connected" then
    mdcore.spawn(fn, false)
  end
end

--- c:close([flush_timeout]) waits up to flush_timeout seconds (default 5)
--- for queued QoS 1/2 messages to be acknowledged when connected, then
--- disconnects cleanly (the broker does not send the last will). `<close>`
--- and garbage collection close at once.
function Client.close(c, flush_timeout)
  -- No flush where nothing may wait (a __close while an error unwinds, a
  -- __gc handler): closing must not replace the error in flight.
  if c:status() == "connected" and c:stats().queued > 0 and (flush_timeout or 5) > 0
     and mdcore.can_wait() then
    c:flush(flush_timeout or 5)
  end
  c_close(c)
end

-- }=====

--- mqtt.matches(filter, topic) -> bool (MQTT wildcard rules)
M.matches = core.matches
--- mqtt.check_topic(topic [, is_filter]) -> bool
M.check_topic = core.check_topic

return setmetatable(M, {
  __index = function(t, key)
    if key == "broker" or key == "publish" or key == "homeassistant" then
      local mod = require("moondog.mqtt." .. key)
      rawset(t, key, mod)
      return mod
    end
  end,
})
