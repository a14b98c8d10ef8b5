-- moondog.mqtt.publish and moondog.mqtt.homeassistant against a real
-- mosquitto broker and simulated Modbus devices (devices/sdm630.lua and
-- devices/sim_inverter.lua served by md.modbus.serve): topics, discovery
-- payloads field by field, commands accepted and refused (a refused one
-- never reaches the device: the simulator counts writes), availability,
-- energy totals never published as 0, the publish policy (deadband, at
-- most every N s, at least every M s), JSON per device, re-announcing, and
-- clearing entities only when asked.

local T = require "moondog.testing"
local cjson = require "cjson"
local mqtt = require "moondog.mqtt"
local broker = require "moondog.mqtt.broker"
local publish = require "moondog.mqtt.publish"
local ha = require "moondog.mqtt.homeassistant"
local modbus_dev = require "moondog.devices.modbus"
local devices = require "moondog.devices"

local format = string.format

local function start_broker(dir)
  T.need("mosquitto", "mosquitto")
  return assert(broker.start{ dir = dir.path })
end

local METER_VALUES = {
  l1_voltage = 230.1, l2_voltage = 231.2, l3_voltage = 229.8, l1_current = 5.5, l2_current = 4.25,
  l3_current = 3.0, l1_power = 1265.5, l2_power = 982.0, l3_power = 689.4, power = 2936.9,
  power_factor = 0.97, frequency = 50.01, import_energy = 12345.6, export_energy = 678.9,
}
local INVERTER_VALUES = {
  ac_power = 3120, pv_power = 3300, ac_voltage = 230.1, frequency = 50.02, energy_total = 1234.567,
  temperature = 41.5, status = "running", active_power_limit = 100, mode = "eco", output_enabled = true,
}

-- A simulated device and the device object that reads it; writes counted.
local function simulated(profile, id, values, info)
  local writes = { n = 0 }
  local sim = assert(modbus_dev.simulate(profile, "tcp://127.0.0.1:0", {
    values = values, info = info,
    on_write = function() writes.n = writes.n + 1 end,
  }))
  local dev = assert(devices.open(profile, sim:url(), { id = id }))
  return sim, dev, writes
end

