-- moondog.sim.site: a simulated site: a plant (moondog.sim.plant) whose
-- devices are served over their real protocol from this engine, so that a
-- site script cannot tell them from hardware.
--
--   local sim = assert(require("moondog.sim.site").start(scenario))
--   local site = md.site.new { name = "home" }
--   sim:add_to(site, { poll = 1 })    -- site:add for each simulated device
--   ... sim.plant.grid_w, sim.plant.inverters.pv.output_w ...
--   sim:close()
--
-- A scenario is a table:
--   { name = "load drop", seed = 1, start = 12 * 3600 (plant seconds),
--     plant = { ...moondog.sim.plant spec... },
--     devices = {                                   -- what is served, by id
--       meter = { kind = "meter" },                 -- SunSpec meter, model 203
--       pv = { kind = "inverter", inverter = "pv", models = { 123, 704 } },
--     },
--     events = { { at = s, meter = "silent", duration = 30 },
--                { at = s, refuse_writes = "pv", duration = 60 } } }
-- `at` counts from the scenario's start.
--
-- Inverters are SunSpec devices with models 1, 103 (W, WH), 120, 121
-- (WMax) and the control models of `models`: 123 (WMaxLimPct,
-- WMaxLim_Ena, WMaxLimPct_RvrtTms: reverts to no limit) and/or 704
-- (WMaxLimPct, WMaxLimPctEna, WMaxLimPctRvrt, WMaxLimPctEnaRvrt,
-- WMaxLimPctRvrtTms: reverts to WMaxLimPctRvrt). A write of a limit, an
-- enable or a revert time sets the plant inverter's limit and restarts its
-- revert timer, as a real inverter does. The meter is model 203 (W, and
-- TotWhImp/TotWhExp); it shows the plant meter's last sample, so the
-- site reads it with the meter's own period and latency.
--
-- The plant runs on md.now(): a task advances it every `step` seconds
-- (default 0.1) and copies its state into the served registers. In
-- simulated time (md.clock) the whole site runs faster than real time and
-- repeats exactly.

local md = require "moondog"
local plant_mod = require "moondog.sim.plant"

local M = {}

local format = string.format

local Sim = {}
Sim.__index = Sim

local HISTORY_WH = 1000000 -- what the simulated counters held before the scenario

