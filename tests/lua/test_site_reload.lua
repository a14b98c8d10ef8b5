-- Reloading a site script (moondog.site.reload, SIGHUP): unchanged devices
-- and tasks keep running (same objects, same poll task and phase, one
-- connection at the simulator), added ones start, removed ones stop and
-- their Home Assistant entities go away, a broken script changes nothing.
-- In-process with reload.run, and as a real `moondog site.lua` process
-- that gets kill -HUP. Devices are Modbus simulators on loopback; the
-- broker is a real mosquitto.

local T = require "moondog.testing"
local md = require "moondog"
local broker = require "moondog.mqtt.broker"
local modbus_dev = require "moondog.devices.modbus"
local reload = require "moondog.site.reload"

local format = string.format

local INVERTER = {
  ac_power = 3120, pv_power = 3300, ac_voltage = 230.1, frequency = 50.02, energy_total = 1234.567,
  temperature = 41.5, status = "running", active_power_limit = 100, mode = "eco", output_enabled = true,
}

local function simulate()
  return assert(modbus_dev.simulate("sim_inverter", "tcp://127.0.0.1:0", { values = INVERTER }))
end

-- A site script declaring the devices in `devs` ({id, url, poll}), a
-- control task with `limit` as its setting, and MQTT at `mqtt` (or none).
local function script(o)
  local lines = {
    "local md = require 'moondog'",
    format("local site = md.site.new { name = %q }", o.name),
  }
  for _, d in ipairs(o.devs) do
    lines[#lines + 1] = format("assert(site:add(%q, 'sim_inverter', %q, { poll = %s }))", d[1], d[2], d[3])
  end
  lines[#lines + 1] = format("local settings = { limit = %d }", o.limit or 100)
  lines[#lines + 1] = "_G.control_runs = (_G.control_runs or 0)"
  lines[#lines + 1] = "site:spawn(function() _G.control_runs = _G.control_runs + 1 "
    .. "while true do md.sleep(settings.limit / 1000) end end, { name = 'control' })"
  if o.mqtt then
    lines[#lines + 1] = format("assert(site:publish { mqtt = { host = '127.0.0.1', port = %d }, "
      .. "prefix = %q })", o.mqtt, o.name)
  end
  if o.tail then lines[#lines + 1] = o.tail end
  lines[#lines + 1] = "return site"
  return table.concat(lines, "\n") .. "\n"
end

local function url(sim) return sim:url() .. "?unit=1" end

T.test("reload: one device kept (same poll task, one connection), one added, one removed, tasks", function()
  T.need("mosquitto", "mosquitto")
  local dir <close> = T.tmpdir()
  local b <close> = assert(broker.start { dir = dir.path })
  local a, gone, new = simulate(), simulate(), simulate()
  local path = dir.path .. "/site.lua"
  T.write_file(path, script { name = "r1", devs = { { "a", url(a), 0.05 }, { "gone", url(gone), 0.05 } },
    mqtt = b.port })
  local site = assert(dofile(path))
  local w = assert(md.mqtt.connect { host = b.host, port = b.port })
  local last = {}
  assert(w:subscribe("#", function(topic, payload) last[topic] = payload end, { qos = 1 }))
  local ha_topic
  T.wait_for(function()
    for topic, payload in pairs(last) do
      if topic:match("^homeassistant/.*/gone_ac_power/config$") and payload ~= "" then ha_topic = topic end
    end
    return ha_topic ~= nil and last["r1/gone/availability"] == "online" and site.a:stats().polls >= 5
  end, 10, "discovery of gone and 5 polls of a")
  local sd_a, task_a, sched_a = site.a, rawget(site.a, "_task"), rawget(site.a, "_sched")
  local control = site._sup.tasks[1].task
  local polls_a = site.a:stats().polls

  T.write_file(path, script { name = "r1", devs = { { "a", url(a), 0.05 }, { "new", url(new), 0.05 } },
    mqtt = b.port })
  local report = assert(reload.run(path))
  local r = report.r1
  T.eq(format("%d kept, %d added, %d changed, %d removed", r.kept, r.added, r.changed, r.removed),
    "1 kept, 1 added, 0 changed, 1 removed", "devices")
  T.eq(r.tasks, "1 kept, 0 started, 0 stopped", "the unchanged control task")
  assert(rawequal(site.a, sd_a), "site.a is the same device object")
  assert(rawequal(rawget(site.a, "_task"), task_a), "a's poll task is the one that ran before")
  assert(rawequal(rawget(site.a, "_sched"), sched_a), "a's schedule (origin and phase) is the same")
  assert(rawequal(site._sup.tasks[1].task, control), "the control task is the one that ran before")
  assert(site.a:stats().polls >= polls_a, "a's poll count went on")
  T.eq(_G.control_runs, 1, "control started once")
  local ids = {}
  for _, sd in ipairs(site:devices()) do ids[#ids + 1] = sd.id end
  T.eq(table.concat(ids, ","), "a,new", "devices after the reload")
  T.wait_for(function() return site.new:stats().polls >= 3 end, 10, "the new device polls")
  T.wait_for(function() return last[ha_topic] == "" end, 10, "gone's discovery removed")
  T.wait_for(function() return last["r1/gone/availability"] ~= "online" end, 10, "gone unavailable")
  local gone_requests = gone.server:stats().requests
  T.wait_for(function() return site.a:stats().polls >= polls_a + 10 end, 10, "a keeps polling")
  T.eq(gone.server:stats().requests, gone_requests, "nobody polls the removed device")
  T.eq(a.server:stats().accepted, 1, "a's simulator saw one connection across the reload")

  -- a changed setting restarts the control task; a changed poll restarts the device
  T.write_file(path, script { name = "r1", devs = { { "a", url(a), 0.1 }, { "new", url(new), 0.05 } },
    mqtt = b.port, limit = 200 })
  r = assert(reload.run(path)).r1
  T.eq(format("%d kept, %d added, %d changed, %d removed", r.kept, r.added, r.changed, r.removed),
    "1 kept, 0 added, 1 changed, 0 removed", "a changed")
  T.eq(r.tasks, "0 kept, 1 started, 1 stopped", "control with a new setting")
  assert(not rawequal(site.a, sd_a), "a is a new device object")
  T.wait_for(function() return _G.control_runs == 2 end, 5, "control restarted")
  _G.control_runs = nil
  w:close()
  site:close()
  a:close(); gone:close(); new:close()
end, { timeout = 60 })

T.test("reload: a broken script changes nothing and says why", function()
  local dir <close> = T.tmpdir()
  local a, other = simulate(), simulate()
  local path = dir.path .. "/site.lua"
  local good = script { name = "r2", devs = { { "a", url(a), 0.05 } } }
  T.write_file(path, good)
  local site = assert(dofile(path))
  local sd_a = site.a
  local cases = {
    { "a syntax error", good .. "this is not lua\n", "expected near" },
    { "an error raised", script { name = "r2", devs = { { "a", url(a), 0.05 }, { "b", url(other), 0.05 } },
      tail = "error('the script author made a mistake')" }, "the script author made a mistake" },
    { "site:add failing", script { name = "r2", devs = { { "a", url(a), 0.05 } },
      tail = "site:add('c', 'sim_inverter', 'tcp://127.0.0.1:notaport?unit=1')" }, "site:add(\"c\") failed" },
    { "a main chunk that never returns", good:gsub("return site", "while true do md.sleep(1) end"),
      "must return" },
  }
  local saved = reload.TIMEOUT
  reload.TIMEOUT = 0.5
  for _, c in ipairs(cases) do
    T.write_file(path, c[2])
    local ok, err = reload.run(path)
    T.eq(ok, nil, c[1] .. " fails")
    assert(tostring(err):find(c[3], 1, true), c[1] .. ": " .. tostring(err))
    local ids = {}
    for _, sd in ipairs(site:devices()) do ids[#ids + 1] = sd.id end
    T.eq(table.concat(ids, ","), "a", c[1] .. ": the devices are unchanged")
    assert(rawequal(site.a, sd_a), c[1] .. ": a is the same device")
    T.eq(#site._sup.tasks, 1, c[1] .. ": one task")
    T.eq(site._sup.tasks[1].done, nil, c[1] .. ": the control task runs")
  end
  reload.TIMEOUT = saved
  T.eq(other.server:stats().accepted <= 1, true, "b was never polled")
  T.eq(other.server:stats().requests, 0, "b was never polled")
  _G.control_runs = nil
  site:close()
  a:close(); other:close()
end, { timeout = 60 })

-- The log of a moondog process, polled until it has the text.
local function wait_log(proc, text, what)
  T.wait_for(function()
    if not proc:alive() then error("moondog exited: " .. (T.read_file(proc.err) or ""), 0) end
    return (T.read_file(proc.err) or ""):find(text, 1, true) ~= nil
  end, 15, what)
end

T.test("SIGHUP reloads `moondog site.lua`: a kept device keeps its connection, added, removed", function()
  local dir <close> = T.tmpdir()
  local a, gone, new = simulate(), simulate(), simulate()
  local path = dir.path .. "/site.lua"
  T.write_file(path, script { name = "hup", devs = { { "a", url(a), 0.05 }, { "gone", url(gone), 0.05 } } })
  local proc <close> = T.start(dir, "moondog", format("%s %s", T.quote(md.paths.exe), T.quote(path)))
  T.wait_for(function()
    return a.server:stats().requests >= 5 and gone.server:stats().requests >= 5
  end, 15, "the site polls a and gone")
  T.write_file(path, script { name = "hup", devs = { { "a", url(a), 0.05 }, { "new", url(new), 0.05 } } })
  local before = a.server:stats().requests
  assert(proc.child:kill("HUP"))
  wait_log(proc, "reloaded: devices 1 kept, 1 added, 0 changed, 1 removed; tasks 1 kept", "the reload")
  T.wait_for(function() return new.server:stats().requests >= 5 end, 15, "the new device is polled")
  local gone_requests = gone.server:stats().requests
  T.wait_for(function() return a.server:stats().requests >= before + 20 end, 15, "a is polled on")
  T.eq(gone.server:stats().requests, gone_requests, "the removed device is not polled")
  T.eq(a.server:stats().accepted, 1, "a's one connection survived the reload")

  T.write_file(path, "local md = require 'moondog'\n"
    .. "md.site.new { name = 'hup' }:add('x', 'no_such_profile', 'tcp://127.0.0.1:1')\n")
  assert(proc.child:kill("HUP"))
  wait_log(proc, "failed, the running site is unchanged", "the failed reload")
  local n = new.server:stats().requests
  T.wait_for(function() return new.server:stats().requests >= n + 5 end, 15, "new is still polled")
  assert(proc:alive(), "moondog runs on")
  proc:stop()
  a:close(); gone:close(); new:close()
end, { timeout = 60 })


T.test("reload: derived points take the new function, site values keep theirs, new watchers", function()
  local dir <close> = T.tmpdir()
  local a = simulate()
  local path = dir.path .. "/site.lua"
  local function derived(factor, extra)
    return script { name = "r3", devs = { { "a", url(a), 0.05 } }, tail = table.concat({
      "site:value('ctl.limit', { unit = 'W', writable = true, min = 0, max = 5000 }, 800)",
      format("site:derive('calc.double', { unit = 'W' }, function(v) return v.a.ac_power * %d end)",
        factor),
      "_G.watch_seen = {}",
      format("site:watch('calc.double', function(x) "
        .. "_G.watch_seen[#_G.watch_seen + 1] = %q .. math.floor(x) end)", tostring(factor)),
      extra or "",
    }, "\n") }
  end
  T.write_file(path, derived(2))
  local site = assert(dofile(path))
  T.wait_for(function() return site.calc.double == 6240 end, 10, "double = 2 x 3120")
  assert(site.ctl:write("limit", 1200))
  T.write_file(path, derived(3))
  local r = assert(reload.run(path)).r3
  T.eq(r.kept, 1, "a kept")
  T.wait_for(function() return site.calc.double == 9360 end, 10, "double recomputed with the new function")
  T.eq(site.ctl.limit, 1200, "the site value kept its value, not the script's initial 800")
  T.wait_for(function() return _G.watch_seen[#_G.watch_seen] == "39360" end, 10, "the new watcher runs")
  for _, seen in ipairs(_G.watch_seen) do
    assert(seen:sub(1, 1) == "3", "only the new watcher after the reload: " .. seen)
  end
  -- a site-values device the script no longer declares goes away
  T.write_file(path, script { name = "r3", devs = { { "a", url(a), 0.05 } } })
  assert(reload.run(path))
  local ids = {}
  for _, sd in ipairs(site:devices()) do ids[#ids + 1] = sd.id end
  T.eq(table.concat(ids, ","), "a", "ctl and calc removed")
  _G.watch_seen, _G.control_runs = nil, nil
  site:close()
  a:close()
end, { timeout = 60 })