-- Everything published under the given filters: last payload per topic,
-- and the full history.
local function watcher(b, filters)
  local c = assert(mqtt.connect{ host = b.host, port = b.port })
  local w = { client = c, last = {}, history = {} }
  for _, f in ipairs(filters) do
    assert(c:subscribe(f, function(topic, payload, msg)
      w.last[topic] = payload
      w.history[#w.history + 1] = { topic = topic, payload = payload, retain = msg.retain, at = md.now() }
    end, { qos = 1 }))
  end
  function w.wait(topic, payload, what)
    T.wait_for(function()
      return w.last[topic] ~= nil and (payload == nil or w.last[topic] == payload)
    end, 10, what or format("%s = %s", topic, tostring(payload)))
    return w.last[topic]
  end
  function w.count(topic, payload)
    local n = 0
    for _, h in ipairs(w.history) do
      if h.topic == topic and (payload == nil or h.payload == payload) then n = n + 1 end
    end
    return n
  end
  return setmetatable(w, { __close = function() c:close() end })
end

local function start(b, opts)
  opts = opts or {}
  opts.mqtt = { host = b.host, port = b.port }
  return assert(publish.start(opts))
end

-- {===== topics and discovery =====

T.test("device values, availability and the engine status reach their topics", function()
  local dir <close> = T.tmpdir()
  local b <close> = start_broker(dir)
  local w <close> = watcher(b, { "moondog/#" })
  local _sim <close>, meter = simulated("sdm630", "meter", METER_VALUES, { serial = 12345678 })
  local pub = start(b, { poll = 0.2 })
  pub:add(meter)
  w.wait("moondog/status", "online")
  w.wait("moondog/meter/availability", "online")
  for name, v in pairs(METER_VALUES) do
    T.eq(w.wait("moondog/meter/" .. name), mqtt.payload(v), name)
  end
  pub:close()
  w.wait("moondog/meter/availability", "offline", "offline after close")
  w.wait("moondog/status", "offline", "status offline after close")
  meter:close()
end)

T.test("a publisher started before its broker: it publishes once the broker is up", function()
  local dir <close> = T.tmpdir()
  local b <close> = start_broker(dir)
  b:stop() -- the port is known, nothing listens on it
  local _sim <close>, meter = simulated("sdm630", "meter", METER_VALUES, { serial = 12345678 })
  local pub = start(b, { poll = 0.2 }) -- no error: the client keeps trying
  pub:add(meter)
  md.sleep(0.5)
  assert(b:start())
  local w <close> = watcher(b, { "moondog/#" })
  w.wait("moondog/status", "online")
  w.wait("moondog/meter/availability", "online")
  T.eq(w.wait("moondog/meter/power"), mqtt.payload(METER_VALUES.power), "a value")
  pub:close()
  meter:close()
end)

local function configs(w)
  local out = {}
  for topic, payload in pairs(w.last) do
    if topic:match("^homeassistant/") and payload ~= "" then out[topic] = cjson.decode(payload) end
  end
  return out
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

local function check_common(c, dev_id, point_name)
  T.eq(c.unique_id, "moondog_" .. dev_id .. "_" .. point_name, "unique_id")
  T.eq(c.state_topic, format("moondog/%s/%s", dev_id, point_name), "state_topic")
  T.eq(c.availability_mode, "all", "availability_mode")
  T.eq(#c.availability, 2, "availability topics")
  T.eq(c.availability[1].topic, "moondog/status", "engine status topic")
  T.eq(c.availability[2].topic, format("moondog/%s/availability", dev_id), "device availability topic")
  T.eq(c.device.identifiers[1], "moondog_" .. dev_id, "device identifier")
  T.eq(c.origin.name, "moondog", "origin")
end

T.test("discovery for a meter (SDM630), field by field", function()
  local dir <close> = T.tmpdir()
  local b <close> = start_broker(dir)
  local w <close> = watcher(b, { "homeassistant/#" })
  local _sim <close>, meter = simulated("sdm630", "meter", METER_VALUES, { serial = 12345678 })
  local pub = start(b, { poll = 5, max_interval = 60 })
  pub:add(meter)
  T.wait_for(function() return count(configs(w)) == 17 end, 10, "14 config messages and 3 diagnostics")
  local all = configs(w)
  local e = all["homeassistant/sensor/moondog/meter_import_energy/config"]
  assert(e, "import energy config")
  check_common(e, "meter", "import_energy")
  T.eq(e.name, "Import energy", "name")
  T.eq(e.device_class, "energy", "device_class")
  T.eq(e.state_class, "total_increasing", "state_class")
  T.eq(e.unit_of_measurement, "kWh", "unit")
  T.eq(e.expire_after, 180, "expire_after = 3 x max(max_interval, poll)")
  T.eq(e.command_topic, nil, "read-only")
  T.eq(e.device.manufacturer, "Eastron", "manufacturer")
  T.eq(e.device.model, "SDM630", "model")
  T.eq(e.device.serial_number, "12345678", "serial number read from the device")
  T.eq(e.device.name, "meter", "device name")
  local expect = {
    power = { "power", "measurement", "W" }, l2_voltage = { "voltage", "measurement", "V" },
    l3_current = { "current", "measurement", "A" }, frequency = { "frequency", "measurement", "Hz" },
    export_energy = { "energy", "total_increasing", "kWh" }, power_factor = { "power_factor", "measurement" },
  }
  for name, want in pairs(expect) do
    local c = all[format("homeassistant/sensor/moondog/meter_%s/config", name)]
    assert(c, name .. " config")
    check_common(c, "meter", name)
    T.eq(c.device_class, want[1], name .. " device_class")
    T.eq(c.state_class, want[2], name .. " state_class")
    T.eq(c.unit_of_measurement, want[3], name .. " unit")
  end
  for _, c in pairs(all) do
    T.eq(c.device.serial_number, "12345678", "every entity carries the same device block")
  end
  pub:close()
  meter:close()
end)

T.test("discovery for an inverter: number, select, switch, enum sensor, energy", function()
  local dir <close> = T.tmpdir()
  local b <close> = start_broker(dir)
  local w <close> = watcher(b, { "homeassistant/#" })
  local _sim <close>, inv = simulated("sim_inverter", "inverter", INVERTER_VALUES,
    { serial = "SIM5K-000123", sw_version = "1.4.2" })
  local pub = start(b, { poll = 1, max_interval = 30 })
  pub:add(inv)
  T.wait_for(function() return count(configs(w)) == 13 end, 10, "10 config messages and 3 diagnostics")
  local all = configs(w)
  local limit = all["homeassistant/number/moondog/inverter_active_power_limit/config"]
  assert(limit, "number config")
  check_common(limit, "inverter", "active_power_limit")
  T.eq(limit.command_topic, "moondog/inverter/active_power_limit/set", "command_topic")
  T.eq(limit.min, 0, "min (explicit: HA's default is 1)")
  T.eq(limit.max, 100, "max")
  T.eq(limit.step, 1, "step")
  T.eq(limit.mode, "box", "mode")
  T.eq(limit.unit_of_measurement, "%", "unit")
  T.eq(limit.expire_after, nil, "numbers take no expire_after")
  T.eq(limit.device.serial_number, "SIM5K-000123", "serial")
  T.eq(limit.device.sw_version, "1.4.2", "sw_version")
  T.eq(limit.device.manufacturer, "moondog", "manufacturer")
  T.eq(limit.device.model, "Simulated inverter 5 kW", "model")
  local mode = all["homeassistant/select/moondog/inverter_mode/config"]
  check_common(mode, "inverter", "mode")
  T.eq(table.concat(mode.options, ","), "auto,eco,backup", "select options")
  T.eq(mode.command_topic, "moondog/inverter/mode/set", "select command_topic")
  local sw = all["homeassistant/switch/moondog/inverter_output_enabled/config"]
  check_common(sw, "inverter", "output_enabled")
  T.eq(sw.payload_on .. sw.payload_off .. sw.state_on .. sw.state_off, "ONOFFONOFF", "switch payloads")
  T.eq(sw.command_topic, "moondog/inverter/output_enabled/set", "switch command_topic")
  local status = all["homeassistant/sensor/moondog/inverter_status/config"]
  T.eq(status.device_class, "enum", "enum sensor")
  T.eq(table.concat(status.options, ","), "off,starting,running,fault", "enum options")
  T.eq(status.state_class, nil, "enum has no state_class")
  T.eq(status.expire_after, 90, "expire_after")
  local energy = all["homeassistant/sensor/moondog/inverter_energy_total/config"]
  T.eq(energy.device_class .. " " .. energy.state_class .. " " .. energy.unit_of_measurement,
    "energy total_increasing kWh", "energy dashboard combination")
  local temp = all["homeassistant/sensor/moondog/inverter_temperature/config"]
  T.eq(temp.unit_of_measurement, "°C", "temperature unit")
  pub:close()
  inv:close()
end)

T.test("profiles Home Assistant would refuse are refused when added", function()
  local function dev(p)
    return { id = "x", profile = { name = "x", points = { p } } }
  end
  local cases = {
    { { name = "e", device_class = "energy", unit = "kWh", state_class = "measurement" }, "state_class" },
    { { name = "e", device_class = "energy", unit = "kWh" }, "Energy" },
    { { name = "p", device_class = "power", unit = "kWh", state_class = "measurement" }, "units" },
    { { name = "b", device_class = "battery", state_class = "measurement" }, "needs a unit" },
    { { name = "z", device_class = "zap", unit = "W" }, "not one moondog knows" },
    { { name = "n", writable = true, max = 100, step = 1 }, "min, max and step" },
  }
  for _, case in ipairs(cases) do
    local ok, err = pcall(ha.entities, dev(case[1]), nil, {})
    T.eq(ok, false, case[1].name .. " refused")
    assert(tostring(err):find(case[2], 1, true), tostring(err))
  end
  local ok = pcall(ha.entities,
    dev({ name = "b", device_class = "battery", unit = "%", state_class = "measurement" }))
  T.eq(ok, true, "battery in % is fine")
end)

-- }=====

-- {===== commands =====

T.test("commands: accepted ones are written, refused ones never reach the device", function()
  local dir <close> = T.tmpdir()
  local b <close> = start_broker(dir)
  local w <close> = watcher(b, { "moondog/#" })
  local sim <close>, inv, writes = simulated("sim_inverter", "inverter", INVERTER_VALUES,
    { serial = "SIM5K-000123", sw_version = "1.4.2" })
  local pub = start(b, { poll = 5 })
  pub:add(inv)
  w.wait("moondog/inverter/active_power_limit", "100")
  local c = w.client
  local function command(point, payload)
    local n = w.count(format("moondog/inverter/%s/result", point))
    assert(c:publish(format("moondog/inverter/%s/set", point), payload, { qos = 1 }))
    T.wait_for(function() return w.count(format("moondog/inverter/%s/result", point)) > n end, 10,
      "the result of " .. point .. " = " .. payload)
    return cjson.decode(w.last[format("moondog/inverter/%s/result", point)])
  end
  local r = command("active_power_limit", "55")
  T.eq(r.ok, true, "accepted")
  T.eq(r.value, 55, "value")
  T.eq(writes.n, 1, "one write")
  T.eq(sim:get("active_power_limit"), 55, "the device has it")
  w.wait("moondog/inverter/active_power_limit", "55", "the new state published at once")

  local refused = {
    { "active_power_limit", "155", "out_of_range" },
    { "active_power_limit", "-1", "out_of_range" },
    { "active_power_limit", "50.5", "bad_type" },
    { "active_power_limit", "abc", "bad_value" },
    { "active_power_limit", "0x10", "bad_value" },
    { "active_power_limit", "return os.exit(1)", "bad_value" },
    { "mode", "turbo", "bad_option" },
    { "mode", "os.execute('touch /tmp/pwned')", "bad_option" },
    { "output_enabled", "maybe", "bad_value" },
    { "ac_power", "100", "not_writable" },
    { "nothing", "1", "unknown_point" },
    { "active_power_limit", string.rep("9", 300), "too_long" },
  }
  for _, case in ipairs(refused) do
    r = command(case[1], case[2])
    T.eq(r.ok, false, case[1] .. " = " .. case[2])
    T.eq(r.code, case[3], case[1] .. " = " .. case[2] .. " (" .. tostring(r.error) .. ")")
    assert(type(r.error) == "string" and #r.error > 0, "a message for people")
  end
  T.eq(writes.n, 1, "no refused command reached the device")
  T.eq(sim:get("active_power_limit"), 55, "unchanged")

  r = command("mode", "backup")
  T.eq(r.ok, true, "select accepted")
  T.eq(sim:get("mode"), "backup", "mode written")
  r = command("output_enabled", "OFF")
  T.eq(r.ok, true, "switch accepted")
  T.eq(sim:get("output_enabled"), false, "coil written")
  w.wait("moondog/inverter/output_enabled", "OFF")
  r = command("active_power_limit", "0")
  T.eq(r.ok, true, "0 % is a valid limit")
  T.eq(sim:get("active_power_limit"), 0, "limit 0")
  T.eq(writes.n, 4, "four accepted writes")

  -- a command for a device nobody publishes
  local n = w.count("moondog/ghost/x/result")
  assert(c:publish("moondog/ghost/x/set", "1", { qos = 1 }))
  T.wait_for(function() return w.count("moondog/ghost/x/result") > n end, 10, "ghost result")
  T.eq(cjson.decode(w.last["moondog/ghost/x/result"]).code, "unknown_device", "unknown device")
  local s = pub:stats()
  T.eq(s.refused, #refused + 1, "refused counted")
  pub:close()
  inv:close()
end)

-- }=====

-- {===== availability and energy =====

T.test("a device that stops answering goes offline and its energy total is never sent as 0", function()
  local dir <close> = T.tmpdir()
  local b <close> = start_broker(dir)
  local w <close> = watcher(b, { "moondog/#" })
  local sim, meter = simulated("sdm630", "meter", METER_VALUES, { serial = 1 })
  local port = sim:port()
  local pub = start(b, { poll = 0.1, max_interval = 0.3 })
  pub:add(meter)
  w.wait("moondog/meter/import_energy", "12345.6")
  w.wait("moondog/meter/availability", "online")
  sim:close()
  w.wait("moondog/meter/availability", "offline", "offline once the device stops answering")
  local before = #w.history
  md.sleep(0.5)
  for i = before + 1, #w.history do
    assert(not w.history[i].topic:match("^moondog/meter/[%w_]+$"),
      "no value while offline: " .. w.history[i].topic)
  end
  -- the device comes back, then reads 0 for a while (a meter booting)
  local sim2 <close> = assert(modbus_dev.simulate("sdm630", format("tcp://127.0.0.1:%d", port),
    { values = METER_VALUES, info = { serial = 1 } }))
  w.wait("moondog/meter/availability", "online", "online again")
  sim2:set("import_energy", 0)
  T.wait_for(function() return pub:stats().withheld >= 2 end, 10, "zero readings held back")
  for _, h in ipairs(w.history) do
    if h.topic == "moondog/meter/import_energy" then
      assert(h.payload ~= "0" and h.payload ~= "", "energy published as '" .. h.payload .. "'")
    end
  end
  sim2:set("import_energy", 12346.1)
  w.wait("moondog/meter/import_energy", "12346.1", "the real value again")
  pub:close()
  meter:close()
end)

-- }=====

-- {===== publish policy =====

-- Times at which a topic was published. md.now() counts milliseconds, and
-- the publisher reads it just before sending: gaps may look up to a clock
-- tick shorter than the publisher measured them.
local TICK = 0.002
local function stamps(list, topic)
  local out = {}
  for _, h in ipairs(list) do
    if h.topic == topic then out[#out + 1] = h.at end
  end
  return out
end

T.test("deadband: changes within it are not published", function()
  local dir <close> = T.tmpdir()
  local b <close> = start_broker(dir)
  local w <close> = watcher(b, { "moondog/meter/power" })
  local sim <close>, meter = simulated("sdm630", "meter", METER_VALUES, { serial = 1 })
  local pub = start(b, { poll = 0.05, deadband = 5, max_interval = 3600, homeassistant = false })
  pub:add(meter)
  w.wait("moondog/meter/power", "2936.9")
  sim:set("power", 2939.9) -- within 5 W
  md.sleep(0.3)
  sim:set("power", 2950) -- beyond
  w.wait("moondog/meter/power", "2950")
  T.eq(w.count("moondog/meter/power", "2939.9"), 0, "a change within the deadband")
  T.eq(w.count("moondog/meter/power"), 2, "two messages")
  pub:close()
  meter:close()
end)

T.test("at most every min_interval s, at least every max_interval s", function()
  local dir <close> = T.tmpdir()
  local b <close> = start_broker(dir)
  local sim <close>, meter = simulated("sdm630", "meter", METER_VALUES, { serial = 1 })
  local sent = {}
  local pub = start(b, { poll = 0.05, min_interval = 0.4, max_interval = 0.5, homeassistant = false,
    on_publish = function(topic) sent[#sent + 1] = { topic = topic, at = md.now() } end })
  pub:add(meter)
  local t_end = md.now() + 2
  local v = 1000
  while md.now() < t_end do -- power changes on every poll; frequency never
    v = v + 1
    sim:set("power", v)
    md.sleep(0.05)
  end
  local power = stamps(sent, "moondog/meter/power")
  local freq = stamps(sent, "moondog/meter/frequency")
  assert(#power >= 2, "power published " .. #power .. " times")
  for i = 2, #power do
    local gap = power[i] - power[i - 1]
    assert(gap >= 0.4 - TICK, format("power gap %.3f s < min_interval", gap))
  end
  assert(#freq >= 2, "an unchanged value is republished, got " .. #freq)
  for i = 2, #freq do
    local gap = freq[i] - freq[i - 1]
    assert(gap >= 0.5 - TICK, format("frequency gap %.3f s < max_interval", gap))
  end
  pub:close()
  meter:close()
end)

T.test("json = true: one JSON object per device and cycle", function()
  local dir <close> = T.tmpdir()
  local b <close> = start_broker(dir)
  local w <close> = watcher(b, { "moondog/meter" })
  local _sim <close>, meter = simulated("sdm630", "meter", METER_VALUES, { serial = 1 })
  local pub = start(b, { poll = 0.1, json = true, homeassistant = false })
  pub:add(meter)
  local obj = cjson.decode(w.wait("moondog/meter"))
  T.eq(obj.l1_voltage, 230.1, "l1_voltage")
  T.eq(obj.import_energy, 12345.6, "import_energy")
  T.eq(count(obj), 14, "every point")
  pub:close()
  meter:close()
end)

-- }=====

-- {===== re-announce and removal =====

T.test("discovery is sent again when HA says online; entities are cleared only when asked", function()
  local dir <close> = T.tmpdir()
  local b <close> = start_broker(dir)
  local w <close> = watcher(b, { "homeassistant/#" })
  local _sim <close>, inv = simulated("sim_inverter", "inverter", INVERTER_VALUES,
    { serial = "S", sw_version = "1" })
  local _sim2 <close>, meter = simulated("sdm630", "meter", METER_VALUES, { serial = 1 })
  local pub = start(b, { poll = 5 })
  pub:add(inv)
  pub:add(meter)
  local topic = "homeassistant/number/moondog/inverter_active_power_limit/config"
  T.wait_for(function() return count(configs(w)) == 30 end, 10, "24 configs and 6 diagnostics")
  local n = w.count(topic)
  assert(w.client:publish("homeassistant/status", "online", { qos = 1 }))
  T.wait_for(function() return w.count(topic) > n end, 10, "the config announced again")
  pub:remove(meter)  -- stops publishing, keeps the entities
  md.sleep(0.2)
  local late <close> = watcher(b, { "homeassistant/#" })
  T.wait_for(function() return count(configs(late)) == 30 end, 10, "all 30 configs still retained")
  pub:remove(inv, { clear = true })
  T.wait_for(function() return late.last[topic] == "" end, 10, "the inverter's config cleared")
  local later <close> = watcher(b, { "homeassistant/#" })
  md.sleep(0.3)
  T.eq(count(configs(later)), 17, "only the meter's entities are left")
  pub:close()
  inv:close()
  meter:close()
end)

-- }=====