-- {===== inverters =====

-- The limit a SunSpec inverter applies now, from its control models.
local function apply_limit(inv, srv, models)
  local pct, opts = 100, {}
  if models[704] and srv:get(704, "WMaxLimPctEna") == "ENABLED" then
    pct = srv:get(704, "WMaxLimPct") or 100
    local rvrt = srv:get(704, "WMaxLimPctRvrtTms")
    if rvrt and rvrt > 0 then
      opts.revert = rvrt
      opts.revert_to = srv:get(704, "WMaxLimPctEnaRvrt") == "ENABLED" and srv:get(704, "WMaxLimPctRvrt")
        or 100
    end
  elseif models[123] and srv:get(123, "WMaxLim_Ena") == "ENABLED" then
    pct = srv:get(123, "WMaxLimPct") or 100
    local rvrt = srv:get(123, "WMaxLimPct_RvrtTms")
    if rvrt and rvrt > 0 then opts.revert, opts.revert_to = rvrt, 100 end
  end
  return inv:set_limit(math.max(0, math.min(100, pct)), opts)
end

local function serve_inverter(self, id, d)
  local inv = self.plant.inverters[d.inverter or id]
    or error(format("sim site: device %s: the plant has no inverter '%s'", id, d.inverter or id), 3)
  local models = { 1, 103, 120, 121 }
  local has = {}
  for _, m in ipairs(d.models or { 123 }) do
    models[#models + 1] = m
    has[m] = true
  end
  local values = {
    [1] = { Mn = "moondog", Md = "Simulated inverter", SN = "SIM-" .. id:upper(), Vr = "1.0" },
    [121] = { WMax = inv.rating },
    [120] = { WRtg = inv.rating },
  }
  if has[123] then values[123] = { WMaxLimPct = 100, WMaxLim_Ena = "DISABLED", WMaxLimPct_RvrtTms = 0 } end
  if has[704] then
    values[704] = { WMaxLimPct = 100, WMaxLimPctEna = "DISABLED", WMaxLimPctRvrt = 100,
                    WMaxLimPctEnaRvrt = "DISABLED", WMaxLimPctRvrtTms = 0 }
  end
  local srv, err, code = md.sunspec.serve("tcp://127.0.0.1:0", { models = models, values = values })
  if not srv then return nil, err, code end
  srv:on_write(function(model)
    if model == 123 or model == 704 then
      local ok, werr = apply_limit(inv, srv, has)
      if not ok then
        md.log.debug("sim %s: write refused: %s", id, tostring(werr))
        return "server_device_failure"
      end
    end
  end)
  local dev = { id = id, kind = "inverter", server = srv, profile = "sunspec_inverter", inv = inv }
  function dev.update()
    srv:set(103, "W", math.floor(inv.output_w + 0.5))
    srv:set(103, "WH", math.floor(HISTORY_WH + self.plant.pv_wh))
    srv:set(103, "DCW", math.floor(inv.output_w * 1.03 + 0.5))
  end
  return dev
end

-- }=====

-- {===== meter =====

local function serve_meter(self, id)
  local srv, err, code = md.sunspec.serve("tcp://127.0.0.1:0", {
    models = { 1, 203 },
    values = { [1] = { Mn = "moondog", Md = "Simulated grid meter", SN = "SIM-METER", Vr = "1.0" } },
    on_read = function()
      if self.meter_silent_until and self.plant.t < self.meter_silent_until then
        return "gateway_target_failed" -- the meter behind the gateway does not answer
      end
    end,
  })
  if not srv then return nil, err, code end
  local dev = { id = id, kind = "meter", server = srv, profile = "sunspec_meter" }
  function dev.update()
    local w = self.plant.meter:reading()
    srv:set(203, "W", math.floor(w + 0.5))
    -- a meter with a history: SunSpec accumulators read 0 as "not implemented"
    srv:set(203, "TotWhImp", math.floor(HISTORY_WH + self.plant.import_wh))
    srv:set(203, "TotWhExp", math.floor(HISTORY_WH + self.plant.export_wh))
  end
  return dev
end

-- }=====

-- {===== events and the clock =====

local function run_events(self)
  for _, e in ipairs(self.events) do
    if not e.done and self.plant.t >= self.t0 + e.at then
      e.done = true
      if e.meter == "silent" then
        self.meter_silent_until = self.plant.t + (e.duration or 30)
        md.log.info("sim: the meter goes silent for %g s", e.duration or 30)
      elseif e.refuse_writes then
        local inv = self.plant.inverters[e.refuse_writes]
        inv.refuse_writes = true
        md.log.info("sim: inverter %s refuses writes", e.refuse_writes)
        if e.duration then
          self.undo[#self.undo + 1] = {
            at = self.plant.t + e.duration, fn = function() inv.refuse_writes = nil end,
          }
        end
      end
    end
  end
  for i = #self.undo, 1, -1 do
    if self.plant.t >= self.undo[i].at then
      self.undo[i].fn()
      table.remove(self.undo, i)
    end
  end
end

local function tick(self)
  local t = self.t0 + (md.now() - self.now0)
  self.plant:run_until(t)
  run_events(self)
  for _, d in ipairs(self.devices) do d.update() end
  if self.on_tick then self.on_tick(self) end
end

-- }=====

--- sim:add_to(site [, opts]) adds every simulated device to the site,
--- with its profile and address; opts go to site:add (poll, ...).
function Sim:add_to(site, opts)
  for _, d in ipairs(self.devices) do
    assert(site:add(d.id, d.profile, d.server:url() .. "?unit=1", opts))
  end
end

--- sim:url(id) -> the Modbus address of a simulated device.
function Sim:url(id)
  for _, d in ipairs(self.devices) do
    if d.id == id then return d.server:url() .. "?unit=1" end
  end
  error("sim site: no device " .. tostring(id), 2)
end

--- sim:time() -> seconds since the scenario's start (plant time).
function Sim:time()
  return self.plant.t - self.t0
end

function Sim:close()
  if self.ticker then self.ticker:cancel() end
  for _, d in ipairs(self.devices) do d.server:close() end
  self.devices = {}
end
Sim.__close = Sim.close

--- site.start(scenario) -> simulated site, or nil, message, code.
function M.start(scenario)
  assert(type(scenario) == "table", "sim site: expected a scenario table")
  local spec = {}
  for k, v in pairs(scenario.plant or {}) do spec[k] = v end
  spec.start = scenario.start or spec.start or 12 * 3600
  spec.seed = scenario.seed or spec.seed
  local self = setmetatable({
    plant = plant_mod.new(spec), devices = {}, events = {}, undo = {}, name = scenario.name,
    on_tick = scenario.on_tick,
  }, Sim)
  self.t0, self.now0 = self.plant.t, md.now()
  for i, e in ipairs(scenario.events or {}) do self.events[i] = { at = e.at, meter = e.meter,
    duration = e.duration, refuse_writes = e.refuse_writes } end
  local ids = {}
  for id in pairs(scenario.devices or {}) do ids[#ids + 1] = id end
  table.sort(ids)
  for _, id in ipairs(ids) do
    local d = scenario.devices[id]
    local dev, err, code
    if d.kind == "meter" then
      dev, err, code = serve_meter(self, id)
    elseif d.kind == "inverter" then
      dev, err, code = serve_inverter(self, id, d)
    else
      error(format("sim site: device %s: kind must be \"meter\" or \"inverter\", got %s", id,
        tostring(d.kind)), 2)
    end
    if not dev then
      self:close()
      return nil, err, code
    end
    self.devices[#self.devices + 1] = dev
  end
  tick(self)
  self.ticker = md.every(scenario.step or 0.1, tick, self)
  self.ticker:name("sim site " .. tostring(scenario.name or ""))
  return self
end

return M
