-- moondog.site.policy: what a point's value is when its device is not
-- answering, and which readings are not values at all. Pure Lua, no I/O.
--
-- A point declares (devices/README.md):
--   offline = "zero" | "hold" | "unavailable"   while its device is offline
--   asleep  = "zero" | "hold" | "unavailable"   while its device sleeps
--   resets  = true     a total that may legitimately go down (a daily counter)
-- Defaults follow the point's class, so that profiles rarely need them:
--
--   class                               offline        asleep
--   energy totals (state_class total*)  hold           hold
--   power, current (flows)              unavailable    zero
--   anything else                       unavailable    unavailable
--
-- Why: an inverter asleep at night produces nothing, so its power is 0,
-- not unknown; its energy total is what it was at dusk. A device that is
-- offline is unknown: a controller must not mistake "no meter" for "0 W".
-- Totals are held in both cases because Home Assistant's Energy dashboard
-- turns any drop of a total_increasing sensor into a counter reset and
-- counts the next reading as new energy.

local M = {}

local flows = {
  power = true, current = true, apparent_power = true, reactive_power = true,
}

local choices = { zero = true, hold = true, unavailable = true }

--- policy.is_total(p) -> true for an energy-style total that never goes down.
function M.is_total(p)
  return p.state_class == "total_increasing" or p.state_class == "total" or p.monotonic == true
end

--- policy.monotonic(p) -> true when a lower reading must be held back.
function M.monotonic(p)
  return (p.state_class == "total_increasing" or p.monotonic == true) and not p.resets
end

local function default(p, state)
  if M.is_total(p) then return "hold" end
  if state == "asleep" and flows[p.device_class] then return "zero" end
  return "unavailable"
end

--- policy.rule(p, state) -> "zero" | "hold" | "unavailable" for a device
--- state "offline" or "asleep". Raises on a misspelt rule (profile bug).
function M.rule(p, state)
  local r = p[state]
  if r == nil then return default(p, state) end
  if not choices[r] then
    error(string.format("point %s: %s must be \"zero\", \"hold\" or \"unavailable\", got %s",
      tostring(p.name), state, tostring(r)), 0)
  end
  return r
end

--- policy.check(p): raises when the point's rules are not valid.
function M.check(p)
  M.rule(p, "offline")
  M.rule(p, "asleep")
end

--- policy.apply(p, state, held) -> the value a point shows while its device
--- is in `state` ("offline" or "asleep"), given the last good value held.
function M.apply(p, state, held)
  local r = M.rule(p, state)
  if r == "zero" then return 0 end
  if r == "hold" then return held end
  return nil
end

--- policy.is_number_value(v) -> false for NaN and infinities: a float meter
--- that has no reading yet sends NaN, and that is not a value.
function M.is_number_value(v)
  return type(v) ~= "number" or (v == v and v ~= math.huge and v ~= -math.huge)
end

-- Failure codes that mean "nobody answered" rather than "something answered
-- wrongly": for a device that sleeps, these mean it is asleep.
local no_answer = {
  timeout = true, connect_timeout = true, refused = true, unreachable = true, dns = true,
  connection_lost = true, not_connected = true, gateway_target_failed = true, closed = false,
}

--- policy.is_no_answer(code) -> true when the failure is silence.
function M.is_no_answer(code)
  return no_answer[code] == true
end

return M
