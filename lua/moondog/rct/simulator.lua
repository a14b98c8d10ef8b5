-- moondog.rct.simulator: an RCT Power device served by moondog on a TCP
-- port, for demos, tests, benchmarks and script development.
--
--   local sim = assert(md.rct.serve{
--     port = 8899,                       -- 0 (default): any free port; sim:port() tells
--     host = "127.0.0.1",                -- default; "*" or "0.0.0.0" for every address
--     values = { ["battery.soc"] = 0.8, [0x12345678] = "\1\2" },  -- by name or id
--     faults = { delay = 0.5 },          -- see below; sim.faults can change at any time
--     on_write = function(entry, value) end,   -- after a write was stored
--     accept_write = function(entry, value) return true end, -- false: not stored
--     max_clients = 64, idle_timeout = 300,     -- connection limit; seconds
--   })
--   sim:set("battery.soc", 0.55)         -- a demo moves values as it likes
--   sim:get("battery.soc")               --> 0.55
--   sim:stats()                          --> {requests =, answers =, writes =, ...}
--   sim:close()
--
-- Answers: READ and READ_PERIODICALLY get the object's value; a WRITE to
-- an object the registry marks writable stores the value and answers with
-- it, a WRITE to anything else changes nothing and answers the current
-- value (so does a write that opts.accept_write turns down, or whose payload
-- does not fit the object: RCT devices send no error frames, see
-- shared/reference/rct/README.md, Transport); a WRITE of a time to a
-- logger object answers a made-up time series (or event table) of the
-- entries before that time. Every registry object
-- of a supported type has a plausible default (the common power, energy,
-- battery and identity objects have realistic ones, floats by unit, the
-- rest 0, false or ""); objects of UNKNOWN type and ids outside the
-- registry without a value are not answered, as a real device does. Plant
-- frames are answered as the member they address (opts.address, if set,
-- limits that to one address). READ_PERIODICALLY registrations push their
-- objects every pas.period seconds (default 10; 0 clears them all).
--
-- Faults (sim.faults, read at every request, so tests can switch them):
--   bad_crc = n   the next n answers carry a wrong CRC
--   silent = n    the next n requests are not answered
--   drop = true   the next request closes its connection instead (once)
--   split = true  answers go out one byte per write
--   delay = s     wait s seconds before each answer
--   noise = true  noise bytes ("\0", "AT+\r") before each answer
--   idle = s      close connections that send nothing for s seconds
--                 (default opts.idle_timeout, 300 s)
--
-- Each connection is a task that parses requests with moondog.rct.codec
-- and answers all the requests of one read in one write. A request the
-- simulator cannot handle (a value that does not fit its object) closes its
-- connection. At opts.max_clients connections (default 64) a new one closes
-- the connection idle the longest. When accept fails (out of file
-- descriptors) the simulator pauses and tries again; it stops accepting only
-- when closed.

local md = require "moondog"
local codec = require "moondog.rct.codec"
local registry = require "moondog.rct.registry"
local stream = require "moondog.stream"
local accept = require "moondog.accept"

local format = string.format

local M = {}

local Server = {}
Server.__index = Server

local PLANT = 0x40
local READ, WRITE, LONG_WRITE, READ_PERIODICALLY = 0x01, 0x02, 0x03, 0x08
local RESPONSE, LONG_RESPONSE, EXTENSION = 0x05, 0x06, 0x3C
local MAX_PERIODIC = 64 -- what vendor devices take

