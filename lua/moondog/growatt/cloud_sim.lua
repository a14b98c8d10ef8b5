-- moondog.growatt.cloud_sim: a fake Growatt cloud server for tests, demos
-- and benchmarks. It accepts dataloggers, ACKs their announce, data,
-- buffered and meter records, echoes pings, sets the clock after an
-- announce, and (with commands_every = N) sends an inverter register read
-- of its own after every N-th record, as Growatt's server does at times.
--
--   local cloud = require "moondog.growatt.cloud_sim"
--   local c = assert(cloud.start{ listen = "127.0.0.1:0" })
--   c:port(); c.counts (records, buffered, pings, announces, replies)
--   c:received_bytes(), c:sent_bytes()    -- over all connections, in order
--   c:close()

local md = require "moondog"
local stream = require "moondog.stream"
local accept = require "moondog.accept"
local core = require "moondog.growatt.core"

local M = {}

local Cloud = {}
Cloud.__index = Cloud

local ACKED = { [0x03] = true, [0x04] = true, [0x50] = true, [0x1b] = true, [0x20] = true }

local function send(self, conn, bytes)
  self.sent[#self.sent + 1] = bytes
  return conn:write(bytes)
end

local function serve(self, conn)
  local p = core.parser()
  local seq = 0x4000
  self.conns[conn] = true
  while true do
    local bytes = conn:read(65536)
    if not bytes then break end
    self.received[#self.received + 1] = bytes
    p:push(bytes)
    while true do
      local f = p:next()
      if f == nil then break end
      if f then
        local c = self.counts
        if f.type == 0x16 then
          c.pings = c.pings + 1
          send(self, conn, f.raw)
        elseif ACKED[f.type] and #f.body > 1 then
          send(self, conn, core.ack(f.seq, f.protocol, f.unit, f.type))
          if f.type == 0x03 then
            c.announces = c.announces + 1
            seq = seq + 1
            send(self, conn, core.config_set(seq, f.protocol, 1, f.body:sub(1, 10), 31,
              os.date("%Y-%m-%d %H:%M:%S", math.floor(md.time()))))
            for reg, v in pairs(self.o.config_after_announce or {}) do
              seq = seq + 1
              send(self, conn, core.config_set(seq, f.protocol, 1, f.body:sub(1, 10), reg, v))
            end
            for reg, v in pairs(self.o.write_after_announce or {}) do
              seq = seq + 1
              send(self, conn, core.write_holding(seq, f.protocol, 1, f.body:sub(1, 10), reg, v))
            end
          elseif f.type == 0x04 then
            c.records = c.records + 1
            local every = self.o.commands_every
            if every and c.records % every == 0 then
              seq = seq + 1
              send(self, conn, core.read_holding(seq, f.protocol, 1, f.body:sub(1, 10), 3000, 3009))
              c.commands = c.commands + 1
            end
          elseif f.type == 0x50 then
            c.buffered = c.buffered + 1
          end
        else
          c.replies = c.replies + 1
        end
      end
    end
  end
  self.conns[conn] = nil
  conn:close()
end


function Cloud:port() return self.listener:port() end
function Cloud:received_bytes() return table.concat(self.received) end
function Cloud:sent_bytes() return table.concat(self.sent) end

function Cloud:close()
  if self.closed then return end
  self.closed = true
  self.listener:close()
  for conn in pairs(self.conns) do conn:close() end
end

Cloud.__close = Cloud.close

--- cloud.start{listen = "127.0.0.1:0", commands_every = N, config_after_announce =
--- {[reg] = "text"}, write_after_announce = {[reg] = v}} -> cloud, or nil, message, code
function M.start(opts)
  opts = opts or {}
  local host, port = require("moondog.growatt.proxy").parse_hostport(opts.listen or "127.0.0.1:0", 5279)
  if not host then error("cloud_sim: listen: " .. tostring(port), 2) end
  local l, err, code = stream.listen(host, port)
  if not l then return nil, "cloud_sim: " .. tostring(err), code end
  local self = setmetatable({
    o = opts, listener = l, conns = {}, sent = {}, received = {},
    counts = { records = 0, buffered = 0, pings = 0, announces = 0, replies = 0, commands = 0 },
  }, Cloud)
  self.task = md.spawn(accept.loop, self.listener, "growatt cloud_sim", function(conn) serve(self, conn) end)
  self.task:name("growatt cloud_sim accept")
  return self
end

return M
