-- A fleet (docs/fleet.md): two moondog engines, real processes, each
-- publishing to its own local mosquitto, both bridged to a central
-- mosquitto with per-site topic prefixes (the bridge's topic remapping:
-- moondog/# locally is sites/<site>/moondog/# centrally). Home Assistant
-- discovery and commands work through the bridges, and a bridge outage
-- loses nothing at QoS 1: every message of a sequence each engine
-- publishes arrives exactly once at a central subscriber.
--
-- The outage cuts the link between each local broker and the central one:
-- each bridge connects through a socat relay, stopped for the outage and
-- started again on the same port. Brokers do not run in simulated time, so
-- the outage is real time: MOONDOG_FLEET_OUTAGE seconds, 30 by default
-- (what a bridge must ride out; the test takes about 40 s).

local T = require "moondog.testing"
local md = require "moondog"
local cjson = require "cjson"
local broker = require "moondog.mqtt.broker"
local modbus_dev = require "moondog.devices.modbus"

local format = string.format

local OUTAGE = tonumber(os.getenv("MOONDOG_FLEET_OUTAGE") or "") or 30
local EVERY = 0.05 -- seconds between two messages of a sequence

-- A free loopback port that nothing listens on (yet).
local function free_port()
  local srv = assert(md.modbus.serve("tcp://127.0.0.1:0"))
  local port = srv:port()
  srv:close()
  return port
end

-- The site script each engine runs: its own simulated inverter (served
-- by the test), MQTT to its local broker, Home Assistant told the central
-- topics, and a numbered sequence of QoS 1 messages on moondog/seq.
local SITE = [[
local md = require "moondog"
local name, port, url, count, every = ...
local site = md.site.new { name = name }
assert(site:add("inverter", "sim_inverter", url, { poll = 0.2 }))
assert(site:publish {
  mqtt = { host = "127.0.0.1", port = tonumber(port) }, prefix = "moondog",
  homeassistant = { topic_prefix = "sites/" .. name .. "/moondog" },
})
site:spawn(function()
  local c = assert(md.mqtt.connect { host = "127.0.0.1", port = tonumber(port), client_id = name .. "-seq" })
  for n = 1, tonumber(count) do
    assert(c:publish("moondog/seq", tostring(n), { qos = 1 }))
    md.sleep(tonumber(every))
  end
  md.log.info("sequence done")
end, { name = "sequence" })
]]

-- The bridge section of a site's local mosquitto.conf.
local function bridge_conf(name, relay_port)
  return table.concat({
    "max_queued_messages 100000",
    "connection central",
    format("address 127.0.0.1:%d", relay_port),
    format("clientid bridge-%s", name),
    "cleansession false",
    "restart_timeout 1",
    "keepalive_interval 5",
    "try_private true",
    "notifications false",
    format('topic moondog/# out 1 "" sites/%s/', name),
    format('topic moondog/+/+/set in 1 "" sites/%s/', name),
    "topic homeassistant/# out 1",
    "topic homeassistant/status in 1",
  }, "\n")
end

local function relay(dir, name, port, central)
  return T.start(dir, "relay-" .. name,
    format("socat TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr TCP:127.0.0.1:%d", port, central))
end

T.test("fleet: two engines bridged to a central broker; discovery, commands, a bridge outage at QoS 1",
function()
  T.need("mosquitto", "mosquitto")
  T.need("socat", "socat")
  local dir <close> = T.tmpdir()
  local central <close> = assert(broker.start {})
  local sites, names = {}, { "north", "south" }
  for _, name in ipairs(names) do
    local s = { name = name, relay_port = free_port() }
    s.sim = assert(modbus_dev.simulate("sim_inverter", "tcp://127.0.0.1:0", { values = {
      ac_power = name == "north" and 3120 or 1560, active_power_limit = 100 } }))
    s.relay = relay(dir, name, s.relay_port, central.port)
    s.broker = assert(broker.start { persistence = true, conf_extra = bridge_conf(name, s.relay_port) })
    sites[#sites + 1] = s
  end
  -- the central subscriber: every site's topics and Home Assistant's
  local c = assert(md.mqtt.connect { host = central.host, port = central.port })
  local last, seqs, arrived = {}, { north = {}, south = {} }, { north = {}, south = {} }
  assert(c:subscribe("sites/#", function(topic, payload)
    last[topic] = payload
    local site = topic:match("^sites/(%w+)/moondog/seq$")
    if site then
      local n = tonumber(payload)
      seqs[site][n] = (seqs[site][n] or 0) + 1
      arrived[site][n] = arrived[site][n] or md.now()
    end
  end, { qos = 1 }))
  assert(c:subscribe("homeassistant/#", function(topic, payload) last[topic] = payload end, { qos = 1 }))
  T.wait_for(function()
    local log = T.read_file(central.log) or ""
    return log:find("bridge-north", 1, true) and log:find("bridge-south", 1, true)
  end, 15, "both bridges connected to the central broker")

  local count = math.ceil((OUTAGE + 5) / EVERY)
  local script = dir.path .. "/site.lua"
  T.write_file(script, SITE)
  for _, s in ipairs(sites) do
    s.engine = T.start(dir, "moondog-" .. s.name, format("%s %s %s %d %s %d %g", T.quote(md.paths.exe),
      T.quote(script), s.name, s.broker.port, T.quote(s.sim:url() .. "?unit=1"), count, EVERY))
  end

  -- discovery through the bridge, with the central topics in it
  for _, s in ipairs(sites) do
    local node = "sites_" .. s.name .. "_moondog"
    local cfg_topic = format("homeassistant/sensor/%s/inverter_ac_power/config", node)
    T.wait_for(function() return last[cfg_topic] ~= nil end, 15, cfg_topic)
    local cfg = cjson.decode(last[cfg_topic])
    T.eq(cfg.state_topic, format("sites/%s/moondog/inverter/ac_power", s.name), "state topic in discovery")
    T.wait_for(function() return last[cfg.state_topic] ~= nil end, 10, cfg.state_topic)
    T.eq(tonumber(last[cfg.state_topic]), s.name == "north" and 3120 or 1560, s.name .. "'s power, centrally")
  end

  -- a command published centrally reaches north's engine and its device, not south's
  local num_topic = "homeassistant/number/sites_north_moondog/inverter_active_power_limit/config"
  T.wait_for(function() return last[num_topic] ~= nil end, 10, num_topic)
  local num = cjson.decode(last[num_topic])
  T.eq(num.command_topic, "sites/north/moondog/inverter/active_power_limit/set", "command topic")
  assert(c:publish(num.command_topic, "50", { qos = 1 }))
  T.wait_for(function() return sites[1].sim:get("active_power_limit") == 50 end, 10,
    "north's inverter limit set to 50 through the bridge")
  T.wait_for(function() return last["sites/north/moondog/inverter/active_power_limit"] == "50" end, 10,
    "the new limit published back")
  T.eq(sites[2].sim:get("active_power_limit"), 100, "south's inverter untouched")

  -- the outage: both links down for OUTAGE seconds while the engines publish
  T.wait_for(function() return seqs.north[10] and seqs.south[10] end, 10, "10 messages of each sequence")
  for _, s in ipairs(sites) do s.relay:stop() end
  local cut = {}
  for _, name in ipairs(names) do cut[name] = #seqs[name] end
  md.sleep(OUTAGE)
  for _, name in ipairs(names) do
    T.eq(#seqs[name] <= cut[name] + 1, true, name .. ": nothing arrived during the outage")
  end
  local restored = md.now()
  for _, s in ipairs(sites) do s.relay = relay(dir, s.name, s.relay_port, central.port) end
  T.wait_for(function() return seqs.north[count] and seqs.south[count] end, OUTAGE + 20,
    "both sequences complete at the central broker")
  md.sleep(0.5) -- a late duplicate would arrive now
  for _, name in ipairs(names) do
    local missing, twice = {}, {}
    for n = 1, count do
      if not seqs[name][n] then missing[#missing + 1] = n end
      if (seqs[name][n] or 0) > 1 then twice[#twice + 1] = n end
    end
    T.eq(#missing, 0, format("%s: messages lost (%s)", name, table.concat(missing, ",")))
    T.eq(#twice, 0, format("%s: messages received twice (%s)", name, table.concat(twice, ",")))
    -- the messages published while the link was down, delivered after it came back
    local held = 0
    for n = cut[name] + 1, count do
      if arrived[name][n] >= restored and n <= cut[name] + OUTAGE / EVERY * 0.9 then held = held + 1 end
    end
    assert(held > 0, name .. ": no message was held back by the bridge during the outage")
    md.log.info("fleet: %s: %d messages, each received once; %d of them published during the %g s "
      .. "outage and delivered after it", name, count, held, OUTAGE)
  end
  c:close()
  for _, s in ipairs(sites) do
    s.engine:stop()
    s.relay:stop()
    s.broker:close()
    s.sim:close()
  end
end, { timeout = 90 })
