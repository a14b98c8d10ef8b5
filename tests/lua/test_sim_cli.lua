-- `moondog sim` (scripts/sim.lua) in a child process: a scenario in
-- simulated time with plain lines (stdout is a file here), the CSV and the
-- plot at the end, --help, --list and bad arguments.

local T = require "moondog.testing"

local function sim(dir, args)
  local proc <close> = T.start(dir, "sim", md.paths.exe .. " --log-level warn sim " .. args)
  T.wait_for(function() return not proc:alive() end, 60, "moondog sim to finish")
  local _, how, code = proc:stop()
  return how .. " " .. code, T.read_file(proc.out), T.read_file(proc.err)
end

T.test("a scenario in simulated time: one line a second, a CSV and a plot", function()
  local dir <close> = T.tmpdir()
  local csv, png = dir.path .. "/run.csv", dir.path .. "/run.png"
  local status, out, err = sim(dir, string.format("--scenario load_drop --simulated-time --seconds 150 "
    .. "--csv %s --plot %s", T.quote(csv), T.quote(png)))
  T.eq(status, "exit 0", "exit status; stderr: " .. err)
  local lines = 0
  for line in out:gmatch("[^\n]+") do
    if line:match("^%d%d:%d%d:%d%d grid") then
      lines = lines + 1
      assert(line:find("limit", 1, true) and line:find("health ok", 1, true) or lines < 10, line)
    end
  end
  assert(lines >= 149 and lines <= 151, "lines: " .. lines)
  assert(not out:find("\27[", 1, true), "no terminal codes into a file")
  assert(out:find("csv:  " .. csv, 1, true), out)
  local rows = 0
  for _ in T.read_file(csv):gmatch("\n") do rows = rows + 1 end
  assert(rows >= 150 and rows <= 152, "CSV rows (with the header): " .. rows)
  assert(T.read_file(csv):match("^t,time,grid_w,"), "CSV header")
  if T.have("gnuplot") then
    assert(out:find("plot: " .. png, 1, true), out)
    T.eq(T.read_file(png):sub(1, 8), "\137PNG\r\n\26\n", "a PNG")
  else
    assert(out:find("plot: none", 1, true), out)
  end
  -- the 6 kW drop at 120 s: in the excursion line at the end
  local longest = tonumber(out:match("longest excursion ([%d.]+) s"))
  assert(longest and longest <= 5, out)
end, { timeout = 60 })

T.test("--help, --list, and bad arguments exit 2 with one line", function()
  local dir <close> = T.tmpdir()
  local status, out = sim(dir, "--help")
  T.eq(status, "exit 0", "help")
  assert(out:find("--scenario NAME", 1, true) and out:find("--simulated-time", 1, true), out)
  status, out = sim(dir, "--list")
  T.eq(status, "exit 0", "list")
  assert(out:find("load_drop", 1, true) and out:find("rs485_9600", 1, true), out)
  local err
  for _, case in ipairs({
    { "--scenario nope", "no scenario 'nope'; the scenarios are: sunny_day" },
    { "--scenario load_drop --speed fast", "--speed needs a number > 0" },
    { "--speed 2", "--scenario NAME is required" },
    { "--scenario load_drop --bogus", "unknown argument '--bogus'" },
    { "--scenario load_drop --simulated-time --broker", "MQTT needs real time" },
  }) do
    status, _, err = sim(dir, case[1])
    T.eq(status, "exit 2", case[1])
    assert(err:find(case[2], 1, true), case[1] .. ": " .. err)
    local _, n = err:gsub("\n", "")
    T.eq(n, 1, "one line: " .. err)
  end
end, { timeout = 60 })
