-- moondog.process: a child process run through io.popen, for what starts
-- peers: the test harness (T.start), the broker helper and the demo.
--
--   local p = assert(process.start("mosquitto -c " .. process.quote(conf) .. " >log 2>&1"))
--   p.pid, p:alive()
--   local ok, how, code = p:stop(5)    -- SIGTERM, SIGKILL after 5 s; reaped
--
-- The pipe's shell execs the command, so pid is the command's own and
-- stop() reaps it. Nothing here yields, so stop() also runs in __close.

local M = {}

local Process = {}
M.Process = Process
Process.__index = Process

--- process.quote(s) -> s as one word for /bin/sh.
function M.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- process.start(cmd) -> process, or nil, message. cmd is a shell command
--- line (with its own redirections: its stdout is not read).
function M.start(cmd)
  local pipe = io.popen("echo $$; exec " .. cmd, "r")
  if not pipe then return nil, "cannot run a shell for: " .. cmd end
  local pid = math.tointeger(tonumber(pipe:read("l")))
  if not pid then
    pipe:close()
    return nil, "could not start: " .. cmd
  end
  return setmetatable({ pid = pid, pipe = pipe }, Process)
end

--- p:alive() -> true until the process has exited (a zombie counts as exited).
function Process:alive()
  if not self.pipe then return false end
  local f = io.open("/proc/" .. self.pid .. "/stat", "rb")
  if not f then return false end
  local stat = f:read("a")
  f:close()
  return stat ~= nil and not stat:match("^%d+ %b() Z")
end

--- p:stop([grace]): SIGTERM, then SIGKILL after grace seconds (default 3),
--- then reap. Returns what io.popen's close says (ok, "exit" or "signal",
--- code), or nil when it was stopped already.
function Process:stop(grace)
  if not self.pipe then return nil end
  os.execute(string.format("kill -TERM %d 2>/dev/null", self.pid))
  for _ = 1, math.ceil((grace or 3) / 0.02) do
    if not self:alive() then break end
    os.execute("sleep 0.02")
  end
  if self:alive() then os.execute(string.format("kill -KILL %d 2>/dev/null", self.pid)) end
  local pipe = self.pipe
  self.pipe = nil
  return pipe:close()
end

-- As a to-be-closed variable: __close also gets the error object, which
-- must not pass for the grace time.
function Process.__close(p) p:stop() end

return M
