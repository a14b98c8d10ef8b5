-- moondog as a systemd service (moondog.service, core/sdnotify.c): the
-- notification protocol against a real unix datagram socket in
-- $NOTIFY_SOCKET (READY=1 once the main chunk returned, WATCHDOG=1 from the
-- loop at half of $WATCHDOG_USEC), secrets from $CREDENTIALS_DIRECTORY, the
-- environment and the secrets file, and no password in a debug log.
-- Each case runs moondog as a child process with its own environment.

local T = require "moondog.testing"
local broker = require "moondog.mqtt.broker"

local format = string.format
local q = T.quote

-- A python3 receiver bound to dir/notify.sock that prints every datagram
-- as one line (newlines inside shown as '|').
local RECEIVER = [[
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(30)
while True:
    msg = s.recv(4096).decode()
    print(msg.replace("\n", "|"), flush=True)
]]

local function count(text, pattern)
  local n = 0
  for _ in text:gmatch(pattern) do n = n + 1 end
  return n
end

local function start_receiver(dir)
  T.need("python3", "python3")
  T.write_file(dir.path .. "/recv.py", RECEIVER)
  local sock = dir.path .. "/notify.sock"
  local recv = T.start(dir, "recv", format("python3 %s %s", q(dir.path .. "/recv.py"), q(sock)))
  T.wait_for(function() return T.sh("test -S " .. q(sock) .. " && echo y"):find("y") end, 10,
    "the receiver's socket")
  return recv, sock
end

T.test("READY=1 after the main chunk, then WATCHDOG=1 from the loop", function()
  local dir <close> = T.tmpdir()
  local recv <close>, sock = start_receiver(dir)
  T.write_file(dir.path .. "/site.lua", [[
local md = require "moondog"
md.spawn(function() md.sleep(60) end)
md.sleep(0.2)
md.service.notify("X-MAIN=returning")
]])
  local eng <close> = T.start(dir, "engine", format("env NOTIFY_SOCKET=%s WATCHDOG_USEC=200000 %s %s",
    q(sock), q(md.paths.exe), q(dir.path .. "/site.lua")))
  -- READY comes after the main chunk's 0.2 s; watchdogs every 0.1 s from the
  -- start: wait for both (three watchdogs alone can come first on a busy machine)
  T.wait_for(function()
    local text = T.read_file(recv.out) or ""
    return count(text, "WATCHDOG=1") >= 3 and text:find("READY=1", 1, true)
  end, 15, "READY=1 and three WATCHDOG=1 messages")
  local got = T.read_file(recv.out)
  local main_at, ready_at = got:find("X-MAIN=returning", 1, true), got:find("READY=1", 1, true)
  assert(main_at and ready_at, got)
  assert(main_at < ready_at, "READY=1 came before the main chunk returned:\n" .. got)
  assert(got:find("READY=1|STATUS=running ", 1, true), got)
  eng:stop()
  T.wait_for(function() return (T.read_file(recv.out) or ""):find("STOPPING=1", 1, true) end, 10,
    "STOPPING=1 at exit")
end)

T.test("a frozen loop stops the keep-alives (systemd then restarts the service)", function()
  local dir <close> = T.tmpdir()
  local recv <close>, sock = start_receiver(dir)
  -- The Lua watchdog off: nothing may unfreeze the loop.
  T.write_file(dir.path .. "/frozen.lua", [[
local md = require "moondog"
md.watchdog(0)
md.spawn(function()
  md.sleep(0.5)
  md.service.notify("X-FROZEN=1")
  while true do end
end)
]])
  local eng <close> = T.start(dir, "engine", format("env NOTIFY_SOCKET=%s WATCHDOG_USEC=100000 %s %s",
    q(sock), q(md.paths.exe), q(dir.path .. "/frozen.lua")))
  T.wait_for(function() return (T.read_file(recv.out) or ""):find("X-FROZEN=1", 1, true) end, 15,
    "the task that freezes the loop")
  -- One datagram socket, one sender: whatever the loop sent before it froze
  -- arrived before X-FROZEN=1. Give a further keep-alive 10 periods to show.
  md.sleep(1)
  local got = T.read_file(recv.out)
  assert(got:match("WATCHDOG=1.*X%-FROZEN=1"), "keep-alives before the freeze:\n" .. got)
  assert(not got:match("X%-FROZEN=1.*WATCHDOG=1"), "a keep-alive from a frozen loop:\n" .. got)
  eng:stop(0.5)
end)

T.test("no WATCHDOG=1 when WATCHDOG_PID names another process; a failed main chunk ends the engine",
  function()
  local dir <close> = T.tmpdir()
  local recv <close>, sock = start_receiver(dir)
  -- Without systemd this engine would run on for 60 s with the task.
  T.write_file(dir.path .. "/bad.lua", [[
local md = require "moondog"
md.spawn(function() md.sleep(60) end)
error("broken site")
]])
  local _, code = T.sh(format("env NOTIFY_SOCKET=%s WATCHDOG_USEC=100000 WATCHDOG_PID=1 %s %s 2>/dev/null",
    q(sock), q(md.paths.exe), q(dir.path .. "/bad.lua")))
  T.eq(code, 1, "exit code")
  T.wait_for(function() return (T.read_file(recv.out) or ""):find("STOPPING=1", 1, true) end, 10,
    "STOPPING=1 at exit")
  local got = T.read_file(recv.out)
  assert(not got:find("WATCHDOG=1", 1, true), got)
  assert(not got:find("READY=1", 1, true), got)
  assert(got:find("STATUS=the main chunk of .* failed"), got)
end)

