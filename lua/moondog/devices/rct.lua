-- moondog.devices.rct: the driver for RCT Power device profiles
-- (protocol = "rct"; see devices/README.md for the device object).
--
--   local dev = assert(md.devices.open("rct_power", "192.168.1.60:8899"))
--   local values = dev:read()          -- {battery_soc = 62, grid_power = 120, ...}
--   dev:write("battery_soc_min", 10)   -- 10 % -> power_mng.soc_min = 0.1
--
-- A point's source is an RCT object name from devices/rct/registry.lua.
-- `scale` multiplies what the device sends (writes divide). FLOAT objects
-- arrive as float32 and are first rounded to the shortest decimal of that
-- float32 (0.62, not 0.62000000476837), so 0.62 * 100 reads 62. Enum
-- points read as the registry's symbols; a profile need not list their
-- options, the driver fills them in from the registry. Writable points must
-- be writable in the registry too (moondog's rule, see there), else the
-- profile is refused when opened.
--
-- read() asks for every point at once (one round trip, see
-- moondog.rct.client). A point that gets no answer or a bad one is left out
-- of the result; when no point answers, read() fails (nil, message, code)
-- and the device is offline.
--
-- open(profile, target, opts): target is "host[:port]" (port 8899 by
-- default) or an md.rct client to share; opts.id, opts.timeout,
-- opts.retries. Opening never waits for the device: the first read
-- connects (and every read after a drop reconnects).
--
-- simulate(profile, "127.0.0.1:0", {values = {point = value}}) serves a
-- device (md.rct.serve) whose objects hold those point values.

local rct = require "moondog.rct"
local registry = require "moondog.rct.registry"
local point = require "moondog.devices.point"
local base = require "moondog.devices.base"

local M = {}

local format = string.format

-- {===== profile checking =====

-- Unique symbols of an enum, in value order, and symbol -> value.
local function enum_options(e)
  local keys = {}
  for k in pairs(e.enum) do
    keys[#keys + 1] = k
  end
  table.sort(keys)
  local options, codes, seen = {}, {}, {}
  for _, k in ipairs(keys) do
    local symbol = e.enum[k]
    if not seen[symbol] then
      seen[symbol] = true
      options[#options + 1] = symbol
      codes[symbol] = k
    end
  end
  return options, codes
end

-- The point with what the registry knows filled in; raises on a broken
-- profile (it is part of the program).
local function check_point(where, p)
  if type(p.source) ~= "string" then
    error(format("%s: source must be an RCT object name", where), 0)
  end
  local e = registry.get(p.source)
  if not e then
    error(format("%s: '%s' is not in the RCT registry", where, p.source), 0)
  end
  if p.writable and not e.writable then
    error(format("%s: %s is not writable in devices/rct/registry.lua", where, e.name), 0)
  end
  local copy = base.copy(p)
  local item = { point = copy, entry = e }
  if point.kind(p) == "enum" then
    if not e.enum then
      error(format("%s: %s is not an enumeration", where, e.name), 0)
    end
    local options, codes = enum_options(e)
    copy.options = p.options or options
    item.codes = codes
  end
  return item
end

-- Every object profile.info names must be in the registry; raises on the
-- first that is not, as for a point.
local function check_info(profile)
  for field, source in pairs(type(profile.info) == "table" and profile.info or {}) do
    if type(source) ~= "string" or not registry.get(source) then
      error(format("profile %s, info.%s: '%s' is not in the RCT registry", profile.name or "?",
        field, tostring(source)), 0)
    end
  end
end

--- check(profile) -> mistakes, items: what open() checks, and the objects
--- profile.info names, with every mistake collected as a message.
function M.check(profile)
  local mistakes, list = base.check(profile, check_point)
  local info = type(profile.info) == "table" and profile.info or {}
  local fields = {}
  for field in pairs(info) do fields[#fields + 1] = field end
  table.sort(fields)
  for _, field in ipairs(fields) do
    local ok, e = pcall(registry.get, info[field])
    if not ok or not e then
      mistakes[#mistakes + 1] = format("profile %s, info.%s: '%s' is not in the RCT registry",
        profile.name or "?", field, tostring(info[field]))
    end
  end
  return mistakes, list
end

-- }=====

-- {===== values =====

local function decode(item, raw)
  local p = item.point
  local kind = point.kind(p)
  if kind == "enum" then
    return item.entry.enum[raw]
  elseif kind == "bool" then
    if type(raw) == "boolean" then return raw end
    return raw ~= 0
  elseif kind == "string" then
    return tostring(raw)
  end
  if type(raw) ~= "number" then
    return nil -- a log or structure: not a point value
  end
  local v = rct.tidy(raw)
  if p.scale and p.scale ~= 1 then
    -- 15 significant digits hide the binary noise of the multiplication.
    v = tonumber(format("%.15g", v * p.scale))
  end
  return v
end

-- A checked point value -> the object's value.
local function encode(item, value)
  local p = item.point
  local kind = point.kind(p)
  if kind == "enum" then
    return item.codes[value]
  elseif kind == "bool" then
    return item.entry.type == "BOOL" and value or (value and 1 or 0)
  end
  if type(value) == "number" and p.scale and p.scale ~= 1 then
    value = value / p.scale
  end
  if item.entry.type ~= "FLOAT" and type(value) == "number" then
    value = math.tointeger(math.floor(value + 0.5))
  end
  return value
end

-- }=====

-- {===== the device =====

local Device = base.class("rct")

--- dev:read([names]) -> {point = value}: every point, or only those named,
--- in one round trip.
function Device:read(names)
  local list, sources = self.list, self.sources
  if names ~= nil then
    list, sources = {}, {}
    for i, name in ipairs(names) do
      list[i] = self.items[name] or error(format("%s has no point '%s'", self.id, tostring(name)), 2)
      sources[i] = list[i].point.source
    end
  end
  local values, errors = self.client:read_many(sources)
  self.transactions = self.transactions + 1
  local out, answered = {}, false
  for _, item in ipairs(list) do
    local raw = values[item.point.source]
    if raw ~= nil then
      answered = true
      out[item.point.name] = decode(item, raw)
    end
  end
  if not answered and errors then
    local _, first = next(errors)
    self._online = false
    return nil, format("%s: %s", self.id, first.message), first.code
  end
  self._online = true
  return out
end

function Device:_write(item, value)
  return self.client:write(item.entry.name, encode(item, value))
end

-- Info sources are object names, read in one round trip.
function Device:_read_info(sources)
  local keys, fields = {}, {}
  for field, source in pairs(sources) do
    keys[#keys + 1] = source
    fields[#fields + 1] = field
  end
  local facts = {}
  if #keys == 0 then return facts end
  local values, errors = self.client:read_many(keys)
  if errors and next(values) == nil then
    local _, first = next(errors)
    return nil, format("%s: %s", self.id, first.message), first.code
  end
  for i, field in ipairs(fields) do
    facts[field] = values[keys[i]]
  end
  return facts
end

function Device:close()
  if self.own_client and self.client then
    self.client:close()
  end
  self.client = nil
end

local function prepare(profile)
  local items, list, points = base.points(profile, check_point)
  local sources = {}
  for i, item in ipairs(list) do
    sources[i] = item.point.source
  end
  return base.profile_with(profile, points), items, list, sources
end

--- open(profile, target [, opts]) -> device
function M.open(profile, target, opts)
  opts = opts or {}
  local filled, items, list, sources = prepare(profile)
  check_info(profile)
  local client, own = target, false
  if type(target) == "string" then
    local host, port = rct.parse_target(target)
    if not host then
      error("rct device: " .. port, 2)
    end
    client = rct.client(host, port, { timeout = opts.timeout, retries = opts.retries })
    own = true
  elseif getmetatable(target) ~= require("moondog.rct.client").Client then
    error("rct device: target must be 'host[:port]' or an md.rct client", 2)
  end
  local id = base.id(profile, opts, "rct")
  return setmetatable({
    id = id, profile = filled, client = client, own_client = own,
    items = items, list = list, sources = sources, transactions = 0, _online = false,
  }, Device)
end

-- }=====

-- {===== simulator =====

local Sim = {}
Sim.__index = Sim

--- sim:set(point, value) makes the device answer that point value.
function Sim:set(name, value)
  local item = self.items[name] or error("simulate: no point " .. tostring(name), 2)
  self.server:set(item.entry.name, encode(item, value))
end

--- sim:get(point) -> the point value the device holds now (after writes).
function Sim:get(name)
  local item = self.items[name] or error("simulate: no point " .. tostring(name), 2)
  return decode(item, self.server:get(item.entry.name))
end

function Sim:port() return self.server:port() end
function Sim:target() return "127.0.0.1:" .. self.server:port() end
function Sim:close() self.server:close() end
Sim.__close = Sim.close

--- simulate(profile, target [, opts]) -> simulator, or nil, message, code.
--- target "host:port" to listen on ("127.0.0.1:0" picks a port);
--- opts.values = {point = value}; opts.info = {serial = "..."} sets the
--- objects the profile's info names; opts.faults as for md.rct.serve.
function M.simulate(profile, target, opts)
  opts = opts or {}
  profile = require("moondog.devices").load(profile)
  local host, port = (target or "127.0.0.1:0"):match("^(.*):(%d+)$")
  local server, err, code = rct.serve({
    host = host or "127.0.0.1", port = tonumber(port) or 0, faults = opts.faults,
    on_write = opts.on_write,
  })
  if not server then return nil, err, code end
  local _, items = prepare(profile)
  local sim = setmetatable({ server = server, items = items }, Sim)
  for name, value in pairs(opts.values or {}) do
    sim:set(name, value)
  end
  for field, value in pairs(opts.info or {}) do
    local source = (profile.info or {})[field]
    if source then server:set(source, value) end
  end
  return sim
end

-- }=====

return M
