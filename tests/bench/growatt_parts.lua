-- tests/bench/growatt_parts.lua: where the Growatt proxy's CPU and garbage
-- per record go, stage by stage, in one process (the whole-proxy figures
-- come from tests/bench/growatt.sh). For each stage: CPU per record
-- (os.clock) and the bytes the Lua heap allocated per record (the
-- collector stopped while the stage runs), which is what drives the heap's
-- peak and so the RSS.
--
--   ./moondog tests/bench/growatt_parts.lua [N]
--
-- Stages: the frame parser (core.parser push/next), record.decode (and
-- with opts.reuse, as the proxy does while no hook keeps records), the
-- site update of a pushed device, and the site update with a publisher to
-- a local mosquitto in each mode ("state": one JSON message per record;
-- "points": one message per value), the client flushed at the end.

local md = require "moondog"
local core = require "moondog.growatt.core"
local record = require "moondog.growatt.record"
local sim = require "moondog.growatt.logger_sim"

local N = tonumber(arg and arg[1]) or 2000
local format = string.format

local o = { protocol = 6, serial = "BENCHLOG01", inverter = "BENCHINV01" }
local frames = {}
for n = 1, N do frames[n] = core.build(n % 0xFFFF + 1, 6, 1, 0x04, sim.record_body(o, n)) end

-- fn(n) for n = 1..N: the heap bytes allocated per call over the first
-- tenth (the collector stopped), then the CPU µs per call over the rest
-- (the collector running, as in the proxy: a stopped one makes every
-- allocation touch new memory and costs more).
local function measure(name, fn)
  local m = math.max(1, N // 10)
  collectgarbage("collect")
  collectgarbage("stop")
  local k0 = collectgarbage("count")
  for n = 1, m do fn(n) end
  local k1 = collectgarbage("count")
  collectgarbage("restart")
  collectgarbage("collect")
  local c0 = os.clock()
  for n = m + 1, N do fn(n) end
  local c1 = os.clock()
  print(format("%-26s %7.1f us CPU/record %8.0f bytes allocated/record", name, (c1 - c0) / (N - m) * 1e6,
    (k1 - k0) * 1024 / m))
end

local parser = core.parser()
local parsed = {}
measure("parse", function(n)
  parser:push(frames[n])
  parsed[n] = parser:next()
end)

local opts = { dtc = 5100, tp = 0x0203 }
local recs = {}
measure("decode", function(n) recs[n] = record.decode(parsed[n], opts) end)
assert(recs[N].layout, "the bench records decode to no layout")
local ropts = { dtc = 5100, tp = 0x0203, reuse = {} }
measure("decode, values reused", function(n) record.decode(parsed[n], ropts) end)

-- A pushed device as the proxy makes it (its points: the layout's).
local function site_device(site)
  local pts = { { name = "logger_serial", type = "string" } }
  for _, l in ipairs(record.layouts) do
    if l.name == recs[1].layout then
      for _, p in ipairs(l.points) do
        pts[#pts + 1] = { name = p.name, unit = p.unit, device_class = p.device_class,
                          state_class = p.state_class, resets = p.resets, label = p.label }
      end
    end
  end
  site:add_pushed("growatt_benchinv01", { manufacturer = "Growatt", points = pts })
  return site.growatt_benchinv01
end

local function updates(name, sd)
  measure(name, function(n)
    local values = recs[n].values
    values.logger_serial = recs[n].logger
    sd:update(values)
  end)
end

do
  local site <close> = md.site.new { name = "bench" }
  updates("site update", site_device(site))
end

local broker <close> = assert(md.mqtt.broker.start {})
for _, mode in ipairs { "state", "points" } do
  local site <close> = md.site.new { name = "bench" }
  local pub = assert(site:publish { mqtt = { host = broker.host, port = broker.port }, prefix = "bench" })
  pub:mode("growatt_benchinv01", mode)
  local sd = site_device(site)
  local client = pub.client
  local s0 = client:stats().published
  updates("site update + MQTT " .. mode, sd)
  local c0 = os.clock()
  client:flush(30)
  print(format("%-26s %7.1f us CPU/record (flush: %d messages, %.1f per record)", "  then " .. mode .. " flush",
    (os.clock() - c0) / N * 1e6, client:stats().published - s0, (client:stats().published - s0) / N))
  pub:close()
end
