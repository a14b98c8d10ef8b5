-- moondog check SITE.lua: load a site script without touching its devices
-- or the MQTT broker, and report every mistake found, not just the first.
--
--   moondog check /etc/moondog/home.lua     one line per mistake, exit 1; or "ok: ..." and 0
--
-- How. The script's main chunk runs in this engine with the calls that
-- would reach the outside world replaced by checking stand-ins (a dry run):
-- md.site.new gives a site whose add() loads and checks the profile
-- (md.devices.check), parses the address and checks the options, and
-- whose publish() checks the MQTT options; md.mqtt.connect,
-- md.mqtt.publish.start, md.modbus.open/shared/device, md.sunspec.open,
-- md.rct.connect and md.devices.open check their arguments and return
-- inert objects; md.control.export_limit checks that its grid point and
-- inverters name devices and points the site has. Tasks are not started
-- (md.spawn, md.every and site:spawn record nothing and return inert
-- tasks) and md.sleep returns at once, so nothing the script schedules
-- runs: no connection is attempted. Local servers the script starts
-- (md.modbus.serve, simulated devices) are real and closed at exit.
--
-- Each mistake is reported with the script's line that made it. An error
-- the main chunk raises (a typo, a wrong argument to another function)
-- ends the run there and is reported with the mistakes found before it.
-- Exit status: 0 no mistake, 1 mistakes, 2 the command line is wrong.

local md = require "moondog"
local devices = require "moondog.devices"
local address = require "moondog.modbus.address"

local format = string.format
local exit = md.exit -- md.exit is replaced below: a site's own call must not end the check

local USAGE = [[
usage: moondog check SITE.lua [args...]

Loads the site script SITE.lua without opening its devices or the MQTT
broker, checks every device's profile, address and options, the point
names the script uses, and the MQTT and control options, then prints one
line per mistake and exits 1, or prints "ok: ..." and exits 0.
]]

-- The options are the words before SITE.lua; the words after it are the
-- site script's own arguments.
local cli_mod = require "moondog.cli"
local cli = cli_mod.new("moondog check")
local first = 1
while arg[first] and arg[first]:match("^%-.") and arg[first] ~= "--" do first = first + 1 end
if arg[first] == "--" then first = first + 1 end
local o, extra = cli:parse(nil, table.move(arg, 1, first - 1, 1, {}), { help = {}, short = { h = "help" } })
if o.help then cli_mod.show_help(USAGE) end
if extra[1] then cli:usage_error(nil, "unexpected argument '%s' before SITE.lua", extra[1]) end
local path = arg[first]
if not path then cli:usage_error(nil, "name the site script to check") end

local mistakes = {}
local source = "@" .. path

-- "file:line" of the innermost frame in the site script (the call that
-- made the mistake), or the file alone.
local function where()
  for level = 2, 40 do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    if info.source == source and info.currentline > 0 then
      return format("%s:%d", path, info.currentline)
    end
  end
  return path
end

