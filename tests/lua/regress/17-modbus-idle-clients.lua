-- Issue 17, item 4: a Modbus TCP server held up to 1024 connections with no
-- idle or unfinished-frame timeout and refused the rest, so one host with
-- 1024 idle sockets (or 6 bytes of an MBAP header on each) locked every
-- real client out. Now: idle_timeout, frame_timeout, and a full server
-- closes the connection idle the longest instead of refusing a new one.

local T = require "moondog.testing"
local stream = require "moondog.stream"

local function serve(opts)
  local srv = assert(md.modbus.serve("tcp://127.0.0.1:0", opts))
  srv:set(1, "holding", 0, { 42 })
  return srv
end

local function squat(srv, bytes)
  local c = assert(stream.connect("127.0.0.1", srv:port()))
  if bytes then assert(c:write(bytes)) end
  return c
end

T.test("a full server closes its longest idle client for a new one", function()
  local srv <close> = serve { max_clients = 3 }
  local a <close> = squat(srv)
  md.sleep(0.05)
  local _b <close> = squat(srv, "\0\1\0\0\0") -- 5 bytes of an MBAP header
  local _c <close> = squat(srv)
  T.wait_for(function() return srv:stats().clients == 3 end, 5, "three squatters")
  local bus <close> = assert(md.modbus.open("tcp://127.0.0.1:" .. srv:port() .. "?unit=1"))
  local regs, err = bus:read_holding(1, 0, 1)
  assert(regs, "a real client is served: " .. tostring(err))
  T.eq(regs[1], 42, "register")
  local data, _, code = a:read(16, 5)
  T.eq(data, nil, "the oldest squatter gets nothing")
  T.eq(code, "connection_lost", "the oldest squatter was closed")
end)

T.test("an idle client is closed after idle_timeout", function()
  local srv <close> = serve { idle_timeout = 0.2 }
  local a <close> = squat(srv)
  local data, _, code = a:read(16, 5)
  T.eq(data, nil, "no data")
  T.eq(code, "connection_lost", "closed by the server")
  T.eq(srv:stats().clients, 0, "clients left")
end)

T.test("an unfinished frame is closed after frame_timeout, a busy client is not", function()
  local srv <close> = serve { frame_timeout = 0.2, idle_timeout = 60 }
  local bus <close> = assert(md.modbus.open("tcp://127.0.0.1:" .. srv:port() .. "?unit=1"))
  local half <close> = squat(srv, "\0\1\0\0\0\6\1") -- 7 of 12 bytes
  local data, _, code = half:read(16, 5)
  T.eq(data, nil, "no answer to half a frame")
  T.eq(code, "connection_lost", "closed by the server")
  for _ = 1, 3 do
    T.eq(assert(bus:read_holding(1, 0, 1))[1], 42, "the whole-frame client is still served")
    md.sleep(0.1)
  end
end)
