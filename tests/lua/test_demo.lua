-- The demo (`make run`): simulated SunSpec inverter and meter and an RCT
-- battery inverter, polled and published with Home Assistant discovery to
-- a real mosquitto broker, and one command obeyed.

local T = require "moondog.testing"
local cjson = require "cjson"
local broker = require "moondog.mqtt.broker"

local function run_demo(dir, args)
  T.need("mosquitto")
  local proc <close> = T.start(dir, "demo", md.paths.exe .. " demo " .. args)
  T.wait_for(function() return not proc:alive() end, 60, "the demo to finish")
  local _, how, code = proc:stop()
  return how, code, T.read_file(proc.out), T.read_file(proc.err)
end

T.test("publishes three devices with discovery to a given broker and obeys a command", function()
  local b <close> = assert(broker.start {})
  local seen, order = {}, {}
  local c <close> = assert(md.mqtt.connect { host = b.host, port = b.port, client_id = "demo-watcher" })
  local sub = assert(c:subscribe("#", function(topic, payload)
    seen[topic] = payload
    order[#order + 1] = topic
  end, { qos = 1 }))
  local dir <close> = T.tmpdir()
  local how, code, _, err = run_demo(dir, string.format("--seconds 6 --mqtt %s:%d", b.host, b.port))
  T.eq(how .. " " .. code, "exit 0", "exit status; stderr: " .. tostring(err))
  T.wait_for(function() return seen["moondog/status"] == "offline" end, 5, "the final status")
  sub:close()
  for _, id in ipairs({ "inverter", "grid_meter", "battery" }) do
    local config = seen["homeassistant/sensor/moondog/" .. id .. "_" ..
      (id == "battery" and "battery_soc" or "power") .. "/config"]
    assert(config, "discovery config for " .. id)
    local cfg = cjson.decode(config)
    T.eq(cfg.device.identifiers[1], "moondog_" .. id, id .. " identifiers")
    assert(cfg.device.serial_number, id .. " serial number read from the device")
    T.eq(seen["moondog/" .. id .. "/availability"], "offline", id .. " offline at the end")
  end
  local limit = cjson.decode(assert(seen["homeassistant/number/moondog/inverter_power_limit/config"]))
  T.eq(limit.min, 0, "explicit minimum")
  T.eq(limit.command_topic, "moondog/inverter/power_limit/set", "command topic")
  local energy = cjson.decode(assert(seen["homeassistant/sensor/moondog/grid_meter_import_energy/config"]))
  T.eq(energy.device_class .. " " .. energy.state_class .. " " .. energy.unit_of_measurement,
    "energy total_increasing kWh", "Energy dashboard")
  local result = cjson.decode((assert(seen["moondog/inverter/power_limit/result"], "command result")))
  T.eq(result.ok, true, "command accepted")
  T.eq(result.value, 60, "command value")
  T.eq(seen["moondog/inverter/power_limit"], "60", "limit read back")
  assert(tonumber(seen["moondog/inverter/power"]), "inverter power is a number")
  assert(tonumber(seen["moondog/grid_meter/import_energy"]) > 1000, "meter total")
end, { timeout = 90 })

T.test("every entity the demo announces receives a state within 10 s", function()
  local b <close> = assert(broker.start {})
  local first = {} -- topic -> time of its first message
  local configs = {}
  local t0 = md.now()
  local c <close> = assert(md.mqtt.connect { host = b.host, port = b.port, client_id = "demo-watcher" })
  local sub = assert(c:subscribe("#", function(topic, payload)
    first[topic] = first[topic] or md.now()
    if topic:match("^homeassistant/.*/config$") and payload ~= "" then
      configs[topic] = cjson.decode(payload)
    end
  end, { qos = 1 }))
  local dir <close> = T.tmpdir()
  local how, code, _, err = run_demo(dir, string.format("--seconds 12 --mqtt %s:%d", b.host, b.port))
  T.eq(how .. " " .. code, "exit 0", "exit status; stderr: " .. tostring(err))
  sub:close()
  local n = 0
  for topic, cfg in pairs(configs) do
    n = n + 1
    local at = first[cfg.state_topic]
    assert(at, topic .. ": announced but its state topic " .. cfg.state_topic .. " never got a value")
    assert(at - first[topic] <= 10, string.format("%s: first state %.1f s after the config", topic,
      at - first[topic]))
    if #cfg.availability == 2 then
      assert(first[cfg.availability[2].topic], topic .. ": its availability topic was never published")
    end
  end
  assert(n >= 40, "entities announced: " .. n)
  assert(first["moondog/demo/health"], "the site's health")
  assert(md.now() - t0 < 60)
end, { timeout = 90 })

T.test("starts its own broker when none is given, and prints what it publishes", function()
  local dir <close> = T.tmpdir()
  local how, code, out, err = run_demo(dir, "--seconds 3")
  T.eq(how .. " " .. code, "exit 0", "exit status; stderr: " .. tostring(err))
  assert(out:find("homeassistant/sensor/moondog/inverter_power/config", 1, true), out)
  assert(out:find("\nmoondog/battery/battery_soc +%d"), out)
  assert(err:find("started mosquitto on 127.0.0.1:", 1, true), err)
end, { timeout = 60 })

T.test("a wrong argument: exit 2 and a clear line", function()
  local dir <close> = T.tmpdir()
  local how, code, _, err = run_demo(dir, "--seconds soon")
  T.eq(how .. " " .. code, "exit 2", "usage error")
  assert(err:find("--seconds needs a number", 1, true), err)
end)

T.test("command-line mistakes: unknown option, missing value, --opt=value (moondog.cli)", function()
  for _, case in ipairs({
    { "--bogus", "unknown option '--bogus'" },
    { "--seconds", "option --seconds needs a value (N)" },
    { "--seconds=soon", "--seconds needs a number >= 0 (0 = run until Ctrl-C), got 'soon'" },
    { "--quiet=yes", "option --quiet takes no value" },
    { "stray", "unexpected argument 'stray'" },
  }) do
    local err, code = T.sh(md.paths.exe .. " demo " .. case[1] .. " 2>&1 >/dev/null")
    T.eq(code, 2, case[1])
    T.usage_error(err, "moondog demo", case[2], case[1])
  end
  local out, code = T.sh(md.paths.exe .. " demo --seconds=1 --help")
  T.eq(code, 0, "--help")
  assert(out:find("^usage: moondog demo %[%-%-seconds N%]"), out)
end)