local function mistake(fmt, ...)
  mistakes[#mistakes + 1] = where() .. ": " .. format(fmt, ...)
end

-- {===== inert stand-ins =====

-- An object that accepts any method call and returns another one: what a
-- stand-in returns for things only a running site would have (a task, a
-- listener, a value), so that a script's later lines still run.
local inert_mt = {}
local function inert(name)
  return setmetatable({ _check_inert = name }, inert_mt)
end
inert_mt.__index = function(t, k)
  if k == "_check_inert" then return rawget(t, k) end
  return function() return inert(rawget(t, "_check_inert") .. "." .. tostring(k)) end
end
inert_mt.__call = function(t) return inert(rawget(t, "_check_inert") .. "()") end
inert_mt.__tostring = function(t) return "(not run by moondog check: " .. rawget(t, "_check_inert") .. ")" end
inert_mt.__close = function() end

local function check_options(what, opts, known)
  if opts == nil then return end
  if type(opts) ~= "table" then
    mistake("%s: options must be a table, got %s", what, type(opts))
    return
  end
  for k in pairs(opts) do
    if not known[k] then
      local names = {}
      for n in pairs(known) do names[#names + 1] = n end
      table.sort(names)
      mistake("%s: unknown option '%s' (known: %s)", what, tostring(k), table.concat(names, ", "))
    end
  end
end

local function set(list)
  local s = {}
  for _, k in ipairs(list) do s[k] = true end
  return s
end

local function check_number(what, v, min)
  if v ~= nil and (type(v) ~= "number" or (min and v < min)) then
    mistake("%s must be a number%s, got %s", what, min and (" >= " .. min) or "", tostring(v))
  end
end

local MQTT_OPTIONS = set { "host", "port", "url", "client_id", "username", "password", "keepalive", "clean",
  "protocol", "tls", "will", "queue", "max_inflight", "max_queued", "max_queued_bytes", "max_pending",
  "max_pending_bytes", "reconnect", "connect_timeout", "wait", "name" }

local function check_mqtt(what, opts)
  if type(opts) == "string" then opts = { url = opts } end
  check_options(what, opts, MQTT_OPTIONS)
  if type(opts) ~= "table" then return end
  if opts.url ~= nil then
    local ok, err = pcall(md.mqtt.parse_address, opts.url)
    if type(opts.url) ~= "string" then
      mistake("%s: url must be a string such as 'mqtt://host:1883'", what)
    elseif not ok then
      mistake("%s: %s", what, (tostring(err):gsub("^[^:]*:%d+: ", "")))
    end
  end
  for _, k in ipairs { "host", "client_id", "username", "password", "name" } do
    if opts[k] ~= nil and type(opts[k]) ~= "string" then
      mistake("%s: %s must be a string, got %s", what, k, type(opts[k]))
    end
  end
  for _, k in ipairs { "port", "keepalive", "max_inflight", "max_queued", "max_queued_bytes", "max_pending",
                       "max_pending_bytes", "connect_timeout", "protocol" } do
    check_number(what .. ": " .. k, opts[k], 0)
  end
  if type(opts.port) == "number" and (opts.port < 1 or opts.port > 65535) then
    mistake("%s: port %s is out of range", what, opts.port)
  end
  if opts.username and opts.password == nil and opts.url == nil then
    -- a password option that is nil is how a missing md.secret shows up
    mistake("%s: username '%s' without a password (a missing secret? md.secret returns nil, message)", what,
      opts.username)
  end
  if opts.tls ~= nil and opts.tls ~= true and opts.tls ~= false then
    if type(opts.tls) ~= "table" then
      mistake("%s: tls must be true or {ca_file=, cert_file=, key_file=, insecure=}", what)
    else
      check_options(what .. ": tls", opts.tls,
        set { "ca_file", "ca_path", "cert_file", "key_file", "insecure" })
      for _, k in ipairs { "ca_file", "cert_file", "key_file" } do
        local f = opts.tls[k]
        if f ~= nil and (type(f) ~= "string" or not io.open(f, "r")) then
          mistake("%s: tls.%s: cannot read %s", what, k, tostring(f))
        end
      end
    end
  end
end

-- }=====

-- {===== the site stand-in =====

local Site = {}
local site_mt = {}
local sites = {}

local SITE_NEW_OPTIONS = set { "name", "exit_after", "offline_after", "retry" }
local ADD_OPTIONS = set { "poll", "offline_after", "retry", "timeout", "base", "unit" }
local PUBLISH_OPTIONS = set { "mqtt", "client", "prefix", "qos", "retain", "json", "deadband", "min_interval",
  "max_interval", "poll", "homeassistant", "commands", "on_publish", "devices", "command_interval" }

-- The names of a profile's points, or nil when unknown (profile "auto").
local function point_names(profile)
  if type(profile) ~= "table" or type(profile.points) ~= "table" then return nil end
  local names = {}
  for _, p in ipairs(profile.points) do
    if type(p) == "table" and p.name then names[p.name] = true end
  end
  return names
end

local Device = {}
local function check_point(d, point, what)
  if type(point) ~= "string" then
    mistake("%s: expected a point name, got %s", what, type(point))
  elseif d.points and not d.points[point] then
    mistake("%s: device '%s' has no point '%s' (profile %s)", what, d.id, point, d.profile_name)
  end
end
function Device:get(point) check_point(self, point, self.id .. ":get") return nil end
function Device:wait(point)
  check_point(self, point, self.id .. ":wait")
  return nil, "not run by moondog check", "timeout"
end
function Device:write(point) check_point(self, point, self.id .. ":write") return inert("write") end
local device_mt = { __index = function(t, k) return Device[k] or inert(t.id .. "." .. tostring(k)) end }

local function check_target(id, protocol, target)
  if protocol == "modbus" or protocol == "sunspec" or protocol == "auto" then
    if type(target) ~= "string" then
      mistake("device %s: the address must be a Modbus address such as 'tcp://192.168.1.50?unit=1', got %s",
        id, type(target))
      return
    end
    local cfg, err = address.parse(target)
    if not cfg then mistake("device %s: %s", id, tostring(err)) end
  elseif protocol == "rct" then
    local host, err = require("moondog.rct").parse_target(target)
    if not host then mistake("device %s: %s", id, tostring(err)) end
  end
end

function Site:add(id, profile, target, opts)
  if type(id) ~= "string" or not id:match("^[a-z0-9_]+$") then
    mistake("site:add: the device id must be lowercase letters, digits and _, got %s", tostring(id))
    id = tostring(id)
  elseif self._devices[id] then
    mistake("site:add: the site already has a device '%s'", id)
  elseif Site[id] or id == "name" then
    mistake("site:add: '%s' is a name the site uses itself; pick another device id", id)
  end
  local d = setmetatable({ id = id, profile_name = tostring(profile) }, device_mt)
  if type(profile) == "table" and profile._check_opened then -- site:add(id, dev [, opts])
    d.points, d.profile_name, opts = profile._check_opened.points, profile._check_opened.profile_name, target
  elseif profile == "auto" then
    check_target(id, "auto", target)
  else
    local problems = devices.check(profile)
    local loaded, p = pcall(devices.load, profile)
    for _, m in ipairs(problems) do mistake("device %s: %s", id, m) end
    if loaded then
      d.points = point_names(p)
      d.profile_name = p.name or tostring(profile)
      check_target(id, p.protocol, target)
    end
  end
  check_options("site:add " .. id, opts, ADD_OPTIONS)
  if type(opts) == "table" then
    if type(opts.poll) ~= "table" then check_number("site:add " .. id .. ": poll", opts.poll, 0) end
    check_number("site:add " .. id .. ": offline_after", opts.offline_after, 1)
    check_number("site:add " .. id .. ": timeout", opts.timeout, 0)
  end
  self._devices[id] = d
  self._order[#self._order + 1] = d
  return d
end

-- "device.point" names of derived values and site values.
local function check_value_name(what, name)
  if type(name) ~= "string" or not name:match("^[a-z0-9_]+%.[a-z0-9_]+$") then
    mistake("%s: the name must be 'device.point' (lowercase letters, digits and _), got %s", what,
      tostring(name))
  end
end
function Site.derive(_, name, _def, fn)
  check_value_name("site:derive", name)
  if type(fn) ~= "function" then mistake("site:derive %s: expected a function", tostring(name)) end
  return inert("derive")
end
function Site.value(_, name) check_value_name("site:value", name) return inert("value") end

function Site:publish(opts)
  check_options("site:publish", opts, PUBLISH_OPTIONS)
  if type(opts) == "table" then
    if opts.mqtt == nil and opts.client == nil then
      mistake("site:publish: needs mqtt = {host = ..., ...} (or client =)")
    elseif opts.mqtt ~= nil then
      check_mqtt("site:publish mqtt", opts.mqtt)
    end
    if opts.prefix ~= nil and (type(opts.prefix) ~= "string" or not md.mqtt.check_topic(opts.prefix)
      or opts.prefix:find("/$")) then
      mistake("site:publish: prefix must be a topic such as 'moondog' or 'site/garage'")
    end
  end
  self._published = true
  return inert("publisher")
end

function Site.serve_modbus(_, opts)
  if type(opts) ~= "table" or type(opts.listen) ~= "string" then
    mistake("site:serve_modbus: needs listen = 'tcp://0.0.0.0:1502'")
  elseif not address.parse(opts.listen) then
    mistake("site:serve_modbus: cannot read the address %s", opts.listen)
  end
  return inert("gateway")
end

function Site:remove(id)
  if not self._devices[id] then mistake("site:remove: no device '%s'", tostring(id)) end
  return true
end
function Site:devices() return self._order end

site_mt.__index = function(t, k)
  if Site[k] then return Site[k] end
  local d = rawget(t, "_devices")[k]
  if d then return d end
  if type(k) == "string" and k:match("^_") then return nil end
  return function() return inert("site:" .. tostring(k)) end
end

local function site_new(opts)
  check_options("site.new", opts, SITE_NEW_OPTIONS)
  opts = type(opts) == "table" and opts or {}
  local name = opts.name or "site"
  if type(name) ~= "string" or not name:match("^[a-z0-9_]+$") then
    mistake("site.new: name must be lowercase letters, digits and _, got %s", tostring(name))
  end
  local s = setmetatable({ name = name, _devices = {}, _order = {} }, site_mt)
  sites[#sites + 1] = s
  return s
end

-- }=====

-- {===== the library, dry =====

local function check_modbus_url(what, url)
  if type(url) ~= "string" then
    mistake("%s: expected a Modbus address such as 'tcp://192.168.1.50?unit=1', got %s", what, type(url))
  else
    local cfg, err = address.parse(url)
    if not cfg then mistake("%s: %s", what, tostring(err)) end
  end
  return inert(what)
end

md.site.new = site_new
local secret = md.secret
md.secret = function(name)
  local v, err, code = secret(name)
  if not v then mistake("%s", tostring(err)) end
  return v, err, code
end
md.spawn = function() return inert("task") end
md.every = function(_, fn)
  if fn ~= nil then return inert("task") end
  return function() return nil end -- a loop over ticks does not run
end
md.sleep = function() end
md.exit = function() end
md.attach.listen = function() return inert("listener") end
md.mqtt.connect = function(opts)
  check_mqtt("mqtt.connect", opts)
  return inert("mqtt client")
end
md.mqtt.publish.start = function(opts)
  check_options("mqtt.publish.start", opts, PUBLISH_OPTIONS)
  if type(opts) == "table" and opts.mqtt ~= nil then check_mqtt("mqtt.publish.start mqtt", opts.mqtt) end
  return inert("publisher")
end
md.modbus.open = function(url) return check_modbus_url("modbus.open", url) end
md.modbus.shared = function(url) return check_modbus_url("modbus.shared", url) end
md.modbus.device = function(url) return check_modbus_url("modbus.device", url) end
md.sunspec.open = function(url) return check_modbus_url("sunspec.open", url) end
md.rct.connect = function(host)
  if type(host) ~= "string" then mistake("rct.connect: expected the inverter's host, got %s", type(host)) end
  return inert("rct client")
end
md.devices.open = function(profile, target)
  local problems = devices.check(profile)
  for _, m in ipairs(problems) do mistake("devices.open: %s", m) end
  local ok, p = pcall(devices.load, profile)
  local obj = inert("device")
  if ok then
    check_target(tostring(p.name), p.protocol, target)
    rawset(obj, "_check_opened", { points = point_names(p), profile_name = p.name })
  end
  return obj
end

local EXPORT_LIMIT_OPTIONS = set { "site", "grid", "inverters", "limit_w", "name", "failsafe_after",
  "recover_s", "revert_s", "excursion_s", "slew_pct", "min_change_pct", "ki", "hold_s", "on_step",
  "state_file", "margin_w", "tolerance_w", "deadband_w", "relax_s", "overcut", "battery",
  "battery_hold_s", "settle_s", "escalate_s", "escalate_count", "escalate_window_s" }
md.control.export_limit = function(opts)
  check_options("export_limit", opts, EXPORT_LIMIT_OPTIONS)
  if type(opts) ~= "table" then return inert("export_limit") end
  local site = opts.site
  if getmetatable(site) ~= site_mt then
    mistake("export_limit: site = the md.site to control")
    site = nil
  end
  local gdev, gpoint = tostring(opts.grid or ""):match("^([a-z0-9_]+)%.([a-z0-9_]+)$")
  if not gdev then
    mistake("export_limit: grid must name the grid meter's power point as 'device.point', got %s",
      tostring(opts.grid))
  elseif site then
    local d = site._devices[gdev]
    if not d then mistake("export_limit: grid: the site has no device '%s'", gdev)
    else check_point(d, gpoint, "export_limit grid") end
  end
  if type(opts.limit_w) ~= "number" or opts.limit_w < 0 then
    mistake("export_limit: limit_w must be a number >= 0 (watts), got %s", tostring(opts.limit_w))
  end
  if type(opts.inverters) ~= "table" or #opts.inverters == 0 then
    mistake("export_limit: inverters = {\"pv\", ...} (the devices to curtail)")
  elseif site then
    for _, x in ipairs(opts.inverters) do
      local id = type(x) == "table" and x.id or x
      if not site._devices[id] then
        mistake("export_limit: inverters: the site has no device '%s'", tostring(id))
      end
    end
  end
  if opts.state_file ~= nil and type(opts.state_file) ~= "string" then
    mistake("export_limit: state_file must be a path")
  end
  return inert("export_limit")
end

-- }=====

local chunk, lerr = loadfile(path)
if not chunk then
  mistakes[#mistakes + 1] = tostring(lerr)
else
  md.paths.script = path
  local ok, err = xpcall(chunk, function(e)
    -- where the error was raised in the script, if the message lacks it
    local msg = tostring(e)
    if not msg:find(path, 1, true) then msg = where() .. ": " .. msg end
    return msg
  end, table.unpack(arg, first + 1))
  if not ok then mistakes[#mistakes + 1] = tostring(err) .. " (the check stopped here)" end
end

if #mistakes > 0 then
  for _, m in ipairs(mistakes) do print(m) end
  print(format("%d mistake%s in %s", #mistakes, #mistakes == 1 and "" or "s", path))
  return exit(1)
end
local n = 0
for _, s in ipairs(sites) do n = n + #s._order end
print(format("ok: %s (%d site%s, %d device%s)", path, #sites, #sites == 1 and "" or "s", n,
  n == 1 and "" or "s"))
return exit(0)
