-- `moondog devices` (list the profiles on the search path) and `moondog
-- devices check FILE` (every check a profile goes through, all mistakes at
-- once) as users run them: the real tool as a child process, with profiles
-- the test writes into fresh folders named by MOONDOG_DEVICES. Also the
-- SunSpec driver's check of sources against the model definitions at open.

local T = require "moondog.testing"
local devices = require "moondog.devices"

local format = string.format
local q = T.quote

-- Run `moondog devices ARGS` with MOONDOG_DEVICES = folders; returns
-- stdout, stderr, exit code.
local function tool(dir, folders, args)
  local errf = dir.path .. "/tool.err"
  local out, code = T.sh(format(
    "env XDG_CONFIG_HOME= HOME=%s MOONDOG_DEVICES=%s %s devices %s 2>%s </dev/null", q(dir.path .. "/nohome"),
    q(folders or ""), q(md.paths.exe), args, q(errf)))
  return out, T.read_file(errf) or "", code
end

local function write(path, text)
  os.execute("mkdir -p " .. q(path:match("^(.*)/[^/]*$")))
  T.write_file(path, text)
end

local function lines(text)
  local list = {}
  for line in text:gmatch("[^\n]+") do list[#list + 1] = line end
  return list
end

local function meter(manufacturer, model)
  return format([[
return { protocol = "modbus", manufacturer = %q, model = %q, points = {
  { name = "power", source = { kind = "input", addr = 0, type = "float32" },
    unit = "W", device_class = "power", state_class = "measurement" } } }
]], manufacturer, model)
end

T.test("list: every profile a name opens, in aligned columns, with where it comes from", function()
  local dir <close> = T.tmpdir()
  local mine = dir.path .. "/mine"
  write(mine .. "/acme/meter1.lua", meter("Acme", "Meter One"))
  write(mine .. "/sdm630.lua", meter("Eastron", "my SDM630"))
  write(mine .. "/acme/table.lua", "return { 1, 2, 3 }\n")           -- data, not a profile
  write(mine .. "/broken.lua", "return {\n")                         -- does not load
  local out, err, code = tool(dir, mine, "")
  T.eq(code, 0, "exit code: " .. err)
  local rows = lines(out)
  T.eq(rows[1]:match("^NAME%s+MANUFACTURER%s+MODEL%s+PROTOCOL%s+FROM%s+FILE$") ~= nil, true,
    "header: " .. rows[1])
  local col = rows[1]:find("FILE", 1, true)
  local by_name = {}
  for i = 2, #rows do
    T.eq((rows[i]:find(" /[^ ]*$") or 0) + 1, col, "the FILE column lines up: " .. rows[i])
    by_name[rows[i]:match("^(%S+)")] = rows[i]
  end
  assert(by_name["acme/meter1"], "a vendor/model profile is listed:\n" .. out)
  T.eq(by_name["acme/meter1"]:gsub("%s+", " "), format("acme/meter1 Acme Meter One modbus MOONDOG_DEVICES %s",
    mine .. "/acme/meter1.lua"), "its row")
  T.eq(by_name["sdm630"]:gsub("%s+", " "), format("sdm630 Eastron my SDM630 modbus MOONDOG_DEVICES %s",
    mine .. "/sdm630.lua"), "the profile a name opens: the user's, not the shipped one")
  T.eq(by_name["sunspec_inverter"]:gsub("%s+", " "),
    format("sunspec_inverter SunSpec Inverter sunspec shipped %s/sunspec_inverter.lua", md.paths.devices),
    "shipped profiles")
  T.eq(by_name["acme/table"], nil, "a data file is not listed")
  T.eq(by_name["sunspec/model_103"], nil, "SunSpec definitions are not listed")
  T.eq(by_name["broken"], nil, "a broken file is not a row")
  assert(err:find(mine .. "/broken.lua: does not load:", 1, true), "a broken file is reported: " .. err)
end)

T.test("list PATTERN: name, manufacturer or model, any case; none matching exits 1", function()
  local dir <close> = T.tmpdir()
  local mine = dir.path .. "/mine"
  write(mine .. "/acme/meter1.lua", meter("Acme", "Meter One"))
  local out, err, code = tool(dir, mine, "ACME")
  T.eq(code, 0, "exit code: " .. err)
  T.eq(#lines(out), 2, "header and one row:\n" .. out)
  out, err, code = tool(dir, mine, "list 'meter one'")
  T.eq(code, 0, "exit code: " .. err)
  T.eq(lines(out)[2]:match("^%S+"), "acme/meter1", "by model")
  out = tool(dir, mine, "sunspec_")
  local rows = lines(out)
  assert(#rows >= 3, "by name: the sunspec_ profiles:\n" .. out)
  for i = 2, #rows do
    assert(rows[i]:match("^sunspec_"), "only names that contain the pattern:\n" .. out)
  end
  out, err, code = tool(dir, mine, "nothing-like-this")
  T.eq(code, 1, "exit code")
  T.eq(out, "", "nothing on stdout")
  T.eq(err, "moondog devices: no profile matches 'nothing-like-this'\n", "stderr")
  out, err, code = tool(dir, mine, "a b")
  T.eq(out, "", "nothing on stdout")
  T.eq(code, 2, "two patterns are a usage error: " .. err)
end)

T.test("the tool runs in a source tree that has a devices/ folder", function()
  local out, code = T.sh(format("cd %s && %s devices sdm630 2>&1", q(md.paths.home), q(md.paths.exe)))
  T.eq(code, 0, "exit code: " .. out)
  T.eq(lines(out)[2]:match("^%S+"), "sdm630", "listed")
end)

T.test("check: the shipped profiles are clean", function()
  local dir <close> = T.tmpdir()
  local names = { "sdm630", "sim_inverter", "sunspec_inverter", "sunspec_meter", "rct_power" }
  local out, err, code = tool(dir, "", "check " .. table.concat(names, " "))
  T.eq(code, 0, "exit code: " .. out .. err)
  for i, line in ipairs(lines(out)) do
    local p = devices.load(names[i])
    T.eq(line, format("%s: ok: %d points", names[i], #p.points), "line " .. i)
  end
  out, err, code = tool(dir, "", "check sdm630")
  T.eq(code, 0, "exit code: " .. err)
  T.eq(out, "ok: 14 points\n", "one profile: no prefix")
end)

T.test("check: every mistake of a Modbus profile at once, one line each", function()
  local dir <close> = T.tmpdir()
  local file = dir.path .. "/bad_meter.lua"
  write(file, [[
return { protocol = "modbus", poll = 0, sleeps = "yes", points = {
  { name = "voltage", source = { kind = "input", addr = 0, type = "float33" }, unit = "V" },
  { name = "Power", source = { kind = "input", addr = 2, type = "float32" } },
  { name = "limit", source = { kind = "input", addr = 4 }, writable = true, min = 0, max = 100, step = 1 },
  { name = "energy", source = { kind = "input", addr = 6, type = "float32" },
    unit = "kWh", device_class = "energy" },
  { name = "current", source = { kind = "input", addr = 8, type = "float32" },
    unit = "V", device_class = "current", state_class = "measurement", offline = "keep" },
  { name = "stats", source = { kind = "input", addr = 10 } },
  { name = "setpoint", source = { kind = "holding", addr = 0 }, writable = true },
  { name = "stats", source = { kind = "input", addr = 11 } },
  { name = "mode", source = { kind = "holding", addr = 1 }, type = "enum" },
  { name = "fast", source = { kind = "input", addr = 12 }, poll = -1 },
}, info = { serial = { kind = "holding", addr = 70000 } } }
]])
  local out, err, code = tool(dir, "", "check " .. q(file))
  T.eq(code, 1, "exit code")
  T.eq(err, "", "stderr")
  local want = {
    "profile bad_meter: poll must be a number of seconds > 0, got 0",
    "profile bad_meter: sleeps must be true or false, got yes",
    "profile bad_meter, point voltage: unknown source.type 'float33'",
    "profile bad_meter, point Power: name must be lowercase letters, digits and _",
    "profile bad_meter, point limit: input registers are read-only; a writable point needs a holding "
      .. "register or a coil",
    "profile bad_meter: point stats is listed twice",
    "profile bad_meter, point mode: an enum needs options = {...}",
    "profile bad_meter, info.serial: source.addr must be an integer 0..65535, got 70000",
    "profile bad_meter, point energy: device_class energy needs state_class total_increasing (or total) "
      .. "for the Energy dashboard",
    "profile bad_meter, point current: offline must be \"zero\", \"hold\" or \"unavailable\", got keep",
    "profile bad_meter, point current: device_class current takes the units A, mA, not 'V'",
    "profile bad_meter, point stats: a site device has a method of this name (describe, expire, get, id, "
      .. "own, owner, points, profile, refresh, stats, update, wait, write are taken); rename the point",
    "profile bad_meter, point setpoint: a writable number needs min, max and step (Home Assistant would "
      .. "otherwise assume 1..100 in steps of 1)",
    "profile bad_meter, point fast: poll must be a number of seconds > 0, got -1",
  }
  T.eq(out, table.concat(want, "\n") .. "\n", "one line per mistake")
  -- the same list in-process
  local mistakes = devices.check(file)
  T.eq(table.concat(mistakes, "\n"), table.concat(want, "\n"), "md.devices.check")
end)

T.test("check: a SunSpec source its model definition lacks is an error", function()
  local dir <close> = T.tmpdir()
  local file = dir.path .. "/bad_inverter.lua"
  write(file, [[
return { protocol = "sunspec", points = {
  { name = "power", source = "inverter.Wattz",
    unit = "W", device_class = "power", state_class = "measurement" },
  { name = "energy", source = "inverter.WH", scale = 0.001,
    unit = "kWh", device_class = "energy", state_class = "total_increasing" },
  { name = "pv1", source = "mppt.module.DCW" },
  { name = "x", source = "999.W" },
  { name = "limit", source = "inverter.W", writable = true, min = 0, max = 1, step = 1 },
  { name = "nameplate", source = "W" },
}, info = { serial = "common.Serial" } }
]])
  local out, err, code = tool(dir, "", "check " .. q(file))
  T.eq(code, 1, "exit code: " .. err)
  local got = lines(out)
  T.eq(#got, 6, "one line per mistake:\n" .. out)
  T.eq(got[1],
    "profile bad_inverter, point power: 'Wattz' is not a point of SunSpec model 103/113/102/112/101/111",
    "a misspelt point")
  T.eq(got[2], "profile bad_inverter, point pv1: 'module.DCW' needs the index of a module instance, e.g. "
    .. "module[1] (SunSpec model 160)", "a repeating group without an index")
  assert(got[3]:find("^profile bad_inverter, point x: no SunSpec model '999'"), got[3])
  T.eq(got[4], "profile bad_inverter, point limit: inverter.W is read-only in the SunSpec definition",
    "writable where the definition says read-only")
  assert(got[5]:find("^profile bad_inverter, point nameplate: source must be '<model>.<point>'"), got[5])
  T.eq(got[6], "profile bad_inverter, info.serial: 'Serial' is not a point of SunSpec model 1", "info")
end)

T.test("check: a file that does not load is one line", function()
  local dir <close> = T.tmpdir()
  write(dir.path .. "/syntax.lua", "return { points = {\n")
  local out, _, code = tool(dir, "", "check " .. q(dir.path .. "/syntax.lua"))
  T.eq(code, 1, "exit code")
  T.eq(#lines(out), 1, "one line: " .. out)
  assert(out:find("syntax.lua", 1, true), out)
  out, _, code = tool(dir, "", "check no_such_profile")
  T.eq(code, 1, "exit code")
  assert(out:find("^no profile 'no_such_profile'; looked for "), out)
end)

T.test("the SunSpec driver checks sources against the definitions when it opens a profile", function()
  local function open(source, extra)
    local p = { name = "t", protocol = "sunspec", points = { { name = "p", source = source } } }
    for k, v in pairs(extra or {}) do p.points[1][k] = v end
    return pcall(devices.open, p, "tcp://127.0.0.1:1")
  end
  local ok, err = open("inverter.Wattz")
  T.eq(ok, false, "a typo raises at open")
  T.eq(err, "profile t, point p: 'Wattz' is not a point of SunSpec model 103/113/102/112/101/111", "message")
  for _, source in ipairs { "inverter.W", "103.W", "inverter_three_phase.W", "mppt.module[2].DCW",
                            "meter.TotWhImp", "controls.WMaxLimPct" } do
    local dev
    ok, dev = open(source)
    T.eq(ok, true, source .. ": " .. tostring(dev))
    dev:close()
  end
  T.eq((open("mppt.module[0].DCW")), false, "instances count from 1")
  T.eq((open("controls.WMaxLimPct", { writable = true, min = 0, max = 100, step = 1 })), true, "an RW point")
  T.eq((open("inverter.W", { writable = true })), false, "a read-only point cannot be writable")
end)

T.test("check: the probe's tests", function()
  local mistakes = devices.check {
    name = "p", protocol = "modbus",
    points = { { name = "x", source = { kind = "input", addr = 0 } } },
    probe = {
      { source = { kind = "holding", addr = 0xFC02 }, equals = 0x89 },
      { source = { kind = "holding", addr = 1 } },
      { source = { kind = "input", addr = 2, type = "float32" }, mask = 0xFF, min = 1 },
      { source = { kind = "input", addr = 4 }, match = "^MIN" },
      { source = { kind = "holding", addr = 70000 }, equals = 1 },
      "equals 1",
    },
  }
  T.eq(table.concat(mistakes, "\n"), table.concat({
    "profile p, probe[2]: needs a condition: equals, one_of, min/max or match",
    "profile p, probe[3]: mask takes an integer and an integer source",
    "profile p, probe[4]: match takes a Lua pattern and a string source",
    "profile p, probe[5]: source.addr must be an integer 0..65535, got 70000",
    "profile p, probe[6]: a probe test is a table {source = {...}, equals = ...}",
  }, "\n"), "one line per broken test")
  T.eq(#devices.check { name = "p", protocol = "modbus", points = {}, probe = {} }, 1, "an empty probe")
end)
