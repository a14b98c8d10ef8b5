-- moondog.devices: open a device from a profile (see devices/README.md).
-- The profile names its protocol; the driver moondog.devices.<protocol>
-- turns profile + target into a device object with describe/read/write.

local M = {}

local format = string.format

-- A profile name: `sdm630` or `vendor/model`, letters, digits, _ and -.
local function is_name(spec)
  return not spec:find("%.lua$") and (spec:match("^[%w_%-]+$") or spec:match("^[%w_%-]+/[%w_%-]+$")) ~= nil
end

-- Whether path is a file that can be read: a folder opens, but reading
-- it fails with an error (an empty file reads nil without one).
local function readable(path)
  local f = io.open(path, "r")
  if not f then return false end
  local _, err = f:read(0)
  f:close()
  return err == nil
end

--- devices.is_name(spec) -> whether a profile spec is a name looked for on
--- devices.path() (`sdm630`, `eastron/sdm120`) rather than a file path.
M.is_name = is_name

--- devices.path() -> the folders searched for a profile name, in order,
--- each {dir = ..., from = ...}: $MOONDOG_DEVICES (colon-separated, from
--- "MOONDOG_DEVICES"), ~/.config/moondog/devices ("user"; $XDG_CONFIG_HOME
--- when set), /etc/moondog/devices ("system"), the folder of the site
--- script being run ("script", md.paths.script), then the profiles that
--- ship with moondog ("shipped"). Read anew on every call.
function M.path()
  local md = require "moondog"
  local list = {}
  local function add(dir, from)
    if dir and dir ~= "" then list[#list + 1] = { dir = (dir:gsub("(.)/+$", "%1")), from = from } end
  end
  for dir in (os.getenv("MOONDOG_DEVICES") or ""):gmatch("[^:]+") do
    add(dir, "MOONDOG_DEVICES")
  end
  local config = os.getenv("XDG_CONFIG_HOME")
  if not config or config == "" then
    local home = os.getenv("HOME")
    config = home and home ~= "" and home .. "/.config" or nil
  end
  add(config and config .. "/moondog/devices", "user")
  add("/etc/moondog/devices", "system")
  local script = md.paths.script
  if script then
    add(script:match("^(.*)/[^/]*$") or ".", "script")
  end
  add(md.paths.devices, "shipped")
  return list
end

--- devices.find(name) -> the file of a profile name (`sdm630`,
--- `eastron/sdm120`) and the place it came from ({dir, from} of
--- devices.path()), or nil and the files that were looked for. A model
--- name alone (`sdm120`) also finds the one `<vendor>/sdm120` of a folder
--- (several vendors with that model in one folder: not found).
local names_in

function M.find(name)
  local tried = {}
  for _, place in ipairs(M.path()) do
    local file = place.dir .. "/" .. name .. ".lua"
    if readable(file) then return file, place end
    tried[#tried + 1] = file
  end
  if not name:find("/", 1, true) then
    -- a model name alone (`sdm120`): the one vendor folder that has it
    for _, place in ipairs(M.path()) do
      local found = {}
      for _, n in ipairs(names_in(place.dir)) do
        if n:match("^[^/]+/(.+)$") == name then found[#found + 1] = place.dir .. "/" .. n .. ".lua" end
      end
      if #found == 1 then return found[1], place end
      tried[#tried + 1] = place.dir .. "/*/" .. name .. ".lua"
    end
  end
  return nil, tried
end

-- What a profile's chunk gets as its argument: include(name) returns the
-- table of another file on devices.path() (`growatt/tlx`), loaded anew on
-- each call so that profiles never share its tables. Profiles run without
-- globals (no require, no io), so this is how two profiles share points
-- (devices/README.md, "Sharing points").
local MAX_INCLUDE_DEPTH = 4

local function includer(depth)
  return function(name)
    if type(name) ~= "string" or not is_name(name) then
      error("include: expected a name such as \"growatt/tlx\", got " .. tostring(name), 2)
    end
    if depth > MAX_INCLUDE_DEPTH then
      error(format("include %s: files include each other more than %d deep", name, MAX_INCLUDE_DEPTH), 2)
    end
    local path, tried = M.find(name)
    if not path then
      error(format("include: no file '%s'; looked for %s", name, table.concat(tried, ", ")), 2)
    end
    local chunk, err = loadfile(path, "t", {})
    if not chunk then error("include: cannot load " .. name .. ": " .. err, 2) end
    return chunk(includer(depth + 1))
  end
end

--- devices.load(name_or_path) -> profile table. A name (`sdm630`,
--- `eastron/sdm120`) is looked for on devices.path(); anything else that is
--- a string is a file path. Raises on a profile that is not found (naming
--- every place searched) and on a broken file: a profile is part of the
--- program, not input from a device. Sets profile.name (the name, else the
--- file's base name) and profile.file (the file it came from).
function M.load(spec)
  if type(spec) == "table" then
    return spec
  end
  if type(spec) ~= "string" then
    error("devices.load: expected a profile name, path or table, got " .. type(spec), 2)
  end
  local path = spec
  if is_name(spec) then
    local tried
    path, tried = M.find(spec)
    if not path then
      error(format("devices.load: no profile '%s'; looked for %s (set MOONDOG_DEVICES to a folder of your "
        .. "own profiles, or give a path)", spec, table.concat(tried, ", ")), 2)
    end
  end
  local chunk, err = loadfile(path, "t", {})
  if not chunk then
    error("devices.load: cannot load profile " .. spec .. ": " .. err, 2)
  end
  local profile = chunk(includer(1))
  if type(profile) ~= "table" or type(profile.points) ~= "table" then
    error("devices.load: profile " .. spec .. " must return a table with a points list", 2)
  end
  profile.name = profile.name or (is_name(spec) and spec) or spec:match("([^/]+)%.lua$") or spec
  profile.file = profile.file or path
  return profile
end

-- The .lua files of a folder and of its subfolders, as profile names
-- ("sdm630", "eastron/sdm120"), sorted.
function names_in(dir)
  local quoted = "'" .. dir:gsub("'", "'\\''") .. "'"
  local p = io.popen("find -L " .. quoted .. " -mindepth 1 -maxdepth 2 -type f -name '*.lua' 2>/dev/null",
    "r")
  local out = p:read("a")
  p:close()
  local names = {}
  for file in out:gmatch("[^\n]+") do
    local name = file:sub(#dir + 2):match("^(.+)%.lua$")
    if name and is_name(name) then names[#names + 1] = name end
  end
  table.sort(names)
  return names
end

-- The profile in a file, false for a data file (a table without points),
-- or nil and why it does not load.
local function read_profile(file)
  local chunk, err = loadfile(file, "t", {})
  if not chunk then return nil, err end
  local ok, t = pcall(chunk, includer(1))
  if not ok then return nil, tostring(t) end
  if type(t) ~= "table" or type(t.points) ~= "table" then return false end
  return t
end

--- devices.list() -> rows, broken: every profile a name opens on
--- devices.path(), sorted by name, each {name =, profile =, file =, from =}
--- (a name found in an earlier folder hides the later ones, as for load);
--- and "file: why" for the files that do not load. Files that return a
--- table without points (SunSpec definitions, the RCT registry) are data,
--- not profiles, and are left out.
function M.list()
  local rows, broken, seen = {}, {}, {}
  for _, place in ipairs(M.path()) do
    for _, name in ipairs(names_in(place.dir)) do
      if not seen[name] then
        local file = place.dir .. "/" .. name .. ".lua"
        local p, err = read_profile(file)
        if p then
          seen[name] = true
          p.name, p.file = p.name or name, p.file or file
          rows[#rows + 1] = { name = name, profile = p, file = file, from = place.from }
        elseif p == nil then
          seen[name] = true
          broken[#broken + 1] = format("%s: does not load: %s", file, err)
        end
      end
    end
  end
  table.sort(rows, function(a, b) return a.name < b.name end)
  return rows, broken
end

-- "point X: message" (the site's checks) -> "message".
local function strip_point(err)
  return (tostring(err):gsub("^point [%w_]+: ", ""))
end

--- devices.check(profile) -> mistakes, profile: every check a profile goes
--- through when it is opened and used, with all mistakes collected (an
--- array of one-line messages; empty when the profile is clean): the
--- driver's own (each point's source against its protocol, for SunSpec
--- against the model definitions; the read plan; info sources), a site's
--- (offline/asleep policies, poll, names a site device keeps for its
--- methods) and Home Assistant discovery's (device_class with state_class
--- and unit; min, max and step of writable numbers). profile: a name, a
--- path or a table; a file that does not load is one mistake.
function M.check(spec)
  local loaded, profile = pcall(M.load, spec)
  if not loaded then
    return { (tostring(profile):gsub("^devices%.load: ", "")) }
  end
  local name = profile.name or "?"
  local mistakes = {}
  local function add(fmt, ...)
    mistakes[#mistakes + 1] = format(fmt, ...)
  end
  local driver
  if type(profile.protocol) ~= "string" then
    add("profile %s: protocol must be \"modbus\", \"sunspec\" or \"rct\", got %s", name,
      tostring(profile.protocol))
  else
    local found, d = pcall(require, "moondog.devices." .. profile.protocol)
    if found and type(d) == "table" and d.check then
      driver = d
    else
      add("profile %s: no driver for protocol '%s' (moondog has modbus, sunspec and rct)", name,
        profile.protocol)
    end
  end
  local poll = profile.poll
  if poll ~= nil and (type(poll) ~= "number" or poll ~= poll or poll <= 0) then
    add("profile %s: poll must be a number of seconds > 0, got %s", name, tostring(profile.poll))
  end
  if profile.sleeps ~= nil and type(profile.sleeps) ~= "boolean" then
    add("profile %s: sleeps must be true or false, got %s", name, tostring(profile.sleeps))
  end
  for _, field in ipairs { "manufacturer", "model" } do
    if profile[field] ~= nil and type(profile[field]) ~= "string" then
      add("profile %s: %s must be text, got %s", name, field, type(profile[field]))
    end
  end
  if not driver then return mistakes, profile end
  local found, items = driver.check(profile)
  table.move(found, 1, #found, #mistakes + 1, mistakes)
  local ha = require "moondog.mqtt.homeassistant"
  local policy = require "moondog.site.policy"
  local schedule = require "moondog.site.schedule"
  local reserved = require("moondog.site.device").reserved
  local taken = {}
  for word in pairs(reserved) do taken[#taken + 1] = word end
  table.sort(taken)
  for _, item in ipairs(items) do
    local p = item.point
    local where = format("profile %s, point %s", name, p.name)
    if reserved[p.name] then
      add("%s: a site device has a method of this name (%s are taken); rename the point", where,
        table.concat(taken, ", "))
    end
    local ok, err = pcall(policy.check, p)
    if not ok then add("%s: %s", where, strip_point(err)) end
    if p.poll ~= nil then
      ok, err = pcall(schedule.interval, p)
      if not ok then add("%s: %s", where, strip_point(err)) end
    end
    for _, mistake in ipairs(ha.check(p)) do
      add("%s: %s", where, mistake)
    end
  end
  return mistakes, profile
end

--- devices.identify(bus, unit) -> the rows of devices.list() whose device
--- answers at unit of an open Modbus bus: every Modbus profile whose probe
--- passes, else (none passed) the SunSpec profiles whose models the
--- device has. Or nil, message, code when nothing answers there. Runs in
--- a task (it reads the bus).
--- devices.candidates() -> the rows of devices.list() a bus can be probed
--- for: Modbus profiles with a probe, and SunSpec profiles (two arrays).
function M.candidates()
  local mb, ss = {}, {}
  for _, row in ipairs(M.list()) do
    local p = row.profile
    if p.protocol == "modbus" and type(p.probe) == "table" and #p.probe > 0 then
      mb[#mb + 1] = row
    elseif p.protocol == "sunspec" then
      ss[#ss + 1] = row
    end
  end
  return mb, ss
end

--- devices.sunspec_matches(bus, unit, rows [, timeout]) -> the SunSpec rows
--- whose models the device at unit has; nil when there is no SunSpec map.
function M.sunspec_matches(bus, unit, rows, timeout)
  if #rows == 0 then return nil end
  local sdev = require("moondog.sunspec").open(bus, { unit = unit, timeout = timeout })
  if not sdev then return nil end
  local found = {}
  for _, row in ipairs(rows) do
    for _, p in ipairs(row.profile.points) do
      local key = tostring(p.source):match("^([%w_]+)%.")
      if key and sdev:model(math.tointeger(tonumber(key)) or key) then
        found[#found + 1] = row
        break
      end
    end
  end
  return found
end

function M.identify(bus, unit)
  local driver = require "moondog.devices.modbus"
  local mb, ss = M.candidates()
  local matches = {}
  for _, row in ipairs(mb) do
    local ok, err, code = driver.identify(row.profile, bus, unit)
    if ok == nil then return nil, err, code end -- no answer (an exception is a "no")
    if ok then matches[#matches + 1] = row end
  end
  if #matches > 0 then return matches end
  return M.sunspec_matches(bus, unit, ss) or matches
end

--- devices.open(profile, target [, opts]) -> device. target is what the
--- driver connects to (a Modbus URL, "host:port" for RCT, ...).
function M.open(spec, target, opts)
  local profile = M.load(spec)
  local protocol = profile.protocol
  assert(type(protocol) == "string", "devices.open: profile has no protocol")
  local ok, driver = pcall(require, "moondog.devices." .. protocol)
  if not ok then
    error("devices.open: no driver for protocol '" .. protocol .. "': " .. driver, 2)
  end
  return driver.open(profile, target, opts or {})
end

return M
