-- moondog.rct.client: talk to an RCT Power inverter or battery over TCP.
--
--   local rct = require "moondog.rct"                 -- also md.rct
--   local c = assert(rct.connect("192.168.1.60"))     -- port 8899 unless given
--   local soc = c:read("battery.soc")                 -- 0.62 (a fraction), or nil, err, code
--   local values, errors = c:read_many({ "battery.soc", "g_sync.p_ac_grid_sum_lp" })
--   c:write("power_mng.soc_min", 0.1)                 -- only objects known to be writable
--   local series = c:read_log("logger.minutes_soc_log_ts", os.time())
--   local task = c:poll({ "battery.soc" }, 10, function(values, errors) ... end)
--   c:subscribe("battery.soc", function(value) ... end)   -- device pushes (READ_PERIODICALLY)
--   c:close()
--
-- Objects are named as in the registry ("battery.soc"), or given by id
-- (0x959930BF or "0x959930BF"). An id the registry does not know is read
-- all the same and comes back as raw bytes; an unknown name raises.
--
-- Design. One TCP connection, one reader task per connection, and any
-- number of requests in flight: each request puts itself in a FIFO per
-- object id and waits on its own event; the reader parses what arrives
-- (moondog.rct.codec) and hands each answer to the oldest request for its
-- id. read_many sends all its frames in one write and then waits, so a
-- hundred objects cost about one round trip. The device sends no error
-- frames: a request that gets no answer times out (opts.timeout, default
-- 2 s), and a garbled answer (bad CRC) is dropped and so times out too.
-- Timeouts, lost connections and answers that do not decode are retried
-- (opts.retries, default 2) on the same or a new connection.
--
-- Reconnect: these devices accept few clients and drop idle ones. When the
-- connection drops, waiting requests fail with "connection_lost" (and are
-- retried), and the next request connects again. An idle client holds no
-- task that keeps the engine running.
--
-- Writing: only objects marked writable in devices/rct/registry.lua (see
-- the rule there). Others are refused with code "not_writable" and never
-- sent. A value of the wrong Lua type or out of range for the object's
-- type raises. The device answers a write with the value it now holds,
-- which write returns as its second result.
--
-- Codes: "timeout", "connection_lost", "malformed" (an answer that does
-- not decode), "dns", "refused", "unreachable", "connect_timeout", "connect",
-- "not_writable", "closed".

local md = require "moondog"
local codec = require "moondog.rct.codec"
local registry = require "moondog.rct.registry"
local stream = require "moondog.stream"
local event = require "moondog.event"

local format = string.format

local M = {}

local Client = {}
Client.__index = Client
M.Client = Client

M.defaults = { port = 8899, timeout = 2, retries = 2, connect_timeout = 5 }

local PLANT = 0x40
local RESPONSE, LONG_RESPONSE = 0x05, 0x06

-- Failures where asking again can help.
local retryable = { timeout = true, connection_lost = true, malformed = true }

-- {===== objects =====

-- entry (or nil for an id the registry does not know), id.
local function resolve(key)
  if math.type(key) == "integer" then
    if key < 0 or key > 0xFFFFFFFF then
      error(format("object id %d is out of range 0..0xFFFFFFFF", key), 3)
    end
    return registry.get(key), key
  end
  if type(key) == "table" and math.type(key.id) == "integer" then
    return key, key.id
  end
  if type(key) ~= "string" then
    error("expected an RCT object name or id, got " .. type(key), 3)
  end
  local id = registry.parse_id(key)
  if id then
    return registry.get(id), id
  end
  local e = registry.get(key)
  if not e then
    error(format("unknown RCT object '%s' (`moondog rct list %s` searches the names)", key,
      key:match("[%w_]+") or ""), 3)
  end
  return e, e.id
end

local function describe(e, id)
  return e and format("%s (%s)", e.name, registry.hex(id)) or registry.hex(id)
end

-- }=====

