-- moondog.devices.sunspec: the driver for SunSpec device profiles
-- (protocol = "sunspec"; see devices/README.md for the device object).
--
--   local dev = assert(md.devices.open("sunspec_inverter", "tcp://192.168.1.50:502?unit=1"))
--   local values = dev:read()             -- {power = 2970, energy = 1234.5, ...}
--   dev:write("power_limit", 50)          -- model 123 WMaxLimPct, scale factor applied
--
-- A point's source is "<model>.<point path>": the model by id or by the
-- names md.sunspec knows ("103.W", "inverter.W", "meter.TotWhImp",
-- "160.module[2].DCW"). SunSpec scale factors are applied by md.sunspec
-- (read fresh with every value); the profile's `scale` then multiplies
-- (Wh -> kWh). Enums read as their SunSpec symbols; a writable enum point
-- without `options` gets the symbols of its definition.
--
-- Opening checks every source against the model definitions (shipped in
-- devices/sunspec, or loaded with md.sunspec.models.load_json_dir before):
-- an unknown model, a point its model lacks ("inverter.Wattz"), a missing
-- repeating-group index or a writable point the definition makes read-only
-- raises, as a misspelt RCT object does.
--
-- Opening never waits for the device: the first read (or describe)
-- discovers the model list, and a failed discovery is tried again on the
-- next read. A point whose model the device does not have, that the device
-- marks not implemented, or whose group instance it lacks (module[3] of
-- two), is absent from read()'s result.
--
-- describe() takes manufacturer, model, serial and version from the common
-- model (Mn, Md, SN, Vr) unless profile.info names other sources.

local sunspec = require "moondog.sunspec"
local models = require "moondog.sunspec.models"
local layout = require "moondog.sunspec.layout"
local aliases = require("moondog.sunspec.client").aliases
local base = require "moondog.devices.base"

local M = {}

local format = string.format


-- "160.module[2].DCW" -> model key (160 or "inverter"), point path; raises
-- on a malformed source (a profile is part of the program).
local function parse_source(where, source)
  local model, path = tostring(source):match("^([%w_]+)%.(.+)$")
  if not model then
    error(format("%s: source must be '<model>.<point>' such as '103.W' or 'inverter.W', got %s",
      where, tostring(source)), 0)
  end
  return math.tointeger(tonumber(model)) or model, path
end

