-- moondog.devices.base: what every driver's device object shares (see
-- devices/README.md for the contract). A driver supplies how to check one
-- point of a profile, how to write one checked value and how to read the
-- device's facts; the base gives the id, the point table, write's checks
-- and messages, describe, online and tostring.
--
--   local Device = base.class("rct")          -- the driver's metatable
--   function Device:_write(item, value) ... return true or nil, err, code end
--   function Device:_read_info(sources) ... return {field = value} or nil, err, code end
--   local items, list, points = base.points(profile, check_point)
--   local id = base.id(profile, opts, "rct")

local point = require "moondog.devices.point"

local M = {}

local format = string.format

--- base.class(kind) -> a device metatable with write, online, __tostring and
--- __close (which calls the driver's close).
function M.class(kind)
  local Device = {}
  Device.__index = Device

  -- One point's value checked (type, range, rules between points); with
  -- `given` the other points' values come from it first (a multi-point
  -- write checks each value against the others it writes).
  local function check_one(self, name, value, given)
    local item = self.items[name]
    if not item then
      return nil, format("%s has no point '%s'", self.id, tostring(name)), "unknown_point"
    end
    local v, err, code = point.check(item.point, value)
    if v == nil then
      return nil, format("%s: %s", self.id, err), code
    end
    if self.profile.constraints then -- rules between points: read the others now
      local now
      v, err, code = point.check_constraints(self.profile, name, v, function(other)
        if given and given[other] ~= nil then return given[other] end
        if not now then now = self:read() or {} end
        return now[other]
      end)
      if v == nil then
        return nil, format("%s: %s", self.id, err), code
      end
    end
    return item, v
  end

  --- dev:write(name, value) or dev:write{name = value, ...}: every value
  --- checked against its point before the driver sends anything (one bad
  --- value refuses them all). A driver with _write_many(list) gets the
  --- whole list {item =, value =, name =}, sorted by name, to send in the
  --- fewest transactions; others get _write(item, value) per point.
  function Device:write(name, value)
    if type(name) ~= "table" then
      local item, v, code = check_one(self, name, value)
      if not item then return nil, v, code end
      local ok, err
      ok, err, code = self:_write(item, v)
      if not ok then
        return nil, format("%s: writing %s: %s", self.id, name, err), code
      end
      return true
    end
    local names = {}
    for n in pairs(name) do
      if type(n) ~= "string" then error("write: point names must be strings, got " .. type(n), 2) end
      names[#names + 1] = n
    end
    table.sort(names)
    local list = {}
    for i, n in ipairs(names) do
      local item, v, code = check_one(self, n, name[n], name)
      if not item then return nil, v, code end
      list[i] = { item = item, value = v, name = n }
    end
    if self._write_many then
      local ok, err, code = self:_write_many(list)
      if not ok then
        return nil, format("%s: writing %s: %s", self.id, table.concat(names, ", "), err), code
      end
      return true
    end
    for _, w in ipairs(list) do
      local ok, err, code = self:_write(w.item, w.value)
      if not ok then
        return nil, format("%s: writing %s: %s", self.id, w.name, err), code
      end
    end
    return true
  end

  --- dev:describe(): the profile's facts, and those read from the device
  --- where profile.info (else the driver's default_info) names a source
  --- for them; read once, then kept.
  function Device:describe()
    if self._description then return self._description end
    local profile = self.profile
    local info = profile.info or self.default_info or {}
    local sources = {}
    for _, field in ipairs(M.info_fields) do
      sources[field] = info[field]
    end
    local facts, err, code = self:_read_info(sources)
    if not facts then return nil, err, code end
    local d = { manufacturer = profile.manufacturer, model = profile.model, points = profile.points }
    for field, v in pairs(facts) do
      if v ~= "" then d[field] = tostring(v) end
    end
    self._description = d
    return d
  end

  function Device:online()
    return self._online
  end

  function Device:__tostring()
    return format("%s device %s (%s)", kind, self.id, self.profile.name or "?")
  end

  function Device:__close()
    return self:close()
  end

  return Device
end

--- The device facts describe() returns besides the points.
M.info_fields = { "manufacturer", "model", "serial", "sw_version", "hw_version" }

-- One point through the checks every driver shares and the driver's own;
-- raises with "profile X, point Y: ..." on the first mistake.
local function check_one(profile, i, p, check_point)
  if type(p) ~= "table" then
    error(format("profile %s: points[%d] must be a table {name =, source =, ...}, got %s",
      profile.name or "?", i, type(p)), 0)
  end
  local where = format("profile %s, point %s", profile.name or "?", tostring(p.name))
  if type(p.name) ~= "string" or not p.name:match("^[a-z0-9_]+$") then
    error(format("%s: name must be lowercase letters, digits and _", where), 0)
  end
  return check_point(where, p)
end

--- base.points(profile, check_point) -> items by name, items in order, and
--- the profile's points as the driver completed them (item.point).
--- check_point(where, p) -> item {point = ..., ...}, where is "profile X,
--- point Y" for its messages; it raises on a broken point, and so do a
--- name that is not topic-safe and a point listed twice: a profile is part
--- of the program.
function M.points(profile, check_point)
  local items, list, points = {}, {}, {}
  for i, p in ipairs(profile.points) do
    local item = check_one(profile, i, p, check_point)
    if items[p.name] then
      error(format("profile %s: point %s is listed twice", profile.name or "?", p.name), 3)
    end
    items[p.name], list[i], points[i] = item, item, item.point
  end
  point.check_constraint_list(profile, items)
  return items, list, points
end

--- base.check(profile, check_point) -> mistakes, items: the checks of
--- base.points, with every mistake collected (an array of messages)
--- instead of raising at the first, and the items of the points that
--- passed. For `moondog devices check`, which shows an author all of them.
function M.check(profile, check_point)
  local mistakes, items, seen = {}, {}, {}
  for i, p in ipairs(profile.points) do
    local ok, item = pcall(check_one, profile, i, p, check_point)
    local name = type(p) == "table" and p.name
    if not ok then
      mistakes[#mistakes + 1] = tostring(item)
    elseif seen[name] then
      mistakes[#mistakes + 1] = format("profile %s: point %s is listed twice", profile.name or "?", name)
    else
      items[#items + 1] = item
    end
    if name ~= nil then seen[name] = true end
  end
  return mistakes, items
end

--- base.profile_with(profile, points) -> a copy of the profile with these points.
function M.profile_with(profile, points)
  local copy = {}
  for k, v in pairs(profile) do
    copy[k] = v
  end
  copy.points = points
  return copy
end

--- base.id(profile, opts, kind) -> opts.id, else the profile name made
--- topic-safe; raises when it is not lowercase letters, digits and _.
function M.id(profile, opts, kind)
  local id = opts.id or (profile.name or "device"):lower():gsub("[^%w_]", "_")
  if not id:match("^[a-z0-9_]+$") then
    error(format("%s device: id '%s' must be lowercase letters, digits and _", kind, id), 3)
  end
  return id
end

--- base.copy(p) -> a shallow copy of a point, for drivers that fill in facts.
function M.copy(p)
  local copy = {}
  for k, v in pairs(p) do
    copy[k] = v
  end
  return copy
end

return M
