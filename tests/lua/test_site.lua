-- moondog.site against real parts on loopback: Modbus simulators served by
-- md.modbus.serve (devices/sim_inverter.lua, devices/sdm630.lua), a real
-- mosquitto broker for what the site publishes. One poller per device
-- whoever reads it, per-point intervals coalesced, devices absent at start,
-- a sleeping inverter across a night, NaN readings, supervised tasks and
-- the site's health, derived points and site values, status().

local T = require "moondog.testing"
local md = require "moondog"
local cjson = require "cjson"
local broker = require "moondog.mqtt.broker"
local modbus_dev = require "moondog.devices.modbus"
local devices = require "moondog.devices"
local schedule = require "moondog.site.schedule"
local policy = require "moondog.site.policy"

local format = string.format

local INVERTER = {
  ac_power = 3120, pv_power = 3300, ac_voltage = 230.1, frequency = 50.02, energy_total = 1234.567,
  temperature = 41.5, status = "running", active_power_limit = 100, mode = "eco", output_enabled = true,
}

local function simulate(profile, values, url)
  return assert(modbus_dev.simulate(profile, url or "tcp://127.0.0.1:0", { values = values }))
end

-- A free loopback port that nothing listens on (yet).
local function free_port()
  local srv = assert(md.modbus.serve("tcp://127.0.0.1:0"))
  local port = srv:port()
  srv:close()
  return port
end

local function start_broker(dir)
  T.need("mosquitto", "mosquitto")
  return assert(broker.start { dir = dir.path })
end

