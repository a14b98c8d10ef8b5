-- Issue 17, item 14: command-line mistakes that got a traceback, a wrong
-- message, a wrong exit code, or nothing at all.

local T = require "moondog.testing"

local q, format = T.quote, string.format

-- Run `moondog ARGS` (through a shell, bounded); returns stdout, stderr, code.
local function run(dir, args)
  local err = dir.path .. "/stderr"
  local out, code = T.sh(format("timeout 30 %s %s 2>%s </dev/null", q(md.paths.exe), args, q(err)))
  return out, T.read_file(err) or "", code
end

local function lines(s)
  return select(2, s:gsub("\n", ""))
end

T.test("modbus serve --regs DIR exits 2 with one line", function()
  local dir <close> = T.tmpdir()
  local _, err, code = run(dir, "modbus serve tcp://127.0.0.1:0 --regs " .. q(dir.path))
  T.eq(code, 2, "exit code; stderr: " .. err)
  T.eq(lines(err), 1, "one line: " .. err)
  assert(err:find("Is a directory", 1, true) and not err:find("traceback", 1, true), err)
end)

T.test("an unreadable script is reported as unreadable, not as an unknown tool", function()
  local dir <close> = T.tmpdir()
  local script = dir.path .. "/secret.lua"
  T.write_file(script, "print('ran')\n")
  os.execute("chmod 0600 " .. q(script) .. " && chmod 0755 " .. q(dir.path)) -- others may look in
  local as = ""
  if T.sh("id -u") == "0\n" then -- root reads anything: be somebody else
    T.need("setpriv", "util-linux")
    as = "setpriv --reuid=65534 --regid=65534 --clear-groups "
  else
    os.execute("chmod 0000 " .. q(script))
  end
  local errf = dir.path .. "/err"
  local out, code = T.sh(format("%s%s %s 2>%s </dev/null", as, q(md.paths.exe), q(script), q(errf)))
  local err = T.read_file(errf) or ""
  T.eq(out, "", "the script did not run")
  assert(code ~= 0, "a failure exit code")
  assert(err:find("Permission denied", 1, true), "says why: " .. err)
  assert(not err:find("no such script", 1, true), "not 'no such script or tool': " .. err)
end)

T.test("sunspec serve --models 160:100000 says why in one line", function()
  local dir <close> = T.tmpdir()
  local _, err, code = run(dir, "sunspec serve tcp://127.0.0.1:0 --models 160:100000")
  T.eq(code, 2, "exit code; stderr: " .. err)
  assert(err:find("65536 registers", 1, true), "names the limit: " .. err)
  assert(not err:find("%.lua:%d"), "no internal location: " .. err)
end)

T.test("demo --seconds -5 is a usage error", function()
  local dir <close> = T.tmpdir()
  local _, err, code = run(dir, "demo --seconds -5")
  T.eq(code, 2, "exit code; stderr: " .. err)
  assert(err:find("--seconds", 1, true), err)
end)

T.test("md.exit refuses codes outside 0..255", function()
  local dir <close> = T.tmpdir()
  local _, err, code = run(dir, "-e " .. q("md.exit(300)"))
  T.eq(code, 1, "a raised error, not 300 % 256 = 44")
  assert(err:find("0..255", 1, true), err)
  _, _, code = run(dir, "-e " .. q("md.exit(255)"))
  T.eq(code, 255, "255 is fine")
end)

T.test("--log-file /dev/full says the log cannot be written", function()
  local dir <close> = T.tmpdir()
  local _, err, code = run(dir, "--log-file /dev/full -e " .. q("md.log.warn('hello')"))
  T.eq(code, 0, "exit code")
  assert(err:find("cannot write the log file /dev/full", 1, true), "a notice: " .. err)
  assert(err:find("hello", 1, true), "the log goes on on stderr: " .. err)
end)

T.test("a 10 MB attach line is refused with a reason; the session goes on", function()
  local dir <close> = T.tmpdir()
  local sock = dir.path .. "/engine.sock"
  local engine <close> = T.start(dir, "engine", format("%s -e %s", q(md.paths.exe),
    q(format("assert(md.attach.listen(%q)); print('ready'); io.stdout:flush(); md.sleep(30)", sock))))
  T.eq(engine:first_line(), "ready", "engine")
  local input = dir.path .. "/input"
  T.write_file(input, string.rep("x", 10 << 20) .. "\nprint(6 * 7)\n")
  local errf = dir.path .. "/attach.err"
  local out, code = T.sh(format("%s attach %s <%s 2>%s", q(md.paths.exe), q(sock), q(input), q(errf)))
  local err = T.read_file(errf) or ""
  T.eq(code, 0, "exit code; stderr: " .. err)
  assert(err:find("longer than", 1, true), "says why: " .. err)
  assert(out:find("42", 1, true), "the next line ran: " .. out)
end)
