-- moondog.control.export_limit: keep the power exported to the grid under a
-- limit by curtailing PV inverters, from a grid meter's reading; fail-safe.
-- Also md.control.export_limit.
--
--   local ctl = md.control.export_limit {
--     site = site, grid = "meter.power", inverters = { "pv" }, limit_w = 0,
--   }
--   ctl:status()   --> {state = "limiting", setpoint_pct = 41.5, excursions = 0, ...}
--
-- How it acts. On every new sample of the grid meter (site:wait, not a
-- timer) it computes the PV output the limit allows:
--
--   allowed = pv_measured + grid + limit_w - margin_w + I
--
-- grid > 0 is import. The first three terms are the feed-forward: the
-- house takes grid + pv, and the inverters may make that plus the limit
-- (OpenEMS's rule, from measured values, so it is right in one step
-- whatever the inverter's lag). I is a slow PI trim that takes out what
-- the feed-forward cannot see (an inverter that runs 2 % over its limit);
-- it only integrates while the inverters are limited and is bounded
-- (anti-windup). The setpoint, a percentage of the inverters' total
-- rating shared by all of them, is cut at once (over-cut by `overcut` of
-- the excess on a sample over the limit, given back once the inverters
-- have settled) and relaxed at most `slew_pct` per second. A cut while
-- over the limit is written at once, a change of `deadband_w` or more as
-- soon as `settle_s` have passed since the last write (the inverter needs
-- about 3 tau to get there, and a decision taken while it moves is taken
-- on a PV value polled at another moment than the meter's sample); a
-- smaller one of half the deadband or more waits until `relax_s` after
-- the last write, one below that is left to the revert refresh (limit
-- registers are often kept in flash); every write restarts the
-- inverter's revert timer, and one is due every revert/2 s in any case.
--
-- Fail-safe. When the meter value is older than `failsafe_after` seconds
-- (default 3), a write fails, or the controller itself raises, every
-- inverter is set to the fail-safe output: the limit itself (the worst
-- case is a house load of 0), and it stays there until fresh samples have
-- come for `recover_s` seconds (default 10). A clean stop of the engine
-- (SIGTERM, Ctrl-C, md.exit) writes the fail-safe output and gives the
-- battery back (`shutdown`, an md.on_shutdown handler). When moondog is
-- killed the inverter must end safe on its own: with SunSpec model 704 the
-- controller sets WMaxLimPctRvrt to the fail-safe level and a revert time
-- (`revert_s`, default 30 s for one device, 25 s a device up to 60), so
-- the inverter falls back to it by itself;
-- with model 123 alone the inverter reverts to FULL power, which the log
-- says loudly at start: configure the inverter's own export limit as the
-- backstop.
--
-- Excursions: export above limit_w + tolerance_w for longer than
-- excursion_s (default 15 s, UK G100's "typically within 15 s") is one
-- excursion, counted with its start, duration and peak, and kept in
-- `state_file` (JSON, written atomically) across restarts. G100's
-- escalation, as an option: an excursion longer than `escalate_s`, or the
-- `escalate_count`-th within `escalate_window_s`, latches the fail-safe
-- (persisted, the `alarm` entity on) until a person resets it.
--
-- Ownership: the inverters' limit points are owned by the controller
-- (dev:own): MQTT commands to them are refused ("owned"). Home Assistant
-- gets the controller's own entities instead, as site values of the
-- device `name` (default "export_limit"): limit (number, W), enabled
-- (switch), state (normal / limiting / fail-safe / disabled), headroom
-- (W of export still allowed), excursions (count), alarm (switch: on while a
-- G100 escalation holds the fail-safe; off resets it).
--
-- The controller runs as a critical supervised task of the site: an error
-- puts the inverters in fail-safe first, then the site restarts it and
-- its health says so.

local md = require "moondog"
local cjson = require "cjson"
local event = require "moondog.event"

local M = {}

local format = string.format

-- {===== inverters =====

-- How to limit one inverter: model 704 when the device implements it
-- (reverts to a fail-safe level), else model 123 (reverts to full power);
-- a Growatt TL-X by its active power rate (no revert at all).
local function adapter(sd)
  if sd._points.active_power_rate then
    -- a Growatt TL-X's holding register 3 (devices/growatt/min_tlx.lua): no
    -- enable flag, no revert timer; its own export limit (122/123), where the
    -- profile has it, is the backstop (set_backstop)
    local backstop = sd._points.export_limit ~= nil and sd._points.export_limit_mode ~= nil
    return {
      mode = "rate", points = { "active_power_rate", backstop and "export_limit" or nil },
      limit = function(pct) return { active_power_rate = pct } end,
      step = 1, backstop = backstop,
    }
  end
  if sd._points.der_limit and sd._v.der_limit ~= nil then
    return {
      mode = 704, points = { "der_limit", "der_limit_enabled", "der_failsafe_limit", "der_failsafe_enabled",
                             "der_revert" },
      limit = function(pct, enabled)
        return enabled and { der_limit = pct } or { der_limit = pct, der_limit_enabled = "ENABLED" }
      end,
      enabled = "der_limit_enabled",
      revert = function(pct, s)
        return { der_failsafe_limit = pct, der_failsafe_enabled = "ENABLED", der_revert = s }
      end,
      step = 0.1,
    }
  end
  return {
    mode = 123, points = { "power_limit", "power_limit_enabled", "power_limit_revert" },
    limit = function(pct, enabled)
      return enabled and { power_limit = pct } or { power_limit = pct, power_limit_enabled = "ENABLED" }
    end,
    enabled = "power_limit_enabled",
    revert = function(_, s) return { power_limit_revert = s } end,
    step = 1,
  }
end

-- pct on the point's step grid, as the decimal the point check expects
-- (0.1 steps: 76.6, never 76.600000000000009).
local function quantize(pct, step, down)
  local q = pct / step
  q = down and math.floor(q + 1e-9) or math.floor(q + 0.5)
  local decimals = step >= 1 and 0 or math.ceil(-math.log(step, 10) - 1e-9)
  return math.max(0, math.min(100, tonumber(string.format("%." .. decimals .. "f", q * step))))
end

-- }=====

-- {===== batteries =====

-- How to charge one battery, per kind of device: the points the
-- controller owns, how it learns the charge power (W), the writes that
-- set it up and that charge at pct % of that power, and whether the
-- device drops a setpoint by itself (a revert timer).
--  * SunSpec storage (sunspec_storage, models 124 + 802): StorCtl_Mod
--    CHARGE, InWRte % of WChaMax; InOutWRte_RvrtTms takes it back to idle
--    when moondog stops.
--  * RCT Power (rct_power): battery_strategy "External", then
--    battery_charge_setpoint W (power_mng.battery_power_extern). RCT has
--    NO revert timer: the setpoint holds until written again, also when
--    moondog stops. And it sends no error: a write it does not take is
--    answered with the value it keeps, so the setpoint is read back
--    (`check`) and a difference is a refused write.
local battery_adapters = {
  {
    kind = "sunspec_storage", revert = true,
    fits = function(sd) return sd._points.charge_rate ~= nil end,
    points = { "charge_rate", "storage_mode", "rate_revert" },
    max_w = function(sd)
      return sd:wait("max_charge_power", { timeout = 60 }), "no charge power (WChaMax)"
    end,
    setup = function(revert_s)
      return { storage_mode = "CHARGE", charge_rate = 0, rate_revert = revert_s }
    end,
    charge = function(pct) return { charge_rate = pct } end,
    -- on stop: idle (its storage mode is left: the rate timer has it)
    release = function() return { charge_rate = 0 } end,
  },
  {
    kind = "rct", revert = false, check = "battery_charge_setpoint",
    fits = function(sd) return sd._points.battery_charge_setpoint ~= nil end,
    points = { "battery_charge_setpoint", "battery_strategy" },
    max_w = function(sd)
      local function now_or_next(name) return sd:get(name) or sd:wait(name, { timeout = 60 }) end
      local a, v = now_or_next("battery_max_charge_current"), now_or_next("battery_voltage")
      return a and v and a * v, "no charge power (battery.maximum_charge_current x battery.voltage); "
        .. "give battery = {id =, max_w = W}"
    end,
    setup = function() return { battery_strategy = "External", battery_charge_setpoint = 0 } end,
    charge = function(pct, max_w)
      return { battery_charge_setpoint = math.floor(pct / 100 * max_w + 0.5) }
    end,
    -- on stop: idle, then the device's own strategy (Internal when the one
    -- found at start was External, left so by a moondog that was killed)
    mode = "battery_strategy", own_mode = "External", default_mode = "Internal",
    release = function(mode) return { battery_charge_setpoint = 0, battery_strategy = mode } end,
  },
}

local function battery_adapter(sd)
  for _, a in ipairs(battery_adapters) do
    if a.fits(sd) then return a end
  end
  error(format("export limit: battery %s: its profile is neither SunSpec storage (charge_rate) nor RCT "
    .. "Power (battery_charge_setpoint)", sd.id), 0)
end

-- The battery's writes run in a task of their own (battery_writer), never
-- in the control step: a device that does not answer holds only that task,
-- for its client's timeout (RCT: 2 s x 3 tries), while the step goes on
-- with the meter's samples. The step asks (battery_ask: the latest job
-- wins, one write in flight) and waits for the answer at most
-- BATTERY_WAIT_S (a device that answers does so in tens of ms); a write
-- not answered by then gives PV no room, and one still unanswered after
-- failsafe_after, or failed, is a battery failure at the next step
-- (battery_failed). A job: {values =, pct = the charge it sets (or nil),
-- setup = true (it sets the battery up again), done = event}.
local BATTERY_WAIT_S = 0.5
local BATTERY_STOP_S = 10 -- the longest ctl:stop() waits for the battery's last writes

-- One job's write: true, or nil, message, code. A value the device does
-- not take is a failure (RCT answers with the value it keeps, no error).
local function battery_send(self, job)
  local b = self.battery
  local check = b.adapter.check
  local ok, err, code = b.sd:write(job.values, { owner = self.name })
  self.writes = self.writes + 1
  if ok and check and job.values[check] then
    local got = b.sd:get(check)
    if got == nil or math.abs(got - job.values[check]) >= 1 then
      ok, err, code = nil, format("%s answered a write of %s = %s with %s: the device did not take it",
        b.sd.id, check, tostring(job.values[check]), tostring(got)), "not_taken"
    end
  end
  if not ok and not job.counted then self.write_errors = self.write_errors + 1 end
  return ok, err, code
end

local function battery_writer(self)
  local b = self.battery
  while true do
    local job = b.job
    if job then
      b.job, b.busy, b.busy_since = nil, job, md.now()
      local ran, ok, err, code = pcall(battery_send, self, job)
      if not ran then ok, err, code = nil, ok, "error" end
      b.busy, b.busy_since = nil, nil
      if ok then
        if job.pct then b.written_pct, b.written_at = job.pct, md.now() end
        if job.setup then b.released, b.given_back = nil, nil end
        if job.release then b.given_back = true end
      elseif job.release then
        md.log.error("export limit: cannot give the battery %s back to itself (0 W, %s = %s): %s; it may "
          .. "keep its last setpoint", b.sd.id, b.adapter.mode, tostring(b.own_mode), tostring(err))
      else
        b.failed = tostring(err)
      end
      job.done:set(ok == true, err, code)
    elseif b.closing then
      b.stopped:set(true)
      return
    else
      b.wake = event.new()
      b.wake:wait()
    end
  end
end

-- Hand a job to the writer (it replaces one not started yet) and wait for
-- its answer at most wait_s: true (taken), false, message (failed), or nil
-- (not answered yet: still in flight, or behind a write that is).
local function battery_ask(self, job, wait_s)
  local b = self.battery
  local busy = b.busy_since ~= nil or b.job ~= nil
  job.done = event.new()
  b.job = job
  if b.wake then
    b.wake:set()
    b.wake = nil
  end
  if busy or not wait_s then return nil end
  local ok, err = job.done:wait(wait_s)
  if ok == nil then return nil end
  return ok, err
end

-- The battery failed (a write refused, failed or unanswered): reported;
-- it is left out (PV alone keeps the limit) for revert_s, then tried
-- again. Returns nil, message: the caller goes fail-safe.
local function battery_failed(self, now, why)
  local b = self.battery
  b.retry_at, b.failed, b.error, b.written_pct = now + self.revert_s, nil, why, nil
  self.battery_w = nil
  md.log.warn("export limit: cannot set the battery: %s; fail-safe, then control without it, "
    .. "trying it again in %g s", why, self.revert_s)
  return nil, "the battery write failed: " .. why
end

-- Fail-safe: the battery idle (0 W), after the inverters have their
-- fail-safe output. PV is then held to the limit without it, so a battery
-- that stops or fails cannot let export through. Asked, not waited for.
local function battery_idle(self)
  local b = self.battery
  if not (b and b.max_w) or b.written_pct == 0 or b.released then return end
  battery_ask(self, { values = b.adapter.charge(0, b.max_w), pct = 0 })
end

-- Stop or disable: idle, and the device's own mode again (RCT: its
-- strategy as found at start), so that it does not keep a setpoint of
-- ours. wait_s: as for battery_ask. The step sets it up again (setup job)
-- when control resumes.
local function battery_release(self, wait_s)
  local b = self.battery
  if not (b and b.max_w and b.writer) or b.released then return true end
  b.released = true
  return battery_ask(self, { values = b.adapter.release(b.own_mode), pct = 0, release = true }, wait_s)
end

-- The device's own mode (RCT: battery_strategy), as found at start, for
-- ctl:stop() to give back. Found in our mode (a moondog that was killed
-- left it so): the one kept in the state file, else the adapter's
-- default, said in the log.
local function battery_own_mode(self, save)
  local b, a = self.battery, self.battery.adapter
  if not a.mode then return nil end
  local found = b.sd:get(a.mode)
  if found ~= nil and found ~= a.own_mode then
    if self.persist.battery_mode ~= found then
      self.persist.battery_mode = found
      local ok, err = save(self.state_file, self.persist)
      if not ok then md.log.error("export limit: cannot save %s: %s", self.state_file, tostring(err)) end
    end
    return found
  end
  local mode = self.persist.battery_mode or a.default_mode
  if found ~= nil then
    md.log.warn("export limit: battery %s was left at %s = %s (moondog stopped without giving it back?); "
      .. "on stop it gets %s", b.sd.id, a.mode, tostring(found), tostring(mode))
  end
  return mode
end

-- Set-up: the adapter, the charge power, ownership, the first (idle)
-- write, the writer task. save: save_state.
local function battery_setup(self, save)
  local b = self.battery
  local sd = b.sd
  if not b.adapter then
    sd:refresh()
    b.adapter = battery_adapter(sd)
  end
  local a = b.adapter
  local w, why = b.spec_max_w, nil
  if not w then w, why = a.max_w(sd) end
  if not w or w <= 0 then error(format("export limit: battery %s has %s", sd.id, why), 0) end
  sd:own(a.points, self.name)
  b.own_mode = battery_own_mode(self, save)
  local ok, err = sd:write(a.setup(self.revert_s), { owner = self.name })
  if not ok then
    error(format("export limit: cannot set up the battery %s: %s", sd.id, tostring(err)), 0)
  end
  b.max_w, b.written_pct, b.written_at = w, 0, md.now()
  b.stopped = event.new()
  b.writer = self.site:spawn(battery_writer, { name = "export limit battery" }, self)
  if not a.revert then
    md.log.warn("export limit: battery %s (%s) has no revert timer: if moondog is killed it keeps charging "
      .. "at the last setpoint until written again (its strategy stays External). The fail-safe sets it "
      .. "to 0 W (idle); ctl:stop() and disabling set it idle and give it back its own strategy (%s).",
      sd.id, a.kind, tostring(b.own_mode))
  end
end

-- {===== state file =====

local function load_state(path)
  if not path then return {} end
  local f = io.open(path)
  if not f then return {} end
  local text = f:read("a")
  f:close()
  local ok, t = pcall(cjson.decode, text)
  if not ok or type(t) ~= "table" then
    md.log.warn("export limit: state file %s is unreadable; counting excursions from 0", path)
    return {}
  end
  return t
end

-- Write to a temporary file, then rename: a crash leaves the old file or
-- the new one, never half of one.
local function save_state(path, t)
  if not path then return true end
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "w")
  if not f then return nil, err end
  f:write(cjson.encode(t))
  local ok, werr = f:close()
  if not ok then return nil, werr end
  return os.rename(tmp, path)
end

-- }=====

