-- The profile search path of moondog.devices: $MOONDOG_DEVICES, the user's
-- and the system's folders, the site script's own folder, then the shipped
-- devices/; `vendor/model` names; the message for a profile not found.
--
-- Lua cannot change its own environment, so each case runs a child
-- `moondog` (T.sh) with MOONDOG_DEVICES, HOME and XDG_CONFIG_HOME set for
-- it, and profiles written into fresh folders by the test.

local T = require "moondog.testing"
local devices = require "moondog.devices"

local format = string.format
local q = T.quote

-- A profile file whose model says where it came from.
local function profile(dir, name, model)
  os.execute("mkdir -p " .. q((dir .. "/" .. name):match("^(.*)/[^/]*$")))
  T.write_file(dir .. "/" .. name .. ".lua", format([[
return { protocol = "modbus", model = %q, points = {
  { name = "power", source = { kind = "input", addr = 0, type = "float32" } } } }
]], model))
end

-- Run a child moondog with this environment; returns stdout, stderr, code.
local function child(dir, env, args)
  local errf = dir.path .. "/child.err"
  local out, code = T.sh(format("env XDG_CONFIG_HOME= HOME=%s MOONDOG_DEVICES=%s %s %s 2>%s </dev/null",
    q(env.home or dir.path .. "/nohome"), q(env.devices or ""), q(md.paths.exe), args, q(errf)))
  return out, T.read_file(errf) or "", code
end

-- `moondog -e` printing the model of the profile a name loads, and its file.
local function load_in_child(dir, env, name)
  return child(dir, env, "-e " .. q(format(
    "local p = require('moondog.devices').load(%q) print(p.model, p.file, p.name)", name)))
end

