-- moondog.growatt.proxy: a proxy between Growatt dataloggers and Growatt's
-- cloud that forwards every byte unchanged and decodes a copy into site
-- values (md.growatt.proxy).
--
--   local site = md.site.new{ name = "home" }
--   local pub = site:publish{ mqtt = { host = "127.0.0.1" } }
--   local p = assert(md.growatt.proxy.start{
--     listen = "0.0.0.0:5279",                -- default
--     cloud = "server.growatt.com:5279",      -- default; false: standalone
--     site = site, publisher = pub,           -- both optional
--   })
--   p:on_record(function(logger, rtype, raw, rec) ... end)   -- a task per record
--   p:loggers()     --> {logger, ...}: logger.serial, logger:stats()
--   p:port(), p:stats(), p:close()
--
-- Forwarding. Each datalogger connection gets its own upstream connection
-- and two tasks that only read and write: logger -> cloud and cloud ->
-- logger, the bytes exactly as read. The decoding copy of each chunk goes
-- into a queue that a third task (the decoder) drains, so decoding, the
-- site, MQTT and hooks are never in the forwarding path: a slow or dead
-- broker delays nothing, and a decoder that falls more than 1 MB behind
-- drops its copy (counted as `decode_dropped`) instead of holding bytes.
--
-- Standalone. With cloud = false, or when the cloud does not accept the
-- connection within cloud_timeout (10 s), or drops it later, the decoder
-- answers the logger as the server would: an ACK for every announce, data,
-- buffered and meter record, the ping echoed, and the clock set (config
-- register 31) after each announce. A logger that gets no answers buffers
-- its records instead of sending live ones.
--
-- Values. Each datalogger/inverter pair is a site device of values
-- ("growatt_<inverter serial>"), made on its first live record, with the
-- points of its layout (or reg_<n> for every register of a record without
-- one). Buffered records (0x50) never touch those values: they go to
-- <prefix>/growatt/<inverter>/buffered as JSON with their own time. The
-- device is offline once no record came for `availability_factor` (3)
-- upload intervals (measured between records; 300 s until two came).
--
-- Counters per logger (kept across reconnects, by serial): records,
-- buffered, bytes_up, bytes_down, crc_errors (frames the decoder could not
-- read: they were forwarded all the same), commands (from the cloud),
-- connections, last_record (wall-clock time), standalone.

local md = require "moondog"
local stream = require "moondog.stream"
local event = require "moondog.event"
local core = require "moondog.growatt.core"
local record = require "moondog.growatt.record"

local M = {}

local format = string.format

local QUEUE_MAX = 1024 * 1024
local ACKED = { [0x03] = true, [0x04] = true, [0x50] = true, [0x1b] = true, [0x20] = true }
local COMMANDS = { [0x05] = true, [0x06] = true, [0x10] = true, [0x18] = true, [0x19] = true }

local Proxy = {}
Proxy.__index = Proxy

local Logger = {}
Logger.__index = Logger

--- "host:port" | "[v6]:port" | "host" -> host, port
function M.parse_hostport(s, default_port)
  if type(s) ~= "string" or s == "" then return nil, "expected HOST:PORT" end
  local h, p = s:match("^%[(.+)%]:(%d+)$")
  if not h then h, p = s:match("^([^:]+):(%d+)$") end
  if not h then
    if s:find(":", 1, true) and not s:match("^%[") then return nil, "expected HOST:PORT, got " .. s end
    h, p = s:gsub("^%[(.*)%]$", "%1"), default_port
  end
  p = tonumber(p)
  if not p or p < 0 or p > 65535 then return nil, "port must be 0..65535 in " .. s end
  return h, p
end

-- {===== loggers =====

local function new_logger(serial)
  return setmetatable({
    serial = serial,
    counts = { records = 0, buffered = 0, bytes_up = 0, bytes_down = 0, crc_errors = 0, commands = 0,
               connections = 0, decode_dropped = 0, acks_sent = 0 },
  }, Logger)
end

--- logger:stats() -> the logger's counters, its serial, last_record and standalone.
function Logger:stats()
  local s = {}
  for k, v in pairs(self.counts) do s[k] = v end
  s.serial, s.last_record, s.standalone = self.serial, self.last_record, self.standalone == true
  s.connected = self.conn ~= nil
  return s
end

-- The logger of a connection: by serial once known (counters survive a
-- reconnect), a temporary one until then.
local function bind_serial(self, c, serial)
  if not serial or serial == "" or c.logger.serial == serial then return end
  local known = self._loggers[serial]
  if known then
    for k, v in pairs(c.logger.counts) do
      if k ~= "connections" then known.counts[k] = known.counts[k] + v end
    end
    known.counts.connections = known.counts.connections + 1
    self._anon[c.logger] = nil
    c.logger = known
  else
    self._anon[c.logger] = nil
    c.logger.serial = serial
    self._loggers[serial] = c.logger
  end
  c.logger.conn = c
  c.logger.standalone = c.standalone
end

-- }=====

