-- moondog.growatt.logger_sim: a fake Growatt datalogger for tests, demos
-- and benchmarks. It connects to a server (the cloud, or a proxy), sends an
-- announce, then live data records, pings, and buffered records when asked,
-- and answers inverter register reads and writes and config reads and sets
-- from a register table of its own.
--
-- Like a real ShineWiFi/ShineLAN, it sends a record (announce, buffered,
-- data) only once the server has ACKed the one before, waiting up to
-- ack_timeout (5 s) for that ACK and then going on (counted as
-- ack_timeouts). burst = true sends records back to back without waiting
-- (yielding every 50): a stress test, not an exchange a datalogger makes,
-- whose per-record figures are those of batched reads.
--
--   local sim = require "moondog.growatt.logger_sim"
--   local l = assert(sim.start{ server = "127.0.0.1:5279", protocol = 6, records = 100,
--                               interval = 0, buffered = 2, ping_every = 10,
--                               ack_timeout = 5, burst = false })
--   l:wait(timeout)          -- until every record was sent (and ACKs came, with wait_acks)
--   l.sent, l.received        -- every byte it sent and received, in order
--   l.counts                  -- records, buffered, pings, acks, ack_timeouts, commands, answers
--   l:close()
--
-- Records carry the TL-X/MIN register groups (3000-3124, 3125-3249) with
-- values that change with the record number, so that a decoder sees a
-- known value: register 3001-3002 (PV power, 0.1 W) = 10 * n; buffered
-- record i carries n = 100 + i.
-- A chunk option sends each frame in pieces of that many bytes, to make a
-- receiver reassemble frames.

local md = require "moondog"
local stream = require "moondog.stream"
local core = require "moondog.growatt.core"
local event = require "moondog.event"

local M = {}

local format, pack = string.format, string.pack

local Sim = {}
Sim.__index = Sim

