-- moondog.growatt.proxy with the fake datalogger and the fake cloud on
-- loopback: 1000 records through the proxy with every byte identical on
-- both sides (both directions); frames written one byte at a time; the
-- cloud unreachable (the proxy answers: ACKs, ping echo, clock set); the
-- MQTT broker (a real mosquitto) down while records flow, with forwarding
-- unaffected and publishing resumed after; hooks, counters and site values
-- (buffered records never as current values).

local T = require "moondog.testing"
local md = require "moondog"
local stream = require "moondog.stream"
local proxy = require "moondog.growatt.proxy"
local logger_sim = require "moondog.growatt.logger_sim"
local cloud_sim = require "moondog.growatt.cloud_sim"

local format = string.format

local function addr(port) return format("127.0.0.1:%d", port) end

-- Wait until the cloud has every byte the logger sent and the logger every
-- byte the cloud sent (bounded).
local function settle(logger, cloud, what)
  T.wait_for(function()
    return #cloud:received_bytes() == #logger:sent_bytes()
      and #logger:received_bytes() == #cloud:sent_bytes()
  end, 20, what)
end

T.test("1000 records through the proxy: every byte identical, both ways", function()
  local site <close> = md.site.new { name = "gw" }
  local cloud <close> = assert(cloud_sim.start { listen = "127.0.0.1:0", commands_every = 100 })
  local p <close> = assert(proxy.start { listen = "127.0.0.1:0", cloud = addr(cloud:port()), site = site })
  local seen = 0
  p:on_record(function(_, rtype) if rtype == 0x04 then seen = seen + 1 end end)
  local l <close> = assert(logger_sim.start { server = addr(p:port()), records = 1000, ping_every = 50,
                                             buffered = 3 })
  assert(l:wait(60))
  settle(l, cloud, "every byte through")
  T.eq(cloud:received_bytes() == l:sent_bytes(), true, "logger -> cloud identical")
  T.eq(l:received_bytes() == cloud:sent_bytes(), true, "cloud -> logger identical")
  T.eq(cloud.counts.records, 1000)
  T.eq(cloud.counts.buffered, 3)
  T.eq(cloud.counts.pings, 20)
  T.eq(l.counts.acks, 1 + 3 + 1000)
  T.eq(l.counts.ack_timeouts, 0, "each record sent once the one before was ACKed, none waited in vain")
  T.eq(l.counts.answers, 11, "the logger answered the cloud's 10 register reads and its clock set")
  T.wait_for(function() return seen == 1000 end, 10, "hooks for every record")
  T.wait_for(function()
    return site._devices.growatt_siminv0001 and site.growatt_siminv0001.pv_power == 1000
  end, 10, "the last record's values")
  local s = p:stats().loggers.SIMLOG0001
  T.eq(s.records, 1000)
  T.eq(s.buffered, 3)
  T.eq(s.crc_errors, 0)
  T.eq(s.commands, 10 + 1, "the cloud's reads and its clock set")
  T.eq(s.bytes_up, #l:sent_bytes())
  T.eq(s.bytes_down, #l:received_bytes())
  T.eq(s.standalone, false)
  local st = site:status()
  T.eq(st.growatt[1].records, 1000, "counters in site:status()")
  assert(tostring(st):match("SIMLOG0001%s+proxied%s+1000%s+3"), tostring(st))
  l:close()
  p:close()
  cloud:close()
end, { timeout = 120 })

-- The fake datalogger waits for each record's ACK, as a real one does: a
-- server that reads but never ACKs gets one record per ack_timeout, each
-- wait counted; with burst it gets them all without a wait.
T.test("the fake datalogger waits for each ACK (bounded, counted); burst does not", function()
  local l <close> = assert(stream.listen("127.0.0.1", 0))
  local got = {}
  local server = md.spawn(function()
    local conn <close> = assert(l:accept(5))
    while true do
      local bytes = conn:read(65536)
      if not bytes then break end
      got[#got + 1] = bytes
    end
  end)
  local sim <close> = assert(logger_sim.start { server = addr(l:port()), records = 2, ack_timeout = 0.02 })
  assert(sim:wait(10))
  T.eq(sim.counts.ack_timeouts, 1 + 2, "the announce and both records waited in vain")
  T.eq(sim.counts.records, 2)
  T.wait_for(function() return #table.concat(got) == #sim:sent_bytes() end, 5, "every byte at the server")
  sim:close()
  server:join(5)
  local server2 = md.spawn(function()
    local conn <close> = assert(l:accept(5))
    while conn:read(65536) do end
  end)
  local burst <close> = assert(logger_sim.start { server = addr(l:port()), records = 20, burst = true,
                                                 ack_timeout = 5 })
  assert(burst:wait(10))
  T.eq(burst.counts.ack_timeouts, 0, "burst: no wait for an ACK")
  T.eq(burst.counts.records, 20)
  burst:close()
  server2:join(5)
end)

-- The proxy gives the decoder no copy of a plain ACK from the cloud; one
-- with a bad CRC is still counted (and forwarded unchanged).
T.test("an ACK from the cloud with a bad CRC is counted as a CRC error, a good one is not", function()
  local core = require "moondog.growatt.core"
  local cl <close> = assert(stream.listen("127.0.0.1", 0))
  local sent = {}
  local cloud = md.spawn(function()
    local conn <close> = assert(cl:accept(5))
    local p = core.parser()
    while true do
      local bytes = conn:read(65536)
      if not bytes then break end
      p:push(bytes)
      while true do
        local f = p:next()
        if not f then break end
        local ack = core.ack(f.seq, f.protocol, f.unit, f.type)
        if f.type == 0x04 then -- the record's ACK with a broken CRC
          ack = ack:sub(1, -2) .. string.char(ack:byte(-1) ~ 0xFF)
        end
        sent[#sent + 1] = ack
        assert(conn:write(ack))
      end
    end
  end)
  local p <close> = assert(proxy.start { listen = "127.0.0.1:0", cloud = addr(cl:port()) })
  local l <close> = assert(logger_sim.start { server = addr(p:port()), records = 1, ack_timeout = 0.05 })
  assert(l:wait(10))
  T.wait_for(function() return #l:received_bytes() == #table.concat(sent) end, 5, "every ACK at the logger")
  T.eq(l:received_bytes(), table.concat(sent), "forwarded unchanged")
  T.eq(l.counts.acks, 1, "the logger took the announce's ACK only")
  T.wait_for(function() return p:stats().loggers.SIMLOG0001.crc_errors == 1 end, 5, "the bad ACK counted")
  l:close()
  p:close()
  cloud:join(5)
end)

T.test("frames written one byte at a time arrive unchanged and are decoded", function()
  local site <close> = md.site.new { name = "gw" }
  local cloud <close> = assert(cloud_sim.start { listen = "127.0.0.1:0" })
  local p <close> = assert(proxy.start { listen = "127.0.0.1:0", cloud = addr(cloud:port()), site = site })
  local l <close> = assert(logger_sim.start { server = addr(p:port()), records = 5, chunk = 1, protocol = 5,
                                             ping_every = 2, buffered = 1 })
  assert(l:wait(30))
  settle(l, cloud, "every byte through")
  T.eq(cloud:received_bytes() == l:sent_bytes(), true, "identical")
  T.wait_for(function() return p:stats().loggers.SIMLOG0001 and p:stats().loggers.SIMLOG0001.records == 5 end,
    10, "5 records decoded")
  T.eq(p:stats().loggers.SIMLOG0001.buffered, 1)
  T.eq(p:stats().loggers.SIMLOG0001.crc_errors, 0)
  T.eq(site.growatt_siminv0001.pv_power, 5.0, "the last live record, not the buffered one")
  l:close()
  p:close()
  cloud:close()
end, { timeout = 60 })

T.test("cloud unreachable: the proxy answers the logger itself", function()
  local gone = assert(stream.listen("127.0.0.1", 0))
  local dead = gone:port()
  gone:close()
  local p <close> = assert(proxy.start { listen = "127.0.0.1:0", cloud = addr(dead), cloud_timeout = 2,
                                         clock = function() return 1717243200 end })
  local l <close> = assert(logger_sim.start { server = addr(p:port()), records = 20, ping_every = 5,
                                             buffered = 2 })
  assert(l:wait(30))
  T.wait_for(function() return l.counts.acks == 1 + 2 + 20 and l.counts.ping_echoes == 4 end, 10,
    "ACKs and ping echoes from the proxy")
  T.eq(l.counts.config_sets, 1, "one clock set after the announce")
  T.eq(l.counts.answers, 1, "the logger answered the clock set")
  local s = p:stats().loggers.SIMLOG0001
  T.eq(s.standalone, true)
  T.eq(s.records, 20)
  l:close()
  p:close()
end, { timeout = 60 })

T.test("no cloud configured: standalone from the start", function()
  local p <close> = assert(proxy.start { listen = "127.0.0.1:0", cloud = false })
  local l <close> = assert(logger_sim.start { server = addr(p:port()), records = 3, protocol = 2 })
  assert(l:wait(10))
  T.wait_for(function() return l.counts.acks == 4 end, 10, "protocol-2 ACKs")
  l:close()
  p:close()
end)

T.test("broker down: forwarding unaffected, publishing resumes", function()
  local broker = require "moondog.mqtt.broker"
  local b <close>, err, code = broker.start {}
  if not b and code == "no_broker" then T.skip("mosquitto is not installed") end
  assert(b, err)
  local site <close> = md.site.new { name = "gw" }
  local pub = assert(site:publish { mqtt = { host = b.host, port = b.port }, prefix = "t13" })
  local cloud <close> = assert(cloud_sim.start { listen = "127.0.0.1:0" })
  local p <close> = assert(proxy.start { listen = "127.0.0.1:0", cloud = addr(cloud:port()), site = site,
                                         publisher = pub })
  local l1 <close> = assert(logger_sim.start { server = addr(p:port()), records = 5, buffered = 1 })
  assert(l1:wait(10))
  settle(l1, cloud, "first logger through")
  T.wait_for(function() return pub:stats().published > 0 end, 10, "published while the broker runs")
  b:stop()
  local l2 <close> = assert(logger_sim.start { server = addr(p:port()), records = 200, serial = "SIMLOG0002",
                                              inverter = "SIMINV0002", buffered = 2 })
  assert(l2:wait(30))
  T.wait_for(function()
    return #cloud:received_bytes() == #l1:sent_bytes() + #l2:sent_bytes()
      and #l2:received_bytes() + #l1:received_bytes() == #cloud:sent_bytes()
  end, 20, "second logger through while the broker is down")
  T.eq(l2.counts.acks, 1 + 2 + 200, "every record ACKed by the cloud")
  T.wait_for(function()
    return site._devices.growatt_siminv0002 and site.growatt_siminv0002.pv_power == 200
  end, 10, "site values while the broker is down")
  local before = pub:stats().published
  b:start()
  T.wait_for(function() return pub:stats().published > before end, 30, "publishing resumes")
  l1:close()
  l2:close()
  p:close()
  cloud:close()
  pub:close()
  b:stop()
end, { timeout = 120 })

T.test("a pair goes offline when its records stop, and back with the next", function()
  local site <close> = md.site.new { name = "gw" }
  local p <close> = assert(proxy.start { listen = "127.0.0.1:0", cloud = false, site = site, interval = 0.2,
                                         availability_factor = 2, check_every = 0.1 })
  local l <close> = assert(logger_sim.start { server = addr(p:port()), records = 2 })
  assert(l:wait(10))
  T.wait_for(function() return site._devices.growatt_siminv0001 and site.growatt_siminv0001.pv_power == 2 end,
    10, "values")
  T.wait_for(function() return select(3, site.growatt_siminv0001:get("pv_power")) == "offline" end, 10,
    "offline after 2 intervals without a record")
  local l2 <close> = assert(logger_sim.start { server = addr(p:port()), records = 1 })
  assert(l2:wait(10))
  T.wait_for(function() return select(3, site.growatt_siminv0001:get("pv_power")) == "ok" end, 10,
    "back with the next record")
  l:close()
  l2:close()
  p:close()
end)

T.test("buffered records go to their own topic with their own time", function()
  local broker = require "moondog.mqtt.broker"
  local b <close>, err, code = broker.start {}
  if not b and code == "no_broker" then T.skip("mosquitto is not installed") end
  assert(b, err)
  local site <close> = md.site.new { name = "gw" }
  local pub = assert(site:publish { mqtt = { host = b.host, port = b.port }, prefix = "t13" })
  local sub = assert(md.mqtt.connect { host = b.host, port = b.port })
  local got, configs = {}, {}
  assert(sub:subscribe("t13/growatt/+/buffered", function(topic, payload)
    got[#got + 1] = { topic, payload }
  end))
  assert(sub:subscribe("homeassistant/sensor/+/+/config", function(topic, payload)
    configs[topic] = payload
  end))
  T.wait_for(function() return sub:status() == "connected" end, 10, "subscriber connected")
  md.sleep(0.2)
  local p <close> = assert(proxy.start { listen = "127.0.0.1:0", cloud = false, site = site,
                                         publisher = pub })
  local l <close> = assert(logger_sim.start { server = addr(p:port()), records = 1, buffered = 2 })
  assert(l:wait(10))
  T.wait_for(function() return #got == 2 end, 10, "two buffered messages")
  T.eq(got[1][1], "t13/growatt/growatt_siminv0001/buffered")
  assert(got[1][2]:find('"time":"2024-05-31T23:01:00"', 1, true), got[1][2])
  assert(got[1][2]:find('"pv_power":101,', 1, true), got[1][2])
  T.eq(site.growatt_siminv0001.pv_power, 1, "the live record's value, not a buffered one's")
  T.wait_for(function() return configs["homeassistant/sensor/t13/growatt_siminv0001_pv_power/config"] end, 10,
    "discovery of the pair's PV power")
  local cfg = configs["homeassistant/sensor/t13/growatt_siminv0001_pv_power/config"]
  assert(cfg:find('"manufacturer":"Growatt"', 1, true), cfg)
  assert(cfg:find('"serial_number":"SIMINV0001"', 1, true), cfg)
  assert(cfg:find('MIN (device type 5100)"', 1, true), cfg)
  l:close()
  p:close()
  sub:close()
  pub:close()
  b:stop()
end, { timeout = 60 })

T.test("moondog growatt proxy / logger / cloud from the shell", function()
  local dir <close> = T.tmpdir()
  local q = T.quote
  local cloud <close> = T.start(dir, "cloud",
    format("%s growatt cloud --listen 127.0.0.1:0", q(md.paths.exe)))
  local caddr = cloud:first_line()
  assert(caddr:match("^127%.0%.0%.1:%d+$"), caddr)
  local px <close> = T.start(dir, "proxy", format("%s growatt proxy --listen 127.0.0.1:0 --cloud %s",
    q(md.paths.exe), caddr))
  local paddr = px:first_line()
  assert(paddr:match("^127%.0%.0%.1:%d+$"), paddr)
  local out, rc = T.sh(format(
    "%s growatt logger --server %s --records 3 --interval 0 --buffered 1 2>/dev/null",
    q(md.paths.exe), paddr))
  T.eq(rc, 0, "logger exit code")
  T.eq(out, "sent 3 records, 1 buffered; 5 ACKs\n")
  local _, rc2 = T.sh(format("%s growatt proxy --cloud x:1 --standalone 2>/dev/null", q(md.paths.exe)))
  T.eq(rc2, 2, "--cloud with --standalone is a usage error")
end)

T.test("log file per datalogger, rotated; SIGUSR1 writes the counters (a child engine)", function()
  local dir <close> = T.tmpdir()
  local q = T.quote
  local px <close> = T.start(dir, "proxy", format("%s growatt proxy --listen 127.0.0.1:0 --standalone "
    .. "--log-dir %s --log-max 4096", q(md.paths.exe), q(dir.path)))
  local paddr = px:first_line()
  local out, rc = T.sh(format("%s growatt logger --server %s --records 25 --interval 0 --buffered 2 "
    .. "2>/dev/null", q(md.paths.exe), paddr))
  T.eq(rc, 0, "logger exit code: " .. out)
  T.sh(format("kill -USR1 %d", px.pid))
  local err
  T.wait_for(function()
    err = T.read_file(px.err) or ""
    return err:find("datalogger SIMLOG0001: 25 records, 2 buffered", 1, true) ~= nil
  end, 10, "the counters in the child's log")
  assert(px:alive(), "SIGUSR1 does not end the proxy")
  T.wait_for(function()
    local log = T.read_file(dir.path .. "/SIMLOG0001.log") or ""
    return log:find("counters: datalogger SIMLOG0001: 25 records", 1, true) ~= nil
  end, 10, "the counters in the logger's log file (flushed on SIGUSR1)")
  local log = T.read_file(dir.path .. "/SIMLOG0001.log")
  local old = T.read_file(dir.path .. "/SIMLOG0001.log.1")
  assert(old, "rotated at 4096 bytes: a .1 file")
  assert(#log <= 4096 and #old <= 4096, "each file within the bound")
  local all = old .. log
  assert(all:find("up   type 0x04 seq", 1, true), "data records logged")
  assert(all:find("layout tlx pv_power=", 1, true), "with a decoded summary")
  assert(all:find("up   type 0x50", 1, true) and all:find("recorded 20", 1, true),
    "buffered ones with their time")
  assert(all:find("own  ack type 0x04 seq", 1, true), "standalone: the proxy's own answers")
end)

T.test("a logger whose bytes are no Growatt frames (AES firmware): reported, still forwarded", function()
  local cloud <close> = assert(cloud_sim.start { listen = "127.0.0.1:0" })
  local p <close> = assert(proxy.start { listen = "127.0.0.1:0", cloud = addr(cloud:port()) })
  local c <close> = assert(stream.connect("127.0.0.1", p:port()))
  local blob = {}
  for i = 1, 300 do blob[i] = string.char((i * 73 + 11) % 256) end
  blob = "\x16\x03\x01" .. table.concat(blob) -- not a Growatt header: protocol id 0x0116
  assert(c:write(blob))
  T.wait_for(function() return cloud:received_bytes() == blob end, 10, "the bytes at the cloud, unchanged")
  T.wait_for(function()
    local l = p:loggers()[1]
    return l and l:stats().encrypted
  end, 10, "flagged as encrypted")
  c:close()
  p:close()
  cloud:close()
end)

T.test("blocking the cloud's commands: the clock set passes, a server change and a write do not", function()
  local cloud <close> = assert(cloud_sim.start { listen = "127.0.0.1:0", commands_every = 2,
    config_after_announce = { [17] = "10.0.0.1" }, write_after_announce = { [3] = 0 } })
  local p <close> = assert(proxy.start { listen = "127.0.0.1:0", cloud = addr(cloud:port()), block = true })
  local l <close> = assert(logger_sim.start { server = addr(p:port()), records = 4, chunk = 7 })
  assert(l:wait(10))
  T.wait_for(function() return l.counts.acks == 5 and l.counts.answers == 3 end, 10,
    "ACKs, the clock set and the two reads answered")
  T.eq(l.counts.config_sets, 1, "only the clock set reached the logger")
  T.eq(l.config[17], nil, "the server address unchanged")
  T.eq(p:stats().loggers.SIMLOG0001.blocked, 2)
  l:close()
  p:close()
  cloud:close()
end)

T.test("export limit from MQTT / Home Assistant: number entities, commands reach registers 122/123",
function()
  local broker = require "moondog.mqtt.broker"
  local b <close>, err, code = broker.start {}
  if not b and code == "no_broker" then T.skip("mosquitto is not installed") end
  assert(b, err)
  local site <close> = md.site.new { name = "gw" }
  local pub = assert(site:publish { mqtt = { host = b.host, port = b.port }, prefix = "t13w" })
  local cloud <close> = assert(cloud_sim.start { listen = "127.0.0.1:0" })
  local p <close> = assert(proxy.start { listen = "127.0.0.1:0", cloud = addr(cloud:port()), site = site,
                                         publisher = pub,
                                         writable = { "export_limit_mode", "export_limit_rate" } })
  local l <close> = assert(logger_sim.start { server = addr(p:port()), records = 200, interval = 0.05,
                                             holding = { [122] = 0, [123] = 1000 } })
  local c <close> = assert(md.mqtt.connect { host = b.host, port = b.port })
  local last = {}
  for _, f in ipairs { "homeassistant/number/t13w/#", "t13w/growatt_siminv0001/#" } do
    assert(c:subscribe(f, function(topic, payload) last[topic] = payload end, { qos = 1 }))
  end
  local cfg_topic = "homeassistant/number/t13w/growatt_siminv0001_export_limit_rate/config"
  T.wait_for(function() return last[cfg_topic] end,
    10, "the export limit rate is a Home Assistant number")
  T.eq(site.growatt_siminv0001._points.active_power_rate, nil, "not allow-listed here: no such point")
  T.wait_for(function() return site.growatt_siminv0001.export_limit_rate == 100 end, 10,
    "the number shows what the inverter holds (register 123 = 1000)")
  assert(c:publish("t13w/growatt_siminv0001/export_limit_mode/set", "1", { qos = 1 }))
  assert(c:publish("t13w/growatt_siminv0001/export_limit_rate/set", "-12.5", { qos = 1 }))
  T.wait_for(function() return l.holding[122] == 1 end, 10, "register 122 written")
  T.wait_for(function() return l.holding[123] == 0x10000 - 125 end, 10, "register 123 = -125 (0.1 %)")
  last["t13w/growatt_siminv0001/export_limit_rate/result"] = nil
  assert(c:publish("t13w/growatt_siminv0001/export_limit_rate/set", "250", { qos = 1 }))
  T.wait_for(function() return last["t13w/growatt_siminv0001/export_limit_rate/result"] end, 10,
    "the command's result")
  assert(last["t13w/growatt_siminv0001/export_limit_rate/result"]:find('"ok":false', 1, true))
  T.eq(l.holding[123], 0x10000 - 125, "out of range: nothing sent")
  assert(l:wait(20))
  T.eq(p:stats().loggers.SIMLOG0001.own_commands, 4, "two reads, two writes")
  l:close()
  p:close()
  cloud:close()
end)

T.test("a writable point: the site's write reaches the inverter through the logger", function()
  local site <close> = md.site.new { name = "gw" }
  local cloud <close> = assert(cloud_sim.start { listen = "127.0.0.1:0", commands_every = 1 })
  local p <close> = assert(proxy.start { listen = "127.0.0.1:0", cloud = addr(cloud:port()), site = site,
                                         writable = true })
  local l <close> = assert(logger_sim.start { server = addr(p:port()), records = 50, interval = 0.02,
                                             holding = { [3] = 100 } })
  T.wait_for(function() return site._devices.growatt_siminv0001 ~= nil end, 10, "the pair's device")
  local ok, _, code = site.growatt_siminv0001:write("active_power_rate", 150)
  T.eq(ok, nil)
  T.eq(code, "out_of_range", "checked against the point before anything is sent")
  assert(site.growatt_siminv0001:write("active_power_rate", 60))
  T.wait_for(function() return l.holding[3] == 60 end, 10, "register 3 written")
  assert(l:wait(10))
  T.eq(p:stats().loggers.SIMLOG0001.own_commands, 4, "reads of registers 3, 122, 123; the write")
  l:close()
  p:close()
  cloud:close()
end)