T.test("shipped names load as before, with the file they came from", function()
  for _, name in ipairs { "sdm630", "sunspec_inverter", "sunspec_meter", "rct_power", "sim_inverter" } do
    local p = devices.load(name)
    T.eq(p.name, name, "name")
    T.eq(p.file, md.paths.devices .. "/" .. name .. ".lua", "file of " .. name)
  end
  -- a model name alone finds its one vendor folder
  T.eq(devices.load("sdm120").file, md.paths.devices .. "/eastron/sdm120.lua", "sdm120 is eastron/sdm120")
  T.eq(devices.find("growatt_nothing"), nil, "no such model anywhere")
  local _, tried = devices.find("growatt_nothing")
  T.eq(tried[#tried], md.paths.devices .. "/*/growatt_nothing.lua", "the vendor folders were searched too")
  local places = devices.path()
  T.eq(places[#places].from, "shipped", "the shipped folder is searched last")
  T.eq(places[#places].dir, md.paths.devices, "shipped folder")
end)

T.test("MOONDOG_DEVICES folders come first, in order; vendor/model names", function()
  local dir <close> = T.tmpdir()
  local a, b = dir.path .. "/a", dir.path .. "/b"
  profile(a, "acme/meter1", "from a")
  profile(b, "acme/meter1", "from b")
  profile(b, "only_b", "b only")
  profile(b, "sdm630", "my own sdm630")
  local out, err, code = load_in_child(dir, { devices = a .. ":" .. b }, "acme/meter1")
  T.eq(code, 0, "exit code: " .. err)
  T.eq(out, format("from a\t%s/acme/meter1.lua\tacme/meter1\n", a), "the first folder wins")
  out, err, code = load_in_child(dir, { devices = a .. "::" .. b .. "/" }, "only_b")
  T.eq(code, 0, "exit code: " .. err)
  T.eq(out, format("b only\t%s/only_b.lua\tonly_b\n", b), "later folders, empty entries skipped")
  out, err, code = load_in_child(dir, { devices = a .. ":" .. b }, "sdm630")
  T.eq(code, 0, "exit code: " .. err)
  T.eq(out, format("my own sdm630\t%s/sdm630.lua\tsdm630\n", b), "a user's profile shadows a shipped one")
  out, err, code = load_in_child(dir, { devices = a }, "sdm630")
  T.eq(code, 0, "exit code: " .. err)
  T.eq(out, format("SDM630\t%s/sdm630.lua\tsdm630\n", md.paths.devices), "else the shipped one")
end)

T.test("~/.config/moondog/devices, and a folder is not a profile", function()
  local dir <close> = T.tmpdir()
  local home = dir.path .. "/home"
  profile(home .. "/.config/moondog/devices", "acme/meter2", "from home")
  local out, err, code = load_in_child(dir, { home = home }, "acme/meter2")
  T.eq(code, 0, "exit code: " .. err)
  T.eq(out, format("from home\t%s/.config/moondog/devices/acme/meter2.lua\tacme/meter2\n", home),
    "user folder")
  -- a folder named like a profile file is passed over
  local a = dir.path .. "/a"
  os.execute("mkdir -p " .. q(a .. "/acme/meter2.lua"))
  out, err, code = load_in_child(dir, { home = home, devices = a }, "acme/meter2")
  T.eq(code, 0, "exit code: " .. err)
  T.eq(out:match("^[^\t]*"), "from home", "a folder is not a profile")
end)

T.test("the site script's own folder, after MOONDOG_DEVICES and before the shipped profiles", function()
  local dir <close> = T.tmpdir()
  local site = dir.path .. "/site"
  profile(site, "mine", "next to the script")
  profile(site, "sdm630", "sdm630 next to the script")
  T.write_file(site .. "/home.lua", [[
local devices = require "moondog.devices"
for _, name in ipairs { "mine", "sdm630" } do
  local p = devices.load(name)
  print(p.model, p.file)
end
]])
  local out, err, code = child(dir, {}, q(site .. "/home.lua"))
  T.eq(code, 0, "exit code: " .. err)
  T.eq(out, format("next to the script\t%s/mine.lua\nsdm630 next to the script\t%s/sdm630.lua\n", site, site),
    "the script's folder")
  local a = dir.path .. "/a"
  profile(a, "mine", "from MOONDOG_DEVICES")
  out, err, code = child(dir, { devices = a }, q(site .. "/home.lua"))
  T.eq(code, 0, "exit code: " .. err)
  T.eq(out:match("^[^\t]*"), "from MOONDOG_DEVICES", "MOONDOG_DEVICES before the script's folder")
  -- a tool or -e has no script folder
  out = load_in_child(dir, {}, "sdm630")
  T.eq(out:match("^[^\t]*"), "SDM630", "-e: no script folder")
end)

T.test("a profile that is not found names every place searched", function()
  local dir <close> = T.tmpdir()
  local site = dir.path .. "/site"
  os.execute("mkdir -p " .. q(site))
  T.write_file(site .. "/home.lua", "require('moondog.devices').load('acme/nothing')\n")
  local home = dir.path .. "/home"
  local a, b = dir.path .. "/a", dir.path .. "/b"
  local out, err, code = child(dir, { home = home, devices = a .. ":" .. b }, q(site .. "/home.lua"))
  T.eq(code, 1, "exit code")
  T.eq(out, "", "stdout")
  local want = {
    a .. "/acme/nothing.lua", b .. "/acme/nothing.lua", home .. "/.config/moondog/devices/acme/nothing.lua",
    "/etc/moondog/devices/acme/nothing.lua", site .. "/acme/nothing.lua",
    md.paths.devices .. "/acme/nothing.lua",
  }
  local at = 0
  for _, file in ipairs(want) do
    local s, e = err:find(file, 1, true)
    assert(s and s > at, format("the message names %s, in order:\n%s", file, err))
    at = e
  end
  assert(err:find("no profile 'acme/nothing'", 1, true), "says which name: " .. err)
  assert(err:find("MOONDOG_DEVICES", 1, true), "says what to do: " .. err)
  -- in-process: the same error, raised
  local ok, msg = pcall(devices.load, "acme/nothing")
  T.eq(ok, false, "raises")
  assert(tostring(msg):find(md.paths.devices .. "/acme/nothing.lua", 1, true), tostring(msg))
end)

T.test("paths still load as paths; a bad argument raises", function()
  local dir <close> = T.tmpdir()
  profile(dir.path, "x", "by path")
  local p = devices.load(dir.path .. "/x.lua")
  T.eq(p.model, "by path", "an absolute path")
  T.eq(p.name, "x", "name from the file")
  T.eq(p.file, dir.path .. "/x.lua", "file")
  assert(not pcall(devices.load, 42), "a number raises")
  assert(not pcall(devices.load, dir.path .. "/missing.lua"), "a missing file raises")
end)

T.test("include: a profile reads a shared file from the path, fresh each time; bad includes raise", function()
  local dir <close> = T.tmpdir()
  local d = dir.path .. "/devs"
  os.execute("mkdir -p " .. q(d .. "/acme"))
  T.write_file(d .. "/acme/common.lua", [[
return { points = nil, power = { name = "power", source = { kind = "input", addr = 0, type = "float32" } } }
]])
  T.write_file(d .. "/acme/m1.lua", [[
local common = (...)("acme/common")
return { protocol = "modbus", model = "m1", points = { common.power } }
]])
  T.write_file(d .. "/acme/loop.lua", [[
(...)("acme/loop")
return { protocol = "modbus", model = "loop", points = {} }
]])
  T.write_file(d .. "/acme/missing.lua", [[
(...)("acme/nothing")
return { protocol = "modbus", model = "missing", points = {} }
]])
  local out, err, code = child(dir, { devices = d }, "-e " .. q([[
local devices = require "moondog.devices"
local a, b = devices.load("acme/m1"), devices.load("acme/m1")
print(a.points[1].name, a.points[1] ~= b.points[1])
for _, n in ipairs { "acme/loop", "acme/missing" } do
  local ok, e = pcall(devices.load, n)
  print(n, ok, (tostring(e):gsub("^.-include", "include")))
end]]))
  T.eq(code, 0, err)
  local lines = {}
  for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
  T.eq(lines[1], "power\ttrue", "the shared point, a fresh table per load")
  assert(lines[2]:find("acme/loop\tfalse\tinclude acme/loop: files include each other more than 4 deep",
    1, true) == 1, lines[2])
  local want = "acme/missing\tfalse\tinclude: no file 'acme/nothing'; looked for " .. d
    .. "/acme/nothing.lua, "
  T.eq(lines[3]:find(want, 1, true), 1, lines[3])
  -- the shipped Growatt TL-X profiles share devices/growatt/tlx.lua
  local min, mod = devices.load("growatt/min_tlx"), devices.load("growatt/mod_tl3x")
  T.eq(min.info.serial.addr, 23)
  T.eq(mod.info.serial.addr, 23)
  assert(min.info ~= mod.info, "each profile has its own tables")
end)