-- {===== values =====

-- Realistic values of the objects a site reads most; fractions where the
-- device sends fractions (battery.soc 0.62 = 62 %).
local plausible = {
  ["battery.soc"] = 0.62, ["battery.soh"] = 0.98, ["battery.voltage"] = 412.5,
  ["battery.current"] = -1.2, ["battery.temperature"] = 24.5, ["battery.soc_target"] = 0.8,
  ["g_sync.p_acc_lp"] = -480.0, ["g_sync.p_ac_grid_sum_lp"] = 120.0,
  ["g_sync.p_ac_load_sum_lp"] = 850.0, ["g_sync.p_ac_sum_lp"] = 1330.0,
  ["dc_conv.dc_conv_struct[0].p_dc_lp"] = 1100.0, ["dc_conv.dc_conv_struct[1].p_dc_lp"] = 710.0,
  ["energy.e_grid_feed_total"] = 1523400.0, ["energy.e_grid_load_total"] = 2871200.0,
  ["energy.e_dc_total[0]"] = 6120300.0, ["energy.e_dc_total[1]"] = 3987100.0,
  ["energy.e_ac_total"] = 9530000.0, ["energy.e_load_total"] = 7210000.0,
  ["prim_sm.state"] = 13, ["power_mng.is_grid"] = true, ["power_mng.soc_min"] = 0.07,
  ["power_mng.soc_max"] = 0.97, ["power_mng.soc_strategy"] = 4, ["power_mng.n_batteries"] = 1,
  ["inverter_sn"] = "SIM0000000000001", ["android_description"] = "moondog RCT simulator",
  ["svnversion"] = "moondog-sim-1", ["display_struct.brightness"] = 200, ["pas.period"] = 10,
}

local by_unit = { Hz = 50.0, V = 230.0, ["°C"] = 25.0 }

local function cells()
  local list = {}
  for i = 1, 24 do
    list[i] = { temp = 24 + i % 3, mv = 3300 + i, status = 0 }
  end
  return list
end

local function resistances()
  local list = {}
  for i = 1, 24 do
    list[i] = 1.5 + (i % 4) / 8
  end
  return list
end

local function default_value(e)
  local v = plausible[e.name]
  if v ~= nil then
    return v
  end
  local t = e.response
  if t == "FLOAT" then
    return by_unit[e.unit] or 0.0
  elseif t == "BOOL" then
    return false
  elseif t == "STRING" then
    return ""
  elseif t == "BATTERY_MODULE_STATUS" then
    return cells()
  elseif t == "BATTERY_MODULE_RESISTANCE" then
    return resistances()
  elseif t == "BATTERY_MODULE_STATISTICS" then
    return {
      u_min = { cell = 3, time = 1700000000, value = 3.21 },
      u_max = { cell = 7, time = 1700000300, value = 3.48 },
      t_min = { cell = 1, time = 1700000600, value = 18.0 },
      t_max = { cell = 14, time = 1700000900, value = 31.0 },
    }
  elseif t == "TIMESERIES" or t == "EVENT_TABLE" or t == "UNKNOWN" then
    return nil -- logs are made per query; UNKNOWN has no encoding
  end
  return 0 -- the integer types and ENUM
end

-- A log answer for a query at time `before`: 5-minute entries before it.
local function log_answer(e, before)
  local log = { query = before }
  if e.response == "EVENT_TABLE" then
    log[1] = { type = 0x31, time = before - 3600, data = { before - 3500, 0x434F8000, 0 } }
    return log
  end
  for i = 1, 12 do
    local t = before - 300 * i
    log[i] = { time = t, value = 50 + 10 * math.sin(t / 3600) }
  end
  return log
end

-- }=====

