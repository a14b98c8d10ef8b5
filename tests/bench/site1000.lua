-- Bench: 1000 SDM630 meters on one site, every point polled each second
-- (issue 10). On loopback only; every loop is bounded in count and time.
--
--   ./moondog tests/bench/site1000.lua [SECONDS [LATENCY_DEVICES [BUSES]]]
--
-- defaults: a 20 s window after a 3 s warm-up, latency measured with 100
-- and with 1000 meters ("100,1000"), 10 buses. Figures (each in a fresh engine process, so that one
-- phase's memory and CPU do not count in another's):
--
-- 1. site: 1000 devices with the shipped profile `sdm630` (14 float32
--    input points) on ONE site, site:add(id, "sdm630", url .. "?unit=N",
--    { poll = 1 }). CPU of the engine in % of one core (os.clock delta /
--    wall delta over the window), RSS (VmRSS at the end, VmHWM), polls done
--    against expected (devices x seconds), skipped cycles (sum of
--    dev:stats().skipped) and failed polls; goals 10 % and 30 MB.
-- 2. transactions per poll cycle (sum of dev:stats().transactions / polls)
--    against 14, one transaction per point.
-- 3. reference: the same devices read without a site, as an engine did
--    before sites (tests/bench/poll200.lua's pattern): the same driver
--    (md.devices.open on the same shared buses), one md.every(1) task per
--    device calling dev:read(), phases spread as the site spreads them.
--    CPU per device-poll, site against this loop: what the site's
--    bookkeeping (schedule, lock, values with time and state, stats,
--    listeners) costs. And the floor: the same two reads per device as
--    bare bus:read_input calls, nothing decoded (the engine's own cost of
--    the transactions: task wake-ups, the bus, the system calls).
-- 4. latency: from a read's completion to the value's arrival at a broker
--    subscriber, p50 and p99. A real mosquitto (moondog.mqtt.broker), the
--    site publishing to it (site:publish, QoS 1, retained, as a user's
--    site does; Home Assistant discovery off), and a subscriber in a
--    separate process: mosquitto_sub -F '%U %t %p', which stamps each
--    message with the wall clock when it arrives. The engine stamps each
--    value at the read's completion: a listener (site:_listen{sample =})
--    registered before the publisher is called synchronously by the poll
--    task right after the read, and records md.time() (the same wall
--    clock) per device, point and value. A value is matched to its
--    arrival by topic and payload, so values must be unique: the
--    simulator sets every point to point_index * 100000 + tick, tick
--    counting tenths of a second since it started (integers, exact in a
--    float32, so the payload is the exact number), and so every poll
--    changes every point and every point is published. Measured with 100
--    meters (1400 values/s) and with 1000 (14,000 values/s at QoS 1, which
--    saturates the publisher's path here: its outgoing queue fills and
--    values are refused; the figure says how many), so the 100 figure is
--    the latency of an unsaturated broker path.
--
-- Layout: the simulated meters are served by a separate process (this
-- file with `serve`: BUSES md.modbus.serve servers on tcp://127.0.0.1:0,
-- each answering every unit id from one register map), so the servers'
-- CPU is not counted; its CPU is printed for context. The site's devices
-- on one endpoint share one bus (modbus.shared, as sites do), so the
-- default is 10 buses of 100 units each, as 10 Modbus TCP gateways in
-- front of 100 meters on RS-485 each would be (the many-meters case, and
-- what one bus can carry: 100 devices x 2 transactions a second, each a
-- fraction of a millisecond on loopback). BUSES = 1000 gives every meter a
-- connection of its own instead.
--
-- Modes (used by the orchestrator, runnable alone for profiling):
--   site1000.lua serve BUSES LIFETIME          -> prints one URL a line, then "ready"
--   site1000.lua site URLS N SECONDS           -> one line of key=value figures
--   site1000.lua direct URLS N SECONDS
--   site1000.lua raw URLS N SECONDS
--   site1000.lua latency URLS N SECONDS
-- URLS: a file with the servers' URLs, one a line.

local md = require "moondog"
local process = require "moondog.process"

local format = string.format
local WARMUP = 3
local PROFILE = "sdm630"
local POINTS = 14

-- {===== common =====

local function proc_kib(field)
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match(field .. ":%s*(%d+)"))
end

local function read_lines(path)
  local out = {}
  local f = io.open(path)
  if not f then return out end
  for line in f:lines() do
    if line ~= "ready" then out[#out + 1] = line end
  end
  f:close()
  return out
end

-- Device i (1-based) on the buses: its id and address. Devices go round
-- the buses, so any number of them spreads over all of them.
local function address(urls, i)
  local unit = (i - 1) // #urls + 1
  assert(unit <= 247, "more than 247 units on one bus: give more buses")
  return format("m%04d", i), format("%s?unit=%d", urls[(i - 1) % #urls + 1], unit)
end

local function result(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = format("%s=%s", k, tostring(t[k])) end
  print("result " .. table.concat(parts, " "))
  io.stdout:flush()
end

-- }=====

-- {===== serve: the simulated meters, in a process of their own =====

-- The sdm630 points' input registers, in profile order.
local function sdm630_addresses()
  local profile = require("moondog.devices").load(PROFILE)
  local addrs = {}
  for i, p in ipairs(profile.points) do addrs[i] = p.source.addr end
  assert(#addrs == POINTS, "sdm630 has 14 points")
  return addrs
end

local function serve(buses, lifetime)
  local addrs = sdm630_addresses()
  local servers = {}
  for b = 1, buses do
    servers[b] = assert(md.modbus.serve("tcp://127.0.0.1:0"))
    io.stdout:write(servers[b]:url(), "\n")
  end
  io.stdout:write("ready\n")
  io.stdout:flush()
  local t0 = md.now()
  for _ in md.every(0.1) do
    local tick = math.floor((md.now() - t0) * 10)
    for _, srv in ipairs(servers) do
      for i, a in ipairs(addrs) do srv:set_value(nil, "input", a, i * 100000 + tick, "float32") end
    end
    if md.now() - t0 > lifetime then break end
  end
  for _, srv in ipairs(servers) do srv:close() end
end

-- }=====

-- {===== site: 1000 meters on one site =====

local function site_totals(site)
  local t = { polls = 0, failed = 0, skipped = 0, transactions = 0 }
  for _, sd in ipairs(site:devices()) do
    local s = sd:stats()
    t.polls, t.failed = t.polls + s.polls, t.failed + s.failed
    t.skipped, t.transactions = t.skipped + s.skipped, t.transactions + s.transactions
  end
  return t
end

local function make_site(urls, n)
  local site = md.site.new { name = "bench" }
  for i = 1, n do
    local id, url = address(urls, i)
    assert(site:add(id, PROFILE, url, { poll = 1 }))
  end
  return site
end

local function run_site(urls, n, seconds)
  local site = make_site(urls, n)
  md.sleep(WARMUP)
  local a, cpu0, t0 = site_totals(site), os.clock(), md.now()
  md.sleep(seconds)
  local cpu, wall, b = os.clock() - cpu0, md.now() - t0, site_totals(site)
  local states = {}
  for _, sd in ipairs(site:devices()) do
    local st = sd:stats().state
    states[st] = (states[st] or 0) + 1
  end
  result {
    devices = n, buses = #site:status().buses, wall = format("%.2f", wall),
    cpu_percent = format("%.3f", cpu / wall * 100), rss_kib = proc_kib("VmRSS"),
    hwm_kib = proc_kib("VmHWM"), lua_kib = format("%.0f", collectgarbage("count")),
    polls = b.polls - a.polls, expected = format("%.0f", n * wall), failed = b.failed - a.failed,
    skipped = b.skipped - a.skipped, transactions = b.transactions - a.transactions,
    cpu_us_per_poll = format("%.2f", cpu / math.max(1, b.polls - a.polls) * 1e6),
    ok_devices = states.ok or 0,
  }
  site:close()
end

-- }=====

-- {===== direct: the same devices without a site (the reference) =====

-- raw = true: the driver's two planned reads as bare bus reads, nothing
-- decoded (the engine's own cost of the transactions: the floor).
local function run_direct(urls, n, seconds, raw)
  local devices = require "moondog.devices"
  local schedule = require "moondog.site.schedule"
  local polls, failed, transactions = 0, 0, 0
  local devs, tasks = {}, {}
  for i = 1, n do
    local id, url = address(urls, i)
    local bus = assert(md.modbus.shared(url))
    local unit = require("moondog.modbus.address").parse(url).unit
    devs[i] = assert(devices.open(PROFILE, bus, { id = id, unit = unit }))
  end
  for i = 1, n do
    tasks[i] = md.spawn(function()
      md.sleep(schedule.phase(i)) -- spread as the site spreads its devices
      local dev = devs[i]
      for _ in md.every(1) do
        if raw then
          local ok = true
          for _, r in ipairs(dev.reads) do
            ok = dev.bus:read_input(dev.unit, r.address, r.count) and ok
            transactions = transactions + 1
          end
          if ok then polls = polls + 1 else failed = failed + 1 end
        else
          local before = dev.transactions
          if dev:read() then polls = polls + 1 else failed = failed + 1 end
          transactions = transactions + dev.transactions - before
        end
      end
    end)
  end
  md.sleep(WARMUP)
  local p0, f0, x0, cpu0, t0 = polls, failed, transactions, os.clock(), md.now()
  md.sleep(seconds)
  local cpu, wall = os.clock() - cpu0, md.now() - t0
  local p = polls - p0
  result {
    devices = n, wall = format("%.2f", wall), cpu_percent = format("%.3f", cpu / wall * 100),
    rss_kib = proc_kib("VmRSS"), hwm_kib = proc_kib("VmHWM"), polls = p,
    lua_kib = format("%.0f", collectgarbage("count")),
    expected = format("%.0f", n * wall), failed = failed - f0, transactions = transactions - x0,
    cpu_us_per_poll = format("%.2f", cpu / math.max(1, p) * 1e6),
  }
  for _, t in ipairs(tasks) do t:cancel() end
  for _, d in ipairs(devs) do d:close() end
end

-- }=====

-- {===== latency: read completion to a subscriber in another process =====

local function percentile(sorted, q)
  if #sorted == 0 then return nil end
  return sorted[math.max(1, math.ceil(q * #sorted))]
end

local function run_latency(urls, n, seconds)
  local broker = require "moondog.mqtt.broker"
  local point = require "moondog.devices.point"
  local b <close> = assert(broker.start {})
  local out = b.dir .. "/sub.txt"
  -- The subscriber: values only (prefix/device/point), each stamped on arrival.
  local life = math.ceil(WARMUP + seconds + 15)
  local sub <close> = assert(process.start(format(
    "mosquitto_sub -h %s -p %d -q 1 -t 'bench/+/+' -t bench_probe -W %d -F '%%U %%t %%p' > %s 2>/dev/null",
    b.host, b.port, life, process.quote(out))))
  local probe <close> = assert(md.mqtt.connect { host = b.host, port = b.port, client_id = "bench-probe" })
  local subscribed = false
  for _ = 1, 250 do -- until the subscriber is there (at most 5 s)
    assert(probe:publish("bench_probe", "probe", { qos = 1, wait = true }))
    md.sleep(0.02)
    if #read_lines(out) > 0 then subscribed = true break end
  end
  assert(subscribed, "mosquitto_sub did not subscribe within 5 s")

  local site = md.site.new { name = "bench" }
  local read_at = {} -- "device/point value" -> md.time() at the read's completion
  local window = { from = math.huge, to = -math.huge }
  local recorded = 0
  site:_listen {
    sample = function(sd, _, changed)
      local t = md.time()
      if t < window.from or t > window.to then return end
      for _, name in ipairs(changed) do
        read_at[format("bench/%s/%s %s", sd.id, name, point.format(nil, sd._v[name]))] = t
        recorded = recorded + 1
      end
    end,
  }
  for i = 1, n do
    local id, url = address(urls, i)
    assert(site:add(id, PROFILE, url, { poll = 1 }))
  end
  local pub = assert(site:publish { mqtt = { host = b.host, port = b.port }, prefix = "bench",
    homeassistant = false })
  md.sleep(WARMUP)
  local cpu0, t0 = os.clock(), md.now()
  window.from, window.to = md.time(), md.time() + seconds
  md.sleep(seconds)
  local cpu, wall = os.clock() - cpu0, md.now() - t0
  local totals = site_totals(site)
  -- let the last values arrive, then stop the subscriber
  md.sleep(3)
  pub:close()
  site:close()
  sub:stop()
  local lat, late = {}, 0
  for _, line in ipairs(read_lines(out)) do
    local ts, key = line:match("^(%d+%.%d+) (.*)$")
    local t = key and read_at[key]
    if t then
      local d = tonumber(ts) - t
      lat[#lat + 1] = d
      read_at[key] = nil
      if d < 0 then late = late + 1 end
    end
  end
  table.sort(lat)
  result {
    devices = n, values_per_s = format("%.0f", recorded / seconds), recorded = recorded, delivered = #lat,
    negative = late, refused = pub.counts.failed,
    p50_ms = format("%.2f", (percentile(lat, 0.5) or 0 / 0) * 1000),
    p99_ms = format("%.2f", (percentile(lat, 0.99) or 0 / 0) * 1000),
    max_ms = format("%.2f", (lat[#lat] or 0 / 0) * 1000),
    cpu_percent = format("%.3f", cpu / wall * 100), failed = totals.failed, skipped = totals.skipped,
    rss_kib = proc_kib("VmRSS"),
  }
end

-- }=====

-- {===== orchestrator =====

local function parse_result(line)
  local t = {}
  for k, v in tostring(line):gmatch("(%S+)=(%S+)") do t[k] = tonumber(v) or v end
  return t
end

-- Run one phase in a fresh engine; its result line, parsed. The engine
-- waits with md.sleep (a blocking read of the child's output would stall
-- the loop), at most 10 minutes.
local function phase(name, urls_file, n, seconds)
  local out = urls_file .. "." .. name .. ".out"
  local cmd = format("%s --log-level warn %s %s %s %d %g > %s 2>&1", process.quote(md.home .. "/moondog"),
    process.quote(arg[0]), name, process.quote(urls_file), n, seconds, process.quote(out))
  local p <close> = assert(process.start(cmd))
  for _ = 1, 6000 do
    if not p:alive() then break end
    md.sleep(0.1)
  end
  p:stop()
  local last
  for _, line in ipairs(read_lines(out)) do
    if line:match("^result ") then last = line else io.stderr:write(line, "\n") end
  end
  local r = parse_result(last)
  assert(r.devices, "phase " .. name .. " printed no result (see its output above)")
  return r
end

local function cpu_ticks(pid)
  local f = io.open(format("/proc/%d/stat", pid))
  if not f then return nil end
  local s = f:read("a")
  f:close()
  local fields = {}
  for x in s:gsub("^.*%) ", ""):gmatch("%S+") do fields[#fields + 1] = x end
  return tonumber(fields[12]) + tonumber(fields[13]) -- utime + stime (fields 14, 15)
end

local function say(...)
  print(...)
  io.stdout:flush()
end

local function orchestrate(seconds, lat_n, buses)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. process.quote(dir)))
  local urls_file = dir .. "/urls.txt"
  local srv <close> = assert(process.start(format("%s %s serve %d %d > %s",
    process.quote(md.home .. "/moondog"), process.quote(arg[0]), buses, 3 * (seconds + WARMUP) + 60,
    process.quote(urls_file)) .. " 2>/dev/null"))
  local urls
  for _ = 1, 250 do -- at most 5 s
    local lines = read_lines(urls_file)
    if #lines == buses then -- "ready" is written after the URLs
      local f = assert(io.open(urls_file))
      local done = f:read("a"):find("ready\n", 1, true)
      f:close()
      if done then urls = lines break end
    end
    md.sleep(0.02)
  end
  assert(urls, "the simulator did not start within 5 s")
  local hz = 100 -- USER_HZ
  local function with_server_cpu(fn)
    local c0, t0 = cpu_ticks(srv.pid), md.now()
    local r = fn()
    r.server_cpu_percent = (cpu_ticks(srv.pid) - c0) / hz / (md.now() - t0) * 100
    return r
  end
  local N = 1000
  say(format("== 1000 SDM630 meters (%d float32 points each) on one site, every point polled each second; "
    .. "%d buses (tcp, %d units each) served by another process; %g s warm-up, %g s window",
    POINTS, #urls, math.ceil(N / #urls), WARMUP, seconds))
  local s = with_server_cpu(function() return phase("site", urls_file, N, seconds) end)
  local d = with_server_cpu(function() return phase("direct", urls_file, N, seconds) end)
  local r = with_server_cpu(function() return phase("raw", urls_file, N, seconds) end)
  say(format("site CPU: %.2f %% of one core (goal: under 10 %%; ratio to goal %.2f); simulator "
    .. "process %.1f %% (not counted)", s.cpu_percent, s.cpu_percent / 10, s.server_cpu_percent))
  say(format("site RSS: %.1f MB (peak %.1f MB) (goal: under 30 MB; ratio to goal %.2f)", s.rss_kib / 1024,
    s.hwm_kib / 1024, s.rss_kib / 1024 / 30))
  say(format("site polls: %d done of %d expected (%.1f %%); skipped cycles %d; failed polls %d; "
    .. "devices ok %d of %d", s.polls, s.expected, s.polls / s.expected * 100, s.skipped, s.failed,
    s.ok_devices, s.devices))
  say(format("site transactions per poll cycle: %.2f (one per point: %d; ratio %.3f)",
    s.transactions / s.polls, POINTS, s.transactions / s.polls / POINTS))
  say(format("reference, the same devices read by one md.every(1) task each without a site: %.2f %% CPU, "
    .. "RSS %.1f MB, %d of %d polls, %d failed, %.2f transactions per poll",
    d.cpu_percent, d.rss_kib / 1024, d.polls, d.expected, d.failed, d.transactions / math.max(1, d.polls)))
  say(format("floor, the same two reads per device as bare bus reads (nothing decoded): %.2f %% CPU, "
    .. "%d of %d polls, %d failed", r.cpu_percent, r.polls, r.expected, r.failed))
  say(format("CPU per device-poll: site %.1f us; direct loop %.1f us; bare reads %.1f us; site / direct "
    .. "%.2f (the site's bookkeeping); direct / bare %.2f (the driver's decoding)", s.cpu_us_per_poll,
    d.cpu_us_per_poll, r.cpu_us_per_poll, s.cpu_us_per_poll / d.cpu_us_per_poll,
    d.cpu_us_per_poll / r.cpu_us_per_poll))
  say()
  say("== read completion to arrival at a subscriber in another process (mosquitto_sub); the site "
    .. "publishes every value at QoS 1 through a local mosquitto")
  for n in tostring(lat_n):gmatch("%d+") do
    local l = phase("latency", urls_file, tonumber(n), seconds)
    say(format("%d meters: %d values read in %g s (%s/s), %d delivered and matched (%.1f %%); "
      .. "p50 %.2f ms, p99 %.2f ms, max %.2f ms (%d negative); engine CPU with the publisher %.2f %%; "
      .. "MQTT messages refused (queue full) %d; failed polls %d, skipped %d", l.devices, l.recorded, seconds,
      l.values_per_s, l.delivered, l.delivered / math.max(1, l.recorded) * 100, l.p50_ms, l.p99_ms, l.max_ms,
      l.negative, l.cpu_percent, l.refused, l.failed, l.skipped))
  end
  srv:stop()
  os.execute("rm -rf " .. process.quote(dir))
end

-- }=====

local mode = arg[1]
if mode == "serve" then
  serve(tonumber(arg[2]), tonumber(arg[3]))
elseif mode == "site" or mode == "direct" or mode == "raw" or mode == "latency" then
  local urls = read_lines(arg[2])
  assert(#urls > 0, "no URLs in " .. tostring(arg[2]))
  local run = ({ site = run_site, direct = run_direct, latency = run_latency,
    raw = function(u, n, sec) return run_direct(u, n, sec, true) end })[mode]
  local ok, err = xpcall(run, debug.traceback, urls, tonumber(arg[3]), tonumber(arg[4]))
  if not ok then -- the engine would go on polling: end it, so that the orchestrator does not wait
    io.stderr:write(tostring(err), "\n")
    md.exit(1)
  end
else
  local ok, err = xpcall(orchestrate, debug.traceback, tonumber(arg[1] or "20"), arg[2] or "100,1000",
    tonumber(arg[3] or "10"))
  if not ok then
    io.stderr:write(tostring(err), "\n")
    md.exit(1)
  end
end
md.exit(0)
