-- Issue 17, item 3: without XDG_RUNTIME_DIR the default attach socket was
-- /tmp/moondog-<uid>.sock, which another local user could create first;
-- `moondog attach` then sent every typed line (a password, once) to the
-- squatter. The client now checks the socket's owner and mode and the
-- peer's uid (SO_PEERCRED) before it sends anything, and the default path
-- is in a directory only the engine's user can write.
--
-- The squatter runs as user nobody through setpriv, so these tests need root.

local T = require "moondog.testing"

local q, format = T.quote, string.format
local NOBODY = 65534

local function need_root()
  if T.sh("id -u") ~= "0\n" then T.skip("needs root to play another user") end
  T.need("setpriv", "util-linux")
  T.need("/usr/bin/python3", "python3")
end

-- A fake engine: accepts one connection, sends a 'P' frame, records what it gets.
local SQUATTER = [[
import os, socket, sys
path, log = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
os.chmod(path, 0o777)
s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
c.sendall(b"P\0\0\0\2> ")
c.settimeout(3)
data = b""
try:
    while True:
        b = c.recv(4096)
        if not b: break
        data += b
except Exception:
    pass
open(log, "wb").write(data)
]]

T.test("attach sends nothing to a socket another user listens on", function()
  need_root()
  local dir <close> = T.tmpdir()
  os.execute("chmod 0777 " .. q(dir.path))
  T.write_file(dir.path .. "/squat.py", SQUATTER)
  local sock, log = dir.path .. "/moondog.sock", dir.path .. "/captured"
  local squatter <close> = T.start(dir, "squatter",
    format("setpriv --reuid=%d --regid=%d --clear-groups /usr/bin/python3 %s %s %s", NOBODY, NOBODY,
      q(dir.path .. "/squat.py"), q(sock), q(log)))
  T.eq(squatter:first_line(), "ready", "squatter")
  local out, code = T.sh(format("printf 'my-password\\n' | %s attach %s 2>&1", q(md.paths.exe), q(sock)))
  T.eq(code, 1, "exit code; output: " .. out)
  assert(out:find("not to you", 1, true) or out:find("not as you", 1, true), "says why: " .. out)
  T.wait_for(function() return not squatter:alive() end, 10, "the squatter to finish")
  local captured = T.read_file(log) or ""
  T.eq(captured, "", "bytes the squatter received")
end)

-- An engine with no XDG_RUNTIME_DIR, RUNTIME_DIRECTORY or MOONDOG_ATTACH, TMPDIR=dir.
local function engine_here(dir, code)
  local env = "env -u XDG_RUNTIME_DIR -u RUNTIME_DIRECTORY -u MOONDOG_ATTACH"
  return T.sh(format("%s TMPDIR=%s %s --log-level warn -e %s 2>&1", env, q(dir), q(md.paths.exe), q(code)))
end

T.test("the default path is in a private directory the engine makes", function()
  local dir <close> = T.tmpdir()
  local uid = T.sh("id -u"):match("%d+")
  local out = engine_here(dir.path, [[
    local l, err, code = md.attach.listen()
    print(md.attach.default_path(), l and "listening" or (err .. " " .. code))
    if l then l:close() end
  ]])
  local want = format("%s/moondog-%s/repl.sock", dir.path, uid)
  T.eq(out, want .. "\tlistening\n", "path and result")
  local mode = T.sh(format("stat -c %%a %s", q(dir.path .. "/moondog-" .. uid)))
  T.eq(mode, "700\n", "directory mode")
end)

T.test("the engine refuses a default directory another user made", function()
  need_root()
  local dir <close> = T.tmpdir()
  local private = dir.path .. "/moondog-0"
  os.execute(format("mkdir -m 0700 %s && chown %d %s", q(private), NOBODY, q(private)))
  local out = engine_here(dir.path, [[
    local l, err, code = md.attach.listen()
    print(l and "listening" or code, err)
  ]])
  assert(out:match("unsafe\t[^\n]*not a private directory"), "refused: " .. out)
end)
