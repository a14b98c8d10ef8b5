-- moondog.sim.plant: a model of a site's physics, for simulators, tests and
-- benchmarks: house load, PV, inverters with their response and limit
-- settings, a battery, and a grid meter that samples. Pure Lua, no I/O:
-- servers (SunSpec, Modbus profiles, RCT) read it and write its settings,
-- so that a site script cannot tell it from hardware.
--
--   local plant = require("moondog.sim.plant").new {
--     seed = 1,
--     house = { base = 400, noise = 50, steps = { { at = 43200, w = -6000 } } },
--     pv = { peak = 6000, sunrise = 6 * 3600, sunset = 20 * 3600, clouds = { ... } },
--     inverters = { pv = { rating = 6000, tau = 1, ramp = nil, share = 1 } },
--     battery = { capacity_wh = 10000, max_w = 3000, soc = 50 },
--     meter = { period = 1, latency = 0 },
--   }
--   plant:run_until(t)         -- advance the model to time t (seconds of the day)
--   plant.grid_w               -- > 0 import, < 0 export, the true value now
--   plant.meter:reading()      -- what the meter shows now: its last sample
--   plant.inverters.pv:set_limit(50, { revert = 60, revert_to = 100 })
--
-- Sign conventions: grid_w > 0 imports; battery_w > 0 charges; every other
-- power is >= 0. The battery follows battery.setpoint_w (W, > 0 charges)
-- at once, within max_w, min_soc and 100 %, and counts charged_wh and
-- discharged_wh.
--
-- The inverter. Its output follows min(available PV, limit) as a
-- first-order lag with time constant tau (seconds; 95 % of a step after
-- 3 tau), bounded by a ramp rate (W/s) when one is given. A limit is a
-- percentage of the rating, as SunSpec's WMaxLimPct. A limit written with a
-- revert time goes back to its revert level when the time passes without a
-- new write: SunSpec model 123 reverts to no limit (100 %), model 704 to
-- WMaxLimPctRvrt. That is what keeps a site safe when its controller stops.
-- inv.export_limit_w (nil: none) is the inverter's own export control, as
-- a Growatt's with a meter of its own: it also cuts its output by what the
-- grid exports beyond that many W.
--
-- The model advances in steps of at most `dt` (default 0.1 s) so that the
-- lag is integrated accurately whatever the caller's step; noise and clouds
-- come from one seeded generator, so a scenario repeats exactly.

local M = {}

local exp = math.exp

-- {===== random numbers =====

-- A small seeded generator (xorshift32) independent of math.random, so that
-- a plant repeats whatever else the script draws.
local function rng(seed)
  local x = (math.tointeger(seed) or 1) & 0xffffffff
  if x == 0 then x = 0x9e3779b9 end
  return function()
    x = x ~ ((x << 13) & 0xffffffff)
    x = x ~ (x >> 17)
    x = x ~ ((x << 5) & 0xffffffff)
    return x / 0x100000000
  end
end

-- }=====

-- {===== inverter =====

local Inverter = {}
Inverter.__index = Inverter

--- inv:set_limit(pct [, {revert = s, revert_to = pct}]) -> true, or nil,
--- message, code. pct of the rating, 0..100; nil or 100: no limit.
function Inverter:set_limit(pct, opts)
  opts = opts or {}
  if self.refuse_writes then
    return nil, "the inverter refuses writes (scenario fault)", "server_device_failure"
  end
  if pct ~= nil and (type(pct) ~= "number" or pct < 0 or pct > 100) then
    error("set_limit: pct must be 0..100 or nil", 2)
  end
  self.limit_pct = pct or 100
  self.limit_set_at = self.plant.t
  self.revert_s = opts.revert
  self.revert_to = opts.revert_to or 100
  self.writes = self.writes + 1
  return true
end

--- inv:limit_w() -> the limit in W now (the rating when none).
function Inverter:limit_w()
  return self.rating * self.limit_pct / 100
end

local function inverter_step(inv, dt, available)
  if inv.revert_s and inv.revert_s > 0 and inv.plant.t - inv.limit_set_at >= inv.revert_s then
    inv.limit_pct, inv.revert_s = inv.revert_to, nil
    inv.reverts = inv.reverts + 1
  end
  inv.available_w = math.min(available, inv.rating)
  local target = math.min(inv.available_w, inv:limit_w())
  if inv.export_limit_w then
    -- its own export control, from its own meter at the grid connection
    -- (the grid power of the step before): cut by what is exported beyond
    target = math.min(target, math.max(0, inv.output_w + inv.plant.grid_w + inv.export_limit_w))
  end
  local out = inv.output_w
  local step = (target - out) * (1 - exp(-dt / inv.tau))
  if inv.ramp then
    local max = inv.ramp * dt
    if step > max then step = max elseif step < -max then step = -max end
  end
  inv.output_w = out + step
end

-- }=====

