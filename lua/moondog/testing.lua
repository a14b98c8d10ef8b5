-- moondog.testing: a small test harness that runs on the engine itself.
--
--   local T = require "moondog.testing"
--   T.test("sleep orders tasks", function()
--     local done = T.expect(function() end, 1)   -- must be called once
--     md.spawn(function() md.sleep(0.01); done() end):join()
--   end)
--
-- Each test runs as a task, with a time limit. Afterwards the harness waits
-- briefly for the engine to settle and fails the test if it left tasks,
-- timers, fd watches or registry references behind, or if an expect()
-- count was not met.
-- T.skip(reason) inside a test skips it. `moondog test FILE...` runs files.

local md = require "moondog"
local process = require "moondog.process"
local mdfile = require "moondog.file"

local M = {}

local tests = {}
local expectations
local skip_marker = setmetatable({}, { __tostring = function() return "skip" end })

--- Register a test; fn runs as a task. opts.timeout in seconds (default 30).
function M.test(name, fn, opts)
  assert(type(name) == "string", "test name must be a string")
  assert(type(fn) == "function", "test body must be a function")
  tests[#tests + 1] = { name = name, fn = fn, timeout = opts and opts.timeout or 30 }
end

--- Skip the running test, e.g. when ../shared is absent.
function M.skip(reason)
  error(setmetatable({ reason = reason }, { __index = skip_marker }), 0)
end

--- Wrap fn so that the test fails unless the wrapper is called exactly n times.
function M.expect(fn, n)
  local e = { calls = 0, want = n or 1, where = debug.traceback("", 2):match("\n%s*([^\n]+)") }
  expectations[#expectations + 1] = e
  return function(...)
    e.calls = e.calls + 1
    return fn(...)
  end
end

--- assert a == b with a message that shows both.
function M.eq(got, want, what)
  if got ~= want then
    error(string.format("%s: expected %s, got %s", what or "value", tostring(want), tostring(got)), 2)
  end
end

--- Run a shell command; returns its stdout, exit code. Blocks the engine:
--- use for short commands only.
function M.sh(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  return out, code
end

--- T.have(program) -> whether the program is on PATH.
function M.have(program)
  local _, code = M.sh("command -v " .. M.quote(program) .. " >/dev/null 2>&1")
  return code == 0
end

--- T.need(program, package): skip the test unless the program is on PATH,
--- naming the Debian package that has it.
function M.need(program, package)
  if not M.have(program) then
    M.skip(program .. " is not installed (Debian package " .. (package or program) .. ")")
  end
end

--- Poll cond() every 10 ms until it returns true or `timeout` s pass.
function M.wait_for(cond, timeout, what)
  local deadline = md.now() + (timeout or 5)
  while not cond() do
    if md.now() > deadline then
      error("timed out waiting for " .. (what or "condition"), 2)
    end
    md.sleep(0.01)
  end
end

local function is_skip(err)
  return type(err) == "table" and getmetatable(err) and getmetatable(err).__index == skip_marker
end

-- Registry references held from C: luaL_ref slots holding a value that is
-- not a number (freed slots hold the number of the next free slot).
local function registry_refs()
  local n = 0
  for k, v in pairs(debug.getregistry()) do
    if math.type(k) == "integer" and k > 3 and type(v) ~= "number" then
      n = n + 1
    end
  end
  return n
end

local function snapshot()
  collectgarbage()
  collectgarbage()
  local s = md.stats()
  s.refs = registry_refs()
  return s
end

-- Let cancelled tasks and closing handles finish, then report leftovers.
local function leftovers(before)
  local s
  for _ = 1, 50 do
    s = snapshot()
    if s.tasks <= before.tasks and s.timers <= before.timers and s.watches <= before.watches
      and s.refs <= before.refs then
      return nil
    end
    md.sleep(0.002)
  end
  local list = {}
  for _, t in ipairs(md.tasks()) do
    list[#list + 1] = tostring(t)
  end
  return string.format("left behind %d task(s), %d timer(s), %d watch(es), %d registry ref(s): %s",
    s.tasks - before.tasks, s.timers - before.timers, s.watches - before.watches,
    s.refs - before.refs, table.concat(list, ", "))
end

-- Run the test body as a task; returns "pass" | "fail" | "skip", detail.
-- The task handle stays inside this function, so that it is garbage once
-- run_one checks for leftovers.
local function execute(t)
  local task = md.spawn(function()
    return xpcall(t.fn, function(err)
      if is_skip(err) then return err end
      return debug.traceback(tostring(err), 2)
    end)
  end)
  task:name("test: " .. t.name)
  local ok, xok, err = pcall(task.join, task, t.timeout)
  if not ok then
    return "fail", xok
  end
  if xok == nil then -- join failed: timeout or the task raised outside xpcall
    task:cancel()
    return "fail", err or "test did not finish"
  end
  if not xok then
    if is_skip(err) then
      return "skip", err.reason
    end
    return "fail", err
  end
  return "pass"
end

local function run_one(t)
  expectations = {}
  local before = snapshot()
  local result, detail = execute(t)
  if result ~= "pass" then
    return result, detail
  end
  for _, e in ipairs(expectations) do
    if e.calls ~= e.want then
      return "fail", string.format("expected %d call(s), got %d (%s)", e.want, e.calls, e.where or "?")
    end
  end
  local left = leftovers(before)
  if left then
    return "fail", left
  end
  return "pass"
end

--- Run every test registered so far; prints one line per test.
--- Returns passed, failed, skipped.
function M.run(label)
  local counts = { pass = 0, fail = 0, skip = 0 }
  for _, t in ipairs(tests) do
    local result, detail = run_one(t)
    counts[result] = counts[result] + 1
    if result == "pass" then
      io.write("ok - ", label, ": ", t.name, "\n")
    elseif result == "skip" then
      io.write("ok - ", label, ": ", t.name, " # SKIP ", tostring(detail), "\n")
    else
      io.write("not ok - ", label, ": ", t.name, "\n")
      io.write("  ", (tostring(detail):gsub("\n", "\n  ")), "\n")
    end
    io.flush()
  end
  tests = {}
  return counts.pass, counts.fail, counts.skip
end

--- Load and run test files; returns passed, failed, skipped over all.
function M.run_files(files)
  local p, f, s = 0, 0, 0
  for _, file in ipairs(files) do
    local chunk, err = loadfile(file)
    local label = file:match("([^/]+)%.lua$") or file
    if not chunk then
      io.write("not ok - ", label, ": cannot load: ", err, "\n")
      f = f + 1
    else
      local ok, lerr = pcall(chunk)
      if not ok then
        io.write("not ok - ", label, ": error while loading: ", tostring(lerr), "\n")
        f = f + 1
      end
      local a, b, c = M.run(label)
      p, f, s = p + a, f + b, s + c
    end
  end
  return p, f, s
end

-- {===== files and helper processes for tests =====

--- Quote a string for the shell.
M.quote = process.quote

--- The whole file, or nil, message, code when it cannot be read
--- (moondog.file.read).
M.read_file = mdfile.read

--- Write text as the whole file; raises when it cannot (a test's set-up).
function M.write_file(path, text)
  assert(mdfile.write(path, text))
end

--- Bytes from hex text: each pair of hex digits becomes one byte ("0a1b" -> "\x0a\x1b").
function M.unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

--- Lower-case hex text of bytes.
function M.hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

--- The rows of a tab-separated file whose first line (not counting
--- comment lines starting with #) names the columns: {{col = text}, ...};
--- raises when it cannot be read (reference data a test was told is there).
function M.read_tsv(path)
  local text = assert(mdfile.read(path))
  local rows, header = {}, nil
  for line in text:gmatch("([^\n]*)\n?") do
    if line ~= "" and not line:match("^#") then
      local cols = {}
      for c in (line .. "\t"):gmatch("([^\t]*)\t") do cols[#cols + 1] = c end
      if header then
        local row = {}
        for i, name in ipairs(header) do row[name] = cols[i] or "" end
        rows[#rows + 1] = row
      else
        header = cols
      end
    end
  end
  return rows
end

--- Check the stderr of a command-line tool that refused its arguments
--- (moondog.cli's usage_error): one line "TOOL: ..." containing reason,
--- then "Try 'TOOL --help'.", and nothing else. what names the case.
function M.usage_error(err, tool, reason, what)
  local line, rest = tostring(err):match("^([^\n]*)\n(.*)$")
  assert(line and line:sub(1, #tool + 2) == tool .. ": " and line:find(reason, 1, true),
    string.format("%s: expected \"%s: ...%s...\", got: %s", what, tool, reason, tostring(err)))
  M.eq(rest, "Try '" .. tool .. " --help'.\n", what .. ": the pointer to --help")
end

--- A fresh directory ({path = ...}, mode 0700), removed when a `<close>`
--- variable holding it goes out of scope.
function M.tmpdir()
  local out = M.sh("mktemp -d /tmp/moondog-test.XXXXXX")
  local path = assert(out:match("^(%S+)"), "mktemp -d failed")
  return setmetatable({ path = path }, {
    __close = function(d) os.execute("rm -rf " .. M.quote(d.path)) end,
  })
end

local Proc = setmetatable({}, { __index = process.Process })
Proc.__index = Proc
Proc.__close = process.Process.__close
local started = 0

--- Start a helper process (a peer server, a broker, the tool under test)
--- with stdout and stderr in fresh files under dir.path (moondog.process:
--- proc.pid is the command's own; proc:alive(), proc:stop([grace]) with
--- SIGKILL after 3 s, which also runs in __close and waits with md.sleep).
--- Use `local p <close> = T.start(...)` so that it stops with the test.
function M.start(dir, name, cmd)
  started = started + 1
  local base = string.format("%s/%s-%d", dir.path, name, started)
  local out, err = base .. ".out", base .. ".err"
  local proc = assert(process.start(string.format("%s >%s 2>%s", cmd, M.quote(out), M.quote(err))))
  proc.out, proc.err, proc.cmd, proc.name = out, err, cmd, name
  return setmetatable(proc, Proc)
end

--- T.pty_pair(dir) -> a, b, proc: two linked pseudo-terminals (socat) in
--- dir.path, a real serial line for RTU tests; the test is skipped without
--- socat. `local a, b, _socat <close> = T.pty_pair(dir)` stops socat with the test.
function M.pty_pair(dir)
  M.need("socat", "socat")
  local a, b = dir.path .. "/pty_a", dir.path .. "/pty_b"
  local proc = M.start(dir, "socat", string.format("socat pty,raw,echo=0,link=%s pty,raw,echo=0,link=%s",
    M.quote(a), M.quote(b)))
  M.wait_for(function()
    if not proc:alive() then error("socat exited: " .. (M.read_file(proc.err) or ""), 0) end
    return os.execute("test -e " .. M.quote(a) .. " -a -e " .. M.quote(b)) == true
  end, 5, "socat's pty pair")
  return a, b, proc
end

--- The first line of its stdout, polled for up to `timeout` seconds.
function Proc:first_line(timeout)
  local line
  M.wait_for(function()
    line = (M.read_file(self.out) or ""):match("^([^\n]*)\n")
    if not line and not self:alive() then
      error(string.format("%s exited before it was ready: %s", self.name,
        M.read_file(self.err) or ""), 0)
    end
    return line ~= nil
  end, timeout or 10, self.name .. " to print its first line")
  return line
end

-- }=====

--- Path of ../shared next to the project, or nil when it is absent.
function M.shared_dir()
  local dir = os.getenv("MOONDOG_SHARED") or (md.paths.home .. "/../shared")
  local f = io.open(dir .. "/reference/README.md", "r")
  if not f then
    return nil
  end
  f:close()
  return dir
end

return M
