-- moondog.growatt.command_socket: grott-async's text command socket on a
-- moondog Growatt proxy, so that scripts written for grott-async keep
-- working. Off unless started; loopback addresses only.
--
--   local cs = assert(require("moondog.growatt.command_socket").start(proxy,
--     { listen = "127.0.0.1:15279" }))          -- grott-async's address
--   cs:port(); cs:close()
--
-- One command per line (or per write, as grott-async reads them):
--   list                         -> "LOGGER | INVERTER | PEER\n" per connected datalogger
--   read LOGGER REG              -> "Reg: REG Value: V\n"
--   set LOGGER REG VALUE         -> "SET Reg: REG Value: V\n"
-- Where grott-async answers nothing on a failure, this says why in one
-- line, "ERR <message>\n". Commands go through logger:read/write: their
-- own sequence numbers, matched, with a timeout, queued per logger.

local md = require "moondog"
local stream = require "moondog.stream"
local accept = require "moondog.accept"

local M = {}

local format = string.format

local CS = {}
CS.__index = CS

local function find_logger(proxy, serial)
  for _, l in ipairs(proxy:loggers()) do
    if l.serial == serial then return l end
  end
  return nil
end

local function run_command(proxy, line, timeout)
  local words = {}
  for w in line:gmatch("%S+") do words[#words + 1] = w end
  local cmd = (words[1] or ""):lower()
  if cmd == "" then return "" end
  if cmd == "list" then
    local out = {}
    for _, l in ipairs(proxy:loggers()) do
      if l.conn then
        out[#out + 1] = format("%s | %s | %s\n", tostring(l.serial), tostring(l.conn.inverter or "-"),
          l.conn.peer)
      end
    end
    return table.concat(out)
  end
  local reg = tonumber(words[3])
  if (cmd ~= "read" and cmd ~= "set") or not words[2] or not reg or math.type(reg) ~= "integer"
      or reg < 0 or reg > 0xFFFF then
    return "ERR expected: list | read LOGGER REG | set LOGGER REG VALUE\n"
  end
  local logger = find_logger(proxy, words[2])
  if not logger then return format("ERR no datalogger %s is connected\n", words[2]) end
  if cmd == "read" then
    local v, err = logger:read(reg, 1, timeout)
    if not v then return "ERR " .. tostring(err) .. "\n" end
    return format("Reg: %d Value: %d\n", reg, v[1])
  end
  local value = tonumber(words[4])
  if not value or math.type(value) ~= "integer" or value < 0 or value > 0xFFFF then
    return "ERR set needs a value 0..65535\n"
  end
  local ok, err = logger:write(reg, value, timeout)
  if not ok then return "ERR " .. tostring(err) .. "\n" end
  return format("SET Reg: %d Value: %d\n", reg, value)
end

local function client(self, conn)
  self.conns[conn] = true
  local pending = ""
  while true do
    local bytes = conn:read(4096, 300)
    if not bytes then break end
    pending = pending .. bytes
    if not pending:find("\n", 1, true) and #pending < 256 then pending = pending .. "\n" end
    for line in pending:gmatch("([^\n]*)\n") do
      local reply = run_command(self.proxy, line, self.timeout)
      if #reply > 0 and not conn:write(reply) then break end
    end
    pending = pending:match("[^\n]*$") or ""
  end
  self.conns[conn] = nil
  conn:close()
end


function CS:port() return self.listener:port() end

function CS:close()
  if self.closed then return end
  self.closed = true
  self.listener:close()
  for conn in pairs(self.conns) do conn:close() end
end

CS.__close = CS.close

--- command_socket.start(proxy [, {listen = "127.0.0.1:15279", timeout = 10}])
--- -> socket, or nil, message, code. A listen address that is not loopback raises.
function M.start(proxy, opts)
  opts = opts or {}
  local host, port = require("moondog.growatt.proxy").parse_hostport(opts.listen or "127.0.0.1:15279", 15279)
  if not host then error("command_socket: listen: " .. tostring(port), 2) end
  if not (host:match("^127%.") or host == "::1" or host == "localhost") then
    error("command_socket: the command socket listens on loopback only (127.0.0.1 or ::1), got " .. host, 2)
  end
  local l, err, code = stream.listen(host, port)
  if not l then return nil, "command_socket: " .. tostring(err), code end
  local self = setmetatable({ proxy = proxy, listener = l, conns = {}, timeout = opts.timeout or 10 }, CS)
  self.task = md.spawn(accept.loop, self.listener, "growatt command socket",
    function(conn) client(self, conn) end)
  self.task:name("growatt command socket")
  return self
end

return M
