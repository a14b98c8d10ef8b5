-- MQTT publishing speed: messages per second from Lua to a local mosquitto
-- broker at QoS 0 and QoS 1, against mosquitto_pub -l (libmosquitto's own
-- command-line client) sending the same messages to the same broker in
-- the same run; CPU time per message of both; and the engine's RSS.
--
--   ./moondog tests/bench/mqtt.lua [messages]      (default 50000)
--
-- What is timed: from the start of a run until the broker has handed the
-- last message to a subscriber (mosquitto_sub -C N, started for the run on
-- a topic of its own; the last delivery is the modification time of its
-- output file). Timing the publisher alone would flatter mosquitto_pub,
-- which at QoS 0 exits as soon as its messages sit in the kernel's socket
-- buffer, long before the broker has read them. A rate counts delivered
-- messages only. The broker queues without limit for the subscriber
-- (max_queued_messages 0; its default of 1000 drops QoS 1 messages for a
-- subscriber that falls behind). Keep N under 65535: beyond that,
-- mosquitto_pub -l queues more QoS 1 messages than libmosquitto has
-- 16-bit message ids, and a new message silently replaces a queued one
-- with the same id (200,000 lines delivered 3,399 here); moondog's client
-- refuses such a publish instead (see core/mqtt.c).
--
-- Both sides send the same payloads, prepared beforehand (a file for
-- mosquitto_pub, a Lua array here). At QoS 1 both keep 20 messages in
-- flight (libmosquitto's default); the Lua side also waits for an
-- acknowledgement every WINDOW messages, so that libmosquitto's queue,
-- which it scans on every publish, stays short. Both clients make the
-- same system calls per message (libmosquitto writes each packet with its
-- own write() and reads an acknowledgement in three read()s);
-- mosquitto_pub makes them on two threads, moondog on its loop thread.
-- Each figure is the best of RUNS runs; compare ratios, not absolute
-- numbers (shared, noisy machines).

local mqtt = require "moondog.mqtt"
local broker = require "moondog.mqtt.broker"

local N = math.tointeger(tonumber(arg and arg[1] or "")) or 50000
local WINDOW = 500
local RUNS = 3

local function rss_kib()
  local f = assert(io.open("/proc/self/status"))
  local kib = f:read("a"):match("VmRSS:%s*(%d+)")
  f:close()
  return tonumber(kib)
end

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return out
end

local rss_idle = rss_kib()
local b <close> = assert(broker.start{ conf_extra = "max_queued_messages 0" })
local c <close> = assert(mqtt.connect{ host = b.host, port = b.port, client_id = "bench-moondog" })
local rss_connected = rss_kib()

local payloads = {}
for i = 1, N do payloads[i] = string.format("message %08d", i) end
local file = b.dir .. "/lines.txt"
do
  local f = assert(io.open(file, "w"))
  f:write(table.concat(payloads, "\n"), "\n")
  f:close()
end

-- A subscriber for one run: it exits after the probe and N messages.
-- Returns a function to call once the publisher is done: it waits for the
-- subscriber (stopping it when nothing more arrived for a second) and
-- gives the number of messages it got (without the probe) and the time of
-- the last one.
local runs = 0
local function subscriber(topic)
  local out = string.format("%s/sub-%d.txt", b.dir, runs)
  local p = assert(io.popen(string.format("echo $$; exec mosquitto_sub -h %s -p %d -q 1 -t %s -C %d > %s",
    b.host, b.port, topic, N + 1, out)))
  local pid = math.tointeger(tonumber(p:read("l")))
  repeat -- until it is subscribed: the probe arrives
    assert(c:publish(topic, "probe", { qos = 1, wait = true }))
    md.sleep(0.02)
  until #(sh("head -c 5 " .. out)) > 0
  local function alive() -- not gone, and not a zombie waiting for p:close()
    local stat = sh(string.format("cat /proc/%d/stat 2>/dev/null", pid))
    return stat ~= "" and not stat:match("^%d+ %b() Z")
  end
  return function()
    local size, still = -1, 0
    while alive() and still < 50 do
      md.sleep(0.02)
      local now = sh("stat -c %s " .. out)
      still = now == size and still + 1 or 0
      size = now
    end
    if alive() then os.execute("kill " .. pid) end
    p:close()
    local n = math.tointeger(tonumber(sh("wc -l < " .. out))) - 1
    return n, tonumber(sh("stat -c %.9Y " .. out))
  end
end

-- Each run returns delivered messages/s, CPU seconds per delivered message,
-- and how many were delivered.
local function moondog_run(qos)
  runs = runs + 1
  local topic = string.format("bench/moondog/%d", runs)
  local done = subscriber(topic)
  local plain, windowed = { qos = qos }, { qos = qos, wait = true }
  local t0, cpu0 = md.time(), os.clock()
  for i = 1, N do
    local ok, err = c:publish(topic, payloads[i], (qos > 0 and i % WINDOW == 0) and windowed or plain)
    assert(ok, err)
  end
  assert(c:publish("bench/barrier", "", { qos = 1, wait = true }))
  local cpu = os.clock() - cpu0
  local n, t_end = done()
  return n / (t_end - t0), cpu / n, n
end

local function mosquitto_pub_run(qos)
  runs = runs + 1
  local topic = string.format("bench/mosquitto_pub/%d", runs)
  local done = subscriber(topic)
  local times = b.dir .. "/time.txt"
  local t0 = md.time()
  local ok = os.execute(string.format(
    "/usr/bin/time -f '%%U %%S' -o %s mosquitto_pub -h %s -p %d -i bench-pub -t %s -q %d -l < %s",
    times, b.host, b.port, topic, qos, file))
  assert(ok, "mosquitto_pub failed")
  local user, sys = sh("cat " .. times):match("([%d.]+) ([%d.]+)")
  local n, t_end = done()
  return n / (t_end - t0), (tonumber(user) + tonumber(sys)) / n, n
end

local function best(fn, qos)
  local rate, cpu, least = 0, math.huge, math.huge
  for _ = 1, RUNS do
    local r, c1, n = fn(qos)
    rate, cpu, least = math.max(rate, r), math.min(cpu, c1), math.min(least, n)
  end
  return rate, cpu, least
end

print(string.format("== MQTT publish, %d messages of %d bytes through a local mosquitto to a subscriber "
  .. "(best of %d)", N, #payloads[1], RUNS))
for _, qos in ipairs({ 0, 1 }) do
  local rate, cpu, n = best(moondog_run, qos)
  local ref_rate, ref_cpu, ref_n = best(mosquitto_pub_run, qos)
  print(string.format("QoS %d delivered: moondog %d of %d; mosquitto_pub -l %d of %d (fewest of the runs)",
    qos, n, N, ref_n, N))
  print(string.format("QoS %d rate: moondog %.0f msg/s; mosquitto_pub -l %.0f msg/s; ratio %.2f "
    .. "(goal: at least 1)", qos, rate, ref_rate, rate / ref_rate))
  print(string.format("QoS %d CPU per delivered message: moondog %.2f us; mosquitto_pub -l %.2f us; "
    .. "ratio %.2f", qos, cpu * 1e6, ref_cpu * 1e6, cpu / ref_cpu))
end
local s = c:stats()
assert(s.dropped == 0 and s.queued == 0, "nothing dropped, nothing left")
c:close()
print(string.format("engine RSS: %d KiB idle, %d KiB with a connected client (libmosquitto and OpenSSL "
  .. "loaded), %d KiB after the runs (%d payloads held in Lua)", rss_idle, rss_connected, rss_kib(), N))
