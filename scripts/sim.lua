-- moondog sim: run a simulated site from a scenario with the export
-- limiter on, and watch it.
--
--   moondog sim --scenario load_drop --simulated-time --csv run.csv --plot run.png
--
-- A scenario (lua/moondog/sim/scenarios/<name>.lua) describes a site: the
-- house load, the sun and its clouds, the inverters, the grid meter, and
-- what goes wrong when. The tool serves its devices over SunSpec from this
-- engine, reads them through a site (md.site) as it would read hardware,
-- and runs moondog's export limiter on them (moondog.sim.run does the
-- work). Once a second it shows grid, PV, battery, load, limit, the
-- controller's state and the devices' health: redrawn in place like `top`
-- when stdout is a terminal, one plain line per second otherwise (a pipe,
-- CI, a service). At the end it writes a CSV of the run and, when gnuplot
-- is installed, a PNG plot, and prints their paths.
--
-- Time: --simulated-time runs as fast as the machine can (a day in a
-- minute or so) and repeats exactly; --speed N runs N simulated seconds
-- per real second (simulated time paced against the real clock); --speed 1
-- is real time, the only mode with MQTT (--mqtt) for now. With MQTT the
-- site is published with Home Assistant discovery (the devices, and the
-- export limiter's own entities: limit, enabled, state, headroom,
-- excursions), and halfway through the tool sets the limit to 1000 W over
-- MQTT, as Home Assistant would. `make run` is this tool.

local md = require "moondog"
local scenarios = require "moondog.sim.scenarios"
local run = require "moondog.sim.run"
local pace = require "moondog.sim.pace"
local cli_mod = require "moondog.cli"

