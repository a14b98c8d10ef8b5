-- moondog probe: find the devices on a Modbus bus and the profiles that fit
-- them, with a ready site:add(...) line for each.
--
--   moondog probe URL [--units 1-247] [--bauds 9600,19200] [--timeout S]
--
-- For each unit id (and, on a serial line, each baud rate) it runs the
-- probe of every Modbus profile on the search path (devices/README.md,
-- "Probe") and looks for a SunSpec map; a unit that does not answer the
-- first request is passed over at once. A progress line on stderr says
-- where it is. Results go to stdout, one block per unit that answered:
--
--   unit 3: eastron/sdm72d (Eastron SDM72D-M)
--     site:add("sdm72d_3", "eastron/sdm72d", "rtu:///dev/ttyUSB0?baud=9600&unit=3")
--
-- `moondog probe rct://host[:port]` asks an RCT Power device for its
-- identity objects (inverter_sn, android_description) instead and lists
-- the rct profiles for it.
--
-- A unit that answers but fits no profile is listed as such. Exit codes:
-- 0 something was identified, 1 nothing was (or the bus cannot be opened),
-- 2 the command line is wrong.

local md = require "moondog"
local modbus = require "moondog.modbus"
local devices = require "moondog.devices"
local cli_mod = require "moondog.cli"

local format = string.format
local TOOL = "moondog probe"
local cli = cli_mod.new(TOOL)

