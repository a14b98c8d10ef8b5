-- moondog.clock: simulated time. Also md.clock.
--
--   md.clock.simulate{ start = "2026-06-21 04:00", seed = 42 }
--   md.sleep(3600)          -- returns at once in real time; md.now() is 3600 s later
--   md.clock.simulated()    --> true
--
-- From the call on, md.now, md.time, md.sleep, md.every, every timeout and
-- the log's timestamps run on a virtual clock. It stands still while any
-- task can run or any socket has data, and jumps to the next timer when
-- nothing can (core/loop.h says how). Real sockets still carry the
-- traffic, so a site script talks to simulated devices served by the same
-- engine exactly as it would to hardware, a simulated day passes in
-- seconds, and with the same seed it passes the same way every time.
-- `moondog --simulated-time SCRIPT` starts a script in simulated time.
--
-- Before each jump the engine also waits (in real time, briefly) for TCP
-- data that it sent to one of its own sockets and the kernel has not
-- delivered yet, which happens on a loaded machine. md.stats() counts
-- those waits (sim_flight_waits) and the ones cut after 1 s
-- (sim_flight_giveups). UDP and serial lines over ptys are not covered.
--
-- Peers in other processes (a mosquitto broker, socat) answer in real
-- time: give `quiet` (seconds of real time to wait for them before each
-- jump) or keep them off the timing path. There is no way back to real
-- time.

local core = require "moondog.core"

local M = {}

-- "2026-06-21", "2026-06-21 04:00", "2026-06-21T04:00:30" (UTC) -> seconds.
local function parse_start(s)
  local y, mo, d, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)(.*)$")
  if not y then return nil end
  local h, mi, sec = rest:match("^[T ](%d%d):(%d%d):?(%d*)Z?$")
  if rest ~= "" and not h then return nil end
  -- days since the epoch (civil calendar, proleptic Gregorian)
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo < 1 or mo > 12 or d < 1 or d > 31 then return nil end
  if mo <= 2 then y = y - 1 end
  local era = y // 400
  local yoe = y - era * 400
  local doy = (153 * (mo + (mo > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  local days = era * 146097 + doe - 719468
  return days * 86400 + (tonumber(h) or 0) * 3600 + (tonumber(mi) or 0) * 60 + (tonumber(sec) or 0)
end

--- clock.simulate{start =, seed =, quiet =}: simulated time from now on.
--- start: wall-clock time the simulation starts at, seconds since 1970 or
--- "YYYY-MM-DD[ HH:MM[:SS]]" in UTC (default: now); seed: seeds
--- math.random so that a run repeats; quiet: real seconds to wait for
--- peers in other processes before each jump (default 0).
function M.simulate(opts)
  opts = opts or {}
  local start = opts.start or core.time()
  if type(start) == "string" then
    start = parse_start(start) or error("clock.simulate: start must be seconds since 1970 or "
      .. "'YYYY-MM-DD[ HH:MM[:SS]]' (UTC), got '" .. start .. "'", 2)
  elseif type(start) ~= "number" then
    error("clock.simulate: start must be a number or a date string", 2)
  end
  if opts.seed ~= nil then math.randomseed(opts.seed) end
  core.simulate_time(start, opts.quiet or 0)
end

--- clock.simulated() -> whether time is simulated.
M.simulated = core.simulated

--- clock.parse_start(s) -> seconds since 1970 (UTC) of "YYYY-MM-DD[ HH:MM[:SS]]", or nil.
M.parse_start = parse_start

return M
