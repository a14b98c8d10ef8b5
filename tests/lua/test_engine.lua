-- The engine as a process: command line, exit codes, shutdown, logging.
-- Each test starts moondog itself as a child process.
local T = require "moondog.testing"
local md = require "moondog"

local exe = md.paths.exe

local function tmpdir()
  local out = T.sh("mktemp -d")
  return (out:gsub("%s+$", ""))
end

local write, read = T.write_file, T.read_file

-- Run moondog with a shell-quoted argument string; returns stdout, stderr, code.
local function run(args, dir)
  dir = dir or tmpdir()
  local out, code = T.sh(string.format("%s %s 2>%s/stderr", exe, args, dir))
  return out, read(dir .. "/stderr") or "", code
end

T.test("--version and --help", function()
  local out, _, code = run("--version")
  T.eq(code, 0); assert(out:find("^moondog %d+%.%d+%.%d+ %(Lua 5%.4"), out)
  out, _, code = run("--help")
  T.eq(code, 0); assert(out:find("usage: moondog") and out:find("tools"), out)
end)

T.test("unknown option and missing file: one line, exit code 2", function()
  local _, err, code = run("--frobnicate")
  T.eq(code, 2); T.eq(select(2, err:gsub("\n", "")), 1, "lines")
  assert(err:find("unknown option '%-%-frobnicate'"), err)
  _, err, code = run("/nonexistent/site.lua")
  T.eq(code, 2); assert(err:find("no such script or tool"), err)
  _, err, code = run("--log-level loud -e ''")
  T.eq(code, 2); assert(err:find("unknown log level"), err)
end)

T.test("script arguments arrive in arg and ...", function()
  local dir = tmpdir()
  write(dir .. "/s.lua", 'print(arg[0], arg[1], arg[2], select("#", ...), ...)')
  local out, _, code = run(dir .. "/s.lua one two", dir)
  T.eq(code, 0)
  T.eq(out, dir .. "/s.lua\tone\ttwo\t2\tone\ttwo\n")
end)

T.test("-e chunks run in order, then the script; md is a global", function()
  local dir = tmpdir()
  write(dir .. "/s.lua", 'print("script", x)')
  local out, _, code = run("-e 'x = 1' -e 'x = x + 1; print(\"e\", x)' " .. dir .. "/s.lua", dir)
  T.eq(code, 0); T.eq(out, "e\t2\nscript\t2\n")
  out = run("-e 'print(type(md.spawn))'")
  T.eq(out, "function\n")
end)

T.test("a script is read from stdin with -", function()
  local out, code = T.sh("echo 'print(40 + 2)' | " .. exe .. " -")
  T.eq(code, 0); T.eq(out, "42\n")
end)

T.test("the engine runs while tasks live, then exits 0", function()
  local out, _, code = run([[-e 'md.spawn(function() md.sleep(0.05); print("late") end); print("main")']])
  T.eq(code, 0); T.eq(out, "main\nlate\n")
end)

T.test("a main chunk that raises gives exit code 1; other tasks still finish", function()
  local out, err, code = run([[-e 'md.spawn(function() md.sleep(0.02); print("other") end); error("bad")']])
  T.eq(code, 1); T.eq(out, "other\n")
  assert(err:find("main chunk failed: %(command line%):1: bad") and err:find("stack traceback"), err)
end)

T.test("a syntax error in the script: exit 1 with the message", function()
  local dir = tmpdir()
  write(dir .. "/bad.lua", "x = = 1")
  local _, err, code = run(dir .. "/bad.lua", dir)
  T.eq(code, 1); assert(err:find("bad.lua:1:"), err)
end)

T.test("md.exit(code) stops everything; to-be-closed and __gc run", function()
  local dir = tmpdir()
  -- kept in a global: only the engine's exit may collect it (garbage could be
  -- collected any time before, and the order below would depend on the collector)
  write(dir .. "/s.lua", [[
    kept = setmetatable({}, { __gc = function() print("gc") end })
    md.spawn(function()
      local h <close> = setmetatable({}, { __close = function() print("closed") end })
      md.sleep(60)
    end)
    md.sleep(0.01)
    md.exit(7)
    print("not reached")
  ]])
  local out, _, code = run(dir .. "/s.lua", dir)
  T.eq(code, 7)
  T.eq(out, "closed\ngc\n")
end)