local usage = [[
usage: moondog sim --scenario NAME [--speed N | --simulated-time] [--seconds S]
                   [--csv FILE] [--plot FILE] [--controller C] [--mqtt HOST[:PORT] | --broker]
                   [--prefix P] [--list]

Runs a simulated solar site with moondog's export limiter (export to the grid
kept at the scenario's limit, usually 0 W) and shows it once a second.

  --scenario NAME   what to simulate; --list shows the scenarios and what they do
  --simulated-time  run as fast as possible on a simulated clock (the default
                    when stdout is not a terminal); the same run every time
  --speed N         N simulated seconds per real second (default 1 on a terminal:
                    real time); N > 1 uses the simulated clock, paced
  --seconds S       stop after S simulated seconds (default: the scenario's length)
  --csv FILE        where to write one row per second (default moondog-sim-NAME.csv)
  --plot FILE       where to write the PNG plot (default moondog-sim-NAME.png;
                    needs gnuplot: apt install gnuplot-nox)
  --controller C    moondog (default), ode or openems (the peers' rules, as in
                    `make bench`), or none (no export limiting)
  --mqtt HOST:PORT  also publish the site to this broker, with Home Assistant
                    discovery (real time only: --speed 1, the default then);
                    halfway the tool sets the export limit to 1000 W through
                    MQTT, as Home Assistant would
  --broker          the same, with a mosquitto started here for the run
  --prefix P        MQTT topic prefix (default moondog)
  --list            list the scenarios and exit

Example: moondog sim --scenario load_drop --simulated-time
  then open moondog-sim-load_drop.png: the export jumps when 6 kW of load
  switch off at noon, and is back at the limit within about 4 s.]]

local cli = cli_mod.new("moondog sim")
local function usage_error(fmt, ...) cli:usage_error(nil, fmt, ...) end

-- {===== arguments =====

local o, pos = cli:parse(nil, { ... }, {
  scenario = { arg = "NAME" }, speed = { arg = "N" }, seconds = { arg = "S" }, csv = { arg = "FILE" },
  plot = { arg = "FILE" }, controller = { arg = "C" }, mqtt = { arg = "HOST:PORT" }, prefix = { arg = "P" },
  ["simulated-time"] = {}, broker = {}, list = {}, help = {}, short = { h = "help" },
})
if o.help then cli_mod.show_help(usage .. "\n") end
if o.list then
  for _, n in ipairs(scenarios.list()) do
    print(string.format("%-16s %s", n, scenarios.get(n).description))
  end
  return
end
if pos[1] then usage_error("unexpected argument '%s'", pos[1]) end
if o.mqtt and o.broker then usage_error("--mqtt and --broker exclude each other") end
local opts = { scenario = o.scenario, csv = o.csv, plot = o.plot, controller = o.controller or "moondog",
  prefix = o.prefix or "moondog", simulated = o["simulated-time"], mqtt = o.mqtt or o.broker }
for _, key in ipairs { "speed", "seconds" } do
  if o[key] then
    local n = tonumber(o[key])
    if not n or n <= 0 then usage_error("--%s needs a number > 0, got '%s'", key, o[key]) end
    opts[key] = n
  end
end
if not opts.scenario then usage_error("--scenario NAME is required; --list shows the names") end
if opts.simulated and opts.speed then usage_error("--speed and --simulated-time exclude each other") end
local okc = ({ moondog = true, ode = true, openems = true, none = true })[opts.controller]
if not okc then
  usage_error("--controller must be moondog, ode, openems or none, got '%s'", opts.controller)
end
local ok, sc = pcall(scenarios.get, opts.scenario)
if not ok then usage_error("%s", (tostring(sc):gsub("^.-:%d+: ", ""))) end

local tty = os.execute("test -t 1") == true and os.getenv("TERM") ~= nil and os.getenv("TERM") ~= "dumb"
if not opts.simulated and not opts.speed then
  if tty or opts.mqtt then opts.speed = 1 else opts.simulated = true end
end
if opts.mqtt and (opts.simulated or opts.speed ~= 1) then
  usage_error("MQTT needs real time for now (--speed 1): an MQTT client stops the simulated clock")
end
local seconds = opts.seconds or sc.seconds
opts.csv = opts.csv or ("moondog-sim-" .. sc.name .. ".csv")
opts.plot = opts.plot or ("moondog-sim-" .. sc.name .. ".png")

-- }=====

-- {===== the clock =====

local DAY0 = md.clock.parse_start("2026-06-21")

-- }=====

-- {===== the view =====

local function fmt_time(t)
  return os.date("!%H:%M:%S", math.floor(t))
end

local function health_of(r)
  local h, reasons = r.site:health()
  return h, reasons
end

local function line_of(r, row)
  local h = health_of(r)
  return string.format("%s grid %6.0f W  pv %5.0f W (of %5.0f)  battery %5.0f W  load %5.0f W  limit %4.0f W"
    .. "  setpoint %5s %%  %-9s  health %s",
    fmt_time(row.time), row.grid_w, row.pv_w, row.pv_available_w, row.battery_w, row.house_w, row.limit_w,
    row.setpoint_pct and string.format("%.1f", row.setpoint_pct) or "-", row.state, h)
end

local function screen_of(r, row)
  local h, reasons = health_of(r)
  local st = r.ctl and r.ctl:status() or {}
  local out = {
    "\27[H\27[2J",
    string.format("moondog sim  %s  (%s)  %s  t = %d s of %d", sc.name, sc.description, fmt_time(row.time),
      row.t, seconds),
    "",
    string.format("  grid      %7.0f W   (%s)", row.grid_w, row.grid_w < 0 and "export" or "import"),
    string.format("  PV        %7.0f W   of %.0f W available", row.pv_w, row.pv_available_w),
    string.format("  battery   %7.0f W", row.battery_w),
    string.format("  load      %7.0f W", row.house_w),
    string.format("  limit     %7.0f W   export", row.limit_w),
    "",
    string.format("  export limiter (%s): %s, setpoint %s %%, %d writes, %d excursions", opts.controller,
      row.state, row.setpoint_pct and string.format("%.1f", row.setpoint_pct) or "-", st.writes or 0,
      st.excursions or 0),
    string.format("  site health: %s%s", h, #reasons > 0 and (" - " .. table.concat(reasons, "; ")) or ""),
    "",
  }
  for _, sd in ipairs(r.site:devices()) do
    local s = sd:stats()
    out[#out + 1] = string.format("  %-8s %-8s polls %5d  failed %3d  latency %5.0f ms", sd.id,
      tostring(s.state), tonumber(s.polls) or 0, tonumber(s.failed) or 0, tonumber(s.latency_mean_ms) or 0)
  end
  local m = r:metrics()
  out[#out + 1] = ""
  out[#out + 1] = string.format("  longest excursion %.1f s (floor %.0f s)   over the limit %.2f Wh"
    .. "   curtailed beyond need %.1f Wh", m.longest_excursion_s, m.floor_s, m.over_wh, m.curtailed_extra_wh)
  out[#out + 1] = "  Ctrl-C stops"
  return table.concat(out, "\n") .. "\n"
end

local function show(r, row)
  if tty then io.stdout:write(screen_of(r, row)) else io.stdout:write(line_of(r, row), "\n") end
  io.stdout:flush()
end

-- }=====

-- {===== the end: CSV and plot =====

local function plot(csv, png)
  if os.execute("command -v gnuplot >/dev/null 2>&1") ~= true then
    return nil, "gnuplot is not installed (apt install gnuplot-nox); no plot"
  end
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(string.format([[
set terminal pngcairo size 1200,600 noenhanced
set output '%s'
set datafile separator ','
set title 'moondog sim: %s (controller: %s)'
set xlabel 'seconds'
set ylabel 'W'
set grid
set key outside right
plot '%s' using 1:3 skip 1 with lines lw 1.5 title 'grid (< 0 export)', \
     '' using 1:5 skip 1 with lines title 'PV output', \
     '' using 1:6 skip 1 with lines dt 2 title 'PV available', \
     '' using 1:12 skip 1 with lines title 'setpoint', \
     '' using 1:(-$10) skip 1 with lines lw 2 title 'limit (as grid power)'
]], png, sc.name, opts.controller, csv))
  f:close()
  local okp = os.execute("gnuplot " .. script .. " 2>/dev/null")
  os.remove(script)
  if okp ~= true then
    -- pngcairo is in gnuplot-nox from Debian 12 on; older ones have png only
    return nil, "gnuplot could not write " .. png
  end
  return true
end

-- }=====

if opts.simulated or opts.speed > 1 then
  md.clock.simulate { start = DAY0 + (sc.start or 0), seed = sc.seed }
end
local pacer = opts.speed and opts.speed > 1 and pace.start(opts.speed)

local r, err = run.start(sc, { controller = opts.controller, mqtt = opts.mqtt, prefix = opts.prefix,
  on_second = show })
if not r then
  io.stderr:write("moondog sim: cannot start the scenario: ", tostring(err), "\n")
  os.exit(1)
end
md.log.info("scenario %s: %s; %d s%s", sc.name, sc.description, seconds,
  opts.simulated and " in simulated time" or string.format(" at %gx", opts.speed))
-- Halfway: a command, as Home Assistant would send it: the export limit.
local commander = r.mqtt_url and md.spawn(function()
  md.sleep(seconds / 2)
  local c <close> = assert(md.mqtt.connect { url = r.mqtt_url, client_id = "moondog-sim-commander" })
  md.log.info("sending %s/export_limit/limit/set 1000", opts.prefix)
  c:publish(opts.prefix .. "/export_limit/limit/set", "1000", { qos = 1, wait = true })
end)
md.sleep(seconds)
if commander then commander:cancel() end
if pacer then pacer:cancel() end
local m = r:metrics()
r:close()
local okw, werr = r:write_csv(opts.csv)
if not okw then
  io.stderr:write("moondog sim: cannot write ", opts.csv, ": ", tostring(werr), "\n")
  os.exit(1)
end
print(string.format("longest excursion %.1f s (floor %.0f s), %.2f Wh over the limit, %.1f Wh curtailed "
  .. "beyond need, %.0f writes/h", m.longest_excursion_s, m.floor_s, m.over_wh, m.curtailed_extra_wh,
  m.writes_per_h))
print("csv:  " .. opts.csv)
local okp, perr = plot(opts.csv, opts.plot)
if okp then print("plot: " .. opts.plot) else print("plot: none (" .. perr .. ")") end
md.exit(0)
