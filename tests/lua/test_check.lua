-- `moondog check SITE.lua` as a user runs it: every mistake of a site at
-- once (profiles, addresses, points, options), exit 1; a good site passes
-- with exit 0; and no connection is attempted: the devices and the broker
-- of the checked site point at a listener that records every connection,
-- and a sentinel connection made after the check must be the first.

local T = require "moondog.testing"

local format = string.format
local q = T.quote

local function check(dir, text, name)
  local file = dir.path .. "/" .. (name or "site.lua")
  T.write_file(file, text)
  local out, code = T.sh(format("cd %s && %s check %s 2>&1", q(dir.path), q(md.paths.exe), q(file)))
  return out, code, file
end

local function lines(text)
  local list = {}
  for l in text:gmatch("[^\n]+") do list[#list + 1] = l end
  return list
end

T.test("a site with three mistakes reports the three, with their lines, and exits 1", function()
  local dir <close> = T.tmpdir()
  local out, code, file = check(dir, [[
local md = require "moondog"
local site = md.site.new { name = "home" }
site:add("meter", "sdm630x", "rtu:///dev/ttyUSB0?baud=9600&unit=1", { poll = 1 })
site:add("pv", "sunspec_inverter", "tcpx://192.168.1.50?unit=1")
site:add("grid", "sunspec_meter", "tcp://192.168.1.51?unit=240")
md.control.export_limit { site = site, grid = "grid.powr", inverters = { "pv" }, limit_w = 0 }
site:publish { mqtt = { host = "127.0.0.1" } }
]])
  T.eq(code, 1, out)
  local l = lines(out)
  T.eq(#l, 4, out)
  assert(l[1]:find(file .. ":3: device meter: no profile 'sdm630x'", 1, true), l[1])
  assert(l[2]:find(file .. ":4: device pv: unknown scheme 'tcpx'", 1, true), l[2])
  assert(l[3]:find(file .. ":6: export_limit grid: device 'grid' has no point 'powr'", 1, true), l[3])
  T.eq(l[4], "3 mistakes in " .. file)
end)

T.test("options, ids, MQTT settings, a missing secret and a raised error are each reported", function()
  local dir <close> = T.tmpdir()
  local out, code = check(dir, [[
local md = require "moondog"
local site = md.site.new { name = "home", exit_afer = 3 }
site:add("Meter", "sunspec_meter", "tcp://127.0.0.1?unit=1", { pol = 5 })
site:add("pv", "sunspec_inverter", "tcp://127.0.0.1?unit=2")
site:add("pv", "sunspec_inverter", "tcp://127.0.0.1?unit=3")
site:publish { mqtt = { host = "127.0.0.1", port = 70000, username = "u",
  password = md.secret("mqtt_password_that_is_missing") } }
print(site.pv:get("no_such_point"))
local x = nil
x.y = 1
]])
  T.eq(code, 1, out)
  for _, want in ipairs {
    ":2: site.new: unknown option 'exit_afer'",
    ":3: site:add: the device id must be lowercase",
    ":3: site:add Meter: unknown option 'pol'",
    ":5: site:add: the site already has a device 'pv'",
    ":7: no secret 'mqtt_password_that_is_missing'",
    ":6: site:publish mqtt: port 70000 is out of range",
    ":6: site:publish mqtt: username 'u' without a password",
    ":8: pv:get: device 'pv' has no point 'no_such_point'",
    ":10: attempt to index a nil value",
  } do
    assert(out:find(want, 1, true), want .. "\nnot in:\n" .. out)
  end
  assert(out:find("9 mistakes in ", 1, true), out)
end)

T.test("a good site passes, and nothing connects to its devices or broker", function()
  T.need("python3", "python3")
  local dir <close> = T.tmpdir()
  -- A listener that prints what each connection sends first.
  T.write_file(dir.path .. "/listen.py", [[
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
s.settimeout(30)
print("port", s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.settimeout(5)
    try:
        data = c.recv(64)
    except OSError:
        data = b""
    print("conn", data[:8].hex() if data[:8] != b"SENTINEL" else "SENTINEL", flush=True)
    c.close()
]])
  local l <close> = T.start(dir, "listen", "python3 " .. q(dir.path .. "/listen.py"))
  local port
  T.wait_for(function()
    port = (T.read_file(l.out) or ""):match("port (%d+)")
    return port
  end, 10, "the listener's port")
  local out, code = check(dir, format([[
local md = require "moondog"
local site = md.site.new { name = "home" }
site:add("meter", "sunspec_meter", "tcp://127.0.0.1:%s?unit=240", { poll = 1 })
site:add("pv", "sunspec_inverter", "tcp://127.0.0.1:%s?unit=1", { poll = 5 })
site:derive("house.load", { unit = "W" }, function(v) return v.meter.power + v.pv.power end)
local bus = assert(md.modbus.open("tcp://127.0.0.1:%s?unit=3"))
bus:read_holding(3, 0, 2)
site:publish { mqtt = { host = "127.0.0.1", port = %s, username = "u", password = "p" } }
md.control.export_limit { site = site, grid = "meter.power", inverters = { "pv" }, limit_w = 0 }
site:spawn(function() site.meter:wait("power") end, { critical = true })
md.every(1, function() print(site.meter:get("power")) end)
md.attach.listen()
]], port, port, port, port))
  T.eq(code, 0, out)
  assert(out:match("^ok: .*site%.lua %(1 site, 2 devices%)\n$"), out)
  local s <close> = assert(require("moondog.stream").connect("127.0.0.1", tonumber(port)))
  assert(s:write("SENTINEL"))
  T.wait_for(function() return (T.read_file(l.out) or ""):find("conn", 1, true) end, 10, "the sentinel")
  local first = (T.read_file(l.out) or ""):match("conn (%S+)")
  T.eq(first, "SENTINEL", "the first connection the listener saw")
end)

T.test("the installed example site passes the check", function()
  local site = md.paths.home .. "/packaging/site.lua"
  local out, code = T.sh(format("%s check %s 2>&1", q(md.paths.exe), q(site)))
  T.eq(code, 0, out)
  assert(out:find("^ok: "), out)
end)

T.test("command line (moondog.cli): bad option, no script; words after SITE.lua are the site's", function()
  for _, case in ipairs({
    { "--bogus site.lua", "unknown option '--bogus'" },
    { "--help=yes", "option --help takes no value" },
    { "-5 site.lua", "unexpected argument '-5' before SITE.lua" },
    { "", "name the site script to check" },
  }) do
    local err, code = T.sh(format("%s check %s 2>&1 >/dev/null", q(md.paths.exe), case[1]))
    T.eq(code, 2, case[1])
    T.usage_error(err, "moondog check", case[2], case[1])
  end
  local dir <close> = T.tmpdir()
  T.write_file(dir.path .. "/site.lua",
    "assert(select('#', ...) == 2 and select(1, ...) == '--bogus', 'args')\n")
  local out, code = T.sh(format("%s check -- %s --bogus x 2>&1", q(md.paths.exe), q(dir.path .. "/site.lua")))
  T.eq(code, 0, out)
  assert(out:find("^ok: "), out)
end)
