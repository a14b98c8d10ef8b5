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
--   local l = p:loggers()[1]
--   l:read(3000, 10), l:write(3, 50), l:config_get(4), l:config_set(4, "1")
--
-- Forwarding. Each datalogger connection gets its own upstream connection
-- and two tasks that only read and write: logger -> cloud and cloud ->
-- logger, the bytes exactly as read. The decoding copy of each chunk (but
-- a plain ACK from the cloud, see idle_ack) goes
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
-- Counters per logger (kept across reconnects, by serial; in p:stats()
-- and, with a site, as a table in site:status()): records,
-- buffered, bytes_up, bytes_down, crc_errors (frames the decoder could not
-- read: they were forwarded all the same), commands (from the cloud),
-- connections, last_record (wall-clock time), standalone, encrypted (its
-- first bytes were no Growatt frame: AES firmware, reported once).
-- SIGUSR1 writes every logger's counters to the log (and to its log file).
--
-- Log files (log_dir): one per datalogger, <log_dir>/<serial>.log, a line
-- per frame both ways (moondog.growatt.logfile: time, direction, type,
-- sequence, a decoded summary), bounded by log_max_bytes and rotated;
-- written by the decoder task, flushed every 5 s, on SIGUSR1 and on close.

local md = require "moondog"
local stream = require "moondog.stream"
local accept = require "moondog.accept"
local event = require "moondog.event"
local core = require "moondog.growatt.core"
local record = require "moondog.growatt.record"
local logfile = require "moondog.growatt.logfile"
local signal = require "moondog.signal"

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
               connections = 0, decode_dropped = 0, acks_sent = 0, own_commands = 0, blocked = 0 },
  }, Logger)
end

--- logger:stats() -> the logger's counters, its serial, last_record and standalone.
function Logger:stats()
  local s = {}
  for k, v in pairs(self.counts) do s[k] = v end
  s.serial, s.last_record, s.standalone = self.serial, self.last_record, self.standalone == true
  s.connected = self.conn ~= nil
  s.encrypted = self.encrypted == true
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

--- logger:counters_line() -> the counters as one sentence (SIGUSR1).
function Logger:counters_line()
  local c = self.counts
  return format("datalogger %s: %d records, %d buffered, %d bytes up, %d bytes down, %d CRC errors, "
    .. "%d commands from the cloud, %d own commands, %d blocked, %d connections, %d decoder copies "
    .. "dropped, last record %s%s",
    tostring(self.serial or "(no serial yet)"), c.records, c.buffered, c.bytes_up, c.bytes_down, c.crc_errors,
    c.commands, c.own_commands, c.blocked, c.connections, c.decode_dropped,
    self.last_record and os.date("%Y-%m-%dT%H:%M:%S", math.floor(self.last_record)) or "never",
    self.conn and (self.standalone and " (connected, standalone)" or " (connected)") or " (not connected)")
end

-- The logger's log file, opened once its serial is known (log_dir set).
local function log_of(self, logger)
  if not self.log_dir or not logger.serial then return nil end
  if logger.logfile == nil then
    local f, err = logfile.open(self.log_dir, logger.serial, { max_bytes = self.log_max_bytes })
    if not f then md.log.warn("growatt proxy: %s; logging to it is off", err) end
    logger.logfile = f or false
  end
  return logger.logfile or nil
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

