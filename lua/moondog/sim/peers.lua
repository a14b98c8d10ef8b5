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
-- And one that no real controller can be, for the floors the benchmark
-- prints beside each figure:
--
--   oracle   acts on each new meter sample as moondog's controller does
--            (site:wait, same transport, same bus), but knows the plant's
--            true house load and battery power at the moment that sample
--            was taken (opts.truth(t): t the engine time the site read
--            it; moondog.sim.run gives it) and writes the exact PV the
--            limit allows, house + battery + limit, at once: no margin,
--            deadband, slew or trim. Far from it (2 % of the rating) it
--            goes there as fast as the plant can: 0 % (or 100 %) first,
--            the exact limit when the inverters' lag, which it knows,
--            reaches it; a controller that only aimed exactly would be
--            beaten by one that over-cuts, and a floor must not be.
--            What it still exports over the limit or curtails beyond
--            need is the plant's own: the meter's period, the poll, the
--            bus, the inverter's lag and the limit register's
--            resolution (rounded down, as the peers do).
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
  oracle = { oracle = true },
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

-- Returns whether every inverter took it (the peers go on as if they had).
local function write(self, pct)
  local t0, all = md.now(), true
  for _, inv in ipairs(self.inverters) do
    local ok = inv.sd:write(inv.points(math.floor(pct * 10) / 10))
    self.writes = self.writes + 1
    if not ok then self.write_errors, all = self.write_errors + 1, false end
  end
  self.written_pct, self.took = pct, md.now() - t0
  return all
end

-- The oracle writes again on the next sample what an inverter refused.
local function oracle_write(self, pct)
  if not write(self, pct) then self.written_pct = nil end
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
  write(self, pct)
end

-- The oracle's move on a sample: the PV the limit allows (from the truth
-- at the sample) and, when the inverters are far from it, the fastest way
-- there: full travel (0 % or 100 %) now and the exact limit when their
-- first-order lag reaches it (at tau * ln(gap now / gap at the target)),
-- as a time-optimal controller of a known lag does, where a write is
-- quick enough to time it. Returns the limit to write now, and the limit
-- and engine time of the switch (or nil).
local function oracle_move(self, t, plant)
  local margin = self.margin_w
  -- anticipating: the margin only while the house's next noise change is
  -- near (it knows the schedule; between changes the house stands still)
  if self.anticipate_s and not (t.next_noise and t.next_noise <= t.t + self.anticipate_s) then margin = 0 end
  local target_w = t.house_w + t.battery_w + self.limit_w - margin
  local pct = math.max(0, math.min(100, target_w / self.rating_w * 100))
  local out, avail, tau = 0, 0, 0
  for _, inv in pairs(plant.inverters) do
    out, avail, tau = out + inv.output_w, avail + inv.available_w, math.max(tau, inv.tau)
    if inv.ramp then return pct end -- a ramp limit: no closed form here; the exact limit
  end
  -- a write that takes long (a busy 9600-baud bus: seconds) cannot time a
  -- switch; the exact limit at once is the best there
  if not self.took or self.took > 0.2 then return pct end
  local goal = math.min(avail, math.max(0, target_w))
  local far = 0.02 * self.rating_w
  if out - goal > far and goal > 0 then
    return 0, pct, md.now() + tau * math.log(out / goal)
  elseif goal - out > far and avail > goal + 1 then
    return 100, pct, md.now() + tau * math.log((avail - out) / (avail - goal))
  end
  return pct
end

-- The oracle: on each new meter sample, the truth at the moment the
-- sample was taken (see the header).
local function oracle(self, truth, plant)
  local dev, point = self.grid_dev, self.grid_point
  local last_t = 0
  local switch_pct, switch_at
  while true do
    local wait = 3
    if switch_at then wait = math.max(0.001, math.min(wait, switch_at - md.now())) end
    local v, age, vstate = dev:wait(point, { newer_than = last_t, timeout = wait })
    if switch_at and md.now() >= switch_at - 0.001 then
      oracle_write(self, switch_pct)
      switch_pct, switch_at = nil, nil
    end
    if v == nil and vstate ~= "timeout" then
      self.state = "no meter"
      md.sleep(0.1)
    elseif v ~= nil and (vstate ~= "ok" or (age or math.huge) > 3) then
      self.state = "no meter"
    elseif v ~= nil then
      last_t = md.now() - age
      local t = truth(last_t)
      local now_pct, s_pct, s_at = oracle_move(self, t, plant)
      self.setpoint_pct = s_pct or now_pct
      self.state = self.setpoint_pct < 100 and "limiting" or "normal"
      if not self.written_pct or math.abs(now_pct - self.written_pct) >= 0.1 then
        oracle_write(self, now_pct)
        if s_pct then
          -- the switch from the output once the write is in, and as early
          -- as that write took (the switch's write takes as long)
          local _, _, at2 = oracle_move(self, t, plant)
          if at2 then
            s_at = at2 - self.took
          else
            oracle_write(self, s_pct)
            s_pct = nil
          end
        end
      end
      switch_pct, switch_at = s_pct, s_pct and s_at
    end
  end
end

--- peers.start(rule, {site, grid, inverters, limit_w [, truth, plant]})
--- -> controller.
--- rule "oracle" needs truth(t) -> {house_w =, battery_w =}: the plant's
--- true values when the meter sample the site read at engine time t was
--- taken, and the plant (moondog.sim.plant: its inverters' output, lag
--- and available PV now); margin_w (default 0) makes it aim that far
--- under the limit, to trace what a margin buys (over-limit energy) and
--- costs (curtailment) with perfect knowledge; anticipate_s (default
--- none) applies that margin only when the house's next noise change
--- (the plant's schedule, which a controller could learn) is due within
--- that many seconds of the sample, and aims at the exact limit between
--- changes: what predicting the noise's period buys (docs/control.md).
function M.start(rule, opts)
  local r = RULES[rule]
    or error("peers.start: rule must be 'ode', 'openems' or 'oracle', got " .. tostring(rule), 2)
  if r.oracle and (type(opts.truth) ~= "function" or type(opts.plant) ~= "table") then
    error("peers.start: the oracle needs truth = function(t) and the plant (moondog.sim.run gives them)", 2)
  end
  local dev, point = tostring(opts.grid):match("^([a-z0-9_]+)%.([a-z0-9_]+)$")
  local self = setmetatable({
    rule = r, name = rule, site = opts.site, grid_dev = opts.site[dev], grid_point = point,
    limit_w = opts.limit_w, inverters = {}, hist = {}, setpoint_pct = 100, writes = 0,
    write_errors = 0, state = "starting", rating_w = 0, margin_w = opts.margin_w or 0,
    anticipate_s = opts.anticipate_s,
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
    if r.oracle then return oracle(self, opts.truth, opts.plant) end
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