-- {===== frames =====

-- "+" and the escaped bytes of body; see rctcodec.h.
local function escape(bytes)
  return (bytes:gsub("[%+%-]", "-%0"))
end

-- The same frame with its CRC changed: unescape, flip, escape again.
local function corrupt_crc(frame)
  local body = frame:sub(2):gsub("%-(.)", "%1")
  local crc = string.unpack(">I2", body, #body - 1)
  return "+" .. escape(body:sub(1, -3) .. string.pack(">I2", crc ~ 0x0101))
end

local function answer_frame(oid, payload, address)
  local base = #payload > codec.max_short_payload and LONG_RESPONSE or RESPONSE
  if address then
    return codec.build(base | PLANT, oid, payload, address)
  end
  return codec.build(base, oid, payload)
end

-- }=====

-- {===== requests =====

-- The payload answering a read of oid, or nil when the device stays silent.
function Server:_payload(oid, e)
  local v = self.values[oid]
  if not e then
    return type(v) == "string" and v or nil
  end
  if v == nil then
    v = default_value(e)
  end
  if v == nil then
    return nil
  end
  -- A value that does not fit the answer's type is a bad request: raise
  -- (see _try_request).
  return assert(codec.encode(e.response, v))
end

function Server:_store(e, payload)
  local value = codec.decode(e.type, payload)
  if value == nil then
    return -- a payload that does not fit: ignored, as a device would
  end
  if self.accept_write and not self.accept_write(e, value) then
    self.counters.refused = self.counters.refused + 1
    return -- turned down: the object keeps its value, and the answer shows it
  end
  self.values[e.id] = value
  self.counters.writes = self.counters.writes + 1
  if e.name == "pas.period" and value == 0 then
    for _, state in pairs(self.conns) do
      state.periodic, state.nperiodic = {}, 0
    end
  end
  if self.on_write then
    self.on_write(e, value)
  end
end

-- The answer payload for one request frame, or nil.
function Server:_handle(state, command, oid, payload)
  local base = command & ~PLANT
  local e = registry.get(oid)
  if base == READ_PERIODICALLY then
    if not state.periodic[oid] and state.nperiodic < MAX_PERIODIC then
      state.periodic[oid] = true
      state.nperiodic = state.nperiodic + 1
      self:_start_pushes(state)
    end
    return self:_payload(oid, e)
  elseif base == READ then
    return self:_payload(oid, e)
  elseif base ~= WRITE and base ~= LONG_WRITE then
    return nil -- responses, extension frames: nothing to answer
  end
  if e and (e.response == "TIMESERIES" or e.response == "EVENT_TABLE") then
    local before = codec.decode(e.type, payload)
    return before and assert(codec.encode(e.response, self.values[oid] or log_answer(e, before)))
  end
  if e and e.writable then
    self:_store(e, payload)
  end
  return self:_payload(oid, e)
end

-- Send answers with the faults that apply. false when the connection broke.
function Server:_send(conn, frames)
  local f = self.faults
  if (f.delay or 0) > 0 then
    md.sleep(f.delay)
  end
  for i, frame in ipairs(frames) do
    if (f.bad_crc or 0) > 0 then
      f.bad_crc = f.bad_crc - 1
      frames[i] = corrupt_crc(frame)
    end
    if f.noise then
      frames[i] = "\0AT+\r" .. frames[i]
    end
  end
  local out = table.concat(frames)
  if not f.split then
    return conn:write(out, 10) ~= nil
  end
  for i = 1, #out do
    if not conn:write(out:sub(i, i), 10) then
      return false
    end
    md.sleep(0) -- let the reader see each byte apart
  end
  return true
end

-- Push the registered objects every pas.period seconds.
function Server:_start_pushes(state)
  if state.pusher then return end
  state.pusher = md.spawn(function()
    while true do
      local period = self:get("pas.period")
      md.sleep(period > 0 and period or 1)
      local frames = {}
      for oid in pairs(state.periodic) do
        local payload = self:_payload(oid, registry.get(oid))
        if payload then
          frames[#frames + 1] = answer_frame(oid, payload)
        end
      end
      if #frames > 0 and not state.conn:write(table.concat(frames), 10) then
        return
      end
      self.counters.pushes = self.counters.pushes + #frames
    end
  end)
  state.pusher:name("rct simulator pushes")
end

-- One request from a connection: the frame to send, "drop", or nil.
function Server:_request(state, command, oid, payload, address)
  local f = self.faults
  local base = command & ~PLANT
  if command == EXTENSION or base == RESPONSE or base == LONG_RESPONSE then
    return nil
  end
  self.counters.requests = self.counters.requests + 1
  if f.drop then
    f.drop = false
    return "drop"
  end
  if (f.silent or 0) > 0 then
    f.silent = f.silent - 1
    return nil
  end
  if address and self.address and address ~= self.address then
    return nil -- another member of the plant
  end
  local answer = self:_handle(state, command, oid, payload)
  if not answer then
    return nil
  end
  self.counters.answers = self.counters.answers + 1
  return answer_frame(oid, answer, address)
end

-- A request that raises (a WRITE whose value does not fit its object) is
-- the client's fault: log it and close the connection, as a device that
-- chokes on it would.
function Server:_try_request(state, command, oid, payload, address)
  local ok, frame = pcall(self._request, self, state, command, oid, payload, address)
  if ok then return frame end
  md.log.debug("rct simulator: closing a connection after a bad request for 0x%08X: %s", oid, frame)
  self.counters.bad_requests = self.counters.bad_requests + 1
  return "drop"
end

function Server:_serve_conn(conn)
  local state = { conn = conn, periodic = {}, nperiodic = 0, last_rx = md.now() }
  self.conns[conn] = state
  self.counters.connections = self.counters.connections + 1
  -- however this task ends (an error, a cancel), the socket is closed
  local _guard <close> = setmetatable({}, { __close = function()
    if state.pusher then state.pusher:cancel() end
    self.conns[conn] = nil
    conn:close()
  end })
  local parser = codec.parser()
  local open = true
  while open do
    local data = conn:read(65536, self.faults.idle or self.idle_timeout)
    if not data then
      break
    end
    state.last_rx = md.now()
    self.counters.reads = self.counters.reads + 1
    parser:push(data)
    local out = {}
    while true do
      local command, oid, payload, address = parser:next()
      if command == nil then
        break
      elseif command == false then
        self.counters.bad_frames = self.counters.bad_frames + 1
      else
        local frame = self:_try_request(state, command, oid, payload, address)
        if frame == "drop" then
          self.counters.dropped = self.counters.dropped + 1
          open = false
          break
        end
        out[#out + 1] = frame
      end
    end
    if open and #out > 0 then
      open = self:_send(conn, out)
    end
  end
end

-- }=====

-- {===== server =====

--- sim:port() -> the TCP port it listens on.
function Server:port()
  return self.listener:port()
end

local function entry_of(key)
  local e = registry.get(key)
  if not e and math.type(key) ~= "integer" then
    error(format("unknown RCT object '%s'", tostring(key)), 3)
  end
  return e, e and e.id or key
end

--- sim:set(object, value): what the device answers from now on. Raises when
--- the value does not fit the object's type. For ids outside the registry
--- the value is the raw payload (a string).
function Server:set(key, value)
  local e, id = entry_of(key)
  if e then
    local ok, err = codec.encode(e.response, value)
    if not ok then
      error(format("simulator: %s takes %s: %s", e.name, e.response, err), 2)
    end
  else
    assert(type(value) == "string", "simulator: an id outside the registry takes raw bytes")
  end
  self.values[id] = value
end

--- sim:get(object) -> the value it answers (its default until set).
function Server:get(key)
  local e, id = entry_of(key)
  local v = self.values[id]
  if v == nil and e then
    v = default_value(e)
  end
  return v
end

--- sim:stats() -> {requests, answers, writes, pushes, connections, clients,
--- dropped, bad_frames, reads (chunks received), refused (writes turned
--- down by opts.accept_write)}
function Server:stats()
  local s = {}
  for k, v in pairs(self.counters) do
    s[k] = v
  end
  local n = 0
  for _ in pairs(self.conns) do
    n = n + 1
  end
  s.clients = n
  return s
end

--- sim:close(): stop listening and drop every connection.
function Server:close()
  if self.closed then return end
  self.closed = true
  self.acceptor:cancel()
  self.listener:close()
  for task in pairs(self.tasks) do
    task:cancel()
  end
  for conn, state in pairs(self.conns) do
    if state.pusher then
      state.pusher:cancel()
    end
    conn:close()
  end
  self.conns, self.tasks = {}, {}
end

Server.__close = Server.close

-- Room for one more connection: close the one idle the longest when full.
local function make_room(self)
  local n, oldest, oldest_state = 0, nil, nil
  for conn, state in pairs(self.conns) do
    n = n + 1
    if not oldest_state or state.last_rx < oldest_state.last_rx then
      oldest, oldest_state = conn, state
    end
  end
  if n >= self.max_clients and oldest then
    md.log.debug("rct simulator: %d connections, closing the one idle the longest", n)
    self.counters.dropped = self.counters.dropped + 1
    oldest:close() -- its task sees "closed" and cleans up
  end
end

local function accept_loop(self)
  accept.loop(self.listener, "rct simulator", function(conn)
    self:_serve_conn(conn)
    self.tasks[md.current()] = nil
  end, { on_task = function(task)
    make_room(self) -- before the new one counts
    self.tasks[task] = true
  end })
end

--- rct.serve(opts) -> simulator, or nil, err, code when the port cannot be had.
function M.serve(opts)
  opts = opts or {}
  assert(type(opts) == "table", "rct.serve: expected a table of options")
  local listener, err, code = stream.listen(opts.host or "127.0.0.1", opts.port or 0)
  if not listener then
    return nil, err, code
  end
  local self = setmetatable({
    listener = listener, values = {}, faults = {}, conns = {}, tasks = {},
    address = opts.address, on_write = opts.on_write, accept_write = opts.accept_write,
    max_clients = opts.max_clients or 64, idle_timeout = opts.idle_timeout or 300,
    counters = {
      requests = 0, answers = 0, writes = 0, pushes = 0, connections = 0, dropped = 0, bad_frames = 0,
      reads = 0, bad_requests = 0, refused = 0,
    },
  }, Server)
  for k, v in pairs(opts.values or {}) do
    self:set(k, v)
  end
  for k, v in pairs(opts.faults or {}) do
    self.faults[k] = v
  end
  self.acceptor = md.spawn(accept_loop, self)
  self.acceptor:name("rct simulator on port " .. listener:port())
  return self
end

M.default_value = default_value

return M
