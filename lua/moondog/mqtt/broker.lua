-- moondog.mqtt.broker: run a mosquitto broker on a free loopback port, for
-- tests, benchmarks and the demo. Also md.mqtt.broker.
--
--   local broker = require "moondog.mqtt.broker"
--   local b <close> = assert(broker.start{})            -- 127.0.0.1, a free port
--   local c = md.mqtt.connect{ host = b.host, port = b.port }
--   b:stop(); b:start()                                 -- same port, same directory
--
-- broker.start(opts) options (all optional):
--   port         a port, or nil for a free one (tries random ports until one binds)
--   dir          directory for the configuration, log and persistence file;
--                default: a fresh temporary directory, removed by stop()
--   persistence  true: keep sessions and queued messages across a restart
--   users        { name = password, ... }: require these credentials
--                (password file written with mosquitto_passwd)
--   tls          { ca_file =, cert_file =, key_file = }: TLS on the listener
--   conf_extra   more lines for mosquitto.conf
--   timeout      seconds to wait for the broker to run (default 5)
-- Returns the broker object, or nil, message, code ("no_broker" when
-- mosquitto is not installed, "start" when it would not run).
--
-- b.host, b.port, b.dir, b.log (log file), b.pid; b:url(); b:running();
-- b:stop() (SIGTERM, then SIGKILL after 5 s; idempotent; also <close>);
-- b:start() starts a stopped broker again with the same configuration.
--
-- The broker is a child process (moondog.process: the pid is mosquitto's
-- own; stopping it reaps it). Waiting for it polls its
-- log with md.sleep, so other tasks run meanwhile. A broker object that is
-- dropped without close() never blocks the collector: mosquitto runs on
-- until the engine exits, which stops it, and then its temporary directory
-- is removed.

local mdcore = require "moondog.core"
local process = require "moondog.process"
local file = require "moondog.file"

local M = {}

-- Temporary directories of brokers not closed yet; removed when the Lua
-- state closes at engine exit, after the engine stopped its children.
local own_dirs = {}
M._cleanup = setmetatable({}, { __gc = function()
  for dir in pairs(own_dirs) do os.execute("rm -rf " .. process.quote(dir)) end
end })

local Broker = {}
Broker.__index = Broker

local sweep_stale

local quote = process.quote

local read_file = file.read

local function shell_ok(cmd)
  local ok = os.execute(cmd)
  return ok == true
end

local function have_mosquitto()
  return shell_ok("command -v mosquitto >/dev/null 2>&1")
end

local function random_port()
  return math.random(20000, 59999)
end

function Broker:url()
  return string.format("%s://%s:%d", self.tls and "mqtts" or "mqtt", self.host, self.port)
end

function Broker:running()
  return self.proc ~= nil and self.proc:alive()
end

-- mosquitto started as root switches to the user "mosquitto", which could
-- not write to our directory: stay the user we are.
local function current_user()
  local p = io.popen("id -un")
  local name = p:read("l")
  p:close()
  return name
end

