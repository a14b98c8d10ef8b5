-- moondog.mqtt.publish's two modes against a real mosquitto: "points" (a
-- retained message per point) and "state" (all of a device's values as one
-- retained JSON message on <prefix>/<device>/state, Home Assistant reading
-- each entity from it with value_template). Home Assistant is not here, so
-- the tests do what it does with a config: take the payload of its
-- state_topic and render its value_template ({{ value_json.<point> }}),
-- and check that the value is the device's. Also the Growatt proxy, whose
-- devices are published in state mode unless told otherwise, and commands
-- in state mode.

local T = require "moondog.testing"
local md = require "moondog"
local cjson = require "cjson"
local mqtt = require "moondog.mqtt"
local broker = require "moondog.mqtt.broker"
local publish = require "moondog.mqtt.publish"
local modbus_dev = require "moondog.devices.modbus"
local devices = require "moondog.devices"
local proxy = require "moondog.growatt.proxy"
local logger_sim = require "moondog.growatt.logger_sim"
local cloud_sim = require "moondog.growatt.cloud_sim"
local core = require "moondog.growatt.core"
local stream = require "moondog.stream"

local format = string.format

local INVERTER_VALUES = {
  ac_power = 3120, pv_power = 3300, ac_voltage = 230.1, frequency = 50.02, energy_total = 1234.567,
  temperature = 41.5, status = "running", active_power_limit = 100, mode = "eco", output_enabled = true,
}

local function start_broker()
  T.need("mosquitto", "mosquitto")
  return assert(broker.start {})
end

-- The last payload of every topic under the filters.
local function watcher(b, filters)
  local c = assert(mqtt.connect { host = b.host, port = b.port })
  local w = { client = c, last = {} }
  for _, f in ipairs(filters) do
    assert(c:subscribe(f, function(topic, payload) w.last[topic] = payload end, { qos = 1 }))
  end
  return setmetatable(w, { __close = function() c:close() end })
end

-- What Home Assistant shows for an entity: the state topic's payload, through
-- the value_template when there is one. nil while either is missing.
local function ha_value(w, config)
  local payload = w.last[config.state_topic]
  if payload == nil then return nil end
  if not config.value_template then return payload end
  local name = config.value_template:match("^{{ value_json%.([%w_]+) }}$")
  assert(name, "a value_template of the form {{ value_json.<point> }}: " .. config.value_template)
  local v = cjson.decode(payload)[name]
  if v == nil then return nil end
  return type(v) == "string" and v or mqtt.payload(v)
end

