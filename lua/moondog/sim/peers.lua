-- moondog.sim.peers: the export-limiting rules of two peers, written for
-- the same site and the same simulated plant as moondog's controller, so
-- that the benchmark (tests/bench/export_limit.lua) compares rules, not
-- harnesses. They are models of the published rules, not ports:
--
--   ode      open-dynamic-export: once a second, the export averaged over
--            the last 5 s and the PV output averaged the same way give
--            the PV the limit allows (pv + grid + limit); the setpoint
--            moves at most 10 percentage points per cycle.
--   openems  OpenEMS: once a second, setpoint = grid + PV + limit from the
--            latest values, each step capped at 20 % of the rating.
--
-- Both write the same percentage (of the total rating) to every inverter
-- (model 704's WMaxLimPct when the device has it, else model 123's) every
-- cycle the value changes by 0.1 point or more, and neither has a
-- meter-loss fallback beyond stopping writes: with no fresh meter value
-- (older than 3 s) they skip the cycle. Neither sets a revert timer.
--
--   local ctl = peers.start("ode", { site = site, grid = "meter.power",
--                                    inverters = { "pv" }, limit_w = 0 })
--   ctl:status()   --> {state = "ode", setpoint_pct =, writes =, write_errors =}
--   ctl:stop()

local md = require "moondog"

local M = {}

local RULES = {
  ode = { window = 5, max_step_pct = 10 },
  openems = { window = 0, max_step_pct = 20 },
}

local Peer = {}
Peer.__index = Peer

local function limit_points(sd)
  if sd._points.active_power_rate then -- a Growatt TL-X: whole percent, no enable flag
    return function(pct) return { active_power_rate = math.floor(pct) } end
  end
  if sd._points.der_limit and sd._v.der_limit ~= nil then
    return function(pct) return { der_limit = pct, der_limit_enabled = "ENABLED" } end
  end
  return function(pct) return { power_limit = math.floor(pct), power_limit_enabled = "ENABLED" } end
end

local function average(hist, now, window, key)
  local sum, n = 0, 0
  for i = #hist, 1, -1 do
    local h = hist[i]
    if now - h.t > window then break end
    sum, n = sum + h[key], n + 1
  end
  return n > 0 and sum / n or nil
end

local function cycle(self)
  local now = md.now()
  local grid, age, state = self.grid_dev:get(self.grid_point)
  if grid == nil or state ~= "ok" or (age or math.huge) > 3 then
    self.state = "no meter"
    return
  end
  local pv = 0
  for _, inv in ipairs(self.inverters) do pv = pv + (inv.sd.power or 0) end
  local hist = self.hist
  hist[#hist + 1] = { t = now, grid = grid, pv = pv }
  while #hist > 0 and now - hist[1].t > self.rule.window + 1 do table.remove(hist, 1) end
  if self.rule.window > 0 then
    grid = average(hist, now, self.rule.window, "grid")
    pv = average(hist, now, self.rule.window, "pv")
  end
  local pct = (pv + grid + self.limit_w) / self.rating_w * 100
  local max = self.rule.max_step_pct
  pct = math.max(self.setpoint_pct - max, math.min(self.setpoint_pct + max, pct))
  pct = math.max(0, math.min(100, pct))
  self.setpoint_pct = pct
  self.state = pct < 100 and "limiting" or "normal"
  if self.written_pct and math.abs(pct - self.written_pct) < 0.1 then return end
  for _, inv in ipairs(self.inverters) do
    local ok = inv.sd:write(inv.points(math.floor(pct * 10) / 10))
    self.writes = self.writes + 1
    if not ok then self.write_errors = self.write_errors + 1 end
  end
  self.written_pct = pct
end

--- peers.start(rule, {site, grid, inverters, limit_w}) -> controller.
function M.start(rule, opts)
  local r = RULES[rule] or error("peers.start: rule must be 'ode' or 'openems', got " .. tostring(rule), 2)
  local dev, point = tostring(opts.grid):match("^([a-z0-9_]+)%.([a-z0-9_]+)$")
  local self = setmetatable({
    rule = r, name = rule, site = opts.site, grid_dev = opts.site[dev], grid_point = point,
    limit_w = opts.limit_w, inverters = {}, hist = {}, setpoint_pct = 100, writes = 0,
    write_errors = 0, state = "starting", rating_w = 0,
  }, Peer)
  self.task = md.spawn(function()
    for _, x in ipairs(opts.inverters) do
      local id = type(x) == "table" and x.id or x
      local sd = opts.site[id]
      local rating = type(x) == "table" and x.rating or sd.max_power or sd:wait("max_power", { timeout = 60 })
      if not rating then error("peer " .. rule .. ": inverter " .. id .. " has no rating", 0) end
      sd:refresh()
      self.inverters[#self.inverters + 1] = { sd = sd, points = limit_points(sd) }
      self.rating_w = self.rating_w + rating
    end
    local next_t = md.now()
    while true do
      cycle(self)
      next_t = next_t + 1
      md.sleep(math.max(0, next_t - md.now()))
    end
  end)
  self.task:name("peer " .. rule)
  return self
end

function Peer:status()
  return { state = self.state, setpoint_pct = self.setpoint_pct, writes = self.writes,
           write_errors = self.write_errors, limit_w = self.limit_w, rating_w = self.rating_w,
           excursions = 0 }
end

function Peer:stop()
  self.task:cancel()
end

return M
