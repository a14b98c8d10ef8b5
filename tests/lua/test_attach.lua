-- moondog.attach: REPL sessions into this engine over a unix socket.
--
-- The client is the real one: `moondog attach PATH` with its stdin piped
-- from a file, started in the background by the shell (io.popen would block
-- the engine that has to serve it). Each client writes its stdout, stderr,
-- pid and exit code to files in a temporary directory, which the tests poll
-- with md.sleep, bounded by T.wait_for.
local T = require "moondog.testing"
local md = require "moondog"

local exe = md.paths.exe

local read, write = T.read_file, T.write_file

-- A fresh directory: its path, and a handle that removes it when closed.
local function tmpdir()
  local d = T.tmpdir()
  return d.path, d
end

-- Start `moondog attach sock` with `input` on its stdin. Returns a client
-- with its output files; client.rc() is nil until it exited.
local function start_client(dir, name, sock, input)
  local c = {
    input = dir .. "/" .. name .. ".in",
    out = dir .. "/" .. name .. ".out",
    err = dir .. "/" .. name .. ".err",
    pidfile = dir .. "/" .. name .. ".pid",
    rcfile = dir .. "/" .. name .. ".rc",
  }
  write(c.input, input)
  -- exec keeps the pid that the inner sh wrote, so a test can kill the client.
  local cmd = string.format(
    "(sh -c 'echo $$ > %s; exec %s attach %s' < %s > %s 2> %s; echo $? > %s) >/dev/null 2>&1 &",
    c.pidfile, exe, sock, c.input, c.out, c.err, c.rcfile)
  assert(os.execute(cmd))
  function c.rc()
    local s = read(c.rcfile)
    return s and s:find("\n") and tonumber(s:match("%d+")) or nil
  end
  function c.output() return read(c.out) or "" end
  function c.wait(what)
    T.wait_for(function() return c.rc() ~= nil end, 5, what or (name .. " to exit"))
    return c.rc(), c.output(), read(c.err) or ""
  end
  function c.kill()
    local pid
    T.wait_for(function()
      pid = tonumber((read(c.pidfile) or ""):match("%d+"))
      return pid ~= nil
    end, 5, name .. " pid")
    os.execute("kill -9 " .. pid)
  end
  return c
end

local function listen(path)
  local l, err, code = md.attach.listen(path)
  assert(l, tostring(err) .. " (" .. tostring(code) .. ")")
  return l
end

-- Sessions end when the engine reads the client's EOF: wait for that, so that
-- the harness finds no watch left behind.
local function wait_no_sessions(l)
  T.wait_for(function() return l:sessions() == 0 end, 5, "sessions to close")
end

T.test("a line sets a global in the engine and reads the engine's globals", function()
  local dir, _ <close> = tmpdir()
  local l <close> = listen(dir .. "/e.sock")
  rawset(_G, "attach_engine_value", 42)
  rawset(_G, "attach_set_by_client", nil)
  local c = start_client(dir, "c", l:path(),
    "attach_set_by_client = 'hello'\nattach_engine_value + 1\n")
  local rc, out, err = c.wait()
  T.eq(rc, 0, "client exit code")
  T.eq(rawget(_G, "attach_set_by_client"), "hello", "global set by the client")
  assert(out:find("43\n", 1, true), out .. err)
  wait_no_sessions(l)
  rawset(_G, "attach_engine_value", nil)
  rawset(_G, "attach_set_by_client", nil)
end)

