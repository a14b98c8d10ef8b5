-- moondog.sim.run: a scenario run: a simulated site (moondog.sim.site), an
-- md.site reading it, a controller on top (moondog's export limiter, or a
-- peer's rule from moondog.sim.peers, or none), and a recorder that keeps
-- one row per simulated second and the figures of the run. `moondog sim`,
-- the benchmark and the tests all run scenarios through here.
--
--   local run = require "moondog.sim.run"
--   local r = assert(run.start(scenario, { controller = "moondog" }))
--   md.sleep(scenario.seconds)
--   r:metrics()   --> {longest_excursion_s, over_wh, curtailed_extra_wh, writes_per_h, ...}
--   r:write_csv(path); r:close()
--
-- The recorder samples the plant's true state on every plant step (0.1 s):
--   excursion    export above limit + tolerance (the controller's: 2 % of
--                the rating, at least 50 W); the longest one, in seconds
--   over_wh      energy exported above the limit
--   curtailed_extra_wh  PV held back beyond what the limit required: the
--                actual curtailment (available - output) minus the ideal
--                max(0, available - house - battery - limit), when positive
--   curtailed_failsafe_wh  the part of it while the controller was in
--                fail-safe (the issue requires the fail-safe output, the
--                limit itself, whatever the house takes: no controller
--                with a fail-safe can keep this part; the peers have none)
--   writes       limit writes the inverters took (the plant counts them)
--   steady writes  writes per 10 s in the seconds when nothing changed:
--                in the last 30 s the ideal limit (house + battery +
--                limit) and the ideal PV output (that, capped by the
--                available PV) each moved less than the tolerance. Both:
--                the output alone hides a house step when a cloud passes
--                at the same time (the cap moves the other way), the limit
--                alone a cloud.
--
-- MQTT (opts.mqtt = "host:port", or true: start mosquitto here; also when
-- the scenario says mqtt = true): the site is published with discovery.
-- A broker this run started is stopped and started again by the
-- scenario's broker events. MQTT is not on the control path, so the
-- control figures do not depend on it. MQTT needs real time for now: an
-- MQTT client holds the loop for its whole life (core/mqtt.c,
-- md_loop_hold), and a held loop never jumps its simulated clock, so in
-- simulated time run.start refuses mqtt with code "simulated" (the fix
-- belongs in core: a hold that keeps the loop alive without stopping the
-- clock, for sockets the loop itself serves).
--
-- floor_s is the plant's own floor for an excursion: one meter period
-- plus 3 tau of the slowest inverter.

local md = require "moondog"
local broker = require "moondog.mqtt.broker"
local simsite = require "moondog.sim.site"
local peers = require "moondog.sim.peers"
local devices = require "moondog.devices"

local M = {}

local format = string.format

local Run = {}
Run.__index = Run

local function ids_of_kind(scenario, kind)
  local ids = {}
  for id, d in pairs(scenario.devices or {}) do
    if d.kind == kind then ids[#ids + 1] = id end
  end
  table.sort(ids)
  return ids
end

-- The plant's recent truth, for the oracle (moondog.sim.peers): its house
-- load, battery power and next noise change at each step, and when each meter sample was
-- taken and shown. Trimmed in bulk, so a day costs no more than a minute.
local KEEP = 600

local function keep(list, item)
  local n = #list + 1
  list[n] = item
  if n > 2 * KEEP then
    table.move(list, n - KEEP + 1, n, 1)
    for i = n, KEEP + 1, -1 do list[i] = nil end
  end
end

local function remember(self, p)
  keep(self.truth_hist, { t = p.t, house_w = p.house_w, battery_w = p.battery_w,
    next_noise = p.house.noise > 0 and p.house.next_noise or nil })
  local _, at = p.meter:reading()
  local ms = self.meter_samples
  if not ms[#ms] or ms[#ms].at ~= at then keep(ms, { at = at, shown = p.t }) end
end

-- truth(t): the plant's house load and battery power when the meter sample
-- that the site read at engine time t was taken (the last one shown then).
local function truth(self, t)
  local sim = self.sim
  local pt = sim.t0 + (t - sim.now0) + 1e-6
  local ms, at = self.meter_samples, nil
  for i = #ms, 1, -1 do
    if ms[i].shown <= pt then at = ms[i].at break end
  end
  local h = self.truth_hist
  local best = h[#h]
  if at then
    for i = #h, 1, -1 do
      if math.abs(h[i].t - at) < math.abs(best.t - at) then best = h[i] end
      if h[i].t < at - 1 then break end
    end
  end
  return best
end

local function record(self, sim)
  local p = sim.plant
  if self.controller == "oracle" then remember(self, p) end
  local t = sim:time()
  local dt = t - (self.last_t or t)
  self.last_t = t
  if t < self.warmup then dt = 0 end -- figures from the end of the warm-up on
  local export = -p.grid_w
  -- the limit in force: a command (MQTT, the REPL) may have changed moondog's
  local limit = (self.ctl and type(self.ctl.limit_w) == "number") and self.ctl.limit_w or self.limit_w
  if dt > 0 then
    local over = export - limit
    if over > 0 then self.over_wh = self.over_wh + over * dt / 3600 end
    if over > self.tolerance_w then
      self.exc_start = self.exc_start or t - dt
      self.longest = math.max(self.longest, t - self.exc_start)
    else
      self.exc_start = nil
    end
    local avail = 0
    for _, inv in pairs(p.inverters) do avail = avail + inv.available_w end
    local ideal = math.max(0, avail - p.house_w - p.battery_w - limit)
    local actual = math.max(0, avail - p.pv_w)
    if actual > ideal then
      self.curtailed_extra_wh = self.curtailed_extra_wh + (actual - ideal) * dt / 3600
      if self.ctl and self.ctl.state == "fail-safe" then
        self.curtailed_failsafe_wh = self.curtailed_failsafe_wh + (actual - ideal) * dt / 3600
      end
    end
    self.ideal_curtailed_wh = self.ideal_curtailed_wh + ideal * dt / 3600
    self.pv_available_wh = self.pv_available_wh + avail * dt / 3600
  end
  local second = math.floor(t + 1e-6)
  if second > (self.last_second or -1) then
    self.last_second = second
    local writes, avail = 0, 0
    for _, inv in pairs(p.inverters) do
      writes = writes + inv.writes
      avail = avail + inv.available_w
    end
    local st = self.ctl and self.ctl:status() or {}
    local row = {
      t = second, time = md.time(), grid_w = p.grid_w, pv_w = p.pv_w, pv_available_w = avail,
      house_w = p.house_w, battery_w = p.battery_w, soc = p.battery and p.battery.soc,
      limit_w = limit, setpoint_pct = st.setpoint_pct, setpoint_w = st.setpoint_pct and self.rating_w
        and st.setpoint_pct / 100 * self.rating_w,
      state = st.state or "none", writes = writes, meter_w = (p.meter:reading()),
      ideal_pv_w = math.min(avail, p.house_w + p.battery_w + limit),
      ideal_limit_w = p.house_w + p.battery_w + limit,
    }
    local rows = self.rows
    rows[#rows + 1] = row
    -- steady state: the ideal limit and output stayed within the tolerance for 30 s
    local back = rows[#rows - 30]
    if back then
      local lo, hi, llo, lhi = math.huge, -math.huge, math.huge, -math.huge
      for i = #rows - 30, #rows do
        lo, hi = math.min(lo, rows[i].ideal_pv_w), math.max(hi, rows[i].ideal_pv_w)
        llo, lhi = math.min(llo, rows[i].ideal_limit_w), math.max(lhi, rows[i].ideal_limit_w)
      end
      if hi - lo < self.tolerance_w and lhi - llo < self.tolerance_w and t >= self.warmup then
        self.steady_s = self.steady_s + 1
        self.steady_writes = self.steady_writes + (row.writes - rows[#rows - 1].writes)
      end
    end
    if self.on_second and self.site then
      -- a broken view must not stop the plant: log it once, then go on without it
      local ok, err = pcall(self.on_second, self, row)
      if not ok then
        md.log.error("sim run: on_second failed, no more calls: %s", tostring(err))
        self.on_second = nil
      end
    end
  end
end

-- Run fn with the simulated clock waiting `quiet` real seconds for outside
-- peers before each jump (the broker starting); real time: just fn.
local function patiently(fn)
  if not md.clock.simulated() then return fn() end
  md.clock.simulate { start = md.time(), quiet = 0.02 }
  local ok, a, b, c = pcall(fn)
  md.clock.simulate { start = md.time(), quiet = 0 }
  if not ok then error(a, 0) end
  return a, b, c
end

local function start_mqtt(self, opts)
  if md.clock.simulated() then
    return nil, "MQTT cannot run in simulated time yet (an MQTT client stops the simulated clock); "
      .. "run in real time (--speed 1) or without MQTT", "simulated"
  end
  local url = opts.mqtt
  if url == true then
    local b, err, code = patiently(function() return broker.start {} end)
    if not b then return nil, "cannot start mosquitto (install it with `make deps`, or give --mqtt "
      .. "HOST:PORT): " .. tostring(err), code end
    self.broker = b
    url = b.host .. ":" .. b.port
    md.log.info("started mosquitto on %s", url)
  end
  self.mqtt_url = url
  local pub, err, code = self.site:publish {
    mqtt = { url = url, client_id = "moondog-sim-" .. self.site.name },
    prefix = opts.prefix or "moondog", max_interval = 30, on_publish = opts.on_publish }
  if not pub then return nil, err, code end
  self.pub = pub
  self.sim:on("broker", function(e, phase)
    if not self.broker then
      md.log.warn("sim: broker event at %g s: the broker at %s is not ours; left alone", e.at, url)
    elseif phase == "start" then
      md.log.info("sim: the broker goes away for %g s", e.duration or 0)
      self.broker:stop()
    else
      md.log.info("sim: the broker is back")
      local ok, berr = patiently(function() return self.broker:start() end)
      if not ok then md.log.error("sim: the broker would not start again: %s", tostring(berr)) end
    end
  end)
  return true
end

-- The device's profile with a poll interval per point: polls = {power =
-- 1} reads `power` every second and the rest at the profile's own
-- interval (on a 9600-baud line, reading every register of two SunSpec
-- inverters each second takes more than the line's whole time).
local function with_polls(name, polls)
  local prof = devices.load(name)
  local copy = {}
  for k, v in pairs(prof) do copy[k] = v end
  copy.points = {}
  for i, pt in ipairs(prof.points) do
    local c = {}
    for k, v in pairs(pt) do c[k] = v end
    c.poll = polls[pt.name] or c.poll
    copy.points[i] = c
  end
  return copy
end

--- run.start(scenario, opts) -> run, or nil, message, code.
--- opts: controller = "moondog" (default) | "ode" | "openems" | "oracle"
--- (moondog.sim.peers: knows the plant's truth; the floors) | "none";
--- ctl_opts (more options for md.control.export_limit, or the peer's:
--- the oracle's margin_w); site_name;
--- on_second(run, row) after each recorded second; poll (per device id,
--- overrides the scenario's: seconds, or {point = seconds} for those
--- points, the others at the profile's interval); mqtt ("host:port", true: start a broker,
--- false: none even when the scenario asks); prefix; on_publish(topic,
--- payload); warmup (seconds at the start left out of the figures: the
--- site finding its devices, the controller's first cut).
function M.start(scenario, opts)
  opts = opts or {}
  local self = setmetatable({
    scenario = scenario, rows = {}, over_wh = 0, curtailed_extra_wh = 0, curtailed_failsafe_wh = 0,
    ideal_curtailed_wh = 0,
    pv_available_wh = 0, longest = 0, steady_s = 0, steady_writes = 0, on_second = opts.on_second,
    controller = opts.controller or "moondog", limit_w = (scenario.control or {}).limit_w or 0,
    warmup = opts.warmup or 0, truth_hist = {}, meter_samples = {},
  }, Run)
  local rating, tau = 0, 0
  for _, inv in pairs((scenario.plant or {}).inverters or {}) do
    rating = rating + (inv.rating or 5000)
    tau = math.max(tau, inv.tau or 1)
  end
  self.rating_w = rating
  self.tolerance_w = math.max(50, 0.02 * rating)
  self.floor_s = (((scenario.plant or {}).meter or {}).period or 1) + 3 * tau
  local sc = {}
  for k, v in pairs(scenario) do sc[k] = v end
  sc.on_tick = function(s) record(self, s) end
  local sim, err, code = simsite.start(sc)
  if not sim then return nil, err, code end
  self.sim = sim
  local site = md.site.new { name = opts.site_name or "sim" }
  self.site = site
  local poll = {}
  for k, v in pairs(scenario.poll or {}) do poll[k] = v end
  for k, v in pairs(opts.poll or {}) do poll[k] = v end
  for _, d in ipairs(sim.devices) do
    local p = poll[d.id] or (d.kind == "meter" and 0.25 or 1)
    local profile = d.profile
    if type(p) == "table" then profile, p = with_polls(d.profile, p), nil end
    local o = { poll = p }
    if d.kind == "meter" then o.offline_after = 2 end
    local ok, aerr, acode = site:add(d.id, profile, sim:url(d.id), o)
    if not ok then
      self:close()
      return nil, format("%s: %s", d.id, tostring(aerr)), acode
    end
    sim:wire_client(d.id)
  end
  local meter = ids_of_kind(scenario, "meter")[1] or error("run: the scenario has no meter", 2)
  local inverters = ids_of_kind(scenario, "inverter")
  self.inverter_ids = inverters
  for i, id in ipairs(inverters) do
    -- a device whose profile has no rating (a Growatt TL-X): the plant's
    for _, d in ipairs(sim.devices) do
      if d.id == id and d.rating then inverters[i] = { id = id, rating = d.rating } end
    end
  end
  local copts = { site = site, grid = meter .. ".power", inverters = inverters, limit_w = self.limit_w }
  if self.controller == "moondog" then
    copts.battery = ids_of_kind(scenario, "battery")[1] -- battery first, when the site has one
    for k, v in pairs(opts.ctl_opts or {}) do copts[k] = v end
    self.ctl = md.control.export_limit(copts)
  elseif self.controller ~= "none" then
    copts.truth, copts.plant = function(t) return truth(self, t) end, sim.plant
    for k, v in pairs(opts.ctl_opts or {}) do copts[k] = v end
    self.ctl = peers.start(self.controller, copts)
  end
  local mqtt = opts.mqtt
  if mqtt == nil and scenario.mqtt then mqtt = true end
  if mqtt then
    local ok, merr, mcode = start_mqtt(self, { mqtt = mqtt, prefix = opts.prefix,
      on_publish = opts.on_publish })
    if not ok then
      self:close()
      return nil, merr, mcode
    end
  end
  return self
end

--- r:metrics() -> the figures of the run so far (see the header).
function Run:metrics()
  local hours = math.max(1e-9, #self.rows / 3600)
  local writes = self.rows[#self.rows] and self.rows[#self.rows].writes or 0
  return {
    seconds = #self.rows, longest_excursion_s = self.longest, over_wh = self.over_wh,
    curtailed_extra_wh = self.curtailed_extra_wh, curtailed_failsafe_wh = self.curtailed_failsafe_wh,
    ideal_curtailed_wh = self.ideal_curtailed_wh,
    pv_available_wh = self.pv_available_wh, writes = writes, writes_per_h = writes / hours,
    steady_s = self.steady_s,
    steady_writes_per_10s = self.steady_s > 0 and self.steady_writes / self.steady_s * 10 or nil,
    floor_s = self.floor_s,
  }
end

local COLUMNS = { "t", "time", "grid_w", "meter_w", "pv_w", "pv_available_w", "house_w", "battery_w", "soc",
                  "limit_w", "setpoint_pct", "setpoint_w", "state", "writes" }

--- r:write_csv(path) -> true, or nil, message: one row per simulated second.
function Run:write_csv(path)
  local f, err = io.open(path, "w")
  if not f then return nil, err end
  f:write(table.concat(COLUMNS, ","), "\n")
  for _, row in ipairs(self.rows) do
    local cells = {}
    for i, c in ipairs(COLUMNS) do
      local v = row[c]
      if math.type(v) == "float" then
        v = c == "time" and format("%.1f", v) or format("%.1f", v)
      end
      cells[i] = v == nil and "" or tostring(v)
    end
    f:write(table.concat(cells, ","), "\n")
  end
  return f:close()
end

--- r:close(): stop the controller, the site and the simulated devices.
function Run:close()
  if self.pub then self.pub:close() self.pub = nil end
  if self.ctl then self.ctl:stop() self.ctl = nil end
  if self.site then self.site:close() self.site = nil end
  if self.sim then self.sim:close() self.sim = nil end
  if self.broker then self.broker:close() self.broker = nil end
end
Run.__close = Run.close

return M
