-- site:add(id, "auto", target) for a device that is absent when the site
-- starts: it is kept, down and without a profile, probed again with the
-- site's retry backoff, and becomes the profile that fits once it answers
-- (a Modbus meter by the profiles' probes, an RCT Power device at rct://
-- by its identity objects); one that answers with nothing any profile
-- fits stops being probed. Simulators start inside the tests on a port
-- that was free when the device was added (real connection refusals).

local T = require "moondog.testing"
local md = require "moondog"
local cjson = require "cjson"
local broker = require "moondog.mqtt.broker"

local format = string.format

-- A free loopback port that nothing listens on (yet).
local function free_port()
  local srv = assert(md.modbus.serve("tcp://127.0.0.1:0"))
  local port = srv:port()
  srv:close()
  return port
end

-- An SDM72D-M register image (written by hand: model code 0x0089 in
-- holding 0xFC02, L1 230.5 V as float32 0x43668000) on unit 1.
local function sdm72d(port)
  local srv = assert(md.modbus.serve(format("tcp://127.0.0.1:%d", port), { units = { 1 } }))
  srv:set(1, "holding", 0xFC02, { 0x0089 })
  srv:set(1, "input", 0x00, { 0x4366, 0x8000 })
  return srv
end

T.test("auto: a Modbus device absent at start is probed until it answers, then read as its profile",
function()
  local port = free_port()
  local url = format("tcp://127.0.0.1:%d?unit=1&timeout=0.3&backoff=0.05&backoff_max=0.1", port)
  local site <close> = md.site.new { name = "auto_late", retry = { 0.05, 0.2 } }
  local points_events = 0
  local stop = site:_listen { points = function(sd)
    if sd.id == "meter" then points_events = points_events + 1 end
  end }
  local meter = assert(site:add("meter", "auto", url, { poll = 0.1 }))
  local s = meter:stats()
  T.eq(s.profile, "auto", "no profile yet")
  T.eq(s.state, "offline", "absent at start: down at once")
  assert(s.retry_in, "a retry is due")
  T.eq(#meter:points(), 0, "no points yet")
  local d, _, code = meter:describe()
  T.eq(d, nil, "nothing to describe yet")
  T.eq(code, "offline", "describe says why")
  T.wait_for(function() return meter:stats().failed >= 2 end, 5, "probed again with backoff")
  local found = false
  for _, row in ipairs(site:status().devices) do found = found or row.id == "meter" end
  T.eq(found, true, "site:status lists the device while it is probed")
  local _srv <close> = sdm72d(port)
  T.wait_for(function() return meter:stats().profile == "eastron/sdm72d" end, 5, "identified")
  T.wait_for(function() return meter.l1_voltage ~= nil end, 5, "then polled")
  T.eq(meter.l1_voltage, 230.5, "read as if named")
  T.eq(meter:stats().state, "ok", "online")
  T.eq(meter.profile.model, "SDM72D-M", "the site device took the profile")
  T.eq(points_events, 1, "consumers were told of the new points")
  stop()
end)

T.test("auto: a late device that answers with nothing a profile fits stops being probed", function()
  local port = free_port()
  local url = format("tcp://127.0.0.1:%d?unit=1&timeout=0.3&backoff=0.05&backoff_max=0.1", port)
  local site <close> = md.site.new { name = "auto_none", retry = { 0.05, 0.1 } }
  local dev = assert(site:add("thing", "auto", url))
  local srv <close> = assert(md.modbus.serve(format("tcp://127.0.0.1:%d", port), { units = { 1 } }))
  srv:set(1, "holding", 0, { 1 })
  T.wait_for(function() return dev:stats().last_code == "no_profile" end, 5, "answered, nothing fits")
  local n = dev:stats().polls
  local requests = srv:stats().requests
  md.sleep(0.3)
  T.eq(dev:stats().polls, n, "no more probing")
  T.eq(srv:stats().requests, requests, "nothing more asked of the device")
  T.eq(dev:stats().state, "offline", "kept, down")
  T.eq(dev:stats().profile, "auto", "still without a profile")
end)

T.test("auto: an RCT Power device (rct://) by its identity objects, present or late", function()
  local sim <close> = assert(md.rct.serve { values = { inverter_sn = "0123456789" } })
  local site <close> = md.site.new { name = "auto_rct", retry = { 0.05, 0.2 } }
  local bat = assert(site:add("battery", "auto", format("rct://127.0.0.1:%d", sim:port()), { poll = 0.1 }))
  T.eq(bat:stats().profile, "rct_power", "identified at once")
  T.wait_for(function() return bat.battery_soc ~= nil end, 5, "polled")
  local port = free_port()
  local late = assert(site:add("late", "auto", format("rct://127.0.0.1:%d", port), { poll = 0.1 }))
  T.eq(late:stats().profile, "auto", "absent: not yet known")
  T.eq(late:stats().state, "offline", "down")
  local _sim2 <close> = assert(md.rct.serve { port = port })
  T.wait_for(function() return late:stats().profile == "rct_power" end, 10, "identified when it answers")
  T.wait_for(function() return late.battery_soc ~= nil end, 5, "then polled")
end)

T.test("auto: a device removed while it is probed stops being probed", function()
  local port = free_port()
  local site <close> = md.site.new { name = "auto_rm", retry = { 0.05, 0.1 } }
  assert(site:add("gone", "auto", format("tcp://127.0.0.1:%d?unit=1&timeout=0.3", port)))
  T.eq(site:remove("gone"), true, "removed")
  T.eq(#site:devices(), 0, "no device left")
end)

T.test("auto: a late device is announced to Home Assistant and published once it is known", function()
  T.need("mosquitto", "mosquitto")
  local dir <close> = T.tmpdir()
  local b <close> = assert(broker.start { dir = dir.path })
  local seen = {}
  local c <close> = assert(md.mqtt.connect { host = b.host, port = b.port })
  assert(c:subscribe("#", function(topic, payload) seen[topic] = payload end, { qos = 1 }))
  local port = free_port()
  local url = format("tcp://127.0.0.1:%d?unit=1&timeout=0.3&backoff=0.05&backoff_max=0.1", port)
  local site <close> = md.site.new { name = "auto_mqtt", retry = { 0.05, 0.2 } }
  local meter = assert(site:add("meter", "auto", url, { poll = 0.1 }))
  assert(site:publish { mqtt = { host = b.host, port = b.port }, prefix = "a" })
  T.wait_for(function() return meter:stats().failed >= 2 end, 5, "probed while absent")
  T.eq(seen["homeassistant/sensor/a/meter_l1_voltage/config"], nil, "nothing announced before it is known")
  local _srv <close> = sdm72d(port)
  T.wait_for(function() return seen["a/meter/l1_voltage"] == "230.5" end, 10, "published")
  T.wait_for(function() return seen["homeassistant/sensor/a/meter_l1_voltage/config"] end, 10, "announced")
  local cfg = cjson.decode(seen["homeassistant/sensor/a/meter_l1_voltage/config"])
  T.eq(cfg.device.model, "SDM72D-M", "as the profile it became")
  T.wait_for(function() return seen["a/meter/availability"] == "online" end, 5, "available")
  T.wait_for(function() return seen["a/meter/diagnostics/device_state"] == "ok" end, 5,
    "its diagnostics, as any polled device's")
end)