local Ctl = {}
Ctl.__index = Ctl

local function set_state(self, state, why)
  if self.state == state then return end
  local old = self.state
  self.state = state
  if state == "fail-safe" then
    md.log.warn("export limit: fail-safe (%s): inverters at %.1f %%", tostring(why), self.failsafe_pct)
  elseif old == "fail-safe" then
    md.log.info("export limit: fresh data for %g s; normal control again", self.recover_s)
  end
  self.values:_set("state", state)
end

-- Write a setpoint (percent) to every inverter. Returns true, or nil, err.
local function write_all(self, pct)
  for _, inv in ipairs(self.inverters) do
    if not inv.adapter then
      return nil, format("%s: not set up yet (it has not answered since the start)", inv.sd.id), "offline"
    end
    local q = quantize(pct, inv.adapter.step, true)
    -- the enable flag is written only while the inverter does not show it on:
    -- one transaction per setpoint, not two
    local on = inv.adapter.enabled == nil or inv.sd._v[inv.adapter.enabled] == "ENABLED"
    local ok, err, code = inv.sd:write(inv.adapter.limit(q, on), { owner = self.name })
    self.writes = self.writes + 1
    if not ok then
      err = tostring(err) -- the site's errors name the device already
      if err:sub(1, #inv.sd.id + 2) ~= inv.sd.id .. ": " then err = inv.sd.id .. ": " .. err end
      return nil, err, code
    end
  end
  self.written_pct, self.written_at = pct, md.now()
  return true
end

-- Write the fail-safe output; self.failsafe_ok says whether the inverters
-- have it. A failure is logged once per run of failures, not per retry.
local function write_failsafe(self)
  local ok, err = write_all(self, self.failsafe_pct)
  self.failsafe_tried = md.now()
  if not ok then
    self.write_errors = self.write_errors + 1
    if self.failsafe_ok ~= false then
      md.log.error("export limit: cannot even write the fail-safe limit (tried again every second): %s",
        tostring(err))
    end
  elseif self.failsafe_ok == false then
    md.log.info("export limit: the inverters take writes again; fail-safe output set")
  end
  self.failsafe_ok = ok == true
end

-- meter_ok: the meter was not the cause (a write failed): its samples
-- stay fresh, so normal control resumes as soon as the inverters take the
-- fail-safe write again, not recover_s after the last refused write.
local function failsafe(self, why, meter_ok)
  if not meter_ok then self.fresh_since = nil end
  self.setpoint_pct = self.failsafe_pct
  self.integral = 0
  set_state(self, "fail-safe", why)
  write_failsafe(self)
  battery_idle(self)
end

-- G100's escalation: an export over the limit that the scheme did not
-- correct in time (or too many excursions) must end in the fail-safe and
-- stay there until a person has looked. The latch is kept in the state
-- file, so a restart does not clear it; writing the `alarm` entity false
-- (or ctl:reset()) does.
local function latch(self, why)
  if self.persist.latched then return end
  self.persist.latched = { at = md.time(), reason = why }
  md.log.error("export limit: %s: fail-safe held until reset (set %s.alarm to false)", why, self.name)
  local ok, err = save_state(self.state_file, self.persist)
  if not ok then md.log.error("export limit: cannot save %s: %s", self.state_file, tostring(err)) end
  self.values:_set("alarm", true)
  failsafe(self, why)
end

-- Counted excursions whose start lies within the escalation window.
local function recent_excursions(self, wall)
  local n = 0
  for _, t in ipairs(self.persist.starts or {}) do
    if wall - t < self.escalate_window_s then n = n + 1 end
  end
  return n
end

local function excursion_check(self, export_w, now)
  local over = export_w > self.limit_w + self.tolerance_w
  local e = self.excursion
  if over then
    if not e then
      e = { start = now, wall = md.time(), peak = export_w, counted = false }
      self.excursion = e
    end
    e.peak = math.max(e.peak, export_w)
    if not e.counted and now - e.start >= self.excursion_s then
      e.counted = true
      local st = self.persist
      st.excursions = (st.excursions or 0) + 1
      st.last = { start = e.wall, peak_w = e.peak }
      st.starts = st.starts or {}
      table.insert(st.starts, e.wall)
      while #st.starts > 100 do table.remove(st.starts, 1) end
      md.log.warn("export limit: excursion %d: export %.0f W over the limit of %.0f W for %g s",
        st.excursions,
        e.peak, self.limit_w, self.excursion_s)
      local ok, err = save_state(self.state_file, st)
      if not ok then md.log.error("export limit: cannot save %s: %s", self.state_file, tostring(err)) end
      self.values:_set("excursions", st.excursions)
      if self.escalate_count and recent_excursions(self, e.wall) >= self.escalate_count then
        latch(self, format("%d excursions within %g s", self.escalate_count, self.escalate_window_s))
      end
    end
    if self.escalate_s and now - e.start >= self.escalate_s then
      latch(self, format("export over the limit for %g s", self.escalate_s))
    end
  elseif e then
    if e.counted then
      self.persist.last.duration_s = now - e.start
      save_state(self.state_file, self.persist)
    end
    self.excursion = nil
  end
end

-- Battery first: the charge the battery should take, so that it absorbs
-- the export before PV is curtailed: its measured charge plus the export
-- over the target, within 0..its charge power, none when it is full (at
-- soc_max). Written through the battery's adapter (above) when it moved
-- by 1 % of the charge power or more, and every revert/2 s (a SunSpec
-- storage's own rate timer takes it back to idle when moondog stops).
-- Returns the W the battery takes beyond what it takes now: room for PV;
-- or nil, message when the write failed (the caller goes fail-safe; the
-- battery is left out for revert_s, then tried again).
local PROBE_QUIET_S = 60

local function battery_step(self, grid_w, now, pv_held, settling)
  local b = self.battery
  local sd = b.sd
  if not b.retry_at then
    -- what the writer found since the last step, or a write unanswered
    local why = b.failed
    if not why and b.busy_since and now - b.busy_since >= self.failsafe_after then
      why = format("%s did not answer a write for %g s", sd.id, now - b.busy_since)
      b.busy.counted = true -- a write error now, not again when the client gives up
      self.write_errors = self.write_errors + 1
    end
    if why then return battery_failed(self, now, why) end
  elseif now < b.retry_at then
    return 0 -- left out since it failed
  else
    b.retry_at, b.failed, b.error = nil, nil, nil
  end
  -- The charge it was told to take: its measured power is polled apart
  -- from the meter, and mixing the two makes the pair oscillate. The
  -- meter shows a battery write only a meter period later (a sample
  -- polled after the write may have been taken before it), so for
  -- battery_hold_s after a write no new decision is made, unless the
  -- export is over the limit.
  local bat_w = (b.written_pct or 0) / 100 * b.max_w
  local over = -grid_w > self.limit_w + self.tolerance_w
  if not over and b.written_at and now - b.written_at < self.battery_hold_s then return 0 end
  local soc = sd:get("battery_soc")
  -- It follows the export; while PV is held at its setpoint (curtailed)
  -- it takes 20 % of its power more each time and PV gets the room, until
  -- PV is no longer held back (the sun gives no more) or the battery is at
  -- its power.
  -- A probe after which the house imports with PV released to 100 % (PV
  -- did not rise into the room: the sun, not the setpoint, held it) is
  -- not tried again for PROBE_QUIET_S: each costs an import and writes.
  if b.probe_at and now - b.probe_at < self.hold_s and grid_w > self.tolerance_w
    and self.setpoint_pct >= 100 then
    b.quiet_until = now + PROBE_QUIET_S
  end
  b.probe_at = nil
  local want = bat_w + (-grid_w - self.limit_w + self.margin_w)
  if pv_held and not (b.quiet_until and now < b.quiet_until) then
    want = want + 0.2 * b.max_w
    b.probe_at = now
  end
  -- For hold_s after a cut the PV may be below what the house takes (the
  -- over-cut, given back once the inverters have settled, and the rise
  -- after that): that import is no reason to charge less. Only while PV
  -- is curtailed: with it at 100 % there is no over-cut to wait for.
  if settling and self.setpoint_pct < 100 then want = math.max(want, bat_w) end
  if soc == nil or soc >= b.soc_max then want = 0 end
  want = math.max(0, math.min(b.max_w, want))
  local pct = quantize(want / b.max_w * 100, 0.1, true)
  -- a refresh for the revert timer (RCT has none: not written for it)
  local due = b.written_at == nil or b.released
    or (b.adapter.revert and now - b.written_at >= self.revert_s / 2)
  self.battery_w = want
  if due or math.abs(pct - (b.written_pct or -100)) >= 1 or (pct == 0 and (b.written_pct or 0) > 0) then
    local job = { values = b.adapter.charge(pct, b.max_w), pct = pct }
    if b.released then -- control resumes after a stop or disable: set it up again first
      job.setup, job.values = true, b.adapter.setup(self.revert_s)
      for k, v in pairs(b.adapter.charge(pct, b.max_w)) do job.values[k] = v end
    end
    local ok, err = battery_ask(self, job, BATTERY_WAIT_S)
    -- failed: reported, then fail-safe; PV alone keeps the limit until a retry
    if ok == false then return battery_failed(self, now, tostring(err)) end
    if ok == nil then return 0 end -- not answered yet: no room for PV until it is
  end
  return pct / 100 * b.max_w - bat_w
end

-- One control step on a fresh grid sample.
local function step(self, grid_w, now, grid_t)
  local rating = self.rating_w
  local pv = 0
  for _, inv in ipairs(self.inverters) do
    local w = inv.sd:get(inv.power)
    pv = pv + (w or 0)
  end
  self.values:_set("headroom", math.floor(self.limit_w + grid_w + 0.5))
  local err = grid_w + self.limit_w - self.margin_w
  local limited = self.setpoint_pct < 100
  local dt = self.last_step and math.min(now - self.last_step, 5) or 0
  self.last_step = now
  -- Settling after a cut: until the inverters are down at their setpoint
  -- and a meter sample taken after that has come (at most hold_s).
  local moving = pv > self.setpoint_pct / 100 * rating + self.tolerance_w
  if moving then
    self.settled_at = nil
  elseif not self.settled_at then
    self.settled_at = now
  end
  local settling = self.cut_at and now - self.cut_at < self.hold_s
    and (moving or not self.settled_at or (grid_t or now) <= self.settled_at)
  -- PI trim: only in steady state (the inverters held at their setpoint,
  -- not settling after a cut, a small error), bounded. An inverter held
  -- below its setpoint by the sun (a cloud) makes the house import; that
  -- is no error of the setpoint, and integrating it would wind the trim
  -- up to an excursion when the cloud has passed.
  -- Nor while the setpoint waits for a write (a change below the
  -- deadband): the inverter does not see it, so the error would not move.
  local applied = self.written_pct and math.abs(self.setpoint_pct - self.written_pct) < 0.1
  local held = math.abs(pv - self.setpoint_pct / 100 * rating) <= self.tolerance_w
  if limited and held and applied and not settling and math.abs(err) < 0.05 * rating then
    self.integral = math.max(-0.05 * rating, math.min(0.05 * rating, self.integral + self.ki * err * dt))
  elseif not limited then
    self.integral = 0
  end
  local allowed = pv + err + self.integral
  if self.battery and self.battery.max_w then
    local room, berr = battery_step(self, grid_w, now, limited and held and not settling,
      self.cut_at and now - self.cut_at < self.hold_s)
    if not room then return failsafe(self, berr) end
    allowed = allowed + room
  end
  local pct = math.max(0, math.min(100, allowed / rating * 100))
  local over_w = -grid_w - self.limit_w -- W exported above the limit (< 0: under)
  -- After a cut, the meter and the inverter are read at different moments
  -- while the inverter's output falls: a grid value from before with a PV
  -- value from after gives a wrong answer either way. Hold the setpoint
  -- while the inverter follows, unless the export grows meanwhile.
  if settling and -grid_w <= self.export_at_cut + self.tolerance_w then
    pct = self.setpoint_pct
  elseif pct < self.setpoint_pct - 0.5 then
    -- A cut on a sample over the limit is the full required cut at once,
    -- and then some: `overcut` of the excess more. The inverter follows a
    -- cut as a first-order lag, so it crosses the limit in tau * ln(step /
    -- tolerance) when aimed at the exact value (3.6 tau for a 6 kW step
    -- and 160 W), but in tau * ln((1 + overcut) step / (tolerance +
    -- overcut step)) when aimed lower (1.4 tau with 30 %). The extra is
    -- given back by the relax after the inverter has settled.
    if over_w > self.tolerance_w then
      pct = math.max(0, pct - self.overcut * over_w / rating * 100)
      self.correct = true
    end
    self.cut_at, self.export_at_cut, self.settled_at = now, -grid_w, nil
  end
  if pct > self.setpoint_pct then -- relax slowly
    pct = math.min(pct, self.setpoint_pct + self.slew_pct * math.max(dt, 0.1))
  end
  md.log.debug("export limit: grid %.0f W, pv %.0f W, trim %.0f W -> %.2f %%", grid_w, pv, self.integral, pct)
  self.setpoint_pct = pct
  -- When to write (limit registers often live in flash): a cut goes out
  -- at once while the export is over the limit, and any change of the
  -- deadband (W, as a percentage of the rating) or more once settle_s
  -- have passed since the last write (the inverter is still moving
  -- before that: its measured PV would be read at another moment than
  -- the meter's sample, and the pair make a second write of noise); a
  -- smaller change (a slow drift) of half the deadband or more waits
  -- until relax_s after the last write; below that (the meter's noise) it
  -- goes out only with the revert timer's refresh, every revert/2 s (an
  -- inverter without a revert timer, a Growatt's rate, is not written for
  -- it at all). So in steady state the inverter sees about one write per
  -- relax_s, and the margin keeps the export under the limit meanwhile.
  local written = self.written_pct
  local since = self.written_at and now - self.written_at or math.huge
  local band = math.max(self.min_change_pct, self.deadband_w / rating * 100)
  local calm = since >= self.settle_s
  local moved = written == nil or (calm and math.abs(pct - written) >= band)
    or (over_w > 0 and pct < written and written - pct >= 0.5)
    or (since >= self.relax_s and math.abs(pct - written) >= band / 2)
    -- the one correction after a cut, on the first sample taken after the
    -- inverters settled: it gives back the over-cut
    or (self.correct and not settling and math.abs(pct - written) >= 0.1)
  if not settling then self.correct = nil end
  if moved or (self.refresh and since >= self.revert_s / 2) then
    local ok, werr = write_all(self, pct)
    if not ok then
      self.write_errors = self.write_errors + 1
      return failsafe(self, "a write failed: " .. tostring(werr), true)
    end
  end
  set_state(self, pct < 100 and "limiting" or "normal")
  if self.on_step then self.on_step(self:status(), grid_w, pv) end
end

-- The margins in W that default to a share of the total rating: set
-- again once the ratings are known (read from the inverters).
local function defaults_w(self, total)
  local o = self.opts
  self.margin_w = o.margin_w or math.max(20, 0.005 * total)
  self.tolerance_w = o.tolerance_w or math.max(50, 0.02 * total)
  self.deadband_w = o.deadband_w or self.tolerance_w
end

-- Setup: ratings, adapters, revert settings, ownership. Returns true, or
-- nil and why while an inverter has not answered yet (its points, rating
-- and limit registers come from it: a SunSpec inverter's models are found
-- on its first answer); raises on a site that cannot work.
local function prepare(self)
  local total = 0
  for _, inv in ipairs(self.inverters) do
    local sd = inv.sd
    if sd._state ~= "ok" and not inv.adapter then
      return nil, format("waiting for inverter %s to answer (%s)", sd.id, sd._state)
    end
    if not inv.rating then
      if not sd._points.max_power then
        error(format("export limit: inverter %s has no rating (max_power); give rating = W", sd.id), 0)
      end
      local w, err, code = sd:wait("max_power", { timeout = 60 })
      inv.rating = sd.max_power or w
      if not inv.rating and code ~= "timeout" then
        return nil, format("waiting for the rating of inverter %s: %s", sd.id, tostring(err))
      end
      if not inv.rating then
        error(format("export limit: inverter %s has no rating (max_power); give rating = W", sd.id), 0)
      end
    end
    if not inv.adapter then
      sd:refresh()
      inv.adapter = adapter(sd)
      sd:own(inv.adapter.points, self.name)
      if inv.adapter.mode == "rate" and not inv.adapter.backstop then
        md.log.warn("export limit: inverter %s is limited by its active power rate, which has no revert "
          .. "timer: if moondog stops it keeps the last rate written, whatever the house does. Set the "
          .. "inverter's own export limit (export_limit_mode, export_limit) as the backstop.", sd.id)
      elseif inv.adapter.mode == 123 then
        md.log.warn("export limit: inverter %s has only SunSpec model 123: if moondog stops it goes back to "
          .. "FULL power after %g s. Set the inverter's own export limit as the backstop.", sd.id,
          self.revert_s)
      end
    end
    total = total + inv.rating
    -- revert timers to refresh (a Growatt's rate has none)
    self.refresh = self.refresh or inv.adapter.revert ~= nil
  end
  self.rating_w = total
  defaults_w(self, total)
  if self.battery and not self.battery.max_w then battery_setup(self, save_state) end
  self.failsafe_pct = math.max(0, math.min(100, self.limit_w / total * 100))
  self.prepared = true
  return true
end

-- A Growatt's own export limit (holding 122/123) works from a meter of the
-- inverter's own, so moondog can set the limit but not give it a meter:
-- with export_limit_mode "disabled" there is none, and nothing keeps the
-- export down if moondog stops (the rate stays as last written). Set to
-- the controller's limit, it is the backstop. Returns true, or nil, err.
local function set_backstop(self, inv)
  local sd = inv.sd
  local mode = sd:get("export_limit_mode")
  if mode == nil or mode == "disabled" then
    if not inv.backstop_warned then
      inv.backstop_warned = true
      md.log.warn("export limit: inverter %s is limited by its active power rate, which has no revert timer: "
        .. "if moondog stops it keeps the last rate written, whatever the house does, and its own export "
        .. "limit has no meter (export_limit_mode %s). Connect its meter and set export_limit_mode: moondog "
        .. "then sets its export limit as the backstop.", sd.id, tostring(mode or "unknown"))
    end
    return true
  end
  local pct = quantize(self.limit_w / inv.rating * 100, 0.1, true)
  if sd:get("export_limit") == pct then return true end
  local ok, err = sd:write({ export_limit = pct }, { owner = self.name })
  if ok then
    md.log.info("export limit: inverter %s's own export limit set to %.1f %% (%.0f W, from its %s meter): "
      .. "the backstop if moondog stops", sd.id, pct, pct / 100 * inv.rating, tostring(mode))
  end
  return ok, err
end

-- The inverters' own fall-back: revert time and level, or the backstop.
-- Tried again every 5 s while it fails (the controller is in fail-safe
-- meanwhile).
local function set_reverts(self, now)
  if self.reverts_ok or (self.reverts_tried and now - self.reverts_tried < 5) then return self.reverts_ok end
  self.reverts_tried = now
  for _, inv in ipairs(self.inverters) do
    local pct = quantize(self.failsafe_pct, inv.adapter.step, true)
    local ok, err = true, nil
    if inv.adapter.revert then
      ok, err = inv.sd:write(inv.adapter.revert(pct, self.revert_s), { owner = self.name })
    elseif inv.adapter.backstop then
      ok, err = set_backstop(self, inv)
    end
    if not ok then
      self.write_errors = self.write_errors + 1
      if self.reverts_failing ~= inv.sd.id then -- once per run of failures, not every 5 s
        md.log.error("export limit: cannot set the revert settings (tried again every 5 s): %s",
          tostring(err))
        self.reverts_failing = inv.sd.id
      end
      return false
    end
  end
  if self.reverts_failing then md.log.info("export limit: the revert settings are set") end
  self.reverts_ok, self.reverts_failing = true, nil
  return true
end

-- The fail-safe setting is written again every revert/2 s while held.
local function now_due(self)
  return self.written_at == nil or md.now() - self.written_at >= self.revert_s / 2
end

local function run(self)
  -- An inverter answers its first poll within a moment; one that has not
  -- after failsafe_after is news. Nothing can be written to it meanwhile.
  local waiting_since = md.now()
  while not self.prepared do
    local ok, ready, why = pcall(prepare, self)
    if not ok then failsafe(self, ready) error(ready, 0) end
    if not ready then
      if self.state ~= "fail-safe" and md.now() - waiting_since >= self.failsafe_after then
        self.setpoint_pct = self.failsafe_pct
        set_state(self, "fail-safe", why)
      end
      md.sleep(0.2)
    end
  end
  local dev, point = self.grid_dev, self.grid_point
  local last_t = 0
  while true do
    local limit = self.values.limit
    if limit ~= self.limit_w then
      self.limit_w = limit
      self.failsafe_pct = math.max(0, math.min(100, limit / self.rating_w * 100))
      self.reverts_ok, self.reverts_tried = false, nil -- the inverters' fall-back level changes too
    end
    if not set_reverts(self, md.now()) then
      if self.state ~= "fail-safe" then failsafe(self, "the inverter refuses its settings") end
    end
    if self.values.alarm == false and self.persist.latched then
      md.log.warn("export limit: the alarm was reset (%s); normal control after %g s of fresh data",
        self.persist.latched.reason, self.recover_s)
      self.persist.latched = nil
      save_state(self.state_file, self.persist)
      self.fresh_since = nil
    end
    if self.persist.latched then
      if self.state ~= "fail-safe" then failsafe(self, self.persist.latched.reason) end
      if self.values.alarm ~= true then self.values:_set("alarm", true) end
      if now_due(self) then write_all(self, self.failsafe_pct) end
      md.sleep(0.5)
    elseif self.values.enabled == false then
      if self.state ~= "disabled" then
        set_state(self, "disabled")
        write_all(self, 100)
        battery_release(self)
      end
      md.sleep(1)
    else
      local _, age = dev:get(point)
      local budget = self.failsafe_after - (age or self.failsafe_after)
      local v, err = dev:wait(point, { newer_than = last_t, timeout = math.max(0.05, budget) })
      local now = md.now()
      local _, vage, vstate = dev:get(point)
      if v == nil or vstate ~= "ok" or (vage or math.huge) > self.failsafe_after then
        if self.state ~= "fail-safe" then failsafe(self, err or "the meter value is too old") end
        if (self.written_at and now - self.written_at >= self.revert_s / 2)
          or (self.failsafe_ok == false and now - self.failsafe_tried >= 1) then
          write_failsafe(self)
        end
        if v == nil then md.sleep(0.1) end
      else
        last_t = now - vage
        excursion_check(self, -v, now)
        if not self.reverts_ok then
          md.sleep(0) -- fail-safe until the inverter takes its revert settings
        elseif self.state == "fail-safe" then
          self.fresh_since = self.fresh_since or now
          if self.failsafe_ok == false then
            -- the inverters refused it: again every second until they take it
            if now - self.failsafe_tried >= 1 then write_failsafe(self) end
          elseif now - self.fresh_since >= self.recover_s then
            self.setpoint_pct = self.failsafe_pct
            step(self, v, now, last_t)
          elseif now - (self.written_at or 0) >= self.revert_s / 2 then
            write_failsafe(self)
          end
        else
          step(self, v, now, last_t)
        end
      end
    end
  end
end

--- ctl:status() -> {state, limit_w, setpoint_pct, rating_w, writes,
--- write_errors, excursions, last_excursion, latched = {at, reason} or nil,
--- battery_w, battery_error (why the battery is left out, while it is)}
function Ctl:status()
  return {
    state = self.state, limit_w = self.limit_w, setpoint_pct = self.setpoint_pct, rating_w = self.rating_w,
    writes = self.writes, write_errors = self.write_errors, excursions = self.persist.excursions or 0,
    last_excursion = self.persist.last, latched = self.persist.latched, battery_w = self.battery_w,
    battery_error = self.battery and self.battery.error,
  }
end

--- ctl:reset(): clear a latched escalation (as writing the alarm entity
--- false does); control resumes after recover_s of fresh data.
function Ctl:reset()
  assert(self.site[self.name]:write("alarm", false))
end

--- ctl:stop(): stop controlling; the inverters keep their last setting
--- (and their revert timers run out to the fail-safe level with 704); a
--- battery is set idle and given back its own mode (RCT: its strategy as
--- found at start), waited for up to 10 s. The engine's shutdown (SIGTERM,
--- Ctrl-C, md.exit) does this too, after writing the fail-safe output.
function Ctl:stop()
  if self.on_shutdown then
    self.on_shutdown:cancel()
    self.on_shutdown = nil
  end
  self.handle.cancel()
  local b = self.battery
  if b and b.writer then
    b.closing = true
    battery_release(self)
    if b.wake then
      b.wake:set()
      b.wake = nil
    end
    local ok, done = pcall(b.stopped.wait, b.stopped, BATTERY_STOP_S)
    if not (ok and done) then
      md.log.error("export limit: battery %s: stopped without waiting for it to be set idle (%s): it may "
        .. "keep its last setpoint", b.sd.id, tostring(ok and "no answer" or done))
    end
    b.writer.cancel()
    b.writer = nil
  end
  for _, inv in ipairs(self.inverters) do
    if inv.adapter then inv.sd:own(inv.adapter.points, nil) end
  end
  if self.battery and self.battery.adapter then
    self.battery.sd:own(self.battery.adapter.points, nil)
  end
end

-- The engine stops (md.on_shutdown, registered at start, removed by
-- ctl:stop()): control ends, every inverter gets the fail-safe output
-- (704: the revert level, which it also falls back to; 123: the fail-safe
-- limit with its revert timer off, else it would go back to full power;
-- a Growatt rate: the fail-safe rate), then ctl:stop() gives the battery
-- back. Disabled (the enabled switch off), the inverters keep the 100 %
-- it wrote. The log says what each device was left at.
local function shutdown(self)
  self.on_shutdown = nil -- running: ctl:stop() below has nothing to cancel
  local disabled = self.state == "disabled"
  self.handle.cancel()
  local left = {}
  if disabled then left[1] = "the inverters as disabling left them (100 %)" end
  for _, inv in ipairs(self.inverters) do
    local a = inv.adapter
    if a and not disabled then
      local pct = quantize(self.failsafe_pct, a.step, true)
      local values = a.limit(pct, false)
      if a.mode == 123 then values.power_limit_revert = 0 end
      local ok, err = inv.sd:write(values, { owner = self.name })
      self.writes = self.writes + 1
      if ok then
        left[#left + 1] = format("%s at %g %% (%s)", inv.sd.id, pct,
          a.mode == 704 and "its revert level" or a.mode == 123 and "fail-safe limit, no revert"
          or "fail-safe rate")
      else
        self.write_errors = self.write_errors + 1
        left[#left + 1] = format("%s NOT set (%s): it keeps its last setting", inv.sd.id, tostring(err))
      end
    end
  end
  local b = self.battery
  local gave_back = b and b.writer and not b.released
  self:stop()
  if gave_back then
    if b.given_back then
      left[#left + 1] = format("battery %s at 0 W%s", b.sd.id,
        b.adapter.mode and format(", %s = %s", b.adapter.mode, tostring(b.own_mode)) or "")
    else
      left[#left + 1] = format("battery %s: given back without an answer (see above)", b.sd.id)
    end
  end
  if #left > 0 then
    md.log.info("export limit: engine stopping: left %s", table.concat(left, "; "))
  else
    md.log.debug("export limit: engine stopping before it had set anything")
  end
end

--- export_limit{site =, grid = "meter.power", inverters = {"pv", ...} or
--- {{id = "pv", rating = W, power = "power"}, ...}, limit_w = 0 [, name =
--- "export_limit"] [, failsafe_after = 3] [, recover_s = 10] [, revert_s =
--- 25 per device, 30..60] [, margin_w] [, tolerance_w] [, excursion_s = 15] [, slew_pct = 25]
--- [, min_change_pct = 1] [, ki = 0.2] [, hold_s = 10] [, state_file = path
--- (default under systemd: md.state_dir() .. "/<site>-<name>.json")]
--- [, deadband_w = tolerance_w] [, relax_s = 10 per device, >= 15] [, overcut = 0.3] [, settle_s = 2]
--- [, escalate_s] [, escalate_count] [, escalate_window_s = 86400]
--- [, battery = id or {id =, soc_max = 100, max_w = W}]}. battery: a
--- SunSpec storage (sunspec_storage: 124 + 802) or an RCT Power battery
--- (rct_power: battery_charge_setpoint) charged with the export before PV
--- is curtailed; max_w: its charge power, when the device's own is not wanted.
--- -> controller. on_step(status, grid_w, pv_w) runs after each control
--- step (a log, a plot); an error in it is an error of the controller.
--- hold_s: after a cut, the longest the controller waits for
--- the inverters to reach it (and for a meter sample taken after that)
--- before it acts again, unless the export grows meanwhile.
function M.export_limit(opts)
  assert(type(opts) == "table", "export_limit: expected a table of options")
  local site = opts.site or error("export_limit: site = the md.site to control", 2)
  local gdev, gpoint = tostring(opts.grid or ""):match("^([a-z0-9_]+)%.([a-z0-9_]+)$")
  if not gdev then error("export_limit: grid must be 'device.point', e.g. 'meter.power'", 2) end
  local grid_dev = site[gdev]
  grid_dev:get(gpoint) -- raises on an unknown point
  if type(opts.limit_w) ~= "number" or opts.limit_w < 0 then
    error("export_limit: limit_w must be a number of watts >= 0 (0: no export)", 2)
  end
  local name = opts.name or "export_limit"
  -- Steady state costs one write per device per round (a refresh of the
  -- revert timers, a small change): at most one write per 10 s for the
  -- whole site (limit registers often live in flash) spaces the small
  -- changes 10 s per device, and the revert time, refreshed at half of
  -- it, 25 s per device (30 s for one device, 50 s for two, at most
  -- G100's 60): the refresh rounds leave room for a change now and then.
  local devices_n = #(opts.inverters or {}) + (opts.battery and 1 or 0)
  local self = setmetatable({
    site = site, name = name, grid_dev = grid_dev, grid_point = gpoint, limit_w = opts.limit_w,
    failsafe_after = opts.failsafe_after or 3, recover_s = opts.recover_s or 10,
    revert_s = opts.revert_s or math.min(60, math.max(30, 25 * devices_n)),
    excursion_s = opts.excursion_s or 15,
    slew_pct = opts.slew_pct or 25, min_change_pct = opts.min_change_pct or 1, ki = opts.ki or 0.2,
    overcut = opts.overcut or 0.3, relax_s = opts.relax_s or math.max(15, 10 * devices_n),
    battery_hold_s = opts.battery_hold_s or 2,
    hold_s = opts.hold_s or 10, settle_s = opts.settle_s or 2, on_step = opts.on_step,
    escalate_s = opts.escalate_s,
    escalate_count = opts.escalate_count, escalate_window_s = opts.escalate_window_s or 86400,
    -- as a service, kept in StateDirectory= by default (md.state_dir(): /var/lib/moondog)
    state_file = opts.state_file
      or (md.state_dir() and format("%s/%s-%s.json", md.state_dir(), site.name, name)),
    inverters = {}, setpoint_pct = 100, integral = 0, writes = 0,
    write_errors = 0, state = "starting",
    failsafe_pct = 0, -- until the ratings are known: 0 % is safe for any limit
  }, Ctl)
  local total = 0
  for _, x in ipairs(opts.inverters or error("export_limit: inverters = {\"pv\", ...}", 2)) do
    local spec = type(x) == "table" and x or { id = x }
    local sd = site[spec.id]
    self.inverters[#self.inverters + 1] = { sd = sd, rating = spec.rating, power = spec.power or "power" }
    total = total + (spec.rating or 0)
  end
  self.opts = opts
  defaults_w(self, total)
  if opts.battery then
    local spec = type(opts.battery) == "table" and opts.battery or { id = opts.battery }
    self.battery = { sd = site[spec.id], soc_max = spec.soc_max or 100, spec_max_w = spec.max_w }
  end
  self.persist = load_state(self.state_file)
  self.values = site:value(name .. ".limit", { label = "Export limit", writable = true, min = 0,
    max = 1000000,
    step = 1, unit = "W", device_class = "power" }, opts.limit_w)
  site:value(name .. ".enabled", { label = "Export limiting", writable = true, type = "bool" }, true)
  site:value(name .. ".state", { label = "Export limiter state", type = "enum",
    options = { "starting", "normal", "limiting", "fail-safe", "disabled" } })
  site:value(name .. ".headroom", { label = "Export headroom", unit = "W", device_class = "power",
    state_class = "measurement" })
  site:value(name .. ".excursions", { label = "Export excursions", type = "integer",
    state_class = "total_increasing" })
  site:value(name .. ".alarm", { label = "Export limit alarm", writable = true, type = "bool" },
    self.persist.latched ~= nil)
  self.values:_set("state", "starting")
  self.values:_set("excursions", self.persist.excursions or 0)
  self.handle = site:spawn(function()
    local ok, err = xpcall(run, debug.traceback, self)
    if not ok then
      pcall(failsafe, self, "the controller raised")
      error(err, 0)
    end
  end, { critical = true, name = "export limit" })
  self.on_shutdown = md.on_shutdown(function() shutdown(self) end, "export limit " .. name)
  return self
end

return M