local function conf_text(self)
  local lines = {
    "user " .. current_user(),
    string.format("listener %d %s", self.port, self.host),
    "log_dest file " .. self.log,
    "log_type error",
    "log_type warning",
    "log_type notice",
    "log_type information",
    "connection_messages true",
    "set_tcp_nodelay true",
  }
  if self.persistence then
    lines[#lines + 1] = "persistence true"
    lines[#lines + 1] = "persistence_location " .. self.dir .. "/"
  end
  if self.tls then
    if self.tls.ca_file then lines[#lines + 1] = "cafile " .. self.tls.ca_file end
    lines[#lines + 1] = "certfile " .. self.tls.cert_file
    lines[#lines + 1] = "keyfile " .. self.tls.key_file
  end
  if self.users then
    lines[#lines + 1] = "allow_anonymous false"
    lines[#lines + 1] = "password_file " .. self.dir .. "/passwd"
  else
    lines[#lines + 1] = "allow_anonymous true"
  end
  if self.conf_extra then lines[#lines + 1] = self.conf_extra end
  return table.concat(lines, "\n") .. "\n"
end

local function write_passwords(self)
  local path = self.dir .. "/passwd"
  os.remove(path)
  local written, werr = file.write(path, "")
  if not written then return nil, werr end
  local names = {}
  for name in pairs(self.users) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    if not shell_ok(string.format("mosquitto_passwd -b %s %s %s >/dev/null 2>&1", quote(path),
        quote(name), quote(self.users[name]))) then
      return nil, "mosquitto_passwd failed for user " .. name
    end
  end
  return true
end

-- Start mosquitto on self.port; true once it runs, or nil, reason
-- ("in_use" when the port is taken).
local function launch(self, timeout)
  local written, werr = file.write(self.dir .. "/mosquitto.conf", conf_text(self))
  if not written then return nil, werr end
  local logged = #(read_file(self.log) or "")
  self.proc = assert(process.start(string.format("mosquitto -c %s >>%s 2>&1",
    quote(self.dir .. "/mosquitto.conf"), quote(self.dir .. "/stderr"))))
  self.pid = self.proc.pid
  local deadline = mdcore.now() + timeout
  while mdcore.now() < deadline do
    local text = (read_file(self.log) or ""):sub(logged + 1)
    if text:find(" running", 1, true) then
      return true
    end
    if not self:running() then
      self:stop()
      if text:find("in use", 1, true) or (read_file(self.dir .. "/stderr") or ""):find("in use", 1, true) then
        return nil, "in_use"
      end
      return nil, "mosquitto exited: " .. text .. (read_file(self.dir .. "/stderr") or "")
    end
    mdcore.sleep(0.02)
  end
  self:stop()
  return nil, "mosquitto did not start within " .. timeout .. " s"
end

--- b:start() starts the broker (again): same port, directory and settings.
function Broker:start()
  if self:running() then return true end
  local ok, err = launch(self, self.timeout)
  if not ok then
    return nil, string.format("cannot start mosquitto on %s:%d: %s", self.host, self.port, err), "start"
  end
  return true
end

--- b:stop() stops the broker: SIGTERM (it saves its persistence file), then
--- SIGKILL after 5 s. In a task it waits with md.sleep (other tasks run);
--- elsewhere (a finalizer) it only sends SIGTERM and the engine reaps it.
function Broker:stop()
  if self.proc then
    self.proc:stop(5)
    self.proc = nil
  end
  return true
end

--- b:close() stops the broker and removes a directory that start() created.
function Broker:close()
  self:stop()
  if self.own_dir then
    os.execute("rm -rf " .. quote(self.dir))
    own_dirs[self.dir] = nil
    self.own_dir = false
  end
end
Broker.__close = Broker.close

function Broker:__tostring()
  return string.format("mosquitto on %s:%d%s", self.host, self.port, self:running() and "" or " (stopped)")
end

local function own_pid()
  local stat = read_file("/proc/self/stat") or ""
  return stat:match("^(%d+)") or "0"
end

-- Folders of brokers whose engine was killed (SIGKILL leaves no time to
-- clean up; the kernel stops mosquitto itself): each holds its engine's
-- pid, and one whose engine is gone is removed by the next broker.start.
function sweep_stale()
  local p = io.popen("ls -d /tmp/moondog-mosquitto.* 2>/dev/null")
  local dirs = p:read("a")
  p:close()
  for dir in dirs:gmatch("[^\n]+") do
    local pid = (read_file(dir .. "/engine.pid") or ""):match("^(%d+)")
    if pid and not own_dirs[dir] and not read_file("/proc/" .. pid .. "/stat") then
      os.execute("rm -rf " .. quote(dir))
    end
  end
end

function M.start(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("broker.start: expected an options table", 2)
  end
  if not have_mosquitto() then
    return nil, "mosquitto is not installed (Debian package mosquitto; `make deps` installs it)", "no_broker"
  end
  local self = setmetatable({
    host = opts.host or "127.0.0.1",
    persistence = opts.persistence,
    users = opts.users,
    tls = opts.tls,
    conf_extra = opts.conf_extra,
    timeout = opts.timeout or 5,
  }, Broker)
  if opts.dir then
    self.dir = opts.dir
  else
    sweep_stale()
    local p = io.popen("mktemp -d /tmp/moondog-mosquitto.XXXXXX")
    self.dir = p:read("l")
    p:close()
    self.own_dir = true
    own_dirs[self.dir] = true
    local written, werr = file.write(self.dir .. "/engine.pid", own_pid() .. "\n")
    if not written then
      self:close()
      return nil, "cannot start mosquitto: " .. werr, "start"
    end
  end
  self.log = self.dir .. "/mosquitto.log"
  if self.users then
    local ok, err = write_passwords(self)
    if not ok then
      self:close()
      return nil, err, "start"
    end
  end
  local tries = opts.port and 1 or 20
  local err
  for _ = 1, tries do
    self.port = opts.port or random_port()
    local ok
    ok, err = launch(self, self.timeout)
    if ok then
      return self
    end
    if err ~= "in_use" then break end
  end
  self:close()
  return nil, string.format("cannot start mosquitto on %s: %s", self.host, err), "start"
end

return M
