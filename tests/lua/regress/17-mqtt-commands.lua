-- Issue 17, items 9 and 10: commands over MQTT and device writes.
--  9. a retained .../set message was written to the device again on every
--     engine start and reconnect: retained commands are now refused (code
--     "retained", said on the result topic);
-- 10. one client caused 9448 device writes in about 3 s: a point is now
--     written at most once per command_interval, coalescing to the latest
--     value; profiles declare rules between points (soc_min = 100 was
--     accepted with soc_max = 50); the step check accepted 4.9999999999
--     and 1e-320 and is now exact.

local T = require "moondog.testing"
local cjson = require "cjson"
local mqtt = require "moondog.mqtt"
local broker = require "moondog.mqtt.broker"
local publish = require "moondog.mqtt.publish"
local point = require "moondog.devices.point"
local devices = require "moondog.devices"
local modbus_dev = require "moondog.devices.modbus"
local rct_dev = require "moondog.devices.rct"

local format = string.format
local LIMIT = "moondog/inverter/active_power_limit"

local INVERTER_VALUES = {
  ac_power = 3120, pv_power = 3300, ac_voltage = 230.1, frequency = 50.02, energy_total = 1234.567,
  temperature = 41.5, status = "running", active_power_limit = 100, mode = "eco", output_enabled = true,
}

-- A broker, a simulated inverter published there, and a client that
-- records every result.
local function site(dir, opts)
  T.need("mosquitto", "mosquitto")
  local s = { writes = 0, results = {} }
  s.broker = assert(broker.start { dir = dir.path })
  s.sim = assert(modbus_dev.simulate("sim_inverter", "tcp://127.0.0.1:0", {
    values = INVERTER_VALUES, on_write = function() s.writes = s.writes + 1 end,
  }))
  s.dev = assert(devices.open("sim_inverter", s.sim:url(), { id = "inverter" }))
  s.client = assert(mqtt.connect { host = s.broker.host, port = s.broker.port })
  assert(s.client:subscribe(LIMIT .. "/result", function(_, payload)
    s.results[#s.results + 1] = cjson.decode(payload)
  end, { qos = 1 }))
  function s.start()
    s.pub = assert(publish.start { mqtt = { host = s.broker.host, port = s.broker.port }, poll = 5,
      devices = { s.dev }, command_interval = opts and opts.command_interval })
  end
  return setmetatable(s, { __close = function()
    if s.pub then s.pub:close() end
    s.client:publish(LIMIT .. "/set", "", { qos = 1, retain = true, wait = true }) -- clear it
    s.client:close()
    s.dev:close()
    s.sim:close()
    s.broker:close()
  end })
end

T.test("9: a retained command is not written, and the result says so", function()
  local dir <close> = T.tmpdir()
  local s <close> = site(dir)
  assert(s.client:publish(LIMIT .. "/set", "55", { qos = 1, retain = true, wait = true }))
  s.start()
  T.wait_for(function() return #s.results > 0 end, 10, "the result of the retained command")
  T.eq(s.results[1].ok, false, "refused")
  T.eq(s.results[1].code, "retained", "code")
  T.eq(s.writes, 0, "device writes")
  T.eq(s.sim:get("active_power_limit"), 100, "the device keeps its value")
  assert(s.client:publish(LIMIT .. "/set", "60", { qos = 1 })) -- a live command still works
  T.wait_for(function() return #s.results > 1 end, 10, "the result of the live command")
  T.eq(s.results[2].ok, true, "live command accepted")
  T.eq(s.sim:get("active_power_limit"), 60, "written")
end)

T.test("10: a burst of commands costs one write per interval, of the latest value", function()
  local dir <close> = T.tmpdir()
  local s <close> = site(dir, { command_interval = 5 })
  s.start()
  T.wait_for(function() return s.pub.client:status() == "connected" end, 10, "the publisher to connect")
  md.sleep(0.5) -- and subscribe
  for v = 1, 50 do assert(s.client:publish(LIMIT .. "/set", tostring(v), { qos = 1 })) end
  T.wait_for(function() return s.sim:get("active_power_limit") == 50 end, 15, "the last value written")
  T.eq(s.writes, 2, "device writes: the first at once, then the latest after the interval")
  local superseded = 0
  for _, r in ipairs(s.results) do
    if r.code == "superseded" then superseded = superseded + 1 end
  end
  T.eq(superseded, 48, "commands replaced before they were written")
end)

T.test("10: a profile rule between points refuses soc_min above soc_max", function()
  local sim <close> = assert(rct_dev.simulate("rct_power", "127.0.0.1:0", {}))
  sim:set("battery_soc_max", 50)
  local dev <close> = assert(devices.open("rct_power", sim:target(), { id = "battery" }))
  local ok, err, code = dev:write("battery_soc_min", 100)
  T.eq(ok, nil, "refused: " .. tostring(err))
  T.eq(code, "constraint", "code")
  assert(err:find("battery_soc_min < battery_soc_max", 1, true), "names the rule: " .. err)
  T.eq(assert(dev:write("battery_soc_min", 20)), true, "a value within the rule")
end)

T.test("10: the step check is exact", function()
  local p = { name = "limit", writable = true, min = 0, max = 100, step = 1 }
  for _, v in ipairs({ 4.9999999999, 1e-320, 5.5, 100.00000001 }) do
    local ok, _, code = point.check(p, v)
    T.eq(ok, nil, format("%.17g refused", v))
    T.eq(code, v > 100 and "out_of_range" or "bad_step", format("code for %.17g", v))
  end
  T.eq(point.check(p, 5), 5, "on the grid")
  local tenth = { name = "v", writable = true, min = 0, max = 10, step = 0.1 }
  T.eq(point.check(tenth, 0.3), 0.3, "0.3 in steps of 0.1")
  T.eq(select(3, point.check(tenth, 1e-320)), "bad_step", "1e-320 in steps of 0.1")
  T.eq(select(3, point.check(tenth, 0.35)), "bad_step", "0.35 in steps of 0.1")
  T.eq(select(3, point.parse(p, "4.9999999999")), "bad_step", "parsed text")
  local half = { name = "h", writable = true, min = 0.5, step = 0.25 }
  T.eq(point.check(half, 1.75), 1.75, "1.75 in steps of 0.25 from 0.5")
end)