local function signal_test(sig)
  local dir = tmpdir()
  write(dir .. "/s.lua", string.format([[
    setmetatable({}, { __gc = function() io.open(%q, "a"):write("gc\n") end })
    md.spawn(function()
      local h <close> = setmetatable({}, { __close = function() io.open(%q, "a"):write("closed\n") end })
      io.open(%q, "w"):close()
      md.sleep(60)
    end)
  ]], dir .. "/log", dir .. "/log", dir .. "/ready"))
  -- Start in the background, wait (bounded) for the ready file, signal, wait.
  local script = string.format([[
    %s %s/s.lua 2>%s/stderr & pid=$!
    i=0; while [ ! -e %s/ready ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
    kill -%s $pid; wait $pid; echo $?]], exe, dir, dir, dir, sig)
  local out = T.sh(script)
  T.eq(out, "0\n", "exit code after SIG" .. sig)
  T.eq(read(dir .. "/log"), "closed\ngc\n", "cleanup log")
  assert(read(dir .. "/stderr"):find("shutting down"))
end

T.test("SIGTERM shuts down cleanly: tasks cancelled, __close and __gc run, exit 0", function()
  signal_test("TERM")
end)

T.test("SIGINT shuts down cleanly too", function()
  signal_test("INT")
end)

T.test("SIGTERM interrupts a task busy in Lua", function()
  local dir = tmpdir()
  write(dir .. "/s.lua", string.format([[
    io.open(%q, "w"):close()
    while true do end
  ]], dir .. "/ready"))
  local out = T.sh(string.format([[
    %s %s/s.lua 2>/dev/null & pid=$!
    i=0; while [ ! -e %s/ready ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
    sleep 0.05; kill -TERM $pid; wait $pid; echo $?]], exe, dir, dir))
  -- the busy main chunk fails ("interrupted"), so the exit code is 1
  T.eq(out, "1\n")
end)

T.test("a tool runs as moondog TOOL when no such file exists", function()
  local _, err, code = run("test --help")
  T.eq(code, 0)
  assert(err:find("usage: moondog test"), err)
  _, err, code = run("no-such-tool")
  T.eq(code, 2); assert(err:find("no such script or tool: 'no%-such%-tool'"), err)
end)

T.test("--log-level and --log-file", function()
  local dir = tmpdir()
  local _, err = run([[--log-level warn -e 'md.log.info("quiet"); md.log.warn("loud %d", 3)']], dir)
  assert(not err:find("quiet") and err:find("warn  loud 3"), err)
  run(string.format([[--log-file %s/log -e 'md.log.error("to file")']], dir), dir)
  local log = read(dir .. "/log")
  assert(log and log:find("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d%.%d%d%d error to file\n$"), log)
end)

T.test("an idle engine collects a burst's garbage and gives the free pages back", function()
  local dir = tmpdir()
  -- 200000 small tables, one in 50 kept: the heap's free space is in holes
  -- between live objects, which free() alone never returns. The sleep (2.5 s)
  -- outlasts two idle checks (1 s each), whichever batch armed the first.
  write(dir .. "/s.lua", [[
local function rss()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmRSS:%s*(%d+)")
    if kb then return tonumber(kb) end
  end
end
local keep, all = {}, {}
for i = 1, 200000 do
  all[i] = { i, i }
  if i % 50 == 0 then keep[#keep + 1] = all[i] end
end
all = nil
local kb0, rss0 = collectgarbage("count"), rss()
md.sleep(2.5)
-- AddressSanitizer's allocator replaces glibc's: malloc_trim does nothing there
local maps = io.open("/proc/self/maps"):read("a")
print(#keep, kb0, collectgarbage("count"), rss0, rss(), maps:find("libasan") and "asan" or "glibc")
]])
  local out, err, code = run(dir .. "/s.lua", dir)
  T.eq(code, 0, err)
  local kept, kb0, kb1, rss0, rss1, malloc = out:match("^(%d+)\t(%S+)\t(%S+)\t(%d+)\t(%d+)\t(%a+)\n$")
  T.eq(kept, "4000", out)
  kb0, kb1, rss0, rss1 = tonumber(kb0), tonumber(kb1), tonumber(rss0), tonumber(rss1)
  assert(kb1 < kb0 / 4, string.format("Lua heap %.0f KiB -> %.0f KiB", kb0, kb1))
  if malloc == "glibc" then
    assert(rss1 < rss0 - 8192, string.format("RSS %d KiB -> %d KiB", rss0, rss1))
  end
end)
