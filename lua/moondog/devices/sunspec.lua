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
-- Opening never waits for the device: the first read (or describe)
-- discovers the model list, and a failed discovery is tried again on the
-- next read. A point whose model the device does not have, or that the
-- device marks not implemented, is absent from read()'s result.
--
-- describe() takes manufacturer, model, serial and version from the common
-- model (Mn, Md, SN, Vr) unless profile.info names other sources.

local sunspec = require "moondog.sunspec"
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

local function check_point(where, p)
  local model, path = parse_source(where, p.source)
  return { point = base.copy(p), model = model, path = path }
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
    local ok, def = pcall(function() return m and m:info(item.path) end)
    if ok and def and def.symbols and item.point.options == nil and item.point.type ~= "string" then
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
    if m then
      local got, raw = pcall(m.get, m, item.path)
      if got and raw ~= nil then out[item.point.name] = decode(item, raw) end
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
    local got, v = pcall(function() return m and m:get(path) end)
    if got then facts[field] = v end
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
  local filled = base.profile_with(profile, points)
  local id = base.id(profile, opts, "sunspec")
  return setmetatable({
    id = id, profile = filled, target = type(target) == "string" and target or nil,
    bus = type(target) ~= "string" and target or nil, opts = opts,
    items = items, list = list, transactions = 0, _online = false,
  }, Device)
end

return M
