-- moondog.sim.pace: run a simulated clock (md.clock) at N simulated seconds
-- per real second, for `moondog sim --speed N`.
--
--   local pace = require "moondog.sim.pace"
--   local task = pace.start(20)        -- 20x real time from now
--   ...; task:cancel()
--
-- How. The simulated clock jumps to the next timer whenever nothing is
-- runnable; md.clock.simulate{quiet = q} makes it wait q real seconds
-- before each jump. A task checks every `every` simulated seconds (2) how
-- far the real time spent is off its target (simulated / speed) and scales
-- q by a factor within [0.5, 2]: too fast, wait longer; too slow, shorter.
-- The rule is the pure function pace.adjust, so a test can drive it with
-- an injected clock instead of real time. The real clock is
-- `date +%s.%N` by default (the engine has no wall clock that simulated
-- time leaves alone); opts.real replaces it.

local md = require "moondog"

local M = {}

local QUIET_MIN, QUIET_MAX = 0.0005, 1

--- pace.adjust(quiet, want, got) -> the next quiet time: want and got
--- are the real seconds the run should have taken so far and the ones it
--- took.
function M.adjust(quiet, want, got)
  local factor = math.max(0.5, math.min(2, 1 + (want - got) / 2))
  return math.max(QUIET_MIN, math.min(QUIET_MAX, quiet * factor))
end

local function date_now()
  local p = io.popen("date +%s.%N")
  local t = tonumber(p:read("l"))
  p:close()
  return t
end

--- pace.start(speed [, {real = fn() -> seconds, every = 2}]) -> the
--- pacing task (cancel it to stop pacing). Needs md.clock in simulated
--- mode; sets its quiet time.
function M.start(speed, opts)
  opts = opts or {}
  if type(speed) ~= "number" or speed <= 0 then error("pace.start: speed must be a number > 0", 2) end
  if not md.clock.simulated() then error("pace.start: the clock is not simulated (md.clock.simulate)", 2) end
  local real = opts.real or date_now
  local quiet = 0.01 / speed
  local v0, r0 = md.now(), real()
  md.clock.simulate { start = md.time(), quiet = quiet }
  local task = md.every(opts.every or 2, function()
    quiet = M.adjust(quiet, (md.now() - v0) / speed, real() - r0)
    md.clock.simulate { start = md.time(), quiet = quiet }
  end)
  task:name("sim pace")
  return task
end

return M
