-- moondog.devices.point: what a profile point accepts, checked before
-- anything is written to a device (see devices/README.md for the fields).
--
--   local point = require "moondog.devices.point"
--   point.kind(p)                 --> "number" | "integer" | "bool" | "enum" | "string"
--   point.check(p, value)         --> value, or nil, message, code
--   point.parse(p, "42")          --> 42, or nil, message, code (text from MQTT, a CLI...)
--   point.format(p, value)        --> "42", "ON", "auto" (the text form parse reads back)
--
-- Codes: "not_writable", "bad_type", "out_of_range", "bad_step",
-- "bad_option", "too_long", "bad_value". Drivers call check() in write();
-- the MQTT command layer calls parse() first, so that a refused command
-- never reaches a device. Text is data: parse() reads numbers with a strict
-- decimal pattern and never loads code.

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
  if p.step and p.step > 0 then
    local n = (v - (p.min or 0)) / p.step
    if math.abs(n - math.floor(n + 0.5)) > 1e-9 * math.max(1, math.abs(n)) then
      return fail("bad_step", "%s takes steps of %s from %s, got %s", label(p), tostring(p.step),
        tostring(p.min or 0), tostring(v))
    end
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
