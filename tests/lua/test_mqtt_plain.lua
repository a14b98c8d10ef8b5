-- The MQTT client's session and failure handling, written for moondog's own
-- plain-TCP client (core/mqtt_plain.c) and run against libmosquitto too
-- (tests/run.sh runs the MQTT tests again with MOONDOG_MQTT_LIB=mosquitto):
-- QoS 1 and 2 both ways across a broker restart (everything delivered,
-- nothing twice at QoS 2), a broker that stops answering (SIGSTOP: the
-- keepalive notices), and, for the plain client only, a fake broker on a
-- Lua listener that sends malformed packets: the connection is dropped
-- with code `protocol` and the engine keeps running; and one that stops
-- reading: QoS 0 messages are refused past the queue's byte bound; and one
-- that sends a QoS 2 message twice (DUP, both clients): handed over once.
--
-- Each test starts its own broker or listener on a free loopback port and
-- stops it at the end. Every wait is bounded; none asserts a duration.
-- The last will on a killed connection is test_mqtt_client.lua's.

local T = require "moondog.testing"
local mqtt = require "moondog.mqtt"
local broker = require "moondog.mqtt.broker"
local stream = require "moondog.stream"

local format = string.format
local plain = os.getenv("MOONDOG_MQTT_LIB") ~= "mosquitto"

local function start_broker(dir, opts)
  T.need("mosquitto", "mosquitto")
  opts = opts or {}
  opts.dir = dir.path
  return assert(broker.start(opts))
end