local function configs(w, node, dev_id)
  local out = {}
  for topic, payload in pairs(w.last) do
    local component, object_id = topic:match("^homeassistant/([%w_]+)/" .. node .. "/([%w_]+)/config$")
    if component and payload ~= "" and object_id:sub(1, #dev_id + 1) == dev_id .. "_" then
      local c = cjson.decode(payload)
      if not c.state_topic:find("/diagnostics/", 1, true) then out[object_id:sub(#dev_id + 2)] = c end
    end
  end
  return out
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- Every entity of the inverter shows the simulator's value, as text.
local function expected(name, v)
  if name == "output_enabled" then return v and "ON" or "OFF" end
  return mqtt.payload(v)
end

-- Two payloads of the same value: equal text, or numbers equal to 14
-- significant digits (what a state message carries; a topic per point has
-- 15).
local function same(a, b)
  if a == b then return true end
  local x, y = tonumber(a), tonumber(b)
  return x ~= nil and y ~= nil and math.abs(x - y) <= 1e-13 * math.max(math.abs(x), math.abs(y))
end

local function simulated_inverter(id)
  local sim = assert(modbus_dev.simulate("sim_inverter", "tcp://127.0.0.1:0", { values = INVERTER_VALUES,
    info = { serial = "SIM5K-000123", sw_version = "1.4.2" } }))
  return sim, assert(devices.open("sim_inverter", sim:url(), { id = id }))
end

for _, mode in ipairs { "points", "state" } do
  T.test(format("mode %s: Home Assistant's entities show every value of the device", mode), function()
    local b <close> = start_broker()
    local w <close> = watcher(b, { "homeassistant/#", "moondog/#" })
    local _sim <close>, inv = simulated_inverter("inverter")
    local pub = assert(publish.start { mqtt = { host = b.host, port = b.port }, poll = 0.5, mode = mode })
    pub:add(inv)
    local all
    T.wait_for(function()
      all = configs(w, "moondog", "inverter")
      if count(all) < 10 then return false end
      for name, c in pairs(all) do
        if ha_value(w, c) ~= expected(name, INVERTER_VALUES[name]) then return false end
      end
      return true
    end, 10, "10 entities, each showing the device's value")
    for name, c in pairs(all) do
      if mode == "state" then
        T.eq(c.state_topic, "moondog/inverter/state", name .. ": the device's state topic")
        T.eq(c.value_template, format("{{ value_json.%s }}", name), name .. ": value_template")
        T.eq(w.last["moondog/inverter/" .. name], nil, name .. ": no topic of its own")
      else
        T.eq(c.state_topic, "moondog/inverter/" .. name, name .. ": a topic per point")
        T.eq(c.value_template, nil, name .. ": no value_template")
      end
      if c.command_topic then
        T.eq(c.command_topic, format("moondog/inverter/%s/set", name), name .. ": command topic")
      end
    end
    if mode == "state" then
      T.eq(w.last["moondog/inverter/state"] ~= nil, true, "the state message")
    else
      T.eq(w.last["moondog/inverter/state"], nil, "no state message")
    end
    pub:close()
    inv:close()
  end)
end

T.test("mode state: a command is written and the new state published at once", function()
  local b <close> = start_broker()
  local w <close> = watcher(b, { "moondog/#" })
  local sim <close>, inv = simulated_inverter("inverter")
  local pub = assert(publish.start { mqtt = { host = b.host, port = b.port }, poll = 30, mode = "state",
                                     state_qos = 0 })
  pub:add(inv)
  T.wait_for(function() return w.last["moondog/inverter/state"] end, 10, "the first state")
  T.eq(cjson.decode(w.last["moondog/inverter/state"]).active_power_limit, 100, "the limit before")
  assert(w.client:publish("moondog/inverter/active_power_limit/set", "55", { qos = 1 }))
  T.wait_for(function() return w.last["moondog/inverter/active_power_limit/result"] end, 10, "the result")
  T.eq(cjson.decode(w.last["moondog/inverter/active_power_limit/result"]).ok, true, "accepted")
  T.eq(sim:get("active_power_limit"), 55, "the device has it")
  T.wait_for(function()
    return cjson.decode(w.last["moondog/inverter/state"]).active_power_limit == 55
  end, 10, "the new limit in the state, long before the next poll")
  local s = cjson.decode(w.last["moondog/inverter/state"])
  T.eq(s.output_enabled, "ON", "a bool as ON/OFF")
  T.eq(s.mode, "eco", "an option by its name")
  T.eq(s.ac_voltage, 230.1, "a number as a number")
  pub:remove(inv, { clear = true })
  T.wait_for(function() return w.last["moondog/inverter/state"] == "" end, 10,
    "clear: the retained state removed")
  pub:close()
  inv:close()
end)

T.test("pub:mode switches one device: discovery follows, the other device keeps its topics", function()
  local b <close> = start_broker()
  local w <close> = watcher(b, { "homeassistant/#", "moondog/#" })
  local _s1 <close>, one = simulated_inverter("one")
  local _s2 <close>, two = simulated_inverter("two")
  local pub = assert(publish.start { mqtt = { host = b.host, port = b.port }, poll = 0.5 })
  local ok, err = pcall(pub.mode, pub, "one", "json")
  T.eq(ok, false, "an unknown mode raises")
  assert(tostring(err):find("mode must be", 1, true), err)
  pub:add(one)
  pub:add(two)
  T.wait_for(function() return w.last["moondog/one/pv_power"] and w.last["moondog/two/pv_power"] end, 10,
    "both on topics per point")
  pub:mode("one", "state")
  T.wait_for(function()
    local c = configs(w, "moondog", "one").pv_power
    return c and c.state_topic == "moondog/one/state" and ha_value(w, c) == "3300"
  end, 10, "one: discovery points at its state, which has the value")
  T.eq(configs(w, "moondog", "two").pv_power.state_topic, "moondog/two/pv_power", "two unchanged")
  T.eq(w.last["moondog/two/state"], nil, "two has no state message")
  T.wait_for(function() return w.last["moondog/one/pv_power"] == "" end, 10,
    "one's retained value per point removed")
  pub:mode("one", "points")
  T.wait_for(function()
    local c = configs(w, "moondog", "one").pv_power
    return c and c.state_topic == "moondog/one/pv_power" and c.value_template == nil
      and ha_value(w, c) == "3300" and w.last["moondog/one/state"] == ""
  end, 10, "back to points: discovery and values per point, the state removed")
  pub:close()
  one:close()
  two:close()
end)

local function addr(port) return format("127.0.0.1:%d", port) end

for _, mode in ipairs { "state", "points" } do
  T.test(format("growatt proxy, mqtt_mode %s: records reach Home Assistant's entities", mode), function()
    local b <close> = start_broker()
    local w <close> = watcher(b, { "homeassistant/#", "gw/#" })
    local site <close> = md.site.new { name = "gw" }
    local pub = assert(site:publish { mqtt = { host = b.host, port = b.port }, prefix = "gw" })
    local cloud <close> = assert(cloud_sim.start { listen = "127.0.0.1:0" })
    local p <close> = assert(proxy.start { listen = "127.0.0.1:0", cloud = addr(cloud:port()), site = site,
      publisher = pub, mqtt_mode = mode ~= "state" and mode or nil })
    local l <close> = assert(logger_sim.start { server = addr(p:port()), records = 3, interval = 0 })
    assert(l:wait(20))
    local id = "growatt_siminv0001"
    T.wait_for(function()
      local st = p:stats().loggers.SIMLOG0001
      return st and st.records == 3
    end, 10, "the three records decoded")
    T.eq(site[id].pv_power, 3, "record 3: PV power 10 * n in 0.1 W")
    local all
    T.wait_for(function()
      all = configs(w, "gw", id)
      if count(all) < 20 then return false end
      for name, c in pairs(all) do
        if not same(ha_value(w, c), expected(name, site[id][name])) then return false end
      end
      return true
    end, 10, "an entity per value of the TL-X layout, each showing the last record's value")
    if mode == "state" then
      T.eq(all.pv_power.state_topic, "gw/" .. id .. "/state", "one state topic")
      T.eq(w.last["gw/" .. id .. "/pv_power"], nil, "no topic per point")
    else
      T.eq(all.pv_power.state_topic, "gw/" .. id .. "/pv_power", "a topic per point")
      T.eq(w.last["gw/" .. id .. "/state"], nil, "no state message")
    end
    l:close()
    p:close()
    cloud:close()
    pub:close()
  end)
end

T.test("growatt proxy: a buffered record after a live one on the same connection has only its values",
function()
  local b <close> = start_broker()
  local w <close> = watcher(b, { "gw/growatt/#" })
  local site <close> = md.site.new { name = "gw" }
  local pub = assert(site:publish { mqtt = { host = b.host, port = b.port }, prefix = "gw" })
  local cloud <close> = assert(cloud_sim.start { listen = "127.0.0.1:0" })
  local p <close> = assert(proxy.start { listen = "127.0.0.1:0", cloud = addr(cloud:port()), site = site,
    publisher = pub })
  -- a logger by hand: a live record (0x04), then a buffered one (0x50)
  local o = { protocol = 6, serial = "HANDLOG001", inverter = "HANDINV001" }
  local c <close> = assert(stream.connect("127.0.0.1", p:port()))
  assert(c:write(core.build(1, 6, 1, 0x04, logger_sim.record_body(o, 2))))
  T.wait_for(function()
    local st = p:stats().loggers.HANDLOG001
    return st and st.records == 1
  end, 10, "the live record decoded")
  assert(c:write(core.build(2, 6, 1, 0x50, logger_sim.record_body(o, 101, { 24, 5, 31, 23, 1, 0 }))))
  local topic = "gw/growatt/growatt_handinv001/buffered"
  T.wait_for(function() return w.last[topic] end, 10, "the buffered record published")
  local j = cjson.decode(w.last[topic])
  T.eq(j.logger, "HANDLOG001", "the logger")
  T.eq(j.pv_power, 101, "its own PV power (record 101: 10 * n in 0.1 W)")
  T.eq(j.logger_serial, nil, "nothing the live record left in the reused values table")
  T.eq(site.growatt_handinv001.pv_power, 2, "the live value stays the current one")
  c:close()
  p:close()
  cloud:close()
  pub:close()
end)
