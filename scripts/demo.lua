-- moondog demo: a simulated solar site, polled and published to MQTT with
-- Home Assistant discovery.
--
--   moondog demo [--seconds N] [--mqtt HOST[:PORT]] [--prefix P] [--quiet]
--
-- Three simulated devices run inside this engine, each on its own loopback
-- port and protocol: a SunSpec PV inverter (Modbus TCP, models 1, 103, 120,
-- 121, 123 and 160), a SunSpec grid meter (model 203) and an RCT Power
-- battery inverter (RCT protocol). A small site model moves the sun, the
-- house load and the battery, and feeds the simulators. The engine then
-- does what it would do on a real site: opens the three devices through
-- their profiles (devices/), polls them and publishes every point to MQTT
-- with Home Assistant discovery, and takes commands on .../set topics.
-- Halfway through, the demo sends itself one such command: a 60 % power
-- limit for the inverter, which the simulated inverter obeys.
--
-- The three devices are one site (md.site): each is polled once, at its
-- own rate, and MQTT, the house-load derived point and anyone attached
-- read from it.
--
-- MQTT: --mqtt (or MOONDOG_MQTT=host:port) names a broker to use; without
-- one the demo starts mosquitto on a free loopback port and stops it at the
-- end. While it runs, `moondog attach` opens a REPL inside it (try
-- `site:status()`, `site.grid_meter.power`, `plant` or `plant.load_w = 5000`).

local md = require "moondog"
local broker = require "moondog.mqtt.broker"
local rct_device = require "moondog.devices.rct"
local cli_mod = require "moondog.cli"

local usage = "usage: moondog demo [--seconds N] [--mqtt HOST[:PORT]] [--prefix P] [--quiet]\n"
  .. "  --seconds N   run N seconds (default 20; 0 runs until Ctrl-C)\n"
  .. "  --mqtt H:P    publish to this broker (default: $MOONDOG_MQTT, else start mosquitto here)\n"
  .. "  --prefix P    topic prefix (default moondog)\n"
  .. "  --quiet       print the site once a second instead of every message"

local cli = cli_mod.new("moondog demo")
local o, pos = cli:parse(nil, { ... }, { seconds = { arg = "N" }, mqtt = { arg = "HOST[:PORT]" },
  prefix = { arg = "P" }, quiet = {}, help = {}, short = { h = "help" } })
if o.help then cli_mod.show_help(usage .. "\n") end
if pos[1] then cli:usage_error(nil, "unexpected argument '%s'", pos[1]) end
local opts = { seconds = 20, mqtt = o.mqtt or os.getenv("MOONDOG_MQTT"), prefix = o.prefix or "moondog",
  quiet = o.quiet }
if o.seconds then
  local n = tonumber(o.seconds)
  if not n or n < 0 or n ~= n or n == math.huge then
    cli:usage_error(nil, "--seconds needs a number >= 0 (0 = run until Ctrl-C), got '%s'", o.seconds)
  end
  opts.seconds = n
end
if opts.mqtt == "" then opts.mqtt = nil end

-- {===== the site model =====

-- The simulated plant. A global on purpose, so that an attached REPL can
-- see and change it.
plant = {
  hour = 9, pv_w = 0, pv_available_w = 0, load_w = 600, battery_w = 0, soc = 50, grid_w = 0,
  import_wh = 1250000, export_wh = 830000, pv_wh = 2400000, capacity_wh = 10000, max_battery_w = 3000,
}

-- One simulated day passes in 120 s; the sun is a sine between 06:00 and 18:00.
local function sun(now)
  plant.hour = (now / 120 * 24 + 9) % 24
  local daylight = math.max(0, math.sin((plant.hour - 6) / 12 * math.pi))
  plant.pv_available_w = math.floor(5500 * daylight + 0.5)
end

-- The battery absorbs surplus and covers deficit within its limits; the
-- grid takes the rest (> 0 import, < 0 export).
local function balance(dt)
  local surplus = plant.pv_w - plant.load_w
  local want = math.max(-plant.max_battery_w, math.min(plant.max_battery_w, surplus))
  if (want > 0 and plant.soc >= 100) or (want < 0 and plant.soc <= 10) then want = 0 end
  plant.battery_w = want
  -- 60x time lapse for the battery, so that its charge visibly moves.
  plant.soc = math.min(100, math.max(0, plant.soc + want * dt * 60 / 3600 / plant.capacity_wh * 100))
  plant.grid_w = plant.load_w - plant.pv_w + plant.battery_w
  local wh = math.abs(plant.grid_w) * dt / 3600
  if plant.grid_w > 0 then
    plant.import_wh = plant.import_wh + wh
  else
    plant.export_wh = plant.export_wh + wh
  end
  plant.pv_wh = plant.pv_wh + plant.pv_w * dt / 3600
end

-- }=====

