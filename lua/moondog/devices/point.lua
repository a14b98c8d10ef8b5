-- moondog.devices.point: what a profile point accepts, checked before
-- anything is written to a device (see devices/README.md for the fields).
--
--   local point = require "moondog.devices.point"
--   point.kind(p)                 --> "number" | "integer" | "bool" | "enum" | "string"
--   point.check(p, value)         --> value, or nil, message, code
--   point.parse(p, "42")          --> 42, or nil, message, code (text from MQTT, a CLI...)
--   point.format(p, value)        --> "42", "ON", "auto" (the text form parse reads back)
--   point.check_constraints(profile, name, value, current)  --> value, or nil, message, "constraint"
--   local gate = point.throttle(1)  -- at most one write per key a second, coalescing
--
-- Codes: "not_writable", "bad_type", "out_of_range", "bad_step",
-- "bad_option", "too_long", "bad_value", "constraint". Drivers call check() in write();
-- the MQTT command layer calls parse() first, so that a refused command
-- never reaches a device. Text is data: parse() reads numbers with a strict
-- decimal pattern and never loads code.

local mdcore = require "moondog.core"

local M = {}

local format = string.format

--- The value kind of a point: its `type`, else "enum" with options, else "number".
function M.kind(p)
  if p.type then return p.type end
  if p.options then return "enum" end
  return "number"
end

local function label(p)
  return format("point %s", tostring(p.name))
end

local function fail(code, fmt, ...)
  return nil, format(fmt, ...), code
end

-- Decimal places of x as a person wrote it: 0.1 -> 1, 5 -> 0, 2.5e-3 -> 4.
local function decimals(x)
  local s = format("%.15g", math.abs(x))
  local mant, exp = s:match("^([%d.]+)e([-+]%d+)$")
  local frac = (mant or s):match("%.(%d+)$") or ""
  return math.max(0, #frac - (tonumber(exp) or 0))
end

-- Exactly on the grid min + k*step (issue 17: a tolerance let 4.9999999999
-- and 1e-320 through). v may carry no more decimal places than the step and
-- min, and must equal the nearest grid value at that precision.
local function on_grid(v, min, step)
  local d = math.min(math.max(decimals(step), decimals(min)), 17)
  local fmt = "%." .. d .. "f"
  if tonumber(format(fmt, v)) ~= v then return false end
  local k = math.floor((v - min) / step + 0.5)
  return tonumber(format(fmt, min + k * step)) == v
end

local function check_number(p, v, kind)
  if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then
    return fail("bad_type", "%s takes a number, got %s", label(p), tostring(v))
  end
  if kind == "integer" then
    local i = math.tointeger(v)
    if not i then
      return fail("bad_type", "%s takes a whole number, got %s", label(p), tostring(v))
    end
    v = i
  end
  if (p.min and v < p.min) or (p.max and v > p.max) then
    return fail("out_of_range", "%s takes %s..%s, got %s", label(p), tostring(p.min or "-inf"),
      tostring(p.max or "inf"), tostring(v))
  end
  if p.step and p.step > 0 and not on_grid(v, p.min or 0, p.step) then
    return fail("bad_step", "%s takes steps of %s from %s, got %s", label(p), tostring(p.step),
      tostring(p.min or 0), format("%.17g", v))
  end
  return v
end

--- Check a value for writing to point p: the point must be writable and the
--- value of its kind, within min/max, on the step grid, one of the options.
function M.check(p, value)
  if not p.writable then
    return fail("not_writable", "%s is read-only", label(p))
  end
  local kind = M.kind(p)
  if kind == "number" or kind == "integer" then
    return check_number(p, value, kind)
  elseif kind == "bool" then
    if type(value) ~= "boolean" then
      return fail("bad_type", "%s takes true or false, got %s", label(p), tostring(value))
    end
    return value
  elseif kind == "enum" then
    for _, option in ipairs(p.options or {}) do
      if value == option then return value end
    end
    return fail("bad_option", "%s takes one of %s, got %s", label(p), table.concat(p.options or {}, ", "),
      tostring(value))
  elseif kind == "string" then
    if type(value) ~= "string" then
      return fail("bad_type", "%s takes text, got %s", label(p), type(value))
    end
    if p.max_length and #value > p.max_length then
      return fail("too_long", "%s takes at most %d bytes, got %d", label(p), p.max_length, #value)
    end
    return value
  end
  return fail("bad_type", "%s has an unknown type '%s'", label(p), tostring(kind))
end

local truthy = { on = true, ["true"] = true, ["1"] = true }
local falsy = { off = true, ["false"] = true, ["0"] = true }

--- Parse the text form of a value (an MQTT payload) and check it.
function M.parse(p, text)
  if type(text) ~= "string" then
    return fail("bad_value", "%s: expected text, got %s", label(p), type(text))
  end
  if not p.writable then
    return fail("not_writable", "%s is read-only", label(p))
  end
  local kind = M.kind(p)
  local s = text:match("^%s*(.-)%s*$")
  local value
  if kind == "number" or kind == "integer" then
    if #s > 40 or not (s:match("^[-+]?%d+%.?%d*$") or s:match("^[-+]?%d*%.%d+$")
        or s:match("^[-+]?%d+%.?%d*[eE][-+]?%d+$") or s:match("^[-+]?%d*%.%d+[eE][-+]?%d+$")) then
      return fail("bad_value", "%s takes a decimal number, got '%s'", label(p), text:sub(1, 40))
    end
    value = tonumber(s)
    if kind == "integer" and math.tointeger(value) then value = math.tointeger(value) end
  elseif kind == "bool" then
    local lower = s:lower()
    if truthy[lower] then
      value = true
    elseif falsy[lower] then
      value = false
    else
      return fail("bad_value", "%s takes ON or OFF, got '%s'", label(p), text:sub(1, 40))
    end
  else
    value = kind == "enum" and s or text
  end
  return M.check(p, value)
end

--- point.check_constraints(profile, name, value, current) -> value, or nil,
--- message, "constraint". profile.constraints lists rules between points,
--- { "battery_soc_min", "<", "battery_soc_max" } (ops <, <=, >, >=, ~=);
--- a write of `value` to `name` must keep every rule that names it true,
--- with current(other) giving the other point's value now (nil: unknown,
--- the rule is not checked). current is called only when a rule applies.
local ops = {
  ["<"] = function(a, b) return a < b end, ["<="] = function(a, b) return a <= b end,
  [">"] = function(a, b) return a > b end, [">="] = function(a, b) return a >= b end,
  ["~="] = function(a, b) return a ~= b end,
}

