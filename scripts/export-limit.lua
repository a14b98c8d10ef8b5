-- moondog export-limit: keep the export to the grid under a limit, the
-- common case as one command: one grid meter, one or more PV inverters.
--
--   moondog export-limit --grid tcp://192.168.1.60:502?unit=1 --grid-profile sunspec_meter \
--     --inverter tcp://192.168.1.50:502?unit=1 --inverter-profile sunspec_inverter --limit 0
--
-- It makes a site of the devices (md.site), runs md.control.export_limit
-- on it (lua/moondog/control/export_limit.lua explains the algorithm and
-- the fail-safe), optionally publishes the site and the limiter's own
-- entities to MQTT with Home Assistant discovery, and logs the
-- limiter's state once a minute and on every change. It runs until
-- Ctrl-C (or --seconds).

local md = require "moondog"
local cli_mod = require "moondog.cli"

local usage = [==[
usage: moondog export-limit --grid URL --grid-profile P --inverter URL --inverter-profile P
                            [--inverter-rating W] [--inverter URL --inverter-profile P ...] --limit W
                            [--mqtt HOST[:PORT]] [--state-file FILE] [--seconds S]

Keeps the power exported to the grid at or under W watts (0: no export) by
curtailing the PV inverters, from the grid meter's reading. When the meter goes
silent, a write fails or the controller fails, the inverters are set to the
limit itself (fail-safe) until fresh readings return.

  --grid URL            the grid meter's address, e.g. tcp://192.168.1.60:502?unit=1
                        or rtu:///dev/ttyUSB0?baud=9600&unit=1
  --grid-profile P      its device profile (e.g. sunspec_meter, sdm630); its
                        `power` point must be > 0 for import
  --inverter URL        a PV inverter's address (repeat for more inverters,
                        each followed by its --inverter-profile)
  --inverter-profile P  its profile (e.g. sunspec_inverter, growatt/min_tlx)
  --inverter-rating W   its rated power, for a profile that does not read it
                        from the inverter (a Growatt TL-X's)
  --limit W             the export limit in watts (>= 0)
  --mqtt HOST[:PORT]    publish the site to this broker with Home Assistant
                        discovery; the limit can then be changed from there
  --state-file FILE     where excursions are counted across restarts
  --seconds S           stop after S seconds (default: run until Ctrl-C)

With SunSpec model 123 alone an inverter goes back to FULL power when moondog
stops: set the inverter's own export limit as the backstop (the log says so).]==]

local cli = cli_mod.new("moondog export-limit")
local function usage_error(fmt, ...) cli:usage_error(nil, fmt, ...) end

local o, pos = cli:parse(nil, { ... }, {
  grid = { arg = "URL" }, ["grid-profile"] = { arg = "P" }, limit = { arg = "W" },
  mqtt = { arg = "HOST[:PORT]" },
  ["state-file"] = { arg = "FILE" }, seconds = { arg = "S" }, inverter = { arg = "URL", list = true },
  ["inverter-profile"] = { arg = "P", list = true }, ["inverter-rating"] = { arg = "W", list = true },
  help = {}, short = { h = "help" },
})
if o.help then cli_mod.show_help(usage .. "\n") end
if pos[1] then usage_error("unexpected argument '%s'", pos[1]) end
local opts = { grid = o.grid, grid_profile = o["grid-profile"], mqtt = o.mqtt, state_file = o["state-file"],
  inverters = {} }
for _, check in ipairs { { "limit", "watts >= 0" }, { "seconds", "a number > 0" } } do
  local name, want = check[1], check[2]
  local text = o[name]
  local n = tonumber(text)
  if text and (not n or n < 0 or (name == "seconds" and n == 0)) then
    usage_error("--%s needs %s, got '%s'", name, want, text)
  end
  opts[name] = n
end
-- The n-th --inverter-profile (and --inverter-rating) is the n-th --inverter's.
local profiles = o["inverter-profile"] or {}
local ratings = o["inverter-rating"] or {}
for n, url in ipairs(o.inverter or {}) do opts.inverters[n] = { url = url, profile = profiles[n] } end
if #profiles > #opts.inverters then usage_error("--inverter-profile must follow its --inverter URL") end
if #ratings > #opts.inverters then usage_error("--inverter-rating must follow its --inverter URL") end
for n, text in ipairs(ratings) do
  local w = tonumber(text)
  if not w or w <= 0 then usage_error("--inverter-rating needs watts > 0, got '%s'", text) end
  opts.inverters[n].rating = w
end
if not opts.grid then usage_error("--grid URL is required") end
if not opts.grid_profile then usage_error("--grid-profile P is required") end
if #opts.inverters == 0 then usage_error("--inverter URL is required") end
for n, inv in ipairs(opts.inverters) do
  if not inv.profile then usage_error("inverter %d (%s) needs --inverter-profile", n, inv.url) end
end
if not opts.limit then usage_error("--limit W is required") end

-- A profile name that opens nothing is a typo on the command line: say so
-- with the names that do open, before any device is touched.
local devices = require "moondog.devices"
local function check_profile(flag, name)
  if not devices.is_name(name) then -- a file path
    local f = io.open(name)
    if f then f:close() return end
    usage_error("%s: cannot open the profile file '%s'", flag, name)
  end
  if devices.find(name) then return end
  local names = {}
  for _, row in ipairs(devices.list()) do names[#names + 1] = row.name end
  usage_error("%s: no device profile '%s'; the profiles are: %s (`moondog devices` describes them)",
    flag, name, table.concat(names, ", "))
end
check_profile("--grid-profile", opts.grid_profile)
for _, inv in ipairs(opts.inverters) do check_profile("--inverter-profile", inv.profile) end

local site = md.site.new { name = "export_limit" }
local function must(what, ok, err)
  if not ok then
    io.stderr:write("moondog export-limit: ", what, ": ", tostring(err), "\n")
    os.exit(1)
  end
  return ok
end
must("the grid meter", site:add("grid", opts.grid_profile, opts.grid, { poll = 0.25, offline_after = 2 }))
local ids, specs = {}, {}
for n, inv in ipairs(opts.inverters) do
  local id = n == 1 and "pv" or ("pv" .. n)
  must("inverter " .. id, site:add(id, inv.profile, inv.url, { poll = 1 }))
  ids[n], specs[n] = id, { id = id, rating = inv.rating }
end
local ctl = md.control.export_limit { site = site, grid = "grid.power", inverters = specs,
  limit_w = opts.limit, state_file = opts.state_file }
if opts.mqtt then
  must("publishing to MQTT at " .. opts.mqtt, site:publish { mqtt = { url = opts.mqtt,
    client_id = "moondog-export-limit" } })
end
md.log.info("export limit: %.0f W, grid meter %s, inverters %s", opts.limit, opts.grid,
  table.concat(ids, ", "))

local last_state, last_line = nil, -math.huge
local reporter = md.every(1, function()
  local st = ctl:status()
  local now = md.now()
  if st.state ~= last_state or now - last_line >= 60 then
    last_state, last_line = st.state, now
    local grid = site.grid:get("power")
    md.log.info("export limit: %s, grid %s W, setpoint %.1f %%, %d writes, %d excursions, site %s", st.state,
      grid and string.format("%.0f", grid) or "?", st.setpoint_pct or 100, st.writes, st.excursions,
      (site:health()))
  end
end)

if opts.seconds then
  md.sleep(opts.seconds)
  reporter:cancel()
  local st = ctl:status()
  print(string.format("state %s, setpoint %.1f %%, %d writes, %d write errors, %d excursions", st.state,
    st.setpoint_pct or 100, st.writes, st.write_errors, st.excursions))
  ctl:stop()
  site:close()
  md.exit(0)
end
