-- moondog.site.schedule: when each point of a device is due. Pure Lua, no
-- I/O: the site's poll task asks it what to read and when.
--
--   local s = schedule.new(points, { poll = 5, profile_poll = 10, phase = 0.3 })
--   local t = s:next_due()          -- engine time of the next read
--   local names = s:due(now)        -- point names due at now (nil: none)
--   local skipped = s:advance(now)  -- after the read: cycles missed meanwhile
--
-- Each point is polled at its own interval: the point's `poll`, else the
-- device's (site:add's option), else the profile's, else 10 s. Points of
-- one interval form a group. All groups of a device count from one origin,
-- origin = start + phase * min(shortest interval, 1 s) (a device polled
-- every minute is still read at once when added), so a 5 s group falls on
-- every fifth tick of a 1 s group and both are read in one go: the read
-- planner then fetches them in the fewest transactions.
--
-- The phase spreads devices: many devices added together would otherwise
-- all fire at the same instant and queue on their buses. The site gives
-- device i the phase frac(i * 0.618...) (the golden ratio's fractional part
-- fills [0, 1) evenly for any number of devices), in 50 slots, counted
-- from one start for the whole site so that a slot's devices share wake-ups.
--
-- A cycle that could not finish before the next one was due is skipped and
-- counted, never queued: advance() moves each due group to its first tick
-- after now, so a slow bus reads the freshest values instead of working
-- through a backlog of old ticks.

local M = {}

-- Groups whose ticks are less than this apart are read together (float
-- noise in origin + n * interval).
local COINCIDE = 1e-3

--- schedule.interval(p, device_poll, profile_poll) -> seconds.
function M.interval(p, device_poll, profile_poll)
  local s = p.poll or device_poll or profile_poll or 10
  if type(s) ~= "number" or s <= 0 or s ~= s then
    error(string.format("point %s: poll must be a number of seconds > 0, got %s", tostring(p.name),
      tostring(s)), 0)
  end
  return s
end

--- schedule.phase(i) -> the phase of the i-th device, in [0, 1).
function M.phase(i)
  local x = i * 0.6180339887498949
  x = x - math.floor(x)
  -- in 50 slots: the devices of one slot wake in one turn of the loop (one
  -- epoll_wait, not one each); 20 ms apart at a 1 s interval is spread enough
  return math.floor(x * 50) / 50
end

local Schedule = {}
Schedule.__index = Schedule

--- schedule.new(points, opts) -> schedule. points: the profile's points;
--- opts.poll (device), opts.profile_poll, opts.phase ([0,1)), opts.start
--- (engine time the ticks count from, default now; ticks already past are
--- not due; opts.now: the engine time now, for tests), opts.skip =
--- {name = true} (not polled).
function M.new(points, opts)
  opts = opts or {}
  local by_interval, groups = {}, {}
  for _, p in ipairs(points) do
    if not (opts.skip and opts.skip[p.name]) then
      local s = M.interval(p, opts.poll, opts.profile_poll)
      local g = by_interval[s]
      if not g then
        g = { interval = s, names = {}, n = 0 }
        by_interval[s] = g
        groups[#groups + 1] = g
      end
      g.names[#g.names + 1] = p.name
    end
  end
  table.sort(groups, function(a, b) return a.interval < b.interval end)
  local shortest = groups[1] and groups[1].interval or 10
  local self = setmetatable({ groups = groups, shortest = shortest, skipped = 0 }, Schedule)
  self:restart(opts.start or require("moondog").now(), opts.phase or 0, opts.now)
  return self
end

--- s:restart(start, phase): count every group from a new origin (after a
--- device came back, so that it is read at once).
function Schedule:restart(start, phase, now)
  self.start, self.phase = start, phase or 0
  self.origin = start + self.phase * math.min(self.shortest, 1)
  -- a start in the past (the site's, for a device added later): begin at
  -- the first tick from now on, with nothing counted as skipped
  now = now or require("moondog").now()
  for _, g in ipairs(self.groups) do
    g.n = self.origin < now and math.ceil((now - self.origin) / g.interval - COINCIDE) or 0
  end
end

local function tick(self, g)
  return self.origin + g.n * g.interval
end

--- s:next_due() -> engine time of the earliest due group (math.huge: no points).
function Schedule:next_due()
  local t = math.huge
  for _, g in ipairs(self.groups) do
    t = math.min(t, tick(self, g))
  end
  return t
end

--- s:due(now) -> array of the point names due at now (in profile order
--- within each group, shortest interval first), or nil when none is.
function Schedule:due(now)
  local out
  for _, g in ipairs(self.groups) do
    if tick(self, g) <= now + COINCIDE then
      out = out or {}
      table.move(g.names, 1, #g.names, #out + 1, out)
    end
  end
  return out
end

--- s:advance(now) -> cycles skipped: every group due by now moves to its
--- first tick after now; the ticks passed over are counted.
function Schedule:advance(now)
  local skipped = 0
  for _, g in ipairs(self.groups) do
    if tick(self, g) <= now + COINCIDE then
      local n = math.floor((now + COINCIDE - self.origin) / g.interval) + 1
      skipped = skipped + math.max(0, n - g.n - 1)
      g.n = math.max(n, g.n + 1)
    end
  end
  self.skipped = self.skipped + skipped
  return skipped
end

--- s:intervals() -> {name = seconds} of every scheduled point.
function Schedule:intervals()
  local out = {}
  for _, g in ipairs(self.groups) do
    for _, name in ipairs(g.names) do out[name] = g.interval end
  end
  return out
end

return M