T.test("QoS 1 and 2 both ways across a broker restart: all delivered, none twice at QoS 2", function()
  local dir <close> = T.tmpdir()
  local b <close> = start_broker(dir, { persistence = true })
  local fast = { min = 0.05, max = 0.3 }
  local sub <close> = assert(mqtt.connect { host = b.host, port = b.port, client_id = "p-sub",
    clean = false, reconnect = fast })
  local got, qos = {}, {}
  assert(sub:subscribe("p/#", function(topic, payload, msg)
    got[#got + 1] = topic .. "=" .. payload
    qos[topic] = msg.qos
  end, { qos = 2 }))
  local pub <close> = assert(mqtt.connect { host = b.host, port = b.port, client_id = "p-pub",
    clean = false, reconnect = fast })
  assert(pub:publish("p/2/0", "before", { qos = 2, wait = true }))
  T.wait_for(function() return #got >= 1 end, 10, "the first message")
  b:stop()
  T.wait_for(function() return pub:status() ~= "connected" and sub:status() ~= "connected" end, 10,
    "both clients to notice")
  for i = 1, 5 do
    assert(pub:publish("p/1/" .. i, "during", { qos = 1 }))
    assert(pub:publish("p/2/" .. i, "during", { qos = 2 }))
  end
  T.eq(pub:stats().queued, 10, "queued while down")
  assert(b:start())
  T.wait_for(function() return pub:stats().queued == 0 end, 20, "the queue to drain")
  T.wait_for(function() return #got >= 11 end, 20, "every message at the subscriber")
  md.sleep(0.5) -- a duplicate would arrive now
  local count = {}
  for _, k in ipairs(got) do count[k] = (count[k] or 0) + 1 end
  for i = 1, 5 do
    T.eq(count["p/2/" .. i .. "=during"], 1, "QoS 2 message " .. i .. " exactly once")
    assert((count["p/1/" .. i .. "=during"] or 0) >= 1, "QoS 1 message " .. i .. " delivered")
    T.eq(qos["p/2/" .. i], 2, "QoS 2 kept")
  end
  T.eq(count["p/2/0=before"], 1, "the message before the restart once")
  local s = pub:stats()
  T.eq(s.delivered, 11, "acknowledged")
  T.eq(s.dropped, 0, "dropped")
end)

T.test("max_inflight = 1: QoS 1 and 2 messages published at once all arrive, each QoS in order", function()
  local dir <close> = T.tmpdir()
  local b <close> = start_broker(dir)
  local sub <close> = assert(mqtt.connect { host = b.host, port = b.port })
  local got = {}
  assert(sub:subscribe("w/#", function(_, payload) got[#got + 1] = payload end, { qos = 2, wait = true }))
  local pub <close> = assert(mqtt.connect { host = b.host, port = b.port, max_inflight = 1 })
  local want = {}
  for i = 1, 40 do
    want[i] = tostring(i)
    assert(pub:publish("w/x", want[i], { qos = i % 2 + 1 }))
  end
  T.wait_for(function() return pub:stats().queued == 0 end, 20, "every acknowledgement")
  T.wait_for(function() return #got >= 40 end, 20, "every message")
  -- MQTT keeps the order of messages of one QoS (3.1.1 section 4.6);
  -- libmosquitto may let a QoS 1 message pass a QoS 2 one in flight
  local by_qos = { {}, {} }
  for _, v in ipairs(got) do
    local q = tonumber(v) % 2 + 1
    by_qos[q][#by_qos[q] + 1] = v
  end
  local want1, want2 = {}, {}
  for i = 1, 40 do
    if i % 2 == 0 then want1[#want1 + 1] = tostring(i) else want2[#want2 + 1] = tostring(i) end
  end
  T.eq(table.concat(by_qos[1], ","), table.concat(want1, ","), "order of the QoS 1 messages")
  T.eq(table.concat(by_qos[2], ","), table.concat(want2, ","), "order of the QoS 2 messages")
  if plain then T.eq(table.concat(got, ","), table.concat(want, ","), "order, one at a time") end
  T.eq(pub:stats().delivered, 40, "delivered")
end)

T.test("a broker that stops answering (SIGSTOP) is noticed through the keepalive", function()
  local dir <close> = T.tmpdir()
  local b <close> = start_broker(dir)
  local c <close> = assert(mqtt.connect { host = b.host, port = b.port, keepalive = 5,
    connect_timeout = 2, reconnect = { min = 0.2, max = 1 } })
  local codes = {}
  c:on("disconnect", function(_, code) codes[#codes + 1] = code end)
  local pid = assert(b.pid, "broker pid")
  assert(os.execute(format("kill -STOP %d", pid)))
  local resumed = false
  local _cont <close> = setmetatable({}, { __close = function()
    if not resumed then os.execute(format("kill -CONT %d", pid)) end
  end })
  -- within 1.5 x keepalive (7.5 s) for the plain client, 2 x for
  -- libmosquitto; bounded generously for a loaded machine
  T.wait_for(function() return c:status() ~= "connected" end, 40, "the client to notice")
  T.eq(codes[1], "connection_lost", "code")
  assert(os.execute(format("kill -CONT %d", pid)))
  resumed = true
  T.eq(c:wait_connected(30), true, "connected again after the broker resumed")
  assert(c:publish("k/x", "1", { qos = 1, wait = true }))
end)

-- A listener that plays broker: reads the CONNECT, answers with reply.
local function fake_broker(reply)
  local l = assert(stream.listen("127.0.0.1", 0))
  local seen = {}
  local task = md.spawn(function()
    local conn <close> = assert(l:accept(10))
    local first = assert(conn:read(65536, 10))
    seen.connect = first:byte(1) == 0x10
    assert(conn:write(reply))
    -- the client drops the connection: read ends
    seen.closed = conn:read(65536, 10) == nil
  end)
  return l, task, seen
end

local CONNACK = "\x20\x02\x00\x00"
local malformed = {
  { "a reserved packet type", CONNACK .. "\xF0\x00" },
  { "a remaining length of 5 bytes", CONNACK .. "\x30\xFF\xFF\xFF\xFF\x7F" },
  { "a PINGRESP announcing 268435455 bytes", CONNACK .. "\xD0\xFF\xFF\xFF\x7F" },
  { "a PUBLISH whose topic runs past the packet", CONNACK .. "\x30\x04\x00\x10ab" },
  { "a PUBLISH at QoS 3", CONNACK .. "\x36\x05\x00\x01a\x00\x01" },
  { "a topic with a wildcard", CONNACK .. "\x30\x05\x00\x03a/#" },
  { "a SUBACK return code 3", CONNACK .. "\x90\x03\x00\x01\x03" },
}

for _, case in ipairs(malformed) do
  T.test("a fake broker sends " .. case[1] .. ": dropped with code 'protocol', the engine runs on", function()
    if not plain then T.skip("the plain client's decoder (libmosquitto has its own)") end
    local l <close>, task, seen = fake_broker(case[2])
    local c <close> = assert(mqtt.connect { host = "127.0.0.1", port = l:port(), wait = false,
      reconnect = { min = 30, max = 30 } })
    local codes = {}
    c:on("disconnect", function(_, code) codes[#codes + 1] = code end)
    T.wait_for(function() return #codes >= 1 end, 10, "the client to drop the connection")
    T.eq(codes[1], "protocol", "code")
    T.eq(c:stats().last_code, "protocol", "last_code")
    task:join(10)
    T.eq(seen.connect, true, "the client sent CONNECT")
    T.eq(seen.closed, true, "the client closed the connection")
    local other = md.spawn(function() md.sleep(0.01); return "alive" end)
    T.eq(other:join(5), "alive", "other tasks run")
  end)
end

T.test("garbage before CONNACK: the attempt fails with code 'protocol'", function()
  if not plain then T.skip("the plain client's decoder (libmosquitto has its own)") end
  local l <close>, task, seen = fake_broker("\x00\x01\x02\x03")
  local c, err, code = mqtt.connect { host = "127.0.0.1", port = l:port(), connect_timeout = 5 }
  T.eq(c, nil, "client")
  T.eq(code, "protocol", "code (" .. tostring(err) .. ")")
  assert(err:find(":" .. l:port() .. " does not answer as an MQTT broker", 1, true), err)
  task:join(10)
  T.eq(seen.closed, true, "the client closed the connection")
end)

T.test("a web server where the broker should be: the error says it answered in HTTP", function()
  if not plain then T.skip("the plain client's message") end
  local l <close>, task = fake_broker("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
  local c, err, code = mqtt.connect { host = "127.0.0.1", port = l:port(), connect_timeout = 5 }
  T.eq(c, nil, "client")
  T.eq(code, "protocol", "code")
  T.eq(err, "127.0.0.1:" .. l:port() .. " answered in HTTP, not MQTT: a web server (or a proxy on the way), "
    .. "not a broker's MQTT port (usually 1883, or 8883 with TLS)", "message")
  task:join(10)
end)

T.test("a broker that stops reading: QoS 0 messages are refused past the byte bound", function()
  if not plain then T.skip("the plain client's output buffer (libmosquitto's is unbounded)") end
  local l <close> = assert(stream.listen("127.0.0.1", 0))
  local done = false
  local task = md.spawn(function()
    local conn <close> = assert(l:accept(10))
    assert(conn:read(65536, 10))
    assert(conn:write(CONNACK))
    -- reads nothing more until the test is over
    T.wait_for(function() return done end, 60, "the test to finish")
  end)
  local c <close> = assert(mqtt.connect { host = "127.0.0.1", port = l:port(),
    queue = { bytes = 200000 } })
  local payload = string.rep("x", 65536)
  local code
  for _ = 1, 2000 do
    local ok, _, why = c:publish("big/x", payload)
    if not ok then code = why; break end
    md.sleep(0) -- the loop comes round: the client sends what it can
  end
  T.eq(code, "queue_full", "refused once the broker stopped reading")
  assert(c:stats().dropped >= 1, "counted as dropped")
  done = true
  task:join(10)
end)

T.test("an incoming QoS 2 message sent again with DUP is handed over once: PUBREC twice, PUBCOMP",
  function()
  local l <close> = assert(stream.listen("127.0.0.1", 0))
  local from_client = ""
  local function read_until(conn, pattern)
    for _ = 1, 50 do
      local s, e = from_client:find(pattern)
      if s then
        local hit = from_client:sub(s, e)
        from_client = from_client:sub(e + 1)
        return hit
      end
      local bytes = conn:read(65536, 5)
      if not bytes then return nil end
      from_client = from_client .. bytes
    end
  end
  local task = md.spawn(function()
    local conn <close> = assert(l:accept(10))
    assert(read_until(conn, "^\x10.-MQTT"), "CONNECT")
    from_client = ""
    assert(conn:write(CONNACK))
    local sub = assert(read_until(conn, "\x82..."), "SUBSCRIBE")
    assert(conn:write("\x90\x03" .. sub:sub(3, 4) .. "\x02"))
    local publish = "\x00\x03d/x\x00\x05one"
    assert(conn:write("\x34\x0a" .. publish .. "\x3c\x0a" .. publish))
    assert(read_until(conn, "\x50\x02\x00\x05"), "the first PUBREC")
    assert(read_until(conn, "\x50\x02\x00\x05"), "the second PUBREC")
    assert(conn:write("\x62\x02\x00\x05"))
    assert(read_until(conn, "\x70\x02\x00\x05"), "PUBCOMP")
    return true
  end)
  local c <close> = assert(mqtt.connect { host = "127.0.0.1", port = l:port(),
    reconnect = { min = 30, max = 30 } })
  local got = {}
  assert(c:subscribe("d/#", function(topic, payload) got[#got + 1] = topic .. "=" .. payload end,
    { qos = 2, wait = true }))
  T.eq(task:join(20), true, "the exchange completed")
  T.wait_for(function() return #got >= 1 end, 10, "the message")
  md.sleep(0.2) -- a second delivery would come now
  T.eq(table.concat(got, ","), "d/x=one", "handed over once")
end)