local help = [=[
usage: moondog probe URL [--units LIST] [--bauds LIST] [--timeout S]

Scans the unit ids of a Modbus bus, identifies what answers by the probe of
each Modbus profile on the profile search path (and SunSpec devices by their
map), and prints, for each device found, its unit, the matching profiles and
a ready site:add(...) line.

  URL             the bus: tcp://host[:port], rtu:///dev/ttyUSB0, rtu+tcp://...;
                  or rct://host[:port] (port 8899 unless given): an RCT Power
                  device, identified by its identity objects (inverter_sn,
                  android_description); --units and --bauds do not apply
  --units LIST    unit ids to try, e.g. 1-247 (default), 1,2,10-20
  --bauds LIST    serial lines only: baud rates to try in turn, e.g. 9600,19200
                  (default: the URL's baud)
  --timeout S     seconds to wait for each answer (default 0.5)

Exit codes: 0 a device was identified, 1 none was, 2 the command line is wrong.
]=]

-- "1-5,9" -> sorted unique integers in lo..hi; a usage error otherwise.
local function int_list(name, text, lo, hi)
  local seen, list = {}, {}
  for part in text:gmatch("[^,]+") do
    local a, b = part:match("^%s*(%d+)%s*%-%s*(%d+)%s*$")
    if not a then
      a = part:match("^%s*(%d+)%s*$")
      b = a
    end
    a, b = math.tointeger(tonumber(a)), math.tointeger(tonumber(b))
    if not a or not b or a < lo or b > hi or a > b then
      cli:usage_error(nil, "--%s takes numbers or ranges %d..%d such as 1-5,9, got '%s'", name, lo, hi, text)
    end
    for n = a, b do
      if not seen[n] then seen[n], list[#list + 1] = true, n end
    end
  end
  table.sort(list)
  if #list == 0 then cli:usage_error(nil, "--%s is empty", name) end
  return list
end

-- The URL with these query parameters set (others kept, in order).
local function with_params(url, params)
  local base, query = url:match("^([^?]*)%??(.*)$")
  local kept = {}
  for kv in query:gmatch("[^&]+") do
    if params[kv:match("^([^=]*)")] == nil then kept[#kept + 1] = kv end
  end
  for _, k in ipairs { "baud", "unit" } do
    if params[k] ~= nil then kept[#kept + 1] = k .. "=" .. params[k] end
  end
  return #kept > 0 and base .. "?" .. table.concat(kept, "&") or base
end

-- Failure codes that mean nothing answers at this unit.
-- A unit that answers: a value, or a Modbus exception (the device said no).
-- A bus that cannot be reached at all ends the scan with the reason; any
-- other failure (timeout, CRC, a garbled or foreign answer) is a unit where
-- nothing usable answered.
local unreachable = {
  dns = true, refused = true, connect = true, connect_timeout = true, unreachable = true,
  permission = true, no_device = true, not_serial = true, bad_address = true, busy = true,
}
local is_exception = require("moondog.err").is_exception
-- a gateway's way of saying that no device answered at that unit id
local no_device_behind = { gateway_target_failed = true, gateway_path_unavailable = true }

local candidates, sunspec_matches = devices.candidates, devices.sunspec_matches

-- The "unit 5 (5/247)" progress line is redrawn in place on a terminal;
-- in a pipe or a log it would be noise (carriage returns, escapes).
local term = os.getenv("TERM")
local on_terminal = os.execute("test -t 2") == true and term ~= nil and term ~= "dumb"
local function progress(text)
  if on_terminal then
    io.stderr:write(text)
    io.stderr:flush()
  end
end

local function label(row)
  local p = row.profile
  return format("%s (%s %s)", row.name, p.manufacturer or "?", p.model or "?")
end

local function probe_bus(url, units, timeout, mb, ss, total, done)
  local bus, err, code = modbus.open(url, { timeout = timeout })
  if not bus then cli:io_error(url, err, code) end
  local found = 0
  for _, unit in ipairs(units) do
    done = done + 1
    progress(format("\r%s: unit %d (%d/%d) ", url, unit, done, total))
    local matches, answered = {}, false
    for _, row in ipairs(mb) do
      local ok, msg, why = require("moondog.devices.modbus").identify(row.profile, bus, unit)
      if ok == nil and unreachable[why] then
        progress("\r\27[K")
        bus:close()
        cli:io_error(url, msg, why)
      end
      if ok == nil and (no_device_behind[why] or not is_exception(why)) then break end
      answered = true
      if ok then matches[#matches + 1] = row end
    end
    if answered or #mb == 0 then
      for _, row in ipairs(sunspec_matches(bus, unit, ss, timeout) or {}) do
        matches[#matches + 1] = row
      end
    end
    if #matches > 0 then
      found = found + 1
      local names = {}
      for i, row in ipairs(matches) do names[i] = label(row) end
      progress("\r\27[K")
      io.stdout:write(format("unit %d: %s\n", unit, table.concat(names, ", ")))
      for _, row in ipairs(matches) do
        local id = format("%s_%d", (row.name:match("([^/]+)$"):lower():gsub("[^%w_]", "_")), unit)
        io.stdout:write(format("  site:add(%q, %q, %q)\n", id, row.name, with_params(url, { unit = unit })))
      end
      io.stdout:flush()
    elseif answered then
      progress("\r\27[K")
      io.stdout:write(format("unit %d: answers, but no profile's probe fits\n", unit))
      io.stdout:flush()
    end
  end
  bus:close()
  return found, done
end

local args = { ... }
if args[1] == "--help" or args[1] == "-h" or args[1] == "help" then cli_mod.show_help(help) end
local o, pos = cli:parse(nil, args, {
  units = { arg = "LIST" }, bauds = { arg = "LIST" }, timeout = { arg = "S" }, help = {},
  short = { h = "help" },
})
if o.help then cli_mod.show_help(help) end
if #pos == 0 then
  cli:usage_error(nil, "missing the bus URL (e.g. rtu:///dev/ttyUSB0 or tcp://192.168.1.50)")
end
if #pos > 1 then cli:usage_error(nil, "unexpected argument '%s'", pos[2]) end
local url = pos[1]
local units = int_list("units", o.units or "1-247", 1, 247)
local timeout = cli:seconds(nil, o.timeout) or 0.5
local bauds = { false }
if o.bauds then
  if not url:match("^rtu://") then
    cli:usage_error(nil, "--bauds is for serial lines (rtu://...), not %s", url)
  end
  bauds = int_list("bauds", o.bauds, 50, 4000000)
end
-- An RCT Power device at rct://host[:port]: it is one when it answers its
-- identity objects; every rct profile on the search path fits it.
local function probe_rct(target, wait)
  local rct = require "moondog.rct"
  if o.units or o.bauds then cli:usage_error(nil, "--units and --bauds are for Modbus buses, not %s", url) end
  local host, port = rct.parse_target(target)
  if not host then cli:usage_error(nil, "%s: %s", url, tostring(port)) end
  progress(format("\r%s: asking for its identity ", url))
  local client, err, code = rct.connect(host, port, { timeout = wait, retries = 0 })
  local sn, model
  if client then
    sn, err, code = client:read("inverter_sn")
    if sn then model = client:read("android_description") end
    client:close()
  end
  progress("\r\27[K")
  if not sn then
    cli_mod.say("%s: no RCT Power device answered at %s: %s (%s)", TOOL, url, tostring(err), tostring(code))
    md.exit(1)
  end
  local rows = {}
  for _, row in ipairs(devices.list()) do
    if row.profile.protocol == "rct" then rows[#rows + 1] = row end
  end
  local names = {}
  for i, row in ipairs(rows) do names[i] = label(row) end
  io.stdout:write(format("%s: RCT Power %s, serial %s: %s\n", url, tostring(model or "?"), tostring(sn),
    #rows > 0 and table.concat(names, ", ") or "no rct profile on the search path"))
  for _, row in ipairs(rows) do
    io.stdout:write(format("  site:add(%q, %q, %q)\n", (row.name:match("([^/]+)$"):gsub("[^%w_]", "_")),
      row.name, format("%s:%d", host:find(":", 1, true) and "[" .. host .. "]" or host, port)))
  end
  io.stdout:flush()
  md.exit(#rows > 0 and 0 or 1)
end

if url:match("^rct://") then probe_rct((url:sub(7):gsub("/+$", "")), timeout) end

local mb, ss = candidates()
local found, done = 0, 0
for _, baud in ipairs(bauds) do
  local n
  n, done = probe_bus(baud and with_params(url, { baud = baud }) or url, units, timeout, mb, ss,
    #units * #bauds, done)
  found = found + n
end
progress("\r\27[K")
if found == 0 then
  cli_mod.say("%s: no device identified on %s (units %s)", TOOL, url, o.units or "1-247")
  io.stdout:flush()
  md.exit(1)
end
io.stdout:flush()
