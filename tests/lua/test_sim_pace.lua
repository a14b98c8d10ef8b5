-- moondog.sim.pace (`moondog sim --speed N`): the pacing rule driven by an
-- injected real clock (no real-time assertion), the task in simulated time
-- with that clock, and the tool itself paced in a child process, checked
-- loosely (a paced run cannot be as fast as an unpaced one); the view on a
-- terminal (script(1) gives the tool a pseudo-terminal): one screen redrawn
-- in place per simulated second.

local T = require "moondog.testing"
local pace = require "moondog.sim.pace"

-- A model of a paced run: every `every` simulated seconds the clock jumps
-- `jumps` times, each costing the quiet time plus `work` real seconds.
-- Returns the ratio simulated / real seconds after n checks.
local function model(speed, jumps, work, n)
  local quiet, sim_t, real_t = 0.01 / speed, 0, 0
  for _ = 1, n do
    sim_t = sim_t + 2
    real_t = real_t + jumps * (quiet + work)
    quiet = pace.adjust(quiet, sim_t / speed, real_t)
  end
  return sim_t / real_t, quiet
end

T.test("the rule converges on the asked speed, from too fast and from too slow", function()
  for _, case in ipairs {
    { speed = 10, jumps = 20, work = 0.0001 },  -- light: the quiet time must grow
    { speed = 60, jumps = 20, work = 0.0002 },   -- fast
    { speed = 2, jumps = 5, work = 0.05 },       -- heavy work per jump: the quiet time shrinks
  } do
    local ratio = model(case.speed, case.jumps, case.work, 200)
    assert(math.abs(ratio / case.speed - 1) < 0.05,
      string.format("speed %g: ran at %.2fx", case.speed, ratio))
  end
  -- the factor is bounded: one check never more than doubles or halves the quiet time
  T.eq(pace.adjust(0.01, 100, 0), 0.02, "at most x2")
  T.eq(pace.adjust(0.01, 0, 100), 0.005, "at most /2")
  T.eq(pace.adjust(1, 100, 0), 1, "capped")
end)

T.test("moondog sim --speed 20: paced, one plain line per simulated second", function()
  local dir <close> = T.tmpdir()
  local function sim(args)
    local t0 = md.now()
    local proc <close> = T.start(dir, "sim", md.paths.exe .. " --log-level warn sim --scenario load_drop "
      .. "--seconds 40 --csv " .. T.quote(dir.path .. "/run.csv")
      .. " --plot " .. T.quote(dir.path .. "/p.png")
      .. " " .. args)
    T.wait_for(function() return not proc:alive() end, 60, "moondog sim to finish")
    local _, how, code = proc:stop()
    T.eq(how .. " " .. code, "exit 0", "exit; stderr: " .. T.read_file(proc.err))
    local lines = 0
    for line in T.read_file(proc.out):gmatch("[^\n]+") do
      if line:match("^%d%d:%d%d:%d%d grid") then lines = lines + 1 end
    end
    return md.now() - t0, lines
  end
  local paced, lines = sim("--speed 20")
  assert(lines >= 39 and lines <= 41, "one line per simulated second: " .. lines)
  local fast = sim("--simulated-time")
  -- 40 simulated seconds at 20x take 2 s more than as fast as possible
  -- (start, CSV and plot cost the same); loosely: at least half of that
  assert(paced - fast >= 1, string.format("paced: %.2f s of real time for 40 simulated s at 20x, "
    .. "unpaced %.2f s", paced, fast))
end, { timeout = 90 })

T.test("on a terminal: the view is redrawn in place once a simulated second, like top", function()
  T.need("script") -- util-linux: runs the tool on a pseudo-terminal
  local dir <close> = T.tmpdir()
  local cmd = md.paths.exe .. " --log-level warn sim --scenario load_drop --seconds 12 --speed 50 --csv "
    .. T.quote(dir.path .. "/run.csv") .. " --plot " .. T.quote(dir.path .. "/p.png")
  local proc <close> = T.start(dir, "script", "env TERM=xterm script -qec " .. T.quote(cmd) .. " /dev/null")
  T.wait_for(function() return not proc:alive() end, 60, "moondog sim on a terminal to finish")
  local out = T.read_file(proc.out)
  local screens = 0
  for _ in out:gmatch("\27%[H\27%[2J") do screens = screens + 1 end
  assert(screens >= 11 and screens <= 13, "one screen per simulated second: " .. screens .. "; stderr: "
    .. T.read_file(proc.err) .. "; stdout: " .. out:sub(1, 200))
  assert(out:find("export limiter (moondog)", 1, true), "the controller's line")
  assert(out:find("site health:", 1, true) and out:find("polls", 1, true), "device health")
  assert(not out:find("%d%d:%d%d:%d%d grid"), "no plain lines on a terminal")
end, { timeout = 90 })

-- last: from here on the file runs in simulated time (there is no way back)
T.test("a paced clock in simulated time: the task reads the injected clock every 2 simulated s", function()
  md.clock.simulate { start = "2026-06-21 12:00" }
  local reads, fake = 0, 100
  local task = pace.start(10, { real = function() reads = reads + 1 fake = fake + 0.2 return fake end })
  md.sleep(20.5)
  task:cancel()
  md.clock.simulate { start = md.time(), quiet = 0 }
  T.eq(reads, 11, "one read at the start, one per 2 simulated seconds")
  T.eq(select(2, pcall(pace.start, 0)):match("speed must be a number > 0") ~= nil, true, "speed checked")
end)
