-- /etc/moondog/site.lua: an example moondog site, installed by the package.
--
-- A site is a plain Lua script. `moondog SITE.lua` runs it; under systemd,
-- `moondog.service` runs /etc/moondog/site.lua and `moondog@NAME.service`
-- runs /etc/moondog/NAME.lua (one engine per site):
--
--   sudo cp /etc/moondog/site.lua /etc/moondog/home.lua   # then edit home.lua
--   moondog check /etc/moondog/home.lua                   # every mistake, devices untouched
--   sudo systemctl enable --now moondog@home
--   journalctl -u moondog@home -f                         # the log, with the values below
--
-- As shipped it runs against SIMULATED devices (a grid meter and a PV
-- inverter served over SunSpec from this engine), so a fresh install shows
-- values at once. Set SIMULATED to false and fill in your own devices.

local md = require "moondog"

local SIMULATED = true

-- The site owns its devices: it polls each point, keeps the latest value,
-- and everything else (MQTT, control, the REPL) reads from it.
local site = md.site.new { name = "home" }

if SIMULATED then
  -- A sunny day's plant, served on free loopback ports by this engine.
  local scenario = require("moondog.sim.scenarios").get("sunny_day")
  local sim = assert(require("moondog.sim.site").start(scenario))
  sim:add_to(site, { poll = 2 })   -- adds "meter" and "pv"
else
  -- Your devices: an id, a profile (`moondog devices` lists them) and an
  -- address (tcp://host[:port]?unit=N, rtu:///dev/ttyUSB0?baud=9600&unit=1).
  -- The service user may open serial ports (it is in the dialout group).
  site:add("meter", "sunspec_meter", "tcp://192.168.1.51?unit=240", { poll = 1 })
  site:add("pv", "sunspec_inverter", "tcp://192.168.1.50?unit=1", { poll = 5 })
end

-- Publish to MQTT with Home Assistant discovery: uncomment and set the
-- broker. Keep the password out of this file: md.secret reads it from
-- systemd's credentials (LoadCredential=mqtt_password:/etc/moondog/mqtt_password
-- in `systemctl edit moondog@home`), the environment variable
-- MOONDOG_MQTT_PASSWORD, or the line `mqtt_password = ...` in
-- /etc/moondog/secrets (readable by root and the moondog group only).
--
-- site:publish { mqtt = { host = "192.168.1.10", username = "moondog",
--                         password = assert(md.secret("mqtt_password")) } }

-- Export limiting (see /usr/share/doc/moondog/control.md): curtails the
-- inverter so that no more than limit_w goes to the grid. Its excursion
-- counters are kept in md.state_dir() (/var/lib/moondog under systemd).
--
-- md.control.export_limit { site = site, grid = "meter.power", inverters = { "pv" },
--                           limit_w = 0, state_file = md.state_dir() and
--                           (md.state_dir() .. "/export_limit.json") }

-- Log what the site sees: once the meter's first sample is in, then every
-- 30 s (journalctl shows it; `systemctl status` shows the latest as the
-- unit's status line). A task, so the main chunk returns at once and
-- systemd hears that the site is up.
md.spawn(function()
  site.meter:wait("power", { timeout = 10 })
  while true do
    local line = string.format("grid %s W, pv %s W", tostring(site.meter:get("power")),
      tostring(site.pv:get("power")))
    md.log.info("%s", line)
    md.service.status(line)
    md.sleep(30)
  end
end)

-- `moondog attach` (as root, or the moondog user) opens a REPL inside the
-- running engine: try site:status().
md.attach.listen()