-- {===== simulated devices =====

local function must(what, ok, err)
  if not ok then
    io.stderr:write("moondog demo: cannot start ", what, ": ", tostring(err), "\n")
    os.exit(1)
  end
  return ok
end

local inverter_sim = must("the SunSpec inverter", md.sunspec.serve("tcp://127.0.0.1:0", {
  models = { 1, 103, 120, 121, 123, { id = 160, count = 2 } },
  values = {
    [1] = { Mn = "moondog", Md = "Simulated PV inverter", SN = "INV-0001", Vr = "1.0" },
    [103] = { TmpCab = 38.5 },
    [121] = { WMax = 6000 },
    [123] = { WMaxLimPct = 100, WMaxLimPct_RvrtTms = 0, WMaxLim_Ena = "DISABLED" },
  },
}))
local pv = inverter_sim:simulate_inverter { power = 0 }

local meter_sim = must("the SunSpec meter", md.sunspec.serve("tcp://127.0.0.1:0", {
  models = { 1, 203 },
  values = { [1] = { Mn = "moondog", Md = "Simulated grid meter", SN = "MTR-0001", Vr = "1.0" } },
}))

local battery_sim = must("the RCT battery inverter", rct_device.simulate("rct_power", "127.0.0.1:0", {
  info = { serial = "RCT-0001", sw_version = "1.0", model = "Simulated battery inverter" },
}))

-- Feed the simulators from the site model.
local start = md.now()
local last = start
local function feed()
  local now = md.now()
  sun(now - start)
  inverter_sim:set_power(plant.pv_available_w)   -- the inverter caps it at its power limit
  plant.pv_w = math.floor(pv.w + 0.5)
  plant.load_w = math.max(150, plant.load_w + math.random(-100, 100))
  balance(now - last)
  last = now
  local share = plant.pv_w / 2
  inverter_sim:set(103, "WH", math.floor(plant.pv_wh))
  inverter_sim:set(103, "DCW", math.floor(plant.pv_w * 1.03))
  inverter_sim:set(103, "A", math.floor(plant.pv_w / 230 * 10 + 0.5) / 10)
  inverter_sim:set(160, "module[1].DCW", math.floor(share * 1.04))
  inverter_sim:set(160, "module[2].DCW", math.floor(share * 1.02))
  meter_sim:set(203, "W", plant.grid_w)
  local phase = math.floor(plant.grid_w / 3)
  meter_sim:set(203, "WphA", phase)
  meter_sim:set(203, "WphB", phase)
  meter_sim:set(203, "WphC", plant.grid_w - 2 * phase)
  meter_sim:set(203, "A", math.floor(math.abs(plant.grid_w) / 230 * 10 + 0.5) / 10)
  meter_sim:set(203, "TotWhImp", math.floor(plant.import_wh))
  meter_sim:set(203, "TotWhExp", math.floor(plant.export_wh))
  battery_sim:set("battery_soc", math.floor(plant.soc + 0.5))
  battery_sim:set("battery_power", -plant.battery_w)       -- RCT: > 0 discharges
  battery_sim:set("grid_power", plant.grid_w)
  battery_sim:set("house_power", plant.load_w)
  battery_sim:set("grid_import_energy", plant.import_wh / 1000)
  battery_sim:set("grid_export_energy", plant.export_wh / 1000)
end
feed() -- the devices' first reads already see the site
local feeder = md.every(0.5, feed)
feeder:name("demo site")

-- }=====

-- {===== MQTT =====

local own_broker
if not opts.mqtt then
  local err
  own_broker, err = broker.start {}
  must("a mosquitto broker (install it with `make deps`, or give --mqtt HOST:PORT)", own_broker, err)
  opts.mqtt = own_broker.host .. ":" .. own_broker.port
  md.log.info("started mosquitto on %s (use --mqtt or MOONDOG_MQTT for your own broker)", opts.mqtt)
end

local function show(topic, payload)
  if opts.quiet then return end
  if #payload > 72 then payload = payload:sub(1, 69) .. "..." end
  print(string.format("%-58s %s", topic, payload))
  io.stdout:flush()
end

-- The site: a global too, for an attached REPL (site:status()).
site = md.site.new { name = "demo" }
must("the inverter", site:add("inverter", "sunspec_inverter", inverter_sim:url(), { poll = 2 }))
must("the grid meter", site:add("grid_meter", "sunspec_meter", meter_sim:url(), { poll = 1 }))
must("the battery", site:add("battery", "rct_power", battery_sim:target(), { poll = 2 }))
site:derive("house.load", { label = "House load", unit = "W", device_class = "power",
  state_class = "measurement" }, function(v)
  return v.grid_meter.power + v.inverter.power + v.battery.battery_power
end)

local pub = must("publishing to MQTT at " .. opts.mqtt, site:publish {
  mqtt = { url = opts.mqtt, client_id = "moondog-demo" }, prefix = opts.prefix, max_interval = 30,
  on_publish = show,
})

-- }=====

local attach = md.attach.listen()
if attach then
  md.log.info("attach with: moondog attach %s", attach:path())
end
md.log.info("demo site publishing to %s under %s/...%s", opts.mqtt, opts.prefix,
  opts.seconds > 0 and (" for " .. opts.seconds .. " s") or "; Ctrl-C to stop")

local view
if opts.quiet then
  view = md.every(1, function()
    print(string.format("%02d:%02d pv %5d W  load %5d W  battery %6d W  soc %5.1f %%  grid %6d W",
      math.floor(plant.hour), math.floor(plant.hour % 1 * 60), plant.pv_w, plant.load_w, plant.battery_w,
      plant.soc, plant.grid_w))
    io.stdout:flush()
  end)
end

-- Halfway: a command, as Home Assistant would send it.
local commander = md.spawn(function()
  md.sleep(opts.seconds > 0 and opts.seconds / 2 or 10)
  local c <close> = assert(md.mqtt.connect { url = opts.mqtt, client_id = "moondog-demo-commander" })
  md.log.info("sending %s/inverter/power_limit/set 60 and power_limit_enabled/set ENABLED", opts.prefix)
  c:publish(opts.prefix .. "/inverter/power_limit/set", "60", { qos = 1, wait = true })
  c:publish(opts.prefix .. "/inverter/power_limit_enabled/set", "ENABLED", { qos = 1, wait = true })
end)

local function shutdown()
  commander:cancel()
  if view then view:cancel() end
  pub:close()
  site:close()
  feeder:cancel()
  inverter_sim:close()
  meter_sim:close()
  battery_sim:close()
  if own_broker then own_broker:close() end
  if attach then attach:close() end
end

if opts.seconds > 0 then
  md.sleep(opts.seconds)
  shutdown()
  md.exit(0)
end