-- Every message under the filters: last payload per topic, and history.
local function watcher(b, filters)
  local c = assert(md.mqtt.connect { host = b.host, port = b.port })
  local w = { last = {}, history = {}, client = c }
  for _, f in ipairs(filters) do
    assert(c:subscribe(f, function(topic, payload)
      w.last[topic] = payload
      w.history[#w.history + 1] = { topic = topic, payload = payload }
    end, { qos = 1 }))
  end
  function w.wait(topic, payload, what)
    T.wait_for(function()
      return w.last[topic] ~= nil and (payload == nil or w.last[topic] == payload)
    end, 10, what or format("%s = %s", topic, tostring(payload)))
    return w.last[topic]
  end
  function w.payloads(topic)
    local out = {}
    for _, h in ipairs(w.history) do
      if h.topic == topic then out[#out + 1] = h.payload end
    end
    return out
  end
  return setmetatable(w, { __close = function() c:close() end })
end

-- {===== pure parts =====

T.test("schedule: one origin for every group, later groups on earlier ticks, missed ticks skipped", function()
  local points = {
    { name = "fast", poll = 1 }, { name = "mid", poll = 5 }, { name = "slow", poll = 60 }, { name = "dflt" },
  }
  local s = schedule.new(points, { poll = 2, start = 100, phase = 0.5, now = 100 })
  T.eq(s:next_due(), 100.5, "origin = start + phase x shortest interval")
  T.eq(table.concat(s:due(100.5), ","), "fast,dflt,mid,slow", "everything is due at the origin")
  T.eq(s:advance(100.6), 0, "nothing skipped")
  T.eq(s:next_due(), 101.5, "next: the 1 s group")
  T.eq(table.concat(s:due(101.5), ","), "fast", "only the fast group")
  s:advance(101.5)
  T.eq(table.concat(s:due(102.5), ","), "fast,dflt", "the device's 2 s default joins every 2nd tick")
  s:advance(102.5)
  -- the next read starts late, at 106.7: the ticks since 103.5 passed meanwhile
  local due = s:due(106.7)
  T.eq(table.concat(due, ","), "fast,dflt,mid", "the late groups, once")
  T.eq(s:advance(106.7), 3 + 1 + 0, "fast missed 3 of 103.5..106.5, dflt 1 of 104.5 and 106.5")
  T.eq(s:next_due(), 107.5, "back on the grid")
  T.eq(s.skipped, 4, "skipped cycles are counted")
  local long = schedule.new({ { name = "x", poll = 60 } }, { start = 0, phase = 0.5, now = 0 })
  T.eq(long:next_due(), 0.5, "a long interval's first read is not put off by its phase")
  local late = schedule.new({ { name = "x", poll = 1 } }, { start = 0, phase = 0.5, now = 10.2 })
  T.eq(late:next_due(), 10.5, "a start in the past: the next tick from now")
  T.eq(late:advance(10.5), 0, "and nothing counted as skipped")
  local ok, err = pcall(schedule.new, { { name = "x", poll = 0 } }, {})
  T.eq(ok, false, "poll 0 is refused")
  assert(tostring(err):find("poll must be", 1, true), err)
end)

T.test("phases spread devices over [0, 1)", function()
  local seen = {}
  for i = 1, 100 do
    local p = schedule.phase(i)
    assert(p >= 0 and p < 1, p)
    seen[math.floor(p * 10)] = (seen[math.floor(p * 10)] or 0) + 1
  end
  for b = 0, 9 do
    assert((seen[b] or 0) >= 8 and (seen[b] or 0) <= 12, format("bucket %d has %d", b, seen[b] or 0))
  end
end)

T.test("policy: defaults by class, explicit rules, NaN", function()
  local power = { name = "p", device_class = "power" }
  local total = { name = "e", device_class = "energy", state_class = "total_increasing" }
  local volt = { name = "v", device_class = "voltage" }
  T.eq(policy.apply(power, "asleep", 500), 0, "a sleeping inverter produces 0 W")
  T.eq(policy.apply(power, "offline", 500), nil, "an offline meter's power is unknown")
  T.eq(policy.apply(total, "asleep", 1234), 1234, "totals hold asleep")
  T.eq(policy.apply(total, "offline", 1234), 1234, "totals hold offline")
  T.eq(policy.apply(volt, "asleep", 230), nil, "voltage is unknown asleep")
  T.eq(policy.apply({ name = "x", offline = "zero" }, "offline", 7), 0, "explicit zero")
  T.eq(policy.apply({ name = "x", offline = "hold" }, "offline", 7), 7, "explicit hold")
  T.eq(policy.monotonic(total), true, "total_increasing is monotonic")
  T.eq(policy.monotonic({ name = "d", state_class = "total_increasing", resets = true }), false, "resets")
  T.eq(policy.is_number_value(0 / 0), false, "NaN is no value")
  T.eq(policy.is_number_value(math.huge), false, "inf is no value")
  T.eq(policy.is_number_value(1.5), true, "a number is")
  local ok, err = pcall(policy.check, { name = "x", offline = "zeroo" })
  T.eq(ok, false, "a misspelt rule raises")
  assert(tostring(err):find("zero", 1, true), err)
end)

-- }=====

-- {===== one poller =====

T.test("publisher, control task and REPL-style reader share one connection and one poll", function()
  local dir <close> = T.tmpdir()
  local b <close> = start_broker(dir)
  local sim <close> = simulate("sim_inverter", INVERTER)
  local site <close> = md.site.new { name = "home" }
  local pv = assert(site:add("pv", "sim_inverter", sim:url() .. "?unit=1", { poll = 0.2 }))
  assert(site:publish { mqtt = { host = b.host, port = b.port }, prefix = "t1" })
  local seen = 0
  local control = site:spawn(function() -- acts on each new sample, as a controller does
    local t = md.now()
    for _ = 1, 1000 do
      local w = pv:wait("ac_power", { newer_than = t, timeout = 5 })
      assert(w == 3120, tostring(w))
      local _, age = pv:get("ac_power")
      t = md.now() - age
      seen = seen + 1
    end
  end, { name = "control" })
  local reader_reads = 0
  local reader = md.spawn(function() -- a REPL user reading the site again and again
    for _ = 1, 1000 do
      assert(site.pv.ac_power == nil or site.pv.ac_power == 3120)
      reader_reads = reader_reads + 1
      md.sleep(0.01)
    end
  end)
  T.wait_for(function() return pv:stats().polls >= 10 end, 10, "10 polls")
  control:cancel()
  reader:cancel()
  local st = sim.server:stats()
  T.eq(st.accepted, 1, "the simulator saw one connection")
  local s = pv:stats()
  -- sim_inverter's plan: input 0-9, holding 100-101 and coil 0, one read each
  T.eq(st.requests, s.transactions, "every transaction at the server is the site's own")
  -- plus 2 reads, once, for Home Assistant's device block (serial, firmware)
  T.eq(s.transactions, 3 * s.polls + 2, format("%d transactions for %d polls", s.transactions, s.polls))
  assert(seen >= 5, "the control task saw samples: " .. seen)
  assert(reader_reads > 10, "the reader ran")
end)

T.test("points with different intervals are coalesced into one read", function()
  local profile = {
    name = "three_rates", protocol = "modbus", manufacturer = "test", model = "three rates",
    points = {
      { name = "fast", source = { kind = "holding", addr = 0 }, poll = 0.1 },
      { name = "mid", source = { kind = "holding", addr = 1 }, poll = 0.5 },
      { name = "slow", source = { kind = "holding", addr = 2 }, poll = 60 },
    },
  }
  local reads = {}
  local srv <close> = assert(md.modbus.serve("tcp://127.0.0.1:0", {
    on_read = function(_, _, addr, count) reads[#reads + 1] = { addr = addr, count = count } end,
  }))
  srv:set(1, "holding", 0, { 11, 22, 33 })
  local site <close> = md.site.new { name = "rates" }
  local d = assert(site:add("dev", profile, srv:url() .. "?unit=1"))
  T.wait_for(function() return d:stats().polls >= 12 end, 10, "12 polls")
  site:close()
  local s = d:stats()
  T.eq(#reads, s.polls, "one transaction per poll, whatever is due")
  T.eq(srv:stats().requests, s.polls, "and no other request reached the server")
  local widths = {}
  for _, r in ipairs(reads) do widths[r.count] = (widths[r.count] or 0) + 1 end
  T.eq(widths[3], 1, "the 60 s point was read once, at the start, with the others")
  assert((widths[2] or 0) >= 1, "the 0.5 s point joined the fast reads")
  assert((widths[1] or 0) >= 8, "most reads are the fast point alone")
  T.eq(reads[1].addr, 0, "reads start at the first point")
  T.eq(d.fast, 11, "values")
  T.eq(d.slow, 33, "values")
end)

T.test("refresh: a fresher value on demand, one read shared by concurrent callers", function()
  local sim <close> = simulate("sim_inverter", INVERTER)
  local site <close> = md.site.new { name = "r" }
  local pv = assert(site:add("pv", "sim_inverter", sim:url(), { poll = 30 }))
  T.wait_for(function() return pv.ac_power ~= nil end, 5, "first poll")
  sim:set("ac_power", 999)
  local before = sim.server:stats().requests
  local done = 0
  for _ = 1, 3 do
    md.spawn(function() assert(pv:refresh { "ac_power" }); done = done + 1 end)
  end
  T.wait_for(function() return done == 3 end, 5, "three refreshes")
  T.eq(pv.ac_power, 999, "the new value")
  T.eq(sim.server:stats().requests - before, 1, "one transaction for three callers")
  local ok, err = pcall(pv.refresh, pv, { "no_such_point" })
  T.eq(ok, false, "an unknown point raises")
  assert(tostring(err):find("no point", 1, true), err)
end)

-- }=====

-- {===== life cycle =====

T.test("a device absent at start is kept and appears when it starts, without a restart", function()
  local port = free_port()
  local site <close> = md.site.new { name = "late" }
  local pv = assert(site:add("pv", "sim_inverter", format("tcp://127.0.0.1:%d?unit=1", port),
    { poll = 0.2, retry = { 0.2, 0.4 } }))
  T.wait_for(function() return pv:stats().state == "offline" end, 5, "offline at start")
  T.eq(pv.ac_power, nil, "no value")
  local _, _, state = pv:get("ac_power")
  T.eq(state, "offline", "point state")
  local health = site:health()
  T.eq(health, "degraded", "an offline device degrades the site")
  T.wait_for(function() return pv:stats().polls >= 3 end, 5, "tried again")
  local retry = pv:stats().retry_in
  -- the time left, (now + 0.4) - now, may come out a rounding above 0.4
  assert(retry and retry <= 0.4 + 1e-9, "backoff capped at retry[2]: " .. tostring(retry))
  local _sim <close> = simulate("sim_inverter", INVERTER, format("tcp://127.0.0.1:%d", port))
  T.wait_for(function() return pv.ac_power == 3120 end, 10, "the device appears")
  T.eq(pv:stats().state, "ok", "ok")
  T.eq(site:health(), "ok", "healthy again")
end)

T.test("wait returns at once when the device goes offline", function()
  local sim = simulate("sim_inverter", INVERTER)
  local site <close> = md.site.new { name = "w" }
  local pv = assert(site:add("pv", "sim_inverter", sim:url(), { poll = 0.1, offline_after = 2,
    retry = { 5, 5 } }))
  T.wait_for(function() return pv.ac_power ~= nil end, 5, "first poll")
  local got = {}
  local waiter = md.spawn(function()
    while true do
      local v, err, code = pv:wait("ac_power", { timeout = 20 })
      if v == nil then got = { err = err, code = code } return end
    end
  end)
  sim:close()
  T.wait_for(function() return got.code ~= nil end, 10, "the waiter woke")
  T.eq(got.code, "offline", "code")
  assert(got.err:find("pv is offline", 1, true), got.err)
  waiter:join()
end)

-- A sim_inverter that sleeps, served on a fixed port so that it can come back.
local sleepy = devices.load("sim_inverter")
sleepy = setmetatable({ sleeps = true, name = "sleepy_inverter" }, { __index = sleepy })

T.test("a sleeping inverter across a night: online, 0 W, totals held, never lower or 0", function()
  local dir <close> = T.tmpdir()
  local b <close> = start_broker(dir)
  local w <close> = watcher(b, { "n/#" })
  local port = free_port()
  local url = format("tcp://127.0.0.1:%d", port)
  local sim = simulate(sleepy, INVERTER, url)
  local site <close> = md.site.new { name = "night" }
  local pv = assert(site:add("pv", sleepy, url, { poll = 0.1, offline_after = 2, retry = { 0.2, 0.4 } }))
  assert(site:publish { mqtt = { host = b.host, port = b.port }, prefix = "n", max_interval = 1 })
  w.wait("n/pv/energy_total", "1234.567")
  w.wait("n/pv/ac_power", "3120")
  sim:close() -- dusk
  w.wait("n/pv/diagnostics/device_state", "asleep")
  w.wait("n/pv/ac_power", "0", "power 0 at night")
  T.eq(w.last["n/pv/availability"], "online", "a sleeping inverter stays available")
  T.eq(pv.energy_total, 1234.567, "the total holds")
  T.eq(pv.ac_voltage, nil, "no voltage at night")
  local _, _, state = pv:get("ac_power")
  T.eq(state, "asleep", "point state")
  T.eq(site:health(), "ok", "asleep is healthy")
  md.sleep(1.5) -- past max_interval: the keeper republishes what the night holds
  -- dawn: the inverter's counter reads lower once (a glitch), then goes on
  local dawn = { ac_power = 150, energy_total = 1000.0 }
  for k, v in pairs(INVERTER) do dawn[k] = dawn[k] or v end
  sim = simulate(sleepy, dawn, url)
  w.wait("n/pv/diagnostics/device_state", "ok")
  w.wait("n/pv/ac_power", "150")
  T.eq(pv.energy_total, 1234.567, "a lower total is held back")
  sim:set("energy_total", 1240.5)
  w.wait("n/pv/energy_total", "1240.5")
  for _, payload in ipairs(w.payloads("n/pv/energy_total")) do
    local v = tonumber(payload)
    assert(v and v >= 1234.567, "energy_total published as " .. payload)
  end
  for _, payload in ipairs(w.payloads("n/pv/availability")) do
    T.eq(payload, "online", "availability never offline across the night")
  end
  assert(#w.payloads("n/pv/ac_power") >= 3, "power republished at night")
  sim:close()
end)

T.test("NaN from a float32 meter: nothing published, one log line", function()
  local dir <close> = T.tmpdir()
  local b <close> = start_broker(dir)
  local w <close> = watcher(b, { "m/#" })
  local sim <close> = simulate("sdm630", { power = 100, import_energy = 5 })
  local log = dir.path .. "/log.txt"
  assert(md.log.file(log))
  local site <close> = md.site.new { name = "nan" }
  local meter = assert(site:add("meter", "sdm630", sim:url(), { poll = 0.05 }))
  assert(site:publish { mqtt = { host = b.host, port = b.port }, prefix = "m" })
  w.wait("m/meter/power", "100")
  sim:set("power", 0 / 0)
  T.wait_for(function() return meter.power == nil end, 5, "NaN is no value")
  local polls = meter:stats().polls
  T.wait_for(function() return meter:stats().polls >= polls + 5 end, 5, "more polls")
  sim:set("power", 200)
  w.wait("m/meter/power", "200")
  md.log.file()
  for _, payload in ipairs(w.payloads("m/meter/power")) do
    assert(payload == "100" or payload == "200", "published " .. payload)
  end
  local f = assert(io.open(log))
  local text = f:read("a")
  f:close()
  local n = select(2, text:gsub("meter%.power read [%-]?nan", ""))
  T.eq(n, 1, "one log line for the NaN episode")
end)

-- }=====

-- {===== supervision and health =====

T.test("a critical task that raises is restarted and the health entity says so", function()
  local dir <close> = T.tmpdir()
  local b <close> = start_broker(dir)
  local w <close> = watcher(b, { "h/#", "homeassistant/sensor/h/#" })
  local site <close> = md.site.new { name = "house" }
  assert(site:publish { mqtt = { host = b.host, port = b.port }, prefix = "h" })
  w.wait("h/house/health", "ok")
  local config = cjson.decode(w.wait("homeassistant/sensor/h/house_health/config"))
  T.eq(config.state_topic, "h/house/health", "health entity state topic")
  T.eq(table.concat(config.options, ","), "ok,degraded,failed", "options")
  local runs = 0
  local h = site:spawn(function()
    runs = runs + 1
    if runs == 1 then error("controller bug") end
    md.sleep(60)
  end, { critical = true, name = "controller" })
  w.wait("h/house/health", "failed", "failed while it waits to restart")
  local attrs = cjson.decode(w.last["h/house/health/attributes"])
  assert(attrs.reasons[1]:find("controller", 1, true), attrs.reasons[1])
  w.wait("h/house/health", "degraded", "degraded once restarted")
  T.eq(runs, 2, "restarted once")
  local st = site:status()
  T.eq(st.tasks[1].failures, 1, "failure counted")
  T.eq(st.tasks[1].state, "running", "running again")
  assert(tostring(st):find("controller", 1, true), "status shows the task")
  h.cancel()
end)

T.test("exit_after: the engine exits non-zero after N failures of critical tasks", function()
  local script = T.tmpdir()
  local path = script.path .. "/site.lua"
  local f = assert(io.open(path, "w"))
  f:write([[
local md = require "moondog"
local site = md.site.new { name = "x", exit_after = 2 }
site:spawn(function() error("always broken") end, { critical = true, name = "broken" })
]])
  f:close()
  local out, code = T.sh(md.paths.exe .. " " .. path .. " 2>&1")
  T.eq(code, 3, "exit code 3: " .. out)
  assert(out:find("exit_after = 2", 1, true), out)
end)

T.test("a main chunk that raises makes the site failed", function()
  local script = T.tmpdir()
  local path = script.path .. "/site.lua"
  local f = assert(io.open(path, "w"))
  f:write([[
local md = require "moondog"
local site = md.site.new { name = "x" }
md.spawn(function() md.sleep(0.3); print("health", site:health()); md.exit(0) end)
error("typo in the site script")
]])
  f:close()
  local out = T.sh(md.paths.exe .. " " .. path .. " 2>&1")
  assert(out:find("health\tfailed", 1, true), out)
  assert(out:find("typo in the site script", 1, true), out)
end)

-- }=====

-- {===== values, derived points, watchers =====

T.test("derived points follow their inputs; site values are checked; watchers run as tasks", function()
  local dir <close> = T.tmpdir()
  local b <close> = start_broker(dir)
  local w <close> = watcher(b, { "d/#", "homeassistant/#" })
  local sim <close> = simulate("sdm630", { power = 1000 })
  local site <close> = md.site.new { name = "vals" }
  local meter = assert(site:add("meter", "sdm630", sim:url(), { poll = 0.05 }))
  site:value("control.limit", { writable = true, min = 0, max = 10000, step = 1, unit = "W",
    device_class = "power" }, 500)
  site:derive("house.headroom", { unit = "W", device_class = "power", state_class = "measurement" },
    function(v) return v.control.limit - v.meter.power end)
  local changes = {}
  site:watch("house.headroom", function(v) changes[#changes + 1] = v end)
  assert(site:publish { mqtt = { host = b.host, port = b.port }, prefix = "d" })
  T.wait_for(function() return site.house.headroom == -500 end, 5, "derived from the first poll")
  sim:set("power", 200)
  T.wait_for(function() return site.house.headroom == 300 end, 5, "follows the meter")
  assert(site.control:write("limit", 800))
  T.eq(site.house.headroom, 600, "follows the setpoint at once")
  local ok, err, code = site.control:write("limit", -5)
  T.eq(ok, nil, "out of range refused")
  T.eq(code, "out_of_range", err)
  T.wait_for(function() return changes[#changes] == 600 end, 5, "the watcher saw it")
  -- published and announced like any point
  w.wait("d/house/headroom", "600")
  w.wait("d/control/limit", "800")
  local cfg = cjson.decode(w.wait("homeassistant/number/d/control_limit/config"))
  T.eq(cfg.command_topic, "d/control/limit/set", "a writable site value is a number entity")
  T.eq(cfg.min, 0, "min")
  -- and commanded like any point
  assert(w.client:publish("d/control/limit/set", "1200", { qos = 1 }))
  T.wait_for(function() return site.control.limit == 1200 end, 5, "command written")
  assert(w.client:publish("d/control/limit/set", "abc", { qos = 1 }))
  local res = cjson.decode(w.wait("d/control/limit/result", nil))
  T.wait_for(function()
    res = cjson.decode(w.last["d/control/limit/result"])
    return res.ok == false
  end, 5, "refused command result")
  T.eq(site.control.limit, 1200, "a refused command changes nothing")
  -- a derived point whose input goes away has no value
  sim:close()
  T.wait_for(function() return meter:stats().state == "offline" end, 10, "meter offline")
  T.eq(site.house.headroom, nil, "no meter, no headroom")
  local okp, perr = pcall(function() return meter.pwoer end)
  T.eq(okp, false, "a misspelt point raises")
  assert(tostring(perr):find("no point 'pwoer'", 1, true), perr)
end)

T.test("discovery only after a first good read and only for implemented points", function()
  local dir <close> = T.tmpdir()
  local b <close> = start_broker(dir)
  local w <close> = watcher(b, { "homeassistant/#" })
  -- sim_inverter's holding 100-101 and coil 0 do not exist on a strict map: those points
  -- are not implemented by this device
  local srv <close> = assert(md.modbus.serve("tcp://127.0.0.1:0", { strict = true }))
  srv:set(1, "input", 0, { 0, 3120, 0, 3300, 2301, 5002, 0, 1234, 415, 2 })
  local site <close> = md.site.new { name = "impl" }
  local pv = assert(site:add("pv", "sim_inverter", srv:url() .. "?unit=1", { poll = 0.1 }))
  assert(site:publish { mqtt = { host = b.host, port = b.port }, prefix = "i",
    homeassistant = { discovery = "device" } })
  local cfg = cjson.decode(w.wait("homeassistant/device/i_pv/config"))
  T.eq(cfg.o.name, "moondog", "origin")
  T.eq(cfg.dev.identifiers[1], "i_pv", "device block")
  assert(cfg.cmps.pv_ac_power, "ac_power announced")
  T.eq(cfg.cmps.pv_ac_power.p, "sensor", "platform")
  assert(cfg.cmps.pv_device_state, "diagnostic state entity")
  T.eq(cfg.cmps.pv_device_state.entity_category, "diagnostic", "diagnostic category")
  T.eq(cfg.cmps.pv_active_power_limit, nil, "an unimplemented point is not announced")
  T.eq(cfg.cmps.pv_output_enabled, nil, "nor this one")
  T.wait_for(function() return pv:stats().polls >= 3 end, 5, "polls")
  local st = pv:stats()
  T.eq(st.state, "ok", "ok: exceptions for absent registers are not failures")
end)

T.test("status(): one row per device, bus and task, printed aligned", function()
  local srv <close> = assert(md.modbus.serve("tcp://127.0.0.1:0")) -- one map for every unit
  local sim = { server = srv }
  local site <close> = md.site.new { name = "st" }
  local meter = assert(site:add("meter", "sdm630", srv:url() .. "?unit=1", { poll = 0.05 }))
  local meter2 = assert(site:add("meter2", "sdm630", srv:url() .. "?unit=2", { poll = 0.05 }))
  T.wait_for(function() return meter:stats().polls >= 2 and meter2:stats().polls >= 2 end, 5, "polls")
  local st = site:status()
  T.eq(#st.devices, 2, "two devices")
  T.eq(#st.buses, 1, "two units on one endpoint: one bus")
  T.eq(st.buses[1].devices, 2, "the bus serves both")
  T.eq(sim.server:stats().accepted, 1, "one connection")
  local text = tostring(st)
  local lines = {}
  for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line end
  local header
  for i, line in ipairs(lines) do
    if line:match("^device ") then header = i end
  end
  assert(header, text)
  local col = lines[header]:find("state", 1, true)
  T.eq(lines[header + 1]:sub(col, col + 1), "ok", "columns aligned: " .. text)
  T.eq(lines[header + 2]:sub(col, col + 1), "ok", "columns aligned")
end)

-- }=====

-- {===== serial lines =====

local q = T.quote

T.test("two devices on one pty share one bus; a second process's site gets 'busy'", function()
  local dir <close> = T.tmpdir()
  local a, b, _socat <close> = T.pty_pair(dir)
  local srv <close> = assert(md.modbus.serve("rtu://" .. a .. "?baud=9600")) -- every unit, one map
  srv:set(nil, "input", 0x34, { 0x4400, 0x0000 }) -- power 512.0 W
  local site <close> = md.site.new { name = "rs485" }
  local m1 = assert(site:add("m1", "sdm630", "rtu://" .. b .. "?baud=9600&unit=1", { poll = 0.2 }))
  local m2 = assert(site:add("m2", "sdm630", "rtu://" .. b .. "?baud=9600&unit=2", { poll = 0.2 }))
  T.wait_for(function() return m1.power == 512 and m2.power == 512 end, 10, "both read")
  local st = site:status()
  T.eq(#st.buses, 1, "one bus for the line")
  T.eq(st.buses[1].endpoint, "rtu://" .. b, "the line")
  local script = dir.path .. "/second.lua"
  T.write_file(script, format([[
    local site = md.site.new { name = "second" }
    local m = assert(site:add("m", "sdm630", %q, { poll = 0.2 }))
    for _ = 1, 100 do
      if m:stats().state ~= "starting" then break end
      md.sleep(0.05)
    end
    local s = m:stats()
    print(s.state, s.last_code, s.last_error)
    md.exit(0)
  ]], "rtu://" .. b .. "?baud=9600&unit=1"))
  local out = T.sh(format("%s %s 2>/dev/null", q(md.paths.exe), q(script)))
  assert(out:find("^offline\tbusy\t"), out)
  assert(out:find("in use by another program", 1, true), out)
  T.eq(m1:stats().state, "ok", "the first site is undisturbed")
end)

-- }=====

T.test("a point that disappears later is no longer polled and its entity is removed", function()
  local dir <close> = T.tmpdir()
  local b <close> = start_broker(dir)
  local w <close> = watcher(b, { "homeassistant/#", "g/#" })
  local gone = false
  local srv <close> = assert(md.modbus.serve("tcp://127.0.0.1:0", {
    on_read = function(_, kind, addr)
      if gone and kind == "holding" and addr <= 100 then return "illegal_data_address" end
    end,
  }))
  srv:set(1, "input", 0, { 0, 3120 })
  srv:set(1, "holding", 100, { 80, 1 })
  local site <close> = md.site.new { name = "gone" }
  local pv = assert(site:add("pv", "sim_inverter", srv:url() .. "?unit=1", { poll = 0.1 }))
  assert(site:publish { mqtt = { host = b.host, port = b.port }, prefix = "g" })
  local topic = "homeassistant/number/g/pv_active_power_limit/config"
  w.wait(topic)
  w.wait("g/pv/active_power_limit", "80")
  gone = true -- a firmware update took the register away
  w.wait(topic, "", "the entity removed")
  T.eq(w.last["g/pv/active_power_limit"], "", "its retained value cleared")
  local n = srv:stats().requests
  md.sleep(0.5)
  local per_poll = (srv:stats().requests - n) / 5
  assert(per_poll < 3, "the refused range is no longer read: " .. per_poll .. " requests per poll")
  T.eq(pv.active_power_limit, nil, "no value")
  T.eq(pv.ac_power, 3120, "the rest goes on")
end)

T.test("meters of one named profile share its tables: one profile, one plan", function()
  local sim <close> = simulate("sdm630", { power = 100 })
  local site <close> = md.site.new { name = "many" }
  local a = assert(site:add("a", "sdm630", sim:url(), { poll = 0.05 }))
  local b = assert(site:add("b", "sdm630", sim:url(), { poll = 0.05 }))
  T.eq(a.profile == b.profile, true, "one profile table")
  T.eq(a._dev.reads == b._dev.reads, true, "one read plan")
  T.wait_for(function() return a.power == 100 and b.power == 100 end, 5, "both read")
  local other <close> = md.site.new { name = "other" }
  local c = assert(other:add("c", "sdm630", sim:url()))
  T.eq(c.profile ~= a.profile, true, "another site loads its own")
end)

-- Register images written by hand from Eastron's documents, not through the
-- profiles: float32 words ABCD.
T.test("site:add(id, 'auto', url): the one profile whose probe fits; candidates or a hint otherwise",
function()
  local srv <close> = assert(md.modbus.serve("tcp://127.0.0.1:0", { units = { 1, 2, 3 } }))
  -- unit 1: an SDM72D-M: model code 0x0089 in holding 0xFC02, L1 230.5 V (0x43668000)
  srv:set(1, "holding", 0xFC02, { 0x0089 })
  srv:set(1, "input", 0x00, { 0x4366, 0x8000 })
  -- unit 2: an SDM120 (or SDM230: one map): 230.1 V (0x4366199A), 50 Hz (0x42480000) at 0x46
  srv:set(2, "input", 0x00, { 0x4366, 0x199A })
  srv:set(2, "input", 0x46, { 0x4248, 0x0000 })
  -- unit 3: answers, with nothing any probe looks for
  local site <close> = md.site.new { name = "auto" }
  local meter = assert(site:add("meter", "auto", srv:url() .. "?unit=1", { poll = 60 }))
  T.eq(meter:stats().profile, "eastron/sdm72d", "identified")
  T.wait_for(function() return meter.l1_voltage ~= nil end, 5, "the first poll")
  T.eq(meter.l1_voltage, 230.5, "then read as if named")
  local d, err, code = site:add("house", "auto", srv:url() .. "?unit=2")
  T.eq(d, nil, "two profiles fit an SDM120 image")
  T.eq(code, "ambiguous", err)
  assert(err:find("eastron/sdm120", 1, true) and err:find("eastron/sdm230", 1, true), "candidates: " .. err)
  d, err, code = site:add("other", "auto", srv:url() .. "?unit=3")
  T.eq(d, nil, "no profile fits")
  T.eq(code, "no_profile", err)
  assert(err:find("none matched", 1, true) and err:find("moondog probe", 1, true), "a hint: " .. err)
  T.eq(#site:devices(), 1, "only the identified device was added")
  site:close()
  local url = srv:url()
  srv:close()
  local again <close> = md.site.new { name = "auto2" }
  d = assert(again:add("gone", "auto", url .. "?unit=1&timeout=0.3"))
  T.eq(d:stats().state, "offline", "nothing answers: kept, down, probed again (test_site_auto)")
  assert(d:stats().last_error:find("no device answered", 1, true), d:stats().last_error)
end)