function M.check_constraints(profile, name, value, current)
  for _, rule in ipairs(profile.constraints or {}) do
    local a, op, b = rule[1], rule[2], rule[3]
    if a == name or b == name then
      local other = current(a == name and b or a)
      if other ~= nil then
        local va, vb = a == name and value or other, b == name and value or other
        if not ops[op](va, vb) then
          return fail("constraint", "%s = %s would break the rule %s %s %s (%s is %s)", name,
            M.format(nil, value), a, op, b, a == name and b or a, M.format(nil, other))
        end
      end
    end
  end
  return value
end

--- point.check_constraint_list(profile, points_by_name): raises on a rule
--- that names an unknown point or operator (a profile is part of the program).
function M.check_constraint_list(profile, items)
  for i, rule in ipairs(profile.constraints or {}) do
    if type(rule) ~= "table" or not ops[rule[2]] or not items[rule[1]] or not items[rule[3]] then
      error(format("profile %s: constraints[%d] must be { point, op, point } with op one of "
        .. "<, <=, >, >=, ~= and points of the profile", profile.name or "?", i), 0)
    end
  end
end

--- point.throttle(interval) -> gate. gate:submit(key, value, write,
--- superseded): write(value) runs now, in the calling task, when key's last
--- write began at least `interval` seconds ago; else the value waits and a
--- task of the gate writes it when the interval is over. A value that waits
--- is replaced by a newer one for the same key (superseded(old) is called):
--- a burst of commands costs the device one write per interval, of the last
--- value. Returns "now" or "later". gate:close() drops what waits.
local Gate = {}
Gate.__index = Gate

function M.throttle(interval)
  return setmetatable({ interval = interval, last = {}, waiting = {} }, Gate)
end

function Gate:submit(key, value, write, superseded)
  local now = mdcore.now()
  local w = self.waiting[key]
  if w then
    if w.superseded then w.superseded(w.value) end
    w.value, w.write, w.superseded = value, write, superseded
    return "later"
  end
  local last = self.last[key]
  if not last or now - last >= self.interval then
    self.last[key] = now
    write(value)
    return "now"
  end
  w = { value = value, write = write, superseded = superseded }
  self.waiting[key] = w
  w.task = mdcore.spawn(function()
    mdcore.sleep(last + self.interval - mdcore.now())
    self.waiting[key] = nil
    self.last[key] = mdcore.now()
    w.write(w.value)
  end)
  return "later"
end

function Gate:close()
  for key, w in pairs(self.waiting) do
    w.task:cancel()
    self.waiting[key] = nil
  end
end

--- The text form of a value: numbers without trailing zeros, booleans as
--- ON/OFF (Home Assistant's defaults), others as text.
function M.format(_, value)
  local t = type(value)
  if t == "boolean" then return value and "ON" or "OFF" end
  if t == "number" then
    if math.type(value) == "integer" then return format("%d", value) end
    if value ~= value or value == math.huge or value == -math.huge then return tostring(value) end
    if value == math.floor(value) and math.abs(value) < 2^53 then
      return format("%d", math.tointeger(value))
    end
    return format("%.15g", value)
  end
  return tostring(value)
end

return M