-- {===== connection and reader =====

local function check_open(self)
  if self.closed then
    error("attempt to use a closed RCT client", 3)
  end
end

--- Fail every request waiting on conn and forget the connection.
function Client:_lost(conn, err, code)
  if self.conn ~= conn then
    return
  end
  self.conn = nil
  conn:close()
  self.counters.disconnects = self.counters.disconnects + 1
  local pending = self.pending
  self.pending = {}
  for _, queue in pairs(pending) do
    for _, req in ipairs(queue) do
      req.ev:set(nil, err, code)
    end
  end
  self:_resubscribe_later()
end

-- Pushes only come over an open connection: with subscriptions, reconnect
-- in the background (backing off to 30 s) instead of on the next request.
function Client:_resubscribe_later()
  if self.resubscriber or self.closed or not next(self.subs) then
    return
  end
  self.resubscriber = md.spawn(function()
    local pause = 0.5
    while not self.closed and next(self.subs) and not self:_connect() do
      md.sleep(pause)
      pause = math.min(pause * 2, 30)
    end
    self.resubscriber = nil
  end)
  self.resubscriber:name("rct reconnect " .. self.target)
end

-- A frame from the device: an answer for the oldest request for its id,
-- else a push for a subscriber.
function Client:_dispatch(command, oid, payload, address)
  local base = command & ~PLANT
  if base ~= RESPONSE and base ~= LONG_RESPONSE or address ~= self.address then
    self.counters.ignored = self.counters.ignored + 1
    return
  end
  local queue = self.pending[oid]
  local req = queue and table.remove(queue, 1)
  if req then
    if #queue == 0 then
      self.pending[oid] = nil
    end
    self.counters.answers = self.counters.answers + 1
    req.ev:set(payload)
    return
  end
  local sub = self.subs[oid]
  if sub then
    self.counters.pushes = self.counters.pushes + 1
    local value = payload
    if sub.type then
      value = codec.decode(sub.type, payload)
    end
    if value ~= nil then
      md.spawn(sub.fn, value, sub.key)
    end
  else
    self.counters.unexpected = self.counters.unexpected + 1
  end
end

local function reader(self, conn, parser)
  while true do
    local data, err, code = conn:read(65536)
    if not data then
      self:_lost(conn, err, code)
      return
    end
    parser:push(data)
    while true do
      local command, oid, payload, address = parser:next()
      if command == nil then
        break
      elseif command then
        self:_dispatch(command, oid, payload, address)
      else -- oid: message, payload: code
        self.counters.bad_frames = self.counters.bad_frames + 1
        md.log.debug("rct %s: dropped a frame: %s", self.target, oid)
      end
    end
  end
end

--- Connect unless connected; one connect at a time, others wait for it.
function Client:_connect()
  if self.conn then
    return true
  end
  if self.connecting then
    local ok, err, code = self.connecting:wait()
    if self.conn then
      return true
    end
    return ok, err, code
  end
  local ev = event.new()
  self.connecting = ev
  -- If this task is cancelled mid-connect, the others must not wait forever.
  local _guard <close> = setmetatable({}, { __close = function()
    if self.connecting == ev then
      self.connecting = nil
      ev:set(nil, "connecting was interrupted", "connect")
    end
  end })
  local conn, err, code = stream.connect(self.host, self.port, { timeout = self.connect_timeout })
  self.connecting = nil
  if not conn then
    ev:set(nil, err, code)
    return nil, err, code
  end
  -- An idle client must not keep the engine running; one with subscriptions does.
  conn:keepalive(next(self.subs) ~= nil)
  self.conn = conn
  self.counters.connects = self.counters.connects + 1
  local parser = codec.parser()
  self.parser = parser
  self.reader = md.spawn(reader, self, conn, parser)
  self.reader:name("rct reader " .. self.target)
  -- Registrations for pushes belong to a connection: renew them.
  local frames = {}
  for oid in pairs(self.subs) do
    frames[#frames + 1] = codec.build(self:_command("read_periodically"), oid, "", self.address)
  end
  if #frames > 0 then
    conn:write(table.concat(frames))
  end
  ev:set(true)
  return true
end

function Client:_command(name)
  return self.address and "plant_" .. name or name
end

-- }=====

-- {===== requests =====

-- Remove a request that gave up from its queue (its answer may come late).
function Client:_forget(req)
  local queue = self.pending[req.oid]
  if not queue then return end
  for i, r in ipairs(queue) do
    if r == req then
      table.remove(queue, i)
      break
    end
  end
  if #queue == 0 then
    self.pending[req.oid] = nil
  end
end

-- Decode an answer into req.value, or set req.err/req.code.
local function decode(req)
  if req.raw or not req.type then
    req.value = req.rx
    return
  end
  local value, err = codec.decode(req.type, req.rx)
  if value == nil then
    req.err, req.code = format("%s: %s", req.what, err), "malformed"
  else
    req.value = value
  end
end

-- One attempt for every request in reqs: frames out in one write, then
-- each waits for its answer until the common deadline.
function Client:_exchange(reqs, timeout)
  local ok, err, code = self:_connect()
  if not ok then
    for _, req in ipairs(reqs) do
      req.err, req.code = err, code
    end
    return
  end
  local conn = self.conn
  local frames = {}
  for i, req in ipairs(reqs) do
    req.ev, req.rx, req.err, req.code = event.new(), nil, nil, nil
    local queue = self.pending[req.oid]
    if not queue then
      queue = {}
      self.pending[req.oid] = queue
    end
    queue[#queue + 1] = req
    frames[i] = codec.build(req.command, req.oid, req.payload, self.address)
  end
  self.counters.requests = self.counters.requests + #reqs
  local sent, werr, wcode = conn:write(table.concat(frames), timeout)
  if not sent then
    self:_lost(conn, werr, wcode)
  end
  local deadline = md.now() + timeout
  for _, req in ipairs(reqs) do
    local rx, rerr, rcode = req.ev:wait(math.max(0, deadline - md.now()))
    if rx then
      req.rx = rx
      decode(req)
    else
      self:_forget(req)
      if rcode == "timeout" then
        self.counters.timeouts = self.counters.timeouts + 1
        rerr = format("no answer from %s for %s within %g s", self.target, req.what, timeout)
      end
      req.err, req.code = rerr, rcode
    end
  end
end

-- Run requests with retries; each ends with req.value or req.err/req.code.
function Client:_run(reqs, opts)
  check_open(self)
  local timeout = opts and opts.timeout or self.timeout
  local retries = opts and opts.retries or self.retries
  local todo = reqs
  for attempt = 0, retries do
    self:_exchange(todo, timeout)
    local again = {}
    for _, req in ipairs(todo) do
      if req.err and retryable[req.code] and attempt < retries then
        again[#again + 1] = req
      end
    end
    if #again == 0 or self.closed then
      break
    end
    self.counters.retries = self.counters.retries + #again
    todo = again
  end
end

-- One request with retries: its value, or nil, err, code.
function Client:_one(req, opts)
  self:_run({ req }, opts)
  if req.err then
    return nil, req.err, req.code
  end
  return req.value
end

local function read_request(self, key, opts)
  local e, id = resolve(key)
  return {
    key = key, oid = id, command = self:_command("read"), payload = "",
    type = e and e.response, raw = opts and opts.raw, what = "reading " .. describe(e, id),
  }
end

--- client:read(object [, {timeout =, retries =, raw = true}]) -> value | nil, err, code
--- The value decoded by the registry's type (raw bytes for unknown ids or
--- with raw = true).
function Client:read(key, opts)
  return self:_one(read_request(self, key, opts), opts)
end

--- client:read_many({object, ...} [, opts]) -> values, errors
--- values[object] = value for every object that answered; errors is nil
--- when all did, else errors[object] = {message =, code =}. The objects'
--- requests are all in flight at once.
function Client:read_many(keys, opts)
  assert(type(keys) == "table", "read_many: expected a list of objects")
  local reqs = {}
  for i, key in ipairs(keys) do
    reqs[i] = read_request(self, key, opts)
  end
  self:_run(reqs, opts)
  local values, errors = {}, nil
  for _, req in ipairs(reqs) do
    if req.err then
      errors = errors or {}
      errors[req.key] = { message = req.err, code = req.code }
    else
      values[req.key] = req.value
    end
  end
  return values, errors
end

-- The payload of a write of value to entry e; raises when it does not fit.
local function encode_for(e, value)
  if e.enum and type(value) == "string" then
    for k, symbol in pairs(e.enum) do
      if symbol == value then
        value = k
        break
      end
    end
    if type(value) == "string" then
      error(format("'%s' is not a value of %s", value, e.name), 3)
    end
  end
  local payload, why = codec.encode(e.type, value)
  if not payload then
    error(format("cannot write %s to %s (%s): %s", tostring(value), e.name, e.type, why), 3)
  end
  return payload
end

--- client:write(object, value [, opts]) -> true, value now held | nil, err, code
function Client:write(key, value, opts)
  check_open(self)
  local e, id = resolve(key)
  if not (e and e.writable) then
    return nil, format("%s is not known to be writable; moondog writes only the objects listed "
      .. "as writable in devices/rct/registry.lua", describe(e, id)), "not_writable"
  end
  local payload = encode_for(e, value)
  local req = {
    key = key, oid = id, payload = payload, type = e.type, what = "writing " .. describe(e, id),
    command = self:_command(#payload > codec.max_short_payload and "long_write" or "write"),
  }
  self:_run({ req }, opts)
  if req.err then
    return nil, req.err, req.code
  end
  self.counters.writes = self.counters.writes + 1
  return true, req.value
end

--- client:read_log(object, time [, opts]) -> series | nil, err, code
--- For the logger objects (TIMESERIES / EVENT_TABLE answers): the entries
--- logged before `time` (unix seconds). Page backwards by asking again
--- with the oldest time received.
function Client:read_log(key, time, opts)
  check_open(self)
  local e, id = resolve(key)
  if not (e and (e.response == "TIMESERIES" or e.response == "EVENT_TABLE")) then
    error(format("%s is not a logger object (its answer is not a time series or event table)",
      describe(e, id)), 2)
  end
  local req = {
    key = key, oid = id, command = self:_command("write"), type = e.response,
    payload = codec.encode(e.type, math.tointeger(time) or error("time must be an integer", 2))
      or error("time must be 0..0xFFFFFFFF", 2),
    what = "reading the log " .. describe(e, id),
  }
  return self:_one(req, opts)
end

--- client:poll(objects, period, fn [, opts]) -> task: every `period`
--- seconds, read_many(objects) and call fn(values, errors). Cancel the
--- task to stop.
function Client:poll(keys, period, fn, opts)
  assert(type(fn) == "function", "poll: expected a function")
  local task = md.every(period, function()
    if not self.closed then
      fn(self:read_many(keys, opts))
    end
  end)
  task:name("rct poll " .. self.target)
  return task
end

--- client:subscribe(object, fn) -> first value | nil, err, code
--- Ask the device to push the object (READ_PERIODICALLY); fn(value, object)
--- then runs as a new task for every push, every pas.period seconds. The
--- registration is renewed after a reconnect. The device has no way to
--- cancel one registration: writing 0 to pas.period clears them all.
function Client:subscribe(key, fn)
  assert(type(fn) == "function", "subscribe: expected a function")
  local e, id = resolve(key)
  local req = {
    key = key, oid = id, command = self:_command("read_periodically"), payload = "",
    type = e and e.response, what = "subscribing to " .. describe(e, id),
  }
  self:_run({ req })
  if req.err then
    return nil, req.err, req.code
  end
  -- Only now: a connect made for this request must not register it twice.
  self.subs[id] = { fn = fn, type = e and e.response, key = key }
  if self.conn then
    self.conn:keepalive(true)
  end
  return req.value
end

--- client:unsubscribe(object): stop calling its function (pushes that
--- still come are ignored).
function Client:unsubscribe(key)
  local _, id = resolve(key)
  self.subs[id] = nil
  if self.conn and not next(self.subs) then
    self.conn:keepalive(false)
  end
end

--- client:connected() -> whether a connection is open now.
function Client:connected()
  return self.conn ~= nil
end

--- client:stats() -> counters: requests, answers, timeouts, retries, writes,
--- connects, disconnects, bad_frames, pushes, ignored, unexpected, noise.
function Client:stats()
  local s = {}
  for k, v in pairs(self.counters) do
    s[k] = v
  end
  s.noise = self.parser and self.parser:noise() or 0
  return s
end

--- client:close(): end the connection; waiting requests fail with "closed".
function Client:close()
  if self.closed then return end
  self.closed = true
  for _, field in ipairs({ "reader", "resubscriber" }) do
    if self[field] then
      self[field]:cancel()
      self[field] = nil
    end
  end
  local conn = self.conn
  if conn then
    self:_lost(conn, format("the RCT client for %s was closed", self.target), "closed")
  end
end

Client.__close = Client.close

function Client:__tostring()
  return format("rct client %s%s", self.target, self.closed and " (closed)" or "")
end

-- }=====

--- client.new(host, port [, opts]) -> a client that connects on first use.
--- opts: timeout (s per request, 2), retries (2), connect_timeout (s, 5),
--- address (plant address: talk to that member through a plant leader).
function M.new(host, port, opts)
  assert(type(host) == "string" and host ~= "", "rct client: expected a host")
  port = port or M.defaults.port
  assert(math.type(port) == "integer" and port >= 1 and port <= 65535, "rct client: port must be 1..65535")
  opts = opts or {}
  local address = opts.address
  assert(address == nil or math.type(address) == "integer", "rct client: address must be an integer")
  return setmetatable({
    host = host, port = port, address = address,
    target = host:find(":", 1, true) and format("[%s]:%d", host, port) or format("%s:%d", host, port),
    timeout = opts.timeout or M.defaults.timeout,
    retries = opts.retries or M.defaults.retries,
    connect_timeout = opts.connect_timeout or M.defaults.connect_timeout,
    pending = {}, subs = {},
    counters = {
      requests = 0, answers = 0, timeouts = 0, retries = 0, writes = 0, connects = 0,
      disconnects = 0, bad_frames = 0, pushes = 0, ignored = 0, unexpected = 0,
    },
  }, Client)
end

return M