--- sim.record_body(opts, n [, time]) -> the plain body of data record n
function M.record_body(o, n, time)
  local pad = o.protocol == 6 and string.rep("\0", 20) or ""
  local t = time or { 24, 6, 1, 12, n % 60, 0 }
  local regs1 = {}
  for r = 3000, 3124 do regs1[#regs1 + 1] = pack(">I2", (r * 7 + n) % 65536) end
  regs1[1] = pack(">I2", 1)                       -- 3000 status
  regs1[2] = pack(">I2", (10 * n) >> 16)           -- 3001-3002 PV power
  regs1[3] = pack(">I2", (10 * n) & 0xFFFF)
  local regs2 = string.rep("\0\0", 125)
  return table.concat {
    o.serial, pad, o.inverter, pad, string.char(table.unpack(t)), "\2",
    pack(">I2I2", 3000, 3124), table.concat(regs1), pack(">I2I2", 3125, 3249), regs2,
  }
end

local function send(self, bytes)
  self.sent[#self.sent + 1] = bytes
  local chunk = self.o.chunk
  if chunk and chunk > 0 then
    for i = 1, #bytes, chunk do
      local ok, err, code = self.conn:write(bytes:sub(i, i + chunk - 1))
      if not ok then return nil, err, code end
    end
    return true
  end
  return self.conn:write(bytes)
end

local function next_seq(self)
  self.seq = (self.seq % 0xFFFF) + 1
  return self.seq
end

local function answer(self, f)
  local o = self.o
  if o.mute then return end
  local pad = o.protocol == 6 and 20 or 0
  local args = f.body:sub(11 + pad)
  local head = f.body:sub(1, 10 + pad)
  local reply
  if f.type == 0x05 and #args >= 4 then
    local first, last = string.unpack(">I2I2", args)
    local vals = {}
    for r = first, last do vals[#vals + 1] = pack(">I2", self.holding[r] or 0) end
    reply = head .. pack(">I2I2", first, last) .. table.concat(vals)
  elseif f.type == 0x06 and #args >= 4 then
    local reg, v = string.unpack(">I2I2", args)
    self.holding[reg] = v
    reply = head .. pack(">I2BI2", reg, 0, v)
  elseif f.type == 0x19 and #args >= 4 then
    local first = string.unpack(">I2", args)
    local v = self.config[first] or ""
    reply = head .. pack(">I2s2", first, v)
  elseif f.type == 0x18 and #args >= 4 then
    local reg, v = string.unpack(">I2s2", args)
    self.config[reg] = v
    reply = head .. pack(">I2B", reg, 0)
  end
  if reply then
    self.counts.answers = self.counts.answers + 1
    send(self, core.build(f.seq, o.protocol, f.unit, f.type, reply))
  end
end

local function reader(self)
  local p = core.parser()
  while true do
    local bytes = self.conn:read(65536)
    if not bytes then break end
    self.received[#self.received + 1] = bytes
    p:push(bytes)
    while true do
      local f = p:next()
      if f == nil then break end
      if f then
        if #f.body == 1 then
          self.counts.acks = self.counts.acks + 1
          if self.awaited == f.seq then
            self.awaited = nil
            self.acked:set(true)
          end
        elseif f.type == 0x16 then
          self.counts.ping_echoes = self.counts.ping_echoes + 1
        else
          self.counts.commands = self.counts.commands + 1
          if f.type == 0x18 then self.counts.config_sets = self.counts.config_sets + 1 end
          answer(self, f)
        end
      end
    end
  end
  self.lost = true
  if self.acked then self.acked:set(false) end
end

-- Send a record and, unless in burst mode, wait for its ACK (bounded).
local function send_record(self, rtype, body)
  local o = self.o
  local seq = next_seq(self)
  local lockstep = not o.burst and not self.lost
  if lockstep then
    self.awaited = seq
    self.acked = event.new()
  end
  local ok, err, code = send(self, core.build(seq, o.protocol, 1, rtype, body))
  if not ok then return nil, err, code end
  if lockstep and not self.acked:wait(o.ack_timeout, "the server's ACK") then
    self.awaited = nil
    if not self.lost then self.counts.ack_timeouts = self.counts.ack_timeouts + 1 end
  end
  return true
end

local function run(self)
  local o = self.o
  local pad = o.protocol == 6 and string.rep("\0", 20) or ""
  -- announce: holding registers 0-124, device type code 5100 at 43
  local hold = {}
  for r = 0, 124 do hold[#hold + 1] = pack(">I2", self.holding[r] or 0) end
  local announce = table.concat { o.serial, pad, o.inverter, pad, "\24\6\1\12\0\0", "\1",
    pack(">I2I2", 0, 124), table.concat(hold) }
  assert(send_record(self, 0x03, announce))
  for i = 1, o.buffered or 0 do
    assert(send_record(self, 0x50, M.record_body(o, 100 + i, { 24, 5, 31, 23, i % 60, 0 })))
    self.counts.buffered = self.counts.buffered + 1
  end
  for n = 1, o.records do
    local ok = send_record(self, 0x04, M.record_body(o, n))
    if not ok then break end
    self.counts.records = self.counts.records + 1
    if o.ping_every and n % o.ping_every == 0 then
      send(self, core.ping(next_seq(self), o.protocol, 1, o.serial))
      self.counts.pings = self.counts.pings + 1
    end
    if o.interval > 0 then md.sleep(o.interval) elseif o.burst and n % 50 == 0 then md.sleep(0) end
  end
  self.done:set(true)
end

--- sim:wait([timeout]) -> true once every record was sent, or nil, err, code
function Sim:wait(timeout)
  return self.done:wait(timeout, "the fake datalogger")
end

--- sim:sent_bytes(), sim:received_bytes() -> everything so far as one string
function Sim:sent_bytes() return table.concat(self.sent) end
function Sim:received_bytes() return table.concat(self.received) end

function Sim:close()
  if self.closed then return end
  self.closed = true
  if self.task then self.task:cancel() end
  self.conn:close()
end

Sim.__close = Sim.close

--- sim.start(opts) -> sim, or nil, message, code. opts: server
--- ("host:port"), protocol (6), serial ("SIMLOG0001"), inverter
--- ("SIMINV0001"), records (10), interval (seconds between records, 0),
--- buffered (records sent as 0x50 first), ping_every (records), chunk
--- (bytes per write), holding ({[reg] = v}), mute (answer no command),
--- ack_timeout (5 s: the wait for each record's ACK), burst (send without
--- waiting for ACKs).
function M.start(opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.protocol = o.protocol or 6
  o.serial = o.serial or "SIMLOG0001"
  o.inverter = o.inverter or "SIMINV0001"
  o.records = o.records or 10
  o.interval = o.interval or 0
  o.ack_timeout = o.ack_timeout or 5
  local host, port = require("moondog.growatt.proxy").parse_hostport(o.server or "", 5279)
  if not host then error("logger_sim: server: " .. tostring(port), 2) end
  local conn, err, code = stream.connect(host, port, { timeout = o.timeout or 5 })
  if not conn then return nil, format("logger_sim: %s", err), code end
  local holding = o.holding or {}
  holding[43] = holding[43] or 5100
  local self = setmetatable({
    o = o, conn = conn, seq = 0, sent = {}, received = {}, holding = holding, config = { [4] = "5" },
    done = event.new(),
    counts = { records = 0, buffered = 0, pings = 0, acks = 0, ack_timeouts = 0, ping_echoes = 0,
               commands = 0, config_sets = 0, answers = 0 },
  }, Sim)
  self.reader = md.spawn(reader, self)
  self.reader:name("growatt logger_sim reader")
  self.task = md.spawn(run, self)
  self.task:name("growatt logger_sim")
  return self
end

return M