-- The definitions a model key may stand for: an id, a short name of
-- md.sunspec (inverter: 101-103 and 111-113), or a model's own name.
local function definitions(key)
  local list = {}
  if math.type(key) == "integer" then
    list[1] = models.get(key)
    return list
  end
  for _, id in ipairs(aliases[key] or {}) do
    list[#list + 1] = models.get(id)
  end
  if #list == 0 then list[1] = models.get(key) end
  return list
end

-- The definition of a point path ("W", "module[2].DCW") in a model, or nil
-- and why not. A point in a repeating group needs the instance's index.
local function point_def(def, path)
  local parts = layout.parse_path(path)
  if not parts then return nil, "is not a point path such as 'W' or 'module[2].DCW'" end
  local g, i = def.group, 1
  while i <= #parts do
    local part = parts[i]
    if math.type(part) == "integer" then return nil, "has an index where a name belongs" end
    if i == #parts then
      if g.by_name[part] then return g.by_name[part] end
      return nil, "is not a point"
    end
    local sub
    for _, candidate in ipairs(g.groups) do
      if candidate.name == part then sub = candidate end
    end
    if not sub then return nil, "is not a point" end
    g, i = sub, i + 1
    if math.type(parts[i]) == "integer" then
      if parts[i] < 1 then return nil, "counts instances from 1" end
      i = i + 1
    elseif sub.count ~= 1 then
      return nil, format("needs the index of a %s instance, e.g. %s[1]", part, part)
    end
  end
  return nil, "names a group, not a point"
end

local function alias_names()
  local names = {}
  for name in pairs(aliases) do names[#names + 1] = name end
  table.sort(names)
  return table.concat(names, ", ")
end

-- The definition of a source's point in the first of its models that has
-- it; raises naming the mistake: the source is checked against the model
-- definitions when the profile is opened, so that a typo ("inverter.Wattz")
-- is an error then, not a point that is silently never read.
local function source_def(where, model, path)
  local defs = definitions(model)
  if #defs == 0 then
    error(format("%s: no SunSpec model '%s' (use a model id such as 103 with a definition in "
      .. "devices/sunspec or loaded with md.sunspec.models.load_json_dir, or one of %s)", where,
      tostring(model), alias_names()), 0)
  end
  local why
  for _, def in ipairs(defs) do
    local found, reason = point_def(def, path)
    if found then return found end
    why = why or reason
  end
  local ids = {}
  for i, def in ipairs(defs) do ids[i] = tostring(def.id) end
  if why == "is not a point" then
    error(format("%s: '%s' is not a point of SunSpec model %s", where, path, table.concat(ids, "/")), 0)
  end
  error(format("%s: '%s' %s (SunSpec model %s)", where, path, why, table.concat(ids, "/")), 0)
end

local function check_point(where, p)
  local model, path = parse_source(where, p.source)
  local def = source_def(where, model, path)
  if p.writable and def.access ~= "RW" then
    error(format("%s: %s is read-only in the SunSpec definition", where, tostring(p.source)), 0)
  end
  return { point = base.copy(p), model = model, path = path }
end

-- Every source of profile.info, checked as the points' are; raises on the
-- first mistake.
local function check_info(profile)
  local info = type(profile.info) == "table" and profile.info or {}
  local fields = {}
  for field in pairs(info) do fields[#fields + 1] = field end
  table.sort(fields)
  for _, field in ipairs(fields) do
    local where = format("profile %s, info.%s", profile.name or "?", field)
    source_def(where, parse_source(where, info[field]))
  end
end

--- check(profile) -> mistakes, items: what open() checks, and the sources
--- of profile.info, with every mistake collected as a message.
function M.check(profile)
  local mistakes, list = base.check(profile, check_point)
  local info = type(profile.info) == "table" and profile.info or {}
  local fields = {}
  for field in pairs(info) do fields[#fields + 1] = field end
  table.sort(fields)
  for _, field in ipairs(fields) do
    local ok, err = pcall(function()
      local where = format("profile %s, info.%s", profile.name or "?", field)
      source_def(where, parse_source(where, info[field]))
    end)
    if not ok then mistakes[#mistakes + 1] = tostring(err) end
  end
  return mistakes, list
end

-- {===== values =====

local function decode(item, raw)
  local p = item.point
  if type(raw) == "table" then -- a bitfield: the names of the bits set
    return table.concat(raw, ",")
  end
  if type(raw) ~= "number" or not p.scale or p.scale == 1 then
    return raw
  end
  -- 15 significant digits hide the binary noise of the multiplication.
  return tonumber(format("%.15g", raw * p.scale))
end

local function encode(item, value)
  local p = item.point
  if type(value) == "number" and p.scale and p.scale ~= 1 then
    return value / p.scale
  end
  return value
end

-- }=====

local Device = base.class("sunspec")

-- The discovered SunSpec device, discovering it first when needed.
function Device:_sunspec()
  if self.sdev then return self.sdev end
  local sdev, err, code = sunspec.open(self.bus or self.target, {
    unit = self.opts.unit, base = self.opts.base, timeout = self.opts.timeout,
  })
  if not sdev then
    self._online = false
    return nil, format("%s: %s", self.id, err), code
  end
  self.sdev = sdev
  -- Fill in enum options from the definitions now that the models are known.
  for _, item in ipairs(self.list) do
    local m = sdev:model(item.model)
    local def = m and m:has(item.path) and m:info(item.path)
    if def and def.symbols and item.point.options == nil and item.point.type ~= "string" then
      local options = {}
      for i, s in ipairs(def.symbols) do options[i] = s.name end
      item.point.options = options
      item.point.type = item.point.type or "enum"
    end
  end
  return sdev
end

-- The items of these point names (nil: all).
local function selected(self, names)
  if names == nil then return self.list end
  local list = {}
  for i, name in ipairs(names) do
    list[i] = self.items[name] or error(format("%s has no point '%s'", self.id, tostring(name)), 3)
  end
  return list
end

--- dev:read([names]) -> {point = value}: every point, or only those named;
--- reads only the models that hold them.
function Device:read(names)
  local sdev, err, code = self:_sunspec()
  if not sdev then return nil, err, code end
  local list = selected(self, names)
  local keys, seen = {}, {}
  for _, item in ipairs(list) do
    local m = sdev:model(item.model)
    if m and not seen[m] and not m.raw then
      seen[m] = true
      keys[#keys + 1] = m
    end
  end
  if #keys == 0 then -- none of these points' models is on the device
    self._online = true
    return {}
  end
  local ok
  local before = sdev.transactions or 0
  ok, err, code = sdev:read(table.unpack(keys))
  self.transactions = self.transactions + (sdev.transactions or 0) - before
  if not ok then
    self._online = false
    return nil, format("%s: %s", self.id, err), code
  end
  local out = {}
  for _, item in ipairs(list) do
    local m = seen[sdev:model(item.model) or false] and sdev:model(item.model)
    if m and m:has(item.path) then -- absent: a group instance the device lacks
      local raw = m:get(item.path)
      if raw ~= nil then out[item.point.name] = decode(item, raw) end
    end
  end
  self._online = true
  return out
end

function Device:_write(item, value)
  local sdev, err, code = self:_sunspec()
  if not sdev then return nil, err, code end
  local m = sdev:model(item.model)
  if not m then
    return nil, format("the device has no model %s (it has %s)", tostring(item.model), sdev:summary()),
      "unknown_point"
  end
  return m:write(item.path, encode(item, value))
end

-- Several checked values: the points of one model go to its m:write as one
-- table, which sends adjacent registers in one write (function 16) and
-- the rest in the fewest (moondog.sunspec.client); models in the order of
-- their first point's name.
function Device:_write_many(list)
  local sdev, err, code = self:_sunspec()
  if not sdev then return nil, err, code end
  local values, order = {}, {}
  for _, w in ipairs(list) do
    local m = sdev:model(w.item.model)
    if not m then
      return nil, format("the device has no model %s (it has %s)", tostring(w.item.model), sdev:summary()),
        "unknown_point"
    end
    if not values[m] then
      values[m] = {}
      order[#order + 1] = m
    end
    values[m][w.item.path] = encode(w.item, w.value)
  end
  for _, m in ipairs(order) do
    local ok
    ok, err, code = m:write(values[m])
    if not ok then return nil, err, code end
  end
  return true
end

-- Without profile.info the facts come from the common model.
Device.default_info = { manufacturer = "1.Mn", model = "1.Md", serial = "1.SN", sw_version = "1.Vr" }

-- Info sources are "<model>.<point>" like the points' sources.
function Device:_read_info(sources)
  local sdev, err, code = self:_sunspec()
  if not sdev then return nil, err, code end
  local facts = {}
  for field, source in pairs(sources) do
    local key, path = parse_source("profile " .. tostring(self.profile.name) .. ", info." .. field, source)
    local m = sdev:model(key)
    if m and m:has(path) then facts[field] = m:get(path) end
  end
  return facts
end

function Device:close()
  if self.sdev then self.sdev:close() end
  self.sdev = nil
  if self.own_bus and self.bus then self.bus:close() end
  self.bus = nil
end

--- open(profile, target [, opts]) -> device. target: a Modbus URL or an
--- open bus to share; opts.id, opts.unit, opts.base, opts.timeout.
function M.open(profile, target, opts)
  opts = opts or {}
  if type(target) ~= "string" and type(target) ~= "userdata" then
    error("sunspec device: target must be a Modbus address such as 'tcp://host:502?unit=1' or an open bus", 2)
  end
  local items, list, points = base.points(profile, check_point)
  check_info(profile)
  local filled = base.profile_with(profile, points)
  local id = base.id(profile, opts, "sunspec")
  return setmetatable({
    id = id, profile = filled, target = type(target) == "string" and target or nil,
    bus = type(target) ~= "string" and target or nil, opts = opts,
    items = items, list = list, transactions = 0, _online = false,
  }, Device)
end

return M