-- The site device of a datalogger/inverter pair, with points for rec.
-- Writable points: a site value per allow-listed holding register; a
-- command (MQTT, Home Assistant, a script's write) is checked by the site
-- against the point, then written to the inverter through the logger
-- (logger:write: own sequence number, matched, timeout, queued).
-- Growatt's "Inverter Modbus RTU Protocol" v1.20/v1.24, holding
-- registers: 3 active power rate (0-100 %, 255 = no limit), 122 export
-- limit mode (0 off, 1 RS-485 meter, 2 RS-232 meter, 3 CT), 123 export
-- limit power rate (-1000..1000 in 0.1 %, signed). `scale`: the register
-- holds value / scale.
local WRITABLE = {
  { name = "active_power_rate", reg = 3, label = "Active power rate", unit = "%", min = 0, max = 100,
    step = 1, type = "integer" },
  { name = "export_limit_mode", reg = 122,
    label = "Export limit (0 off, 1 RS-485 meter, 2 RS-232 meter, 3 CT)", min = 0, max = 3, step = 1,
    type = "integer" },
  { name = "export_limit_rate", reg = 123, label = "Export limit power rate", unit = "%", min = -100,
    max = 100, step = 0.1, scale = 0.1 },
}
M.WRITABLE = WRITABLE

-- The register value for a point's value: scaled, rounded, two's
-- complement for a negative one; and back.
local function register_value(w, v)
  local r = math.floor(v / (w.scale or 1) + 0.5)
  if r < 0 then r = r + 0x10000 end
  return r
end

local function point_value(w, r)
  if w.reg == 3 and r == 255 then return 100 end -- 255: not limited
  if w.min < 0 and r >= 0x8000 then r = r - 0x10000 end
  local v = r * (w.scale or 1)
  if w.scale then v = math.floor(v / w.scale + 0.5) * w.scale end
  return math.type(v) == "float" and tonumber(string.format("%.10g", v)) or v
end

-- What the inverter holds is read once per pair (and again after a failed
-- read, at most once a minute, on the next record), so that the number
-- entities show it; a command writes only a value the inverter does not
-- hold already.
local function read_writable(self, pair, id)
  if pair.reading or (pair.read_at and md.now() - pair.read_at < 60) then return end
  pair.reading, pair.read_at = true, md.now()
  pair.read_task = md.spawn(function()
    local values, missing = {}, false
    for _, w in ipairs(WRITABLE) do
      if self.writable[w.name] and pair.known[w.name] == nil then
        local r, err = pair.logger:read(w.reg)
        local sd = self.site[id]
        if r and sd and sd:get(w.name) == nil then -- no command came in meanwhile
          pair.known[w.name] = point_value(w, r[1])
          values[w.name] = pair.known[w.name]
        elseif not r then
          missing = true
          md.log.info("growatt proxy: %s: holding register %d not read (%s); trying again later", id, w.reg,
            tostring(err))
        end
      end
    end
    pair.reading = false
    if not missing then pair.read_at = math.huge end
    local sd = self.site[id]
    if sd and next(values) then sd:update(values) end
  end)
  pair.read_task:name("growatt writable points " .. id)
end

local function add_writable(self, pair, id)
  pair.known = {}
  for _, w in ipairs(WRITABLE) do
    if self.writable[w.name] then
      self.site:value(id .. "." .. w.name, { writable = true, min = w.min, max = w.max, step = w.step,
        unit = w.unit, label = w.label, type = w.type })
      pair.points[w.name] = true
      pair.watches[#pair.watches + 1] = self.site:watch(id .. "." .. w.name, function(v)
        if v == nil or v == pair.known[w.name] then return end
        local ok, err = pair.logger:write(w.reg, register_value(w, v))
        if ok then
          pair.known[w.name] = v
          md.log.info("growatt proxy: %s.%s = %s written to holding register %d", id, w.name, tostring(v),
            w.reg)
        else
          md.log.warn("growatt proxy: %s.%s = %s not written: %s", id, w.name, tostring(v), tostring(err))
        end
      end)
    end
  end
end

-- A meter record's device: the datalogger's meter.
local function pair_key(rec)
  if rec.kind == "meter" then return "meter_" .. tostring(rec.logger) end
  return rec.inverter
end

local function pair_device(self, c, rec)
  local key = pair_key(rec)
  local id = self._ids[key]
  if not id then
    id = device_id(key)
    self._ids[key] = id
  end
  local pair = self._pairs[id]
  -- the usual record: a known pair, a layout it had before
  local sd = pair and rec.layout and pair.layouts[rec.layout] and self.site[id] -- one site lookup
  if sd then
    pair.logger = c.logger
    if pair.known and rec.kind == "data" then read_writable(self, pair, id) end
    return pair, sd
  end
  -- the points this record brings that the pair does not have yet
  local new = {}
  if rec.layout then
    for _, l in ipairs(record.layouts) do
      if l.name == rec.layout then
        for _, pt in ipairs(l.points) do
          if not (pair and pair.points[pt.name]) then
            local d = point_def(pt)
            d.name = pt.name
            new[#new + 1] = d
          end
        end
      end
    end
  else
    for reg in pairs(rec.registers or {}) do
      if not (pair and pair.points["reg_" .. reg]) then new[#new + 1] = { name = "reg_" .. reg } end
    end
  end
  if not pair then
    pair = { id = id, points = {}, logger = c.logger, watches = {}, layouts = {} }
    self._pairs[id] = pair
    if self.site then
      -- the Home Assistant device block: Growatt, the model family from the
      -- layout (and the device type code of the announce), the serials
      local model
      for _, l in ipairs(record.layouts) do
        if l.name == rec.layout then model = l.model end
      end
      new[#new + 1] = { name = "logger_serial", type = "string", label = "Datalogger serial",
                        entity_category = "diagnostic" }
      local profile = { manufacturer = "Growatt", serial = pair_key(rec),
        sw_version = "datalogger " .. tostring(rec.logger), points = new }
      if rec.kind == "meter" then
        profile.model = model
        profile.label = "Growatt meter of datalogger " .. tostring(rec.logger)
      else
        profile.model = (model or "Growatt inverter") .. (c.dtc and format(" (device type %d)", c.dtc) or "")
        profile.label = "Growatt " .. tostring(rec.inverter)
      end
      if self.publisher and self.mqtt_mode then self.publisher:mode(id, self.mqtt_mode) end
      self.site:add_pushed(id, profile)
      for _, d in ipairs(new) do pair.points[d.name] = true end
      if self.writable and rec.kind ~= "meter" then add_writable(self, pair, id) end
      new = {}
    end
  end
  pair.logger = c.logger
  if pair.known and rec.kind == "data" then read_writable(self, pair, id) end
  if #new > 0 then -- all at once: one announcement of the new points
    self.site:add_pushed(id, { points = new })
    for _, d in ipairs(new) do pair.points[d.name] = true end
  end
  if rec.layout then pair.layouts[rec.layout] = true end
  return pair, self.site[id]
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
  local values = rec.values
  if not values then
    values = {}
    for reg, v in pairs(rec.registers or {}) do values["reg_" .. reg] = v end
  end
  values.logger_serial = rec.logger
  sd:update(values)
  -- a reused values table must not carry it into a buffered record's JSON
  if c.decode_opts.reuse then values.logger_serial = nil end
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
  local lf = self.log_dir and log_of(self, c.logger)
  if f.type == 0x16 then
    send_logger(c, f.raw)
    if lf then lf:line(format("own  ping echo seq %d", f.seq)) end
  elseif ACKED[f.type] and #f.body > 1 then
    send_logger(c, core.ack(f.seq, f.protocol, f.unit, f.type))
    if lf then lf:line(format("own  ack type 0x%02x seq %d", f.type, f.seq)) end
    if f.type == 0x03 and rec.logger then
      c.own_seq = (c.own_seq % 0xFFFF) + 1
      local now = os.date("%Y-%m-%d %H:%M:%S", math.floor(self.clock()))
      send_logger(c, core.config_set(c.own_seq, f.protocol, 1, rec.logger:sub(1, 10), 31, now))
      if lf then lf:line(format("own  clock set %s seq %d", now, c.own_seq)) end
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
  c.protocol = f.protocol
  if c.cloud_seqs[f.seq] and COMMANDS[f.type] then c.cloud_seqs[f.seq] = nil end
  -- the values table is reused from record to record unless a hook may
  -- keep the record (the site and the publisher copy what they need)
  c.decode_opts.reuse = #self._hooks == 0 and c.reuse or nil
  local rec = record.decode(f, c.decode_opts)
  if rec.logger and (rec.kind == "data" or rec.kind == "buffered" or rec.kind == "announce"
      or rec.kind == "ping") then
    bind_serial(self, c, rec.logger)
  end
  local counts = c.logger.counts
  if self.log_dir then
    local lf = log_of(self, c.logger)
    if lf then lf:frame("up", f, rec) end
  end
  if c.standalone then answer(self, c, f, rec) end
  if rec.kind == "announce" then
    c.dtc = rec.dtc
    c.decode_opts.dtc, c.decode_opts.tp = rec.dtc, rec.tp
    c.down_opts.dtc, c.down_opts.tp = rec.dtc, rec.tp
    c.inverter = rec.inverter
  elseif rec.kind == "data" or rec.kind == "meter" then
    counts.records = counts.records + 1
    c.logger.last_record = self.clock()
    publish_values(self, c, rec)
  elseif rec.kind == "buffered" then
    counts.buffered = counts.buffered + 1
    publish_buffered(self, rec)
  end
  if #self._hooks > 0 then hooks(self, c, f, rec) end
end

-- A logger whose very first bytes are no Growatt frame: ShineWiFi 3.1.x
-- firmware (late 2025) negotiates a key and encrypts everything. Said
-- once per connection; the bytes were forwarded all the same.
local function encrypted(c)
  if c.said_encrypted then return end
  c.said_encrypted = true
  c.logger.encrypted = true
  md.log.warn("growatt proxy: the datalogger at %s sends bytes that are no Growatt frame from its first "
    .. "byte on: it probably runs firmware that encrypts its traffic (AES, ShineWiFi 3.1.x from late "
    .. "2025), which moondog cannot read. Its traffic is still forwarded to the cloud unchanged. For "
    .. "values, read the inverter over Modbus instead (RS-485 or a Modbus TCP adapter) with a Growatt "
    .. "profile.", c.peer)
end

-- The queue's two chunk lists take turns (no table per record): while
-- one is drained, enqueue fills the other.
local function drain(c, q, parser, fn)
  local chunks = q.chunks
  if #chunks == 0 then return end
  q.chunks, q.spare, q.bytes = q.spare or {}, nil, 0
  for i, bytes in ipairs(chunks) do
    if i > 1 then coroutine.yield() end -- a backlog: let the other tasks run between chunks
    parser:push(bytes)
    while true do
      local f, _, code = parser:next()
      if f == nil then break end
      if f then
        q.frames = (q.frames or 0) + 1
        fn(f)
      elseif code == "crc" or code == "length" or code == "protocol" then
        c.logger.counts.crc_errors = c.logger.counts.crc_errors + 1
        if q == c.up and not q.frames then encrypted(c) end
      end
    end
  end
  for i = #chunks, 1, -1 do chunks[i] = nil end
  q.spare = chunks
end

local function decoder(self, c)
  -- made once, not per wake-up
  local function up(f) on_frame(self, c, f) end
  local function down(f)
    if COMMANDS[f.type] then
      c.logger.counts.commands = c.logger.counts.commands + 1
      c.cloud_seqs[f.seq] = true
    end
    if self.log_dir then
      local lf = log_of(self, c.logger)
      if lf then lf:frame("down", f, record.decode(f, c.down_opts)) end
    end
  end
  while not c.closed or #c.up.chunks > 0 or #c.down.chunks > 0 do
    if #c.up.chunks == 0 and #c.down.chunks == 0 then
      c.wake:wait()
      c.wake:clear() -- one event per connection, not per record
    end
    drain(c, c.up, c.up_parser, up)
    drain(c, c.down, c.down_parser, down)
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

-- {===== commands =====

-- Our own commands use sequence numbers from 0xF000 up, skipping any the
-- cloud has in flight, and are matched by sequence and type; the reply is
-- taken out of the logger -> cloud stream (the cloud never sees it), so
-- neither side takes the other's answer.
local OWN_SEQ = 0xF000

-- Frame boundaries in the logger -> cloud stream, followed on every chunk
-- (one header look per frame): c.up_left bytes of the current frame are
-- still to come, c.up_tail holds the start of a header cut by a read (its
-- bytes are forwarded already; the copy is for the next look). After bytes
-- that are no frame, the next chunk is taken to start at a frame (a
-- datalogger writes each frame at once). While one of our commands waits,
-- a frame that answers it (sequence and type) is taken out of the stream;
-- one that a read cut short, or whose header a read cut short, is held
-- back until it is whole, so the cloud never sees a part of it.
local function take_reply(c, bytes)
  local pend = c.pending
  if pend and pend.reply then pend = nil end
  local lead = 0 -- bytes at the start of buf forwarded already
  local buf = bytes
  if c.hold then
    buf, c.hold = c.hold .. bytes, nil
  elseif c.up_tail then
    buf, lead, c.up_tail = c.up_tail .. bytes, #c.up_tail, nil
  end
  local pos = 1
  if c.up_left > 0 then
    local n = math.min(c.up_left, #buf)
    c.up_left = c.up_left - n
    pos = n + 1
  end
  while pos <= #buf do
    if #buf - pos + 1 < 8 then
      if pend and pos > lead then
        c.hold = buf:sub(pos)
        return buf:sub(lead + 1, pos - 1)
      end
      c.up_tail = buf:sub(pos)
      break
    end
    local seq, protocol, length, _, rtype = core.header(pos == 1 and buf or buf:sub(pos, pos + 7))
    if protocol ~= 2 and protocol ~= 5 and protocol ~= 6 then break end -- no frame: resync next chunk
    local total = 6 + length + (protocol == 2 and 0 or 2)
    if pend and seq == pend.seq and rtype == pend.type and pos > lead then
      if pos + total - 1 > #buf then
        c.hold = buf:sub(pos)
        return buf:sub(lead + 1, pos - 1)
      end
      local f = core.parse(buf:sub(pos, pos + total - 1))[1]
      if f and f.body then
        pend.reply = f
        pend.ev:set(f)
        return buf:sub(lead + 1, pos - 1) .. take_reply(c, buf:sub(pos + total))
      end
    end
    if pos + total - 1 > #buf then
      c.up_left = pos + total - 1 - #buf
      break
    end
    pos = pos + total
  end
  return lead > 0 and buf:sub(lead + 1) or buf
end

local function next_own_seq(c)
  for _ = 1, 0x1000 do
    c.own_seq = (c.own_seq + 1) % 0x1000
    local seq = OWN_SEQ + c.own_seq
    if not c.cloud_seqs[seq] then return seq end
  end
  return OWN_SEQ
end

-- One command at a time per logger, in order of arrival.
local function command(logger, rtype, build, timeout)
  local c = logger.conn
  if not c or c.closed then
    return nil, format("datalogger %s is not connected", tostring(logger.serial)), "not_connected"
  end
  if c.cmd_busy then -- wait for the turn; the lock is handed over, never released in between
    local ev = event.new()
    c.cmd_waiters[#c.cmd_waiters + 1] = ev
    ev:wait()
    if c.closed then return nil, "the datalogger disconnected", "closed" end
  end
  c.cmd_busy = true
  local seq = next_own_seq(c)
  local pend = { seq = seq, type = rtype, ev = event.new() }
  c.pending = pend
  logger.counts.own_commands = logger.counts.own_commands + 1
  local ok, err, code = c.conn:write(build(seq, c.protocol or 6, logger.serial))
  local f
  if ok then f, err, code = pend.ev:wait(timeout or 10, "the datalogger's answer") end
  c.pending = nil
  if c.hold then -- held for an answer that never came whole: on to the cloud, in order
    local held = c.hold
    c.hold = nil
    if c.cloud then c.cloud:write(held) end
    enqueue(c, c.up, held)
  end
  local nxt = table.remove(c.cmd_waiters, 1)
  if nxt then
    nxt:set() -- the next caller owns the lock now
  else
    c.cmd_busy = false
  end
  if not f then
    if code == "timeout" then
      err = format("datalogger %s did not answer command 0x%02x (sequence %d) within %g s",
        tostring(logger.serial), rtype, seq, timeout or 10)
    end
    return nil, err, code
  end
  local pad = f.protocol == 6 and 20 or 0
  return f.body:sub(11 + pad)
end

--- logger:read(reg [, count [, timeout]]) -> {v1, v2, ...} (holding
--- registers reg .. reg+count-1 of the inverter), or nil, message, code
--- ("timeout", "not_connected", "malformed").
function Logger:read(reg, count, timeout)
  count = count or 1
  assert(math.type(reg) == "integer" and reg >= 0 and reg <= 0xFFFF, "logger:read: register 0..65535")
  assert(math.type(count) == "integer" and count >= 1 and count <= 125, "logger:read: count 1..125")
  local args, err, code = command(self, 0x05, function(seq, protocol, serial)
    return core.read_holding(seq, protocol, 1, serial, reg, reg + count - 1)
  end, timeout)
  if not args then return nil, err, code end
  if #args < 4 + 2 * count then return nil, "the answer is too short", "malformed" end
  local first = string.unpack(">I2", args)
  if first ~= reg then return nil, "the answer is for another register", "malformed" end
  local values = {}
  for i = 1, count do values[i] = string.unpack(">I2", args, 5 + 2 * (i - 1)) end
  return values
end

--- logger:write(reg, value [, timeout]) -> true, or nil, message, code
function Logger:write(reg, value, timeout)
  assert(math.type(reg) == "integer" and reg >= 0 and reg <= 0xFFFF, "logger:write: register 0..65535")
  assert(math.type(value) == "integer" and value >= 0 and value <= 0xFFFF, "logger:write: value 0..65535")
  local args, err, code = command(self, 0x06, function(seq, protocol, serial)
    return core.write_holding(seq, protocol, 1, serial, reg, value)
  end, timeout)
  if not args then return nil, err, code end
  local r, result = string.unpack(">I2B", args .. "\0\0\0")
  if r ~= reg or result ~= 0 then
    return nil, format("the inverter refused the write (result %d)", result), "refused"
  end
  return true
end

--- logger:config_get(reg [, timeout]) -> the datalogger register's text
function Logger:config_get(reg, timeout)
  assert(math.type(reg) == "integer" and reg >= 0 and reg <= 0xFFFF, "logger:config_get: register 0..65535")
  local args, err, code = command(self, 0x19, function(seq, protocol, serial)
    return core.config_get(seq, protocol, 1, serial, reg, reg)
  end, timeout)
  if not args then return nil, err, code end
  local ok, r, v = pcall(string.unpack, ">I2s2", args)
  if not ok or r ~= reg then return nil, "the answer does not fit a config read", "malformed" end
  return v
end

--- logger:config_set(reg, text [, timeout]) -> true, or nil, message, code
function Logger:config_set(reg, value, timeout)
  assert(math.type(reg) == "integer" and reg >= 0 and reg <= 0xFFFF, "logger:config_set: register 0..65535")
  assert(type(value) == "string", "logger:config_set: value must be text")
  local args, err, code = command(self, 0x18, function(seq, protocol, serial)
    return core.config_set(seq, protocol, 1, serial, reg, value)
  end, timeout)
  if not args then return nil, err, code end
  local r, result = string.unpack(">I2B", args .. "\0\0\0")
  if r ~= reg or result ~= 0 then
    return nil, format("the datalogger refused (result %d)", result), "refused"
  end
  return true
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
  if c.pending then c.pending.ev:set(nil, "the datalogger disconnected", "closed") end
  for _, ev in ipairs(c.cmd_waiters) do ev:set() end
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
    bytes = take_reply(c, bytes)
    if c.cloud and #bytes > 0 then
      local ok, err = c.cloud:write(bytes)
      if not ok then
        c.cloud:close()
        c.cloud = nil
        go_standalone(c, "the cloud connection broke (" .. tostring(err) .. ")")
      end
    end
    if #bytes > 0 then enqueue(c, c.up, bytes) end
  end
  close_conn(self, c)
end

-- Blocking the cloud's commands (grott's blockcmd), when opts.block is
-- set: a config set (0x18) passes only for the datalogger registers in
-- block.config (default: 31, the clock), an inverter write (0x06, 0x10)
-- only for the holding registers in block.holding (default: none);
-- everything else (ACKs, pings, reads) passes. Each drop is logged and
-- counted (`blocked`). Frames are cut at their boundaries; a frame a read
-- cut short waits for its rest, bytes that are no frame pass unchanged.
local function allowed(self, raw, protocol, rtype)
  if rtype ~= 0x18 and rtype ~= 0x06 and rtype ~= 0x10 then return true end
  local f = core.parse(raw)[1]
  if not (f and f.body) then return true end
  local args = f.body:sub(11 + (protocol == 6 and 20 or 0))
  if #args < 4 then return true end
  local first, second = string.unpack(">I2I2", args)
  if rtype == 0x18 then return self.block.config[first] == true, "config register", first end
  local last = rtype == 0x10 and second or first
  for r = first, last do
    if not self.block.holding[r] then return false, "holding register", r end
  end
  return true
end

local function filter_down(self, c, bytes)
  local buf = c.down_hold and c.down_hold .. bytes or bytes
  c.down_hold = nil
  local out, pos = {}, 1
  while pos <= #buf do
    if #buf - pos + 1 < 8 then
      c.down_hold = buf:sub(pos)
      break
    end
    local seq, protocol, length, _, rtype = core.header(buf:sub(pos, pos + 7))
    if protocol ~= 2 and protocol ~= 5 and protocol ~= 6 then
      out[#out + 1] = buf:sub(pos)
      break
    end
    local total = 6 + length + (protocol == 2 and 0 or 2)
    if pos + total - 1 > #buf then
      c.down_hold = buf:sub(pos)
      break
    end
    local raw = buf:sub(pos, pos + total - 1)
    local ok, what, reg = allowed(self, raw, protocol, rtype)
    if ok then
      out[#out + 1] = raw
    else
      c.logger.counts.blocked = c.logger.counts.blocked + 1
      md.log.info("growatt proxy: blocked the cloud's command 0x%02x (sequence %d) to %s: %s %d is not "
        .. "allowed", rtype, seq, tostring(c.logger.serial or c.peer), what, reg)
    end
    pos = pos + total
  end
  return table.concat(out)
end

-- A chunk from the cloud that is one whole ACK (or ping echo) frame with
-- a good CRC, the down parser at a frame boundary, no log file: the
-- decoder would parse it and do nothing with it (it counts commands and
-- CRC errors, and logs), so it gets no copy. One per record: that saves
-- the decoder a wake-up per record.
local function idle_ack(self, c, bytes)
  local n = #bytes
  if n > 11 or self.log_dir or #c.down.chunks > 0 or c.down_parser:pending() > 0 then return false end
  local _, protocol, length, _, rtype = core.header(bytes)
  if not protocol or COMMANDS[rtype] or length ~= 3 then return false end
  if protocol == 2 then return n == 9 end
  if protocol ~= 5 and protocol ~= 6 or n ~= 11 then return false end
  return core.crc(bytes:sub(1, 9)) == string.unpack(">I2", bytes, 10)
end

-- cloud -> logger
local function pump_down(self, c)
  local cloud = c.cloud
  while true do
    local bytes = cloud:read(65536)
    if not bytes then break end
    c.logger.counts.bytes_down = c.logger.counts.bytes_down + #bytes
    if self.block then bytes = filter_down(self, c, bytes) end
    if #bytes > 0 then
      local ok = c.conn:write(bytes)
      if not ok then break end
      if not idle_ack(self, c, bytes) then enqueue(c, c.down, bytes) end
    end
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
    wake = event.new(), own_seq = 0, tasks = {}, cloud_seqs = {}, cmd_waiters = {}, up_left = 0,
    decode_opts = { log = md.log.warn }, reuse = {}, down_opts = {},
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
      c.tasks.down = md.spawn(pump_down, self, c)
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


local function availability(self)
  for _ in md.every(self.check_every) do
    local now = md.now()
    for id, pair in pairs(self._pairs) do
      local limit = (pair.interval or self.interval) * self.factor
      if pair.last and now - pair.last > limit and self.site then
        local sd = self.site[id]
        if sd then
          sd:expire(format("no record from the datalogger for %d s", math.floor(now - pair.last)))
        end
      end
    end
  end
end

-- SIGUSR1: every logger's counters to the log and to its log file.
local function on_usr1(self)
  while true do
    signal.wait("USR1")
    md.log.info("growatt proxy: Lua heap %d KiB", math.floor(collectgarbage("count")))
    if self.publisher then
      local st = self.publisher:stats()
      md.log.info("growatt proxy: MQTT: %d messages published, %d refused", st.published, st.failed)
    end
    local list = self:loggers()
    if #list == 0 then md.log.info("growatt proxy: no datalogger seen yet") end
    for _, l in ipairs(list) do
      local line = l:counters_line()
      md.log.info("growatt proxy: %s", line)
      local lf = log_of(self, l)
      if lf then
        lf:line("counters: " .. line)
        lf:flush()
      end
    end
  end
end

local function flusher(self)
  for _ in md.every(5) do
    for _, l in pairs(self._loggers) do
      if l.logfile then l.logfile:flush() end
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
  if self.command_socket then self.command_socket:close() end
  if self.avail_task then self.avail_task:cancel() end
  self.usr1_task:cancel()
  if self.flush_task then self.flush_task:cancel() end
  for _, pair in pairs(self._pairs) do
    for _, w in ipairs(pair.watches) do w.cancel() end
    if pair.read_task then pair.read_task:cancel() end
  end
  local conns = {}
  for c in pairs(self._conns) do conns[#conns + 1] = c end
  for _, c in ipairs(conns) do close_conn(self, c) end
  for _, l in pairs(self._loggers) do
    if l.logfile then l.logfile:close() end
  end
end

Proxy.__close = Proxy.close

--- proxy.start(opts) -> proxy, or nil, message, code. opts: listen
--- ("HOST:PORT", default "0.0.0.0:5279"), cloud ("HOST:PORT", default
--- "server.growatt.com:5279"; false: standalone), cloud_timeout (10 s),
--- site (values go there), publisher (site:publish's, for buffered
--- records), interval (300 s: upload interval until measured),
--- availability_factor (3), clock (wall-clock seconds for the clock set,
--- default md.time), command_socket ("127.0.0.1:15279", or true for that:
--- grott-async's text command socket, moondog.growatt.command_socket; off
--- by default, loopback only), block (true, or {config = {31, ...},
--- holding = {...}}: drop the cloud's config sets and inverter writes
--- except to these registers; default off), writable (true for all, or a
--- list of names: "active_power_rate" (holding register 3, %),
--- "export_limit_mode" (122), "export_limit_rate" (123, %) become writable
--- site values of each pair, written to the inverter through the logger),
--- log_dir (a log file per datalogger there; default none), log_max_bytes
--- (1 MiB: then the file is rotated to .1), mqtt_mode ("state", the
--- default: each pair's values as one JSON message per record on
--- <prefix>/<device>/state, see publish's pub:mode; "points": a message
--- per value; needs publisher).
function M.start(opts)
  opts = opts or {}
  local host, port = M.parse_hostport(opts.listen or "0.0.0.0:5279", 5279)
  if not host then error("growatt proxy: listen: " .. port, 2) end
  local self = setmetatable({
    site = opts.site, publisher = opts.publisher, cloud_timeout = opts.cloud_timeout or 10,
    interval = opts.interval or 300, factor = opts.availability_factor or 3,
    check_every = opts.check_every or 10, clock = opts.clock or md.time,
    log_dir = opts.log_dir, log_max_bytes = opts.log_max_bytes, mqtt_mode = opts.mqtt_mode or "state",
    _loggers = {}, _anon = {}, _conns = {}, _pairs = {}, _hooks = {}, _ids = {},
  }, Proxy)
  if opts.writable then
    self.writable = {}
    local names = {}
    for _, w in ipairs(WRITABLE) do names[w.name] = true end
    if opts.writable == true then
      self.writable = names
    else
      for _, name in ipairs(opts.writable) do
        if not names[name] then error("growatt proxy: writable: no such point " .. tostring(name), 2) end
        self.writable[name] = true
      end
    end
  end
  if self.mqtt_mode ~= "state" and self.mqtt_mode ~= "points" then
    error('growatt proxy: mqtt_mode must be "state" or "points"', 2)
  end
  if opts.block then
    local b = opts.block == true and {} or opts.block
    local function set(list)
      local t = {}
      for _, r in ipairs(list) do t[r] = true end
      return t
    end
    self.block = { config = set(b.config or { 31 }), holding = set(b.holding or {}) }
  end
  if opts.cloud ~= false then
    local ch, cp = M.parse_hostport(opts.cloud or "server.growatt.com:5279", 5279)
    if not ch then error("growatt proxy: cloud: " .. cp, 2) end
    self.cloud_host, self.cloud_port = ch, cp
  end
  local l, err, code = stream.listen(host, port)
  if not l then return nil, err, code end
  self.listener = l
  self.accept_task = md.spawn(accept.loop, self.listener, "growatt logger->cloud",
    function(conn) serve(self, conn) end, { pause = 1 })
  self.accept_task:name("growatt proxy accept")
  self.usr1_task = md.spawn(on_usr1, self)
  self.usr1_task:name("growatt proxy SIGUSR1")
  if self.log_dir then
    self.flush_task = md.spawn(flusher, self)
    self.flush_task:name("growatt proxy log flush")
  end
  if opts.command_socket then
    local cs, cerr, ccode = require("moondog.growatt.command_socket").start(self, {
      listen = opts.command_socket == true and "127.0.0.1:15279" or opts.command_socket })
    if not cs then
      self:close()
      return nil, cerr, ccode
    end
    self.command_socket = cs
  end
  if self.site then
    self.site:_status_section("growatt", function()
      if self.closed then return nil end
      local rows, data = {}, {}
      for _, lg in ipairs(self:loggers()) do
        local st = lg:stats()
        data[#data + 1] = st
        rows[#rows + 1] = {
          tostring(st.serial or "?"),
          st.connected and (st.standalone and "standalone" or "proxied") or "gone",
          tostring(st.records), tostring(st.buffered), tostring(st.bytes_up), tostring(st.bytes_down),
          tostring(st.crc_errors), tostring(st.commands), tostring(st.own_commands), tostring(st.blocked),
          st.last_record and os.date("%H:%M:%S", math.floor(st.last_record)) or "never",
        }
      end
      return { data = data, rows = rows, header = { "datalogger", "link", "records", "buffered", "bytes up",
        "bytes down", "crc err", "cloud cmds", "own cmds", "blocked", "last record" } }
    end)
    self.avail_task = md.spawn(availability, self)
    self.avail_task:name("growatt availability")
  end
  return self
end

return M