-- {===== values =====

local function device_id(inverter)
  return "growatt_" .. (inverter or "unknown"):lower():gsub("[^a-z0-9_]", "_")
end

local function point_def(p)
  return { unit = p.unit, device_class = p.device_class, state_class = p.state_class, resets = p.resets,
           label = p.label }
end

local function set_state(sd, state)
  local old = rawget(sd, "_state")
  if old == state then return end
  rawset(sd, "_state", state)
  sd._site:_emit("state", sd, old, state, state == "offline" and "no record from the datalogger" or nil)
end

-- The site device of a datalogger/inverter pair, with points for rec.
local function pair_device(self, c, rec)
  local id = device_id(rec.inverter)
  local pair = self._pairs[id]
  if not pair then
    pair = { id = id, points = {}, logger = c.logger }
    self._pairs[id] = pair
  end
  local site = self.site
  if rec.layout then
    for _, p in ipairs(record.layouts) do
      if p.name == rec.layout then
        for _, pt in ipairs(p.points) do
          if not pair.points[pt.name] then
            pair.points[pt.name] = true
            site:value(id .. "." .. pt.name, point_def(pt))
          end
        end
      end
    end
  else
    for reg in pairs(rec.registers or {}) do
      local n = "reg_" .. reg
      if not pair.points[n] then
        pair.points[n] = true
        site:value(id .. "." .. n, {})
      end
    end
  end
  return pair, site[id]
end

local function publish_values(self, c, rec)
  if not self.site then return end
  local pair, sd = pair_device(self, c, rec)
  local now = md.now()
  if pair.last then
    local gap = now - pair.last
    if gap >= 1 then pair.interval = math.min(math.max(gap, 10), 3600) end
  end
  pair.last = now
  -- values the site holds (not writable points): set as site:derive does
  if rec.values then
    for name, v in pairs(rec.values) do sd:_set(name, v) end
  else
    for reg, v in pairs(rec.registers or {}) do sd:_set("reg_" .. reg, v) end
  end
  set_state(sd, "ok")
end

local function json_value(v)
  if type(v) == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    return math.type(v) == "integer" and tostring(v) or format("%.10g", v)
  elseif type(v) == "boolean" then
    return tostring(v)
  elseif v == nil then
    return "null"
  end
  return format("%q", tostring(v)):gsub("\\\n", "\\n")
end

local function buffered_json(rec)
  local parts = {
    '"time":' .. json_value(rec.time), '"logger":' .. json_value(rec.logger),
    '"inverter":' .. json_value(rec.inverter), '"layout":' .. json_value(rec.layout),
  }
  local keys = {}
  if rec.values then
    for k in pairs(rec.values) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do parts[#parts + 1] = format('"%s":%s', k, json_value(rec.values[k])) end
  else
    for reg in pairs(rec.registers or {}) do keys[#keys + 1] = reg end
    table.sort(keys)
    for _, k in ipairs(keys) do parts[#parts + 1] = format('"reg_%d":%s', k, rec.registers[k]) end
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

local function publish_buffered(self, rec)
  if not self.publisher then return end
  local topic = format("%s/growatt/%s/buffered", self.publisher.prefix, device_id(rec.inverter))
  self.publisher:send(topic, buffered_json(rec), false)
end

-- }=====

-- {===== the decoder =====

local function send_logger(c, bytes)
  if c.closed then return end
  local ok = c.conn:write(bytes, 10)
  if ok then c.logger.counts.acks_sent = c.logger.counts.acks_sent + 1 end
end

-- Standalone: answer as the server would.
local function answer(self, c, f, rec)
  if f.type == 0x16 then
    send_logger(c, f.raw)
  elseif ACKED[f.type] and #f.body > 1 then
    send_logger(c, core.ack(f.seq, f.protocol, f.unit, f.type))
    if f.type == 0x03 and rec.logger then
      c.own_seq = (c.own_seq % 0xFFFF) + 1
      local now = os.date("%Y-%m-%d %H:%M:%S", math.floor(self.clock()))
      send_logger(c, core.config_set(c.own_seq, f.protocol, 1, rec.logger:sub(1, 10), 31, now))
    end
  end
end

local function hooks(self, c, f, rec)
  for _, fn in ipairs(self._hooks) do
    local t = md.spawn(fn, c.logger, f.type, f.raw, rec)
    t:name("growatt on_record hook")
  end
end

local function on_frame(self, c, f)
  local rec = record.decode(f, { log = md.log.warn, dtc = c.dtc })
  if rec.logger and (rec.kind == "data" or rec.kind == "buffered" or rec.kind == "announce"
      or rec.kind == "ping") then
    bind_serial(self, c, rec.logger)
  end
  local counts = c.logger.counts
  if c.standalone then answer(self, c, f, rec) end
  if rec.kind == "announce" then
    c.dtc = rec.dtc
    c.inverter = rec.inverter
  elseif rec.kind == "data" then
    counts.records = counts.records + 1
    c.logger.last_record = self.clock()
    publish_values(self, c, rec)
  elseif rec.kind == "buffered" then
    counts.buffered = counts.buffered + 1
    publish_buffered(self, rec)
  end
  if #self._hooks > 0 then hooks(self, c, f, rec) end
end

local function drain(c, q, parser, fn)
  local chunks = q.chunks
  q.chunks, q.bytes = {}, 0
  for _, bytes in ipairs(chunks) do
    parser:push(bytes)
    while true do
      local f, _, code = parser:next()
      if f == nil then break end
      if f then
        fn(f)
      elseif code == "crc" or code == "length" or code == "protocol" then
        c.logger.counts.crc_errors = c.logger.counts.crc_errors + 1
      end
    end
  end
end

local function decoder(self, c)
  while not c.closed or #c.up.chunks > 0 or #c.down.chunks > 0 do
    if #c.up.chunks == 0 and #c.down.chunks == 0 then
      c.wake:wait()
      c.wake = event.new()
    end
    drain(c, c.up, c.up_parser, function(f) on_frame(self, c, f) end)
    drain(c, c.down, c.down_parser, function(f)
      if COMMANDS[f.type] then c.logger.counts.commands = c.logger.counts.commands + 1 end
    end)
  end
end

-- Queue a copy for the decoder; never waits.
local function enqueue(c, q, bytes)
  if q.bytes + #bytes > QUEUE_MAX then
    c.logger.counts.decode_dropped = c.logger.counts.decode_dropped + 1
    return
  end
  q.chunks[#q.chunks + 1] = bytes
  q.bytes = q.bytes + #bytes
  c.wake:set()
end

-- }=====

-- {===== forwarding =====

local function close_conn(self, c)
  if c.closed then return end
  c.closed = true
  c.conn:close()
  if c.cloud then c.cloud:close() end
  if c.logger.conn == c then c.logger.conn = nil end
  self._conns[c] = nil
  self._anon[c.logger] = nil
  c.wake:set()
end

local function go_standalone(c, why)
  if c.standalone then return end
  c.standalone = true
  c.logger.standalone = true
  md.log.warn("growatt proxy: %s: %s; answering the datalogger myself (standalone) so that it keeps "
    .. "sending live records", c.logger.serial or c.peer, why)
end

-- logger -> cloud: read, write, then queue the copy.
local function pump_up(self, c)
  while true do
    local bytes = c.conn:read(65536)
    if not bytes then break end
    c.logger.counts.bytes_up = c.logger.counts.bytes_up + #bytes
    if c.cloud then
      local ok, err = c.cloud:write(bytes)
      if not ok then
        c.cloud:close()
        c.cloud = nil
        go_standalone(c, "the cloud connection broke (" .. tostring(err) .. ")")
      end
    end
    enqueue(c, c.up, bytes)
  end
  close_conn(self, c)
end

-- cloud -> logger
local function pump_down(c)
  local cloud = c.cloud
  while true do
    local bytes = cloud:read(65536)
    if not bytes then break end
    c.logger.counts.bytes_down = c.logger.counts.bytes_down + #bytes
    local ok = c.conn:write(bytes)
    if not ok then break end
    enqueue(c, c.down, bytes)
  end
  if c.cloud == cloud and not c.closed then
    cloud:close()
    c.cloud = nil
    go_standalone(c, "the cloud closed the connection")
  end
end

local function serve(self, conn)
  local logger = new_logger(nil)
  logger.counts.connections = 1
  local c = {
    conn = conn, peer = conn:peer(), logger = logger, up = { chunks = {}, bytes = 0 },
    down = { chunks = {}, bytes = 0 }, up_parser = core.parser(), down_parser = core.parser(),
    wake = event.new(), own_seq = 0, tasks = {},
  }
  logger.conn = c
  self._anon[logger] = true
  self._conns[c] = true
  c.tasks.decoder = md.spawn(decoder, self, c)
  c.tasks.decoder:name("growatt decoder " .. c.peer)
  if self.cloud_host then
    local cloud, err = stream.connect(self.cloud_host, self.cloud_port, { timeout = self.cloud_timeout })
    if cloud then
      c.cloud = cloud
      c.tasks.down = md.spawn(pump_down, c)
      c.tasks.down:name("growatt cloud->logger " .. c.peer)
    else
      go_standalone(c, format("the cloud %s:%d is unreachable (%s)", self.cloud_host, self.cloud_port,
        tostring(err)))
    end
  else
    c.standalone = true
    logger.standalone = true
  end
  pump_up(self, c)
end

local function acceptor(self)
  while true do
    local conn, err, code = self.listener:accept()
    if not conn then
      if code == "closed" then return end
      md.log.warn("growatt proxy: accept failed: %s", tostring(err))
      md.sleep(1)
    else
      local t = md.spawn(serve, self, conn)
      t:name("growatt logger->cloud " .. conn:peer())
    end
  end
end

local function availability(self)
  for _ in md.every(self.check_every) do
    local now = md.now()
    for id, pair in pairs(self._pairs) do
      local limit = (pair.interval or self.interval) * self.factor
      if pair.last and now - pair.last > limit and self.site then
        local sd = rawget(self.site, "_devices")[id]
        if sd then set_state(sd, "offline") end
      end
    end
  end
end

-- }=====

--- proxy:port() -> the port it listens on.
function Proxy:port()
  return self.listener:port()
end

--- proxy:on_record(fn): fn(logger, record_type, raw_bytes, record) runs as
--- a task for every frame the datalogger sends (record: moondog.growatt.record).
function Proxy:on_record(fn)
  assert(type(fn) == "function", "proxy:on_record: expected a function")
  self._hooks[#self._hooks + 1] = fn
end

--- proxy:loggers() -> the dataloggers seen (connected or not), by serial order.
function Proxy:loggers()
  local list = {}
  for _, l in pairs(self._loggers) do list[#list + 1] = l end
  for l in pairs(self._anon) do list[#list + 1] = l end
  table.sort(list, function(a, b) return tostring(a.serial) < tostring(b.serial) end)
  return list
end

--- proxy:stats() -> {connections = n, loggers = {serial = stats}}
function Proxy:stats()
  local s = { connections = 0, loggers = {} }
  for _ in pairs(self._conns) do s.connections = s.connections + 1 end
  for _, l in ipairs(self:loggers()) do s.loggers[l.serial or "?"] = l:stats() end
  return s
end

--- proxy:close(): stop listening and close every connection.
function Proxy:close()
  if self.closed then return end
  self.closed = true
  self.listener:close()
  if self.avail_task then self.avail_task:cancel() end
  local conns = {}
  for c in pairs(self._conns) do conns[#conns + 1] = c end
  for _, c in ipairs(conns) do close_conn(self, c) end
end

Proxy.__close = Proxy.close

--- proxy.start(opts) -> proxy, or nil, message, code. opts: listen
--- ("HOST:PORT", default "0.0.0.0:5279"), cloud ("HOST:PORT", default
--- "server.growatt.com:5279"; false: standalone), cloud_timeout (10 s),
--- site (values go there), publisher (site:publish's, for buffered
--- records), interval (300 s: upload interval until measured),
--- availability_factor (3), clock (wall-clock seconds for the clock set,
--- default md.time).
function M.start(opts)
  opts = opts or {}
  local host, port = M.parse_hostport(opts.listen or "0.0.0.0:5279", 5279)
  if not host then error("growatt proxy: listen: " .. port, 2) end
  local self = setmetatable({
    site = opts.site, publisher = opts.publisher, cloud_timeout = opts.cloud_timeout or 10,
    interval = opts.interval or 300, factor = opts.availability_factor or 3,
    check_every = opts.check_every or 10, clock = opts.clock or md.time,
    _loggers = {}, _anon = {}, _conns = {}, _pairs = {}, _hooks = {},
  }, Proxy)
  if opts.cloud ~= false then
    local ch, cp = M.parse_hostport(opts.cloud or "server.growatt.com:5279", 5279)
    if not ch then error("growatt proxy: cloud: " .. cp, 2) end
    self.cloud_host, self.cloud_port = ch, cp
  end
  local l, err, code = stream.listen(host, port)
  if not l then return nil, format("growatt proxy: cannot listen on %s:%d: %s", host, port, err), code end
  self.listener = l
  self.accept_task = md.spawn(acceptor, self)
  self.accept_task:name("growatt proxy accept")
  if self.site then
    self.avail_task = md.spawn(availability, self)
    self.avail_task:name("growatt availability")
  end
  return self
end

return M