T.test("without NOTIFY_SOCKET notifications are no-ops", function()
  local out, code = T.sh(format("env -u NOTIFY_SOCKET %s -e %s 2>&1", q(md.paths.exe),
    q("print(md.service.notify('READY=1'), md.service.ready('up'), md.service.watchdog_interval())")))
  T.eq(code, 0)
  T.eq(out, "false\tfalse\tnil\n")
end)

T.test("md.secret: credentials directory, then environment, then the secrets file", function()
  local dir <close> = T.tmpdir()
  os.execute("mkdir " .. q(dir.path .. "/creds"))
  T.write_file(dir.path .. "/creds/mqtt_password", "from-credentials\n")
  T.write_file(dir.path .. "/secrets", "# comment\napi-token = from file\nmqtt_password = not-this\n")
  local script = [[
print(md.secret("mqtt_password"))
print(md.secret("api-token"))
print(md.secret("tls.pass"))
print(md.secret("missing"))
print(pcall(md.secret, "../etc/passwd"))
print(md.state_dir())
]]
  local out, code = T.sh(format("env CREDENTIALS_DIRECTORY=%s MOONDOG_SECRETS=%s MOONDOG_TLS_PASS=from-env "
    .. "STATE_DIRECTORY=/var/lib/moondog:/var/lib/other %s -e %s 2>&1", q(dir.path .. "/creds"),
    q(dir.path .. "/secrets"), q(md.paths.exe), q(script)))
  T.eq(code, 0, out)
  local lines = {}
  for l in out:gmatch("[^\n]*") do lines[#lines + 1] = l end
  T.eq(lines[1], "from-credentials")
  T.eq(lines[2], "from file")
  T.eq(lines[3], "from-env")
  assert(lines[4]:match("^nil\tno secret 'missing': looked in .*MOONDOG_MISSING.*\tnot_found$"), lines[4])
  assert(lines[5]:match("^false\t.*expected a name"), lines[5])
  T.eq(lines[6], "/var/lib/moondog")
end)

T.test("md.secret: a secrets file that cannot be read is named in the not_found message", function()
  local dir <close> = T.tmpdir()
  local out, code = T.sh(format("env -u CREDENTIALS_DIRECTORY MOONDOG_SECRETS=%s %s -e %s 2>&1",
    q(dir.path), q(md.paths.exe), q('print(md.secret("mqtt_password"))')))
  T.eq(code, 0, out)
  T.eq(out, format("nil\tno secret 'mqtt_password': looked in $CREDENTIALS_DIRECTORY (unset), the "
    .. "environment variable MOONDOG_MQTT_PASSWORD and %s (cannot read %s: Is a directory)\tnot_found\n",
    dir.path, dir.path))
end)

T.test("no password in a trace log: MQTT options, URLs, errors, secrets", function()
  local dir <close> = T.tmpdir()
  T.need("mosquitto", "mosquitto")
  local b <close> = assert(broker.start { users = { site = "Pw-sekrit-9" } })
  T.write_file(dir.path .. "/secrets", "mqtt_password = Pw-sekrit-9\nother = Other-sekrit-7\n")
  local script = format([[
local md = require "moondog"
local pw = assert(md.secret("mqtt_password"))
local c = assert(md.mqtt.connect { host = "127.0.0.1", port = %d, username = "site", password = pw })
assert(c:publish("t/x", "1", { qos = 1, wait = true }))
c:close()
local url = "mqtt://site:" .. pw .. "@127.0.0.1:%d"
local c2 = assert(md.mqtt.connect { url = url })
c2:close()
md.log.debug("connecting to %%s with %%s", url, pw)
md.log.info("another: %%s and tcp://u:pw2@host", assert(md.secret("other")))
local bad = md.mqtt.connect { url = "mqtt://site:wrong-pass@127.0.0.1:%d",
  reconnect = { min = 0.1, max = 0.1 }, connect_timeout = 1 }
assert(not bad)
error("failing with " .. pw)
]], b.port, b.port, b.port)
  T.write_file(dir.path .. "/site.lua", script)
  local out = T.sh(format("env MOONDOG_SECRETS=%s %s --log-level trace %s 2>&1", q(dir.path .. "/secrets"),
    q(md.paths.exe), q(dir.path .. "/site.lua")))
  assert(out:find("failing with ***", 1, true), out)
  assert(out:find("mqtt://site:***@127.0.0.1", 1, true), out)
  assert(out:find("tcp://u:***@host", 1, true), out)
  -- the plain client's trace lines (libmosquitto's when MOONDOG_MQTT_LIB=mosquitto)
  assert(out:find("libmosquitto", 1, true) or out:find("sending CONNECT", 1, true),
    "no trace lines from the MQTT client:\n" .. out)
  for _, secret in ipairs { "Pw-sekrit-9", "Other-sekrit-7", "wrong-pass", "pw2" } do
    assert(not out:find(secret, 1, true), secret .. " appears in the log:\n" .. out)
  end
end)

T.test("export limiting keeps its state in $STATE_DIRECTORY by default", function()
  local dir <close> = T.tmpdir()
  local out, code = T.sh(format("env STATE_DIRECTORY=%s %s -e %s 2>&1", q(dir.path), q(md.paths.exe), q([[
local site = md.site.new { name = "home" }
local sim = assert(require("moondog.sim.site").start(require("moondog.sim.scenarios").get("sunny_day")))
sim:add_to(site, { poll = 1 })
local el = md.control.export_limit { site = site, grid = "meter.power", inverters = { "pv" }, limit_w = 0 }
print(el.state_file)
md.exit(0)
]])))
  T.eq(code, 0, out)
  T.eq(out, dir.path .. "/home-export_limit.json\n")
end)