-- {===== meter =====

local Meter = {}
Meter.__index = Meter

--- meter:reading() -> the grid power the meter shows now (its last sample,
--- latency included), and the plant time it was measured at.
function Meter:reading()
  return self.shown_w, self.shown_at
end

local EPS = 1e-6 -- steps of 0.1 s do not add up to whole seconds exactly

local function meter_step(m, t, grid_w)
  if t >= m.next_sample - EPS then
    m.pending[#m.pending + 1] = { at = m.next_sample, w = grid_w }
    m.next_sample = m.next_sample + m.period
  end
  while m.pending[1] and t >= m.pending[1].at + m.latency - EPS do
    local s = table.remove(m.pending, 1)
    if not m.silent then m.shown_w, m.shown_at = s.w, s.at end
    m.samples = m.samples + 1
  end
end

-- }=====

-- {===== house, PV, battery =====

local function house_w(p, t)
  local h = p.house
  local w = h.base
  for _, s in ipairs(h.steps) do
    if t >= s.at and (s["until"] == nil or t < s["until"]) then w = w + s.w end
  end
  if h.noise > 0 then
    if t >= h.next_noise then
      h.noise_w = (p.random() * 2 - 1) * h.noise
      h.next_noise = t + h.noise_period
    end
    w = w + h.noise_w
  end
  return math.max(0, w)
end

-- Clear-sky PV: a sine between sunrise and sunset, times the cloud factor.
local function pv_w(p, t)
  local s = p.pv
  local day = t % 86400
  if day <= s.sunrise or day >= s.sunset then return 0 end
  local clear = s.peak * math.sin(math.pi * (day - s.sunrise) / (s.sunset - s.sunrise))
  local factor = 1
  for _, c in ipairs(s.clouds) do
    if t >= c.at and t < c.at + c.duration then factor = math.min(factor, c.factor) end
  end
  return clear * factor
end

local function battery_step(p, dt)
  local b = p.battery
  if not b then return 0 end
  local w = b.setpoint_w or 0
  w = math.max(-b.max_w, math.min(b.max_w, w))
  if (w > 0 and b.soc >= 100) or (w < 0 and b.soc <= b.min_soc) then w = 0 end
  b.soc = math.max(0, math.min(100, b.soc + w * dt / 3600 / b.capacity_wh * 100))
  b.w = w
  if w > 0 then
    b.charged_wh = b.charged_wh + w * dt / 3600
  else
    b.discharged_wh = b.discharged_wh - w * dt / 3600
  end
  return w
end

-- }=====

-- {===== the plant =====

local Plant = {}
Plant.__index = Plant

local function step(p, dt)
  p.t = p.t + dt
  local available = pv_w(p, p.t)
  local total_rating = 0
  for _, inv in pairs(p.inverters) do total_rating = total_rating + inv.rating end
  local pv_out = 0
  for _, inv in pairs(p.inverters) do
    inverter_step(inv, dt, available * inv.rating / total_rating)
    pv_out = pv_out + inv.output_w
  end
  p.pv_available_w = available
  p.pv_w = pv_out
  p.house_w = house_w(p, p.t)
  p.battery_w = battery_step(p, dt)
  p.grid_w = p.house_w + p.battery_w - pv_out
  local e = p.grid_w * dt / 3600
  if e > 0 then p.import_wh = p.import_wh + e else p.export_wh = p.export_wh - e end
  p.pv_wh = p.pv_wh + pv_out * dt / 3600
  meter_step(p.meter, p.t, p.grid_w)
end

--- plant:run_until(t): advance the model to time t (seconds), in steps of
--- at most plant.dt.
function Plant:run_until(t)
  local n = 0
  while self.t < t - 1e-9 do
    step(self, math.min(self.dt, t - self.t))
    n = n + 1
    if n > 1e7 then error("plant:run_until: more than 10 million steps; use a larger dt", 2) end
  end
end

local function defaults(t, d)
  local out = {}
  for k, v in pairs(d) do out[k] = v end
  for k, v in pairs(t or {}) do out[k] = v end
  return out
end

--- plant.new(spec) -> plant at time spec.start (seconds, default 0). See
--- the file's header for spec.
function M.new(spec)
  spec = spec or {}
  local p = setmetatable({
    t = spec.start or 0, dt = spec.dt or 0.1, random = rng(spec.seed or 1), inverters = {},
    import_wh = 0, export_wh = 0, pv_wh = 0, grid_w = 0, pv_w = 0, house_w = 0, battery_w = 0,
    pv_available_w = 0,
  }, Plant)
  p.house = defaults(spec.house, { base = 400, noise = 0, noise_period = 5, steps = {} })
  p.house.noise_w, p.house.next_noise = 0, p.t
  p.pv = defaults(spec.pv, { peak = 5000, sunrise = 6 * 3600, sunset = 20 * 3600, clouds = {} })
  for id, inv in pairs(spec.inverters or { pv = {} }) do
    local x = defaults(inv, { rating = 5000, tau = 1 })
    if x.tau <= 0 then error("plant: inverter " .. id .. ": tau must be > 0", 2) end
    p.inverters[id] = setmetatable({
      id = id, plant = p, rating = x.rating, tau = x.tau, ramp = x.ramp, output_w = x.output or 0,
      limit_pct = 100, limit_set_at = p.t, writes = 0, reverts = 0, available_w = 0,
      refuse_writes = x.refuse_writes,
    }, Inverter)
  end
  if spec.battery then
    p.battery = defaults(spec.battery, { capacity_wh = 10000, max_w = 3000, soc = 50, min_soc = 5 })
    p.battery.w, p.battery.charged_wh, p.battery.discharged_wh = 0, 0, 0
  end
  local m = defaults(spec.meter, { period = 1, latency = 0 })
  p.meter = setmetatable({ period = m.period, latency = m.latency, next_sample = p.t, pending = {},
    samples = 0, shown_w = 0, shown_at = p.t }, Meter)
  return p
end

-- }=====

return M