T.test("print and io.write go to the client, not to the engine's stdout", function()
  local dir, _ <close> = tmpdir()
  local l <close> = listen(dir .. "/e.sock")
  local engine_print, engine_write = print, io.write
  local leaked = {}
  -- Spies: the session's print and io.write must not fall through to these.
  rawset(_G, "print", function(...) leaked[#leaked + 1] = table.concat({ ... }, "\t") end)
  rawset(io, "write", function(...) leaked[#leaked + 1] = table.concat({ ... }) end)
  local ok, err = pcall(function()
    local c = start_client(dir, "c", l:path(),
      "print('to the client', 1, nil)\nio.write('written', 2, '\\n')\n")
    local rc, out = c.wait()
    T.eq(rc, 0, "client exit code")
    assert(out:find("to the client\t1\tnil\n", 1, true), out)
    assert(out:find("written2\n", 1, true), out)
  end)
  rawset(_G, "print", engine_print)
  rawset(io, "write", engine_write)
  assert(ok, err)
  T.eq(#leaked, 0, "output that reached the engine's own print/io.write")
  wait_no_sessions(l)
end)

T.test("a runtime error goes to the client and the engine keeps running", function()
  local dir, _ <close> = tmpdir()
  local l <close> = listen(dir .. "/e.sock")
  local c = start_client(dir, "c", l:path(), "error('kaboom')\nprint('still here')\n")
  local rc, out = c.wait()
  T.eq(rc, 0, "client exit code")
  assert(out:find("kaboom", 1, true), out)
  assert(out:find("still here", 1, true), out)
  md.sleep(0.01) -- the engine still runs tasks
  wait_no_sessions(l)
end)

T.test("help() prints documentation to the client", function()
  local dir, _ <close> = tmpdir()
  local l <close> = listen(dir .. "/e.sock")
  local c = start_client(dir, "c", l:path(), "help(md.sleep)\nhelp(md.modbus.open)\n")
  local rc, out = c.wait()
  T.eq(rc, 0, "client exit code")
  assert(out:find("md.sleep(s):", 1, true), out)
  assert(out:find("defined in lua/moondog/modbus/init.lua:", 1, true), out)
  T.eq(rawget(_G, "help"), nil, "a help global in the engine")
  wait_no_sessions(l)
end)

T.test("two sessions at once", function()
  local dir, _ <close> = tmpdir()
  local l <close> = listen(dir .. "/e.sock")
  rawset(_G, "attach_one", nil)
  rawset(_G, "attach_two", nil)
  -- Each sets its global, waits for the other's, prints it, and stays a
  -- little: this only works if both sessions run at the same time.
  local wait_for = "for _ = 1, 100 do if %s then break end md.sleep(0.02) end"
  local one = start_client(dir, "one", l:path(), "attach_one = 1\n"
    .. wait_for:format("attach_two") .. "\nprint('one sees', attach_two)\nmd.sleep(0.5)\n")
  local two = start_client(dir, "two", l:path(), "attach_two = 2\n"
    .. wait_for:format("attach_one") .. "\nprint('two sees', attach_one)\nmd.sleep(0.5)\n")
  T.wait_for(function() return l:sessions() == 2 end, 5, "two sessions")
  local rc1, out1 = one.wait()
  local rc2, out2 = two.wait()
  T.eq(rc1, 0, "first client exit code")
  T.eq(rc2, 0, "second client exit code")
  assert(out1:find("one sees\t2", 1, true), out1)
  assert(out2:find("two sees\t1", 1, true), out2)
  wait_no_sessions(l)
  rawset(_G, "attach_one", nil)
  rawset(_G, "attach_two", nil)
end)

T.test("a client killed mid-line cancels the line and leaves the engine fine", function()
  local dir, _ <close> = tmpdir()
  local l <close> = listen(dir .. "/e.sock")
  rawset(_G, "attach_mid_task", nil)
  local c = start_client(dir, "c", l:path(), "attach_mid_task = md.current(); md.sleep(10)\n")
  T.wait_for(function() return rawget(_G, "attach_mid_task") ~= nil end, 5, "the line to start")
  local task = rawget(_G, "attach_mid_task")
  T.eq(task:status(), "waiting", "line task status")
  c.kill()
  T.wait_for(function() return task:status() == "cancelled" end, 5, "the line to be cancelled")
  wait_no_sessions(l)
  -- The engine still serves new clients.
  local again = start_client(dir, "again", l:path(), "print(6 * 7)\n")
  local rc, out = again.wait()
  T.eq(rc, 0, "second client exit code")
  assert(out:find("42", 1, true), out)
  wait_no_sessions(l)
  rawset(_G, "attach_mid_task", nil)
end)

T.test("the socket is created with mode 0600 and removed by close", function()
  local dir, _ <close> = tmpdir()
  local path = dir .. "/e.sock"
  local l = listen(path)
  local mode = T.sh("stat -c %a " .. path)
  T.eq(mode, "600\n", "socket mode")
  l:close()
  T.eq(io.open(path, "r"), nil, "socket file after close")
  -- Every method checks the closed state; __close stays quiet.
  local ok, err = pcall(l.path, l)
  assert(not ok and err:find("attempt to use a closed listener", 1, true), err)
  ok, err = pcall(l.sessions, l)
  assert(not ok and err:find("attempt to use a closed listener", 1, true), err)
  assert(tostring(l):find("closed", 1, true))
end)

T.test("a stale socket file is replaced", function()
  local dir, _ <close> = tmpdir()
  local path = dir .. "/e.sock"
  -- os.exit without closing the state skips __gc: the socket file stays.
  local _, code = T.sh(string.format("%s -e 'md.attach.listen(%q); os.exit(0)' 2>/dev/null",
    exe, path))
  T.eq(code, 0, "stale maker exit code")
  local _, is_socket = T.sh("test -S " .. path)
  T.eq(is_socket, 0, "stale socket file exists")
  local l <close> = listen(path)
  local c = start_client(dir, "c", path, "print('fresh')\n")
  local rc, out = c.wait()
  T.eq(rc, 0, "client exit code")
  assert(out:find("fresh", 1, true), out)
  wait_no_sessions(l)
end)

T.test("listening where an engine listens fails with in_use", function()
  local dir, _ <close> = tmpdir()
  local path = dir .. "/e.sock"
  local l <close> = listen(path)
  local again, err, code = md.attach.listen(path)
  T.eq(again, nil, "second listener")
  T.eq(code, "in_use", "code")
  assert(err:find(path, 1, true), err)
  -- A file that is not a socket is never removed.
  write(dir .. "/plain", "keep me")
  again, err, code = md.attach.listen(dir .. "/plain")
  T.eq(again, nil, "listener on a plain file")
  T.eq(code, "exists", "code for a plain file: " .. tostring(err))
  T.eq(read(dir .. "/plain"), "keep me", "plain file content")
  -- The first listener is untouched.
  T.eq(l:path(), path, "first listener path")
  local _, is_socket = T.sh("test -S " .. path)
  T.eq(is_socket, 0, "socket file still there")
end)

T.test("misuse raises", function()
  assert(not pcall(md.attach.listen, {}))
  assert(not pcall(md.attach.listen, ("x"):rep(200)))
  assert(type(md.attach.default_path()) == "string")
end)

-- {===== one socket per engine, named after its site (issue 15, item 4) =====

local q, format = T.quote, string.format

-- Engines see only this runtime directory: no MOONDOG_ATTACH, no RUNTIME_DIRECTORY.
local function site_env(dir)
  return format("env -u MOONDOG_ATTACH -u RUNTIME_DIRECTORY XDG_RUNTIME_DIR=%s", q(dir))
end

-- A background engine for site `name` that listens on its default socket,
-- prints "ready <path>" and stays up until the test ends.
local function start_site(d, dir, name)
  local code = [[
    local l, err, code = md.attach.listen()
    print(l and ("ready " .. l:path()) or ("failed " .. code .. " " .. err))
    io.stdout:flush()
    md.sleep(60)
  ]]
  local p = T.start(d, name, format("%s %s --name %s -e %s", site_env(dir), q(exe), q(name), q(code)))
  T.eq(p:first_line(), format("ready %s/moondog/%s.sock", dir, name), name .. " listening")
  return p
end

local function attach_to(dir, target, input)
  return T.sh(format("printf %s | %s %s attach %s 2>&1", q(input), site_env(dir), q(exe), target or ""))
end

T.test("two engines, each attached by its site name", function()
  local dir, d <close> = tmpdir()
  local _a <close> = start_site(d, dir, "north")
  local _b <close> = start_site(d, dir, "south")
  local out, rc = attach_to(dir, "north", "print('site=' .. md.attach.site())\n")
  T.eq(rc, 0, "attach north: " .. out)
  assert(out:find("site=north", 1, true), out)
  out, rc = attach_to(dir, "south", "print('site=' .. md.attach.site())\n")
  T.eq(rc, 0, "attach south: " .. out)
  assert(out:find("site=south", 1, true), out)
  -- A path works as well as a name.
  out, rc = attach_to(dir, q(dir .. "/moondog/south.sock"), "print('site=' .. md.attach.site())\n")
  T.eq(rc, 0, "attach by path: " .. out)
  assert(out:find("site=south", 1, true), out)
  -- A script's site is its basename.
  T.write_file(dir .. "/garage.lua", "print(md.attach.site(), md.attach.default_path())\n")
  out = T.sh(format("%s %s %s", site_env(dir), q(exe), q(dir .. "/garage.lua")))
  T.eq(out, format("garage\t%s/moondog/garage.sock\n", dir), "site of a script")
end)

T.test("attach with no name lists the engines when several run", function()
  local dir, d <close> = tmpdir()
  local out, rc = attach_to(dir, nil, "")
  T.eq(rc, 1, "no engine: " .. out)
  assert(out:find("no engine listens in " .. dir .. "/moondog", 1, true), out)
  local _a <close> = start_site(d, dir, "north")
  -- One engine: attach goes there.
  out, rc = attach_to(dir, nil, "print('site=' .. md.attach.site())\n")
  T.eq(rc, 0, "one engine: " .. out)
  assert(out:find("site=north", 1, true), out)
  local _b <close> = start_site(d, dir, "south")
  out, rc = attach_to(dir, nil, "print('never runs')\n")
  T.eq(rc, 2, "several engines: " .. out)
  assert(not out:find("never runs", 1, true), out)
  for _, site in ipairs({ "north", "south" }) do
    local sock = (dir .. "/moondog/" .. site .. ".sock"):gsub("%p", "%%%0")
    local pid = out:match(site .. "%s+(%d+)%s+" .. sock)
    assert(pid, "listed " .. site .. " with a pid: " .. out)
    -- the pid is the engine's own: its command line names the site
    local cmdline = (T.read_file("/proc/" .. pid .. "/cmdline") or ""):gsub("%z", " ")
    assert(cmdline:find("--name " .. site, 1, true), "pid " .. pid .. " runs " .. cmdline)
  end
  assert(out:find("moondog attach SITE", 1, true), out)
end)

T.test("a listen that fails says so on stderr and in the log", function()
  local dir, d <close> = tmpdir()
  local _a <close> = start_site(d, dir, "north")
  local code = "local l, err, c = md.attach.listen(); print(l, c)"
  local out = T.sh(format("%s %s --name north -e %s 2>&1", site_env(dir), q(exe), q(code)))
  assert(out:find("attach: another engine is listening on " .. dir .. "/moondog/north.sock", 1, true), out)
  assert(out:find("nil\tin_use", 1, true), out)
  -- With the log in a file: the warning goes there and to stderr.
  local log = dir .. "/engine.log"
  local err = T.sh(format("%s %s --log-file %s --name north -e %s 2>&1 >/dev/null", site_env(dir), q(exe),
    q(log), q(code)))
  assert(err:find("moondog: attach: another engine is listening", 1, true), "stderr: " .. err)
  assert((T.read_file(log) or ""):find("attach: another engine is listening", 1, true), "log file")
end)

T.test("a symbolic link at the socket path is never followed", function()
  local dir, _ <close> = tmpdir()
  os.execute(format("mkdir -m 0700 %s", q(dir .. "/moondog")))
  local target = dir .. "/elsewhere"
  T.write_file(target, "keep me")
  os.execute(format("ln -s %s %s", q(target), q(dir .. "/moondog/west.sock")))
  local code = "local l, err, c = md.attach.listen(); print(l, c, err)"
  local out = T.sh(format("%s %s --name west -e %s 2>/dev/null", site_env(dir), q(exe), q(code)))
  assert(out:find("^nil\tunsafe\t.*symbolic link"), out)
  T.eq(T.read_file(target), "keep me", "link target")
  local _, is_link = T.sh("test -L " .. q(dir .. "/moondog/west.sock"))
  T.eq(is_link, 0, "the link is left alone")
  -- The same for a path given to listen().
  local l, err, c = md.attach.listen(dir .. "/moondog/west.sock")
  T.eq(l, nil, "listen on the link")
  T.eq(c, "unsafe", "code: " .. tostring(err))
end)

-- }=====
