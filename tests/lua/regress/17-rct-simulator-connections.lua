-- Issue 17, items 5, 6 and 15: the RCT simulator
--  5. leaked a socket per bad WRITE: -1 written to a time-series object
--     raised inside the connection's task and the socket stayed open;
--  6. stopped accepting for good at EMFILE (its accept loop returned);
-- 15. had no connection limit and no idle timeout.

local T = require "moondog.testing"
local stream = require "moondog.stream"
local codec = require "moondog.rct.codec"
local registry = require "moondog.rct.registry"

local q, format = T.quote, string.format

local function read_frame(conn, oid)
  local p = codec.parser()
  for _ = 1, 20 do
    local data, err, code = conn:read(4096, 5)
    if not data then return nil, err, code end
    p:push(data)
    local command, id, payload = p:next()
    if command and id == oid then return payload end
  end
  return nil, "no answer", "none"
end

T.test("5: a bad WRITE closes its connection instead of leaking it", function()
  local sim <close> = assert(md.rct.serve {})
  local conn <close> = assert(stream.connect("127.0.0.1", sim:port()))
  local oid = registry.get("logger.day_ea_log_ts").id
  assert(conn:write(codec.build("write", oid, "\255\255\255\255")))
  local data, _, code = conn:read(4096, 5)
  T.eq(data, nil, "no answer")
  T.eq(code, "connection_lost", "the simulator closed the connection")
  T.wait_for(function() return sim:stats().clients == 0 end, 5, "the connection to be forgotten")
  T.eq(sim:stats().bad_requests, 1, "bad requests counted")
end)

T.test("15: a full simulator closes its longest idle connection; idle ones time out", function()
  local sim <close> = assert(md.rct.serve { max_clients = 2, idle_timeout = 60 })
  local soc = registry.get("battery.soc").id
  local a <close> = assert(stream.connect("127.0.0.1", sim:port()))
  T.wait_for(function() return sim:stats().clients == 1 end, 5, "first client")
  local _b <close> = assert(stream.connect("127.0.0.1", sim:port()))
  T.wait_for(function() return sim:stats().clients == 2 end, 5, "second client")
  local c <close> = assert(stream.connect("127.0.0.1", sim:port()))
  assert(c:write(codec.build("read", soc)))
  assert(read_frame(c, soc), "the newest client is served")
  local data, _, code = a:read(4096, 5)
  T.eq(data, nil, "the oldest client gets nothing")
  T.eq(code, "connection_lost", "the oldest client was closed")
  local idle <close> = assert(md.rct.serve { idle_timeout = 0.2 })
  local d <close> = assert(stream.connect("127.0.0.1", idle:port()))
  data, _, code = d:read(4096, 5)
  T.eq(data, nil, "no data")
  T.eq(code, "connection_lost", "an idle client is closed after idle_timeout")
end)

T.test("6: the simulator accepts again after running out of file descriptors", function()
  local dir <close> = T.tmpdir()
  local script = dir.path .. "/sim.lua"
  T.write_file(script, [[
    local sim = assert(md.rct.serve { max_clients = 1000 })
    print(sim:port())
    io.stdout:flush()
    md.sleep(30)
  ]])
  local p <close> = T.start(dir, "sim",
    format("sh -c 'ulimit -n 40; exec %s %s'", q(md.paths.exe), q(script)))
  local port = math.tointeger(tonumber(p:first_line()))
  local hogs = {}
  for i = 1, 60 do hogs[i] = assert(stream.connect("127.0.0.1", port)) end
  md.sleep(0.5) -- the simulator hits EMFILE on some of them
  for _, c in ipairs(hogs) do c:close() end
  local soc = registry.get("battery.soc").id
  local answer
  for _ = 1, 50 do
    local c <close> = stream.connect("127.0.0.1", port, { timeout = 2 })
    if c and c:write(codec.build("read", soc)) then
      answer = read_frame(c, soc)
      if answer then break end
    end
    md.sleep(0.1)
  end
  assert(answer, "a client is served again; stderr: " .. (T.read_file(p.err) or ""))
  assert(p:alive(), "the simulator still runs")
end)
