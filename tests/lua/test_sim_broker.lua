-- The broker_gone scenario, shortened and in real time (MQTT cannot run in
-- simulated time yet: moondog.sim.run says why): the broker the run
-- started goes away and comes back; export limiting goes on meanwhile and
-- the site's values reach a watcher again afterwards. No timing is
-- asserted, only states and values.

local T = require "moondog.testing"
local md = require "moondog"
local scenarios = require "moondog.sim.scenarios"
local run = require "moondog.sim.run"

T.test("broker_gone: control goes on while the broker is away, publishing resumes", function()
  T.need("mosquitto")
  local sc = scenarios.get("broker_gone")
  sc.events[1].at, sc.events[1].duration = 3, 4 -- the outage, short
  local states = {}
  local r <close> = assert(run.start(sc, {
    on_second = function(_, row) states[#states + 1] = row.state end }))
  assert(r.broker and r.broker:running(), "the run started a broker")
  T.wait_for(function() return not r.broker:running() end, 10, "the broker to go")
  T.eq(r.ctl:status().state ~= "fail-safe", true, "control goes on without the broker")
  T.wait_for(function() return r.broker:running() end, 15, "the broker to come back")
  local got
  local conn
  T.wait_for(function()
    conn = md.mqtt.connect { host = r.broker.host, port = r.broker.port, client_id = "watcher" }
    if not conn then md.sleep(0.2) end
    return conn
  end, 15, "the broker to take connections again")
  local c <close> = conn
  local sub = assert(c:subscribe("moondog/meter/power", function(_, payload) got = payload end))
  T.wait_for(function() return got ~= nil end, 40, "a value from the site after the outage")
  sub:close()
  assert(tonumber(got), got)
  for i, s in ipairs(states) do assert(s ~= "fail-safe", "fail-safe in second " .. i) end
  T.eq(r.ctl:status().state, "limiting", "limiting")
end, { timeout = 90 })
