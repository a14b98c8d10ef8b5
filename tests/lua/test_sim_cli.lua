-- `moondog sim` (scripts/sim.lua) in a child process: a scenario in
-- simulated time with plain lines (stdout is a file here), the CSV and the
-- plot at the end, --help, --list and bad arguments (moondog.cli's rules).

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

T.test("--help, --list; bad arguments exit 2, the reason and a pointer to --help (moondog.cli)", function()
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
    { "--scenario load_drop --bogus", "unknown option '--bogus'" },
    { "--scenario load_drop --simulated-time --broker", "MQTT needs real time" },
    { "--scenario", "option --scenario needs a value (NAME)" },
    { "--scenario=load_drop --seconds=-3", "--seconds needs a number > 0, got '-3'" },
    { "--scenario load_drop --broker --mqtt 127.0.0.1:1", "--mqtt and --broker exclude each other" },
    { "--scenario load_drop stray", "unexpected argument 'stray'" },
  }) do
    status, _, err = sim(dir, case[1])
    T.eq(status, "exit 2", case[1])
    T.usage_error(err, "moondog sim", case[2], case[1])
  end
end, { timeout = 60 })

-- What `make run` runs, shortened: real time, published with discovery to
-- a broker, a command halfway. Every entity announced gets a state within
-- 10 s, the export limiter's own entities included.
T.test("make run: the site with export limiting, published with discovery, a command obeyed", function()
  T.need("mosquitto")
  local cjson = require "cjson"
  local broker = require "moondog.mqtt.broker"
  local b <close> = assert(broker.start {})
  local first, seen, configs = {}, {}, {}
  local c <close> = assert(md.mqtt.connect { host = b.host, port = b.port, client_id = "sim-watcher" })
  local sub = assert(c:subscribe("#", function(topic, payload)
    first[topic] = first[topic] or md.now()
    seen[topic] = payload
    if topic:match("^homeassistant/.*/config$") and payload ~= "" then
      configs[topic] = cjson.decode(payload)
    end
  end, { qos = 1 }))
  local dir <close> = T.tmpdir()
  local status, out, err = sim(dir, string.format("--scenario load_drop --seconds 14 --mqtt %s:%d --csv %s",
    b.host, b.port, T.quote(dir.path .. "/run.csv")))
  T.eq(status, "exit 0", "exit status; stderr: " .. err)
  sub:close()
  assert(out:find("csv:", 1, true), out)
  local n = 0
  for topic, cfg in pairs(configs) do
    n = n + 1
    local at = first[cfg.state_topic]
    assert(at, topic .. ": announced but " .. cfg.state_topic .. " never got a value")
    assert(at - first[topic] <= 10, string.format("%s: first state %.1f s after the config", topic,
      at - first[topic]))
  end
  assert(n >= 10, "entities announced: " .. n)
  assert(configs["homeassistant/number/moondog/export_limit_limit/config"], "the limit entity")
  -- the controller's own entities (issue 12, section 3): limit (number, min 0 W), enabled (switch),
  -- state, headroom, excursion count, and the G100 alarm (switch)
  T.eq(configs["homeassistant/number/moondog/export_limit_limit/config"].min, 0, "limit: min 0 W")
  local entities = { enabled = "switch", state = "sensor", headroom = "sensor", excursions = "sensor",
                     alarm = "switch" }
  for name, component in pairs(entities) do
    local topic = string.format("homeassistant/%s/moondog/export_limit_%s/config", component, name)
    assert(configs[topic], "announced: " .. topic)
    assert(seen[configs[topic].state_topic], name .. ": a state published")
  end
  local result = cjson.decode((assert(seen["moondog/export_limit/limit/result"], "command result")))
  T.eq(result.ok, true, "the limit command accepted")
  T.eq(seen["moondog/export_limit/limit"], "1000", "the new limit published")
  assert(seen["moondog/export_limit/state"] == "limiting" or seen["moondog/export_limit/state"] == "normal",
    tostring(seen["moondog/export_limit/state"]))
end, { timeout = 60 })
