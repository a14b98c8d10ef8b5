-- moondog.cli: what the command-line tools in scripts/ share: option
-- parsing, exits with one clear line, and numbers printed exactly.
--
--   local cli = require("moondog.cli").new("moondog sunspec")
--   local o, pos = cli:parse("scan", args, { unit = { arg = "N" }, json = {},
--                                            short = { u = "unit" } })
--   local unit = cli:int("scan", "unit", o.unit, 0, 255)
--   cli:usage_error("scan", "missing the device URL")    -- exit 2
--   cli:io_error(url, err, code)                         -- exit 1, with a hint
--   cli.number_text(230.5)                               --> "230.5"
--
-- Conventions of every tool: results on stdout, diagnostics on stderr;
-- exit 0 done, 1 the device or the connection failed (one line that says
-- what failed and what to try), 2 the command line is wrong (one line and
-- a pointer to --help). Options are `--opt value` or `--opt=value`; an
-- unknown option is an error, not something to ignore.

local md = require "moondog"

local format = string.format

local Cli = {}
Cli.__index = Cli

local M = {}

--- cli.new(tool) -> a helper printing messages as "tool cmd: ...".
function M.new(tool)
  return setmetatable({ tool = tool }, Cli)
end

function M.say(fmt, ...)
  io.stderr:write(format(fmt, ...), "\n")
end

local say = M.say

--- A command-line mistake: one line, a pointer to --help, exit code 2.
function Cli:usage_error(cmd, fmt, ...)
  local who = cmd and (self.tool .. " " .. cmd) or self.tool
  say("%s: %s", who, format(fmt, ...))
  say("Try '%s --help'.", who)
  io.stdout:flush()
  md.exit(2)
end

-- What to try for each failure code of the Modbus client.
M.hints = {
  refused = "is the device on and the port right?",
  connect_timeout = "is the host reachable? check the address and the network",
  unreachable = "is the host reachable? check the address and the network",
  dns = "check the host name, or use the IP address",
  connect = "check the address",
  no_device = "is the adapter plugged in? (ls /dev/serial/by-id)",
  permission = "do you have access to the port? (add yourself to the dialout group)",
  timeout = "check the unit id, the wiring and the line settings (baud, parity), or raise --timeout",
  crc = "garbled answer: check the baud rate, parity and wiring, and that only one master talks",
  malformed = "the answer made no sense: is this really a Modbus device, with this framing (tcp vs rtu+tcp)?",
  wrong_transaction = "a late or foreign answer arrived: raise --timeout, or make sure no other "
    .. "client shares the link",
  wrong_unit = "another unit answered: is the unit id unique on the line?",
  connection_lost = "the device or gateway dropped the connection: is it busy with another client?",
  illegal_function = "the device does not support this function: try another --kind",
  illegal_data_address = "the device has no such registers: check --address (0-based) and --kind",
  illegal_data_value = "the device refused the value or the count: check the count and the value range",
  server_device_failure = "the device failed to process the request: check its own status display or log",
  server_device_busy = "the device is busy: try again later",
  gateway_path_unavailable = "the gateway has no route to this unit: check the gateway's configuration",
  gateway_target_failed = "the gateway got no answer from the unit: check the unit id and the serial side",
}

-- The connect failures (docs/errors.md), each with the reason the one
-- line shows; "connect" (any other) shows the binding's own message.
M.connect_codes = {
  refused = "connection refused", connect_timeout = "no connection within the timeout",
  unreachable = "no route to the host", dns = "the host name does not resolve",
  connect = true, no_device = "no such device", permission = "permission denied",
}

--- A device or I/O failure: one line with what failed and a hint, exit 1.
--- hints: the tool's own table (default M.hints).
function Cli:io_error(url, err, code, hints)
  local msg = tostring(err)
  local reason = M.connect_codes[code]
  if type(reason) == "string" then
    msg = format("cannot connect to %s: %s", url, reason)
  elseif reason then
    msg = format("cannot connect to %s (%s)", url, msg)
  end
  local hint = (hints or M.hints)[code]
  say("%s: %s%s", self.tool, msg, hint and (" — " .. hint) or "")
  io.stdout:flush()
  md.exit(1)
end

--- Option specs: name = {arg = "N" (takes a value; shown in help) or nil
--- (a flag), list = true (repeatable)}, short = {letter = name}. Returns
--- the options and the positional arguments.
function Cli:parse(cmd, args, spec)
  local opts, pos = {}, {}
  local i = 1
  local only_pos = false
  while i <= #args do
    local a = args[i]
    if only_pos or a:sub(1, 1) ~= "-" or a == "-" or a:match("^%-%.?%d") then
      pos[#pos + 1] = a -- also negative numbers
    elseif a == "--" then
      only_pos = true
    else
      local name, value = a:match("^%-%-([^=]+)=(.*)$")
      name = name or a:match("^%-%-(.+)$") or a:match("^%-(.)$")
      if name and spec.short and spec.short[name] then name = spec.short[name] end
      local s = name and name ~= "short" and spec[name]
      if not s then
        self:usage_error(cmd, "unknown option '%s'", a)
      end
      if s.arg then
        if value == nil then
          i = i + 1
          value = args[i]
          if value == nil then
            self:usage_error(cmd, "option --%s needs a value (%s)", name, s.arg)
          end
        end
      elseif value ~= nil then
        self:usage_error(cmd, "option --%s takes no value", name)
      else
        value = true
      end
      if s.list then
        opts[name] = opts[name] or {}
        table.insert(opts[name], value)
      elseif opts[name] ~= nil then
        self:usage_error(cmd, "option --%s given twice", name)
      else
        opts[name] = value
      end
    end
    i = i + 1
  end
  return opts, pos
end

--- An integer in lo..hi, decimal or 0x hex; a usage error otherwise.
function Cli:int(cmd, name, text, lo, hi)
  if text == nil then return nil end
  local n
  if text:match("^%-?%d+$") then
    n = math.tointeger(tonumber(text))
  elseif text:match("^0[xX]%x+$") then
    n = math.tointeger(tonumber(text:sub(3), 16))
  end
  if not n or n < lo or n > hi then
    self:usage_error(cmd, "--%s must be an integer %d..%d, got '%s'", name, lo, hi, text)
  end
  return n
end

--- Seconds for --timeout: 0 < S <= 3600.
function Cli:seconds(cmd, text)
  if text == nil then return nil end
  local s = tonumber(text)
  if not s or s <= 0 or s > 3600 then
    self:usage_error(cmd, "--timeout must be seconds, 0 < S <= 3600 (e.g. 0.5), got '%s'", text)
  end
  return s
end

--- cli:dispatch(commands, args, help): run commands[args[1]] with the
--- rest of args. No command: the help on stderr and exit 2; --help, -h or
--- help: the help on stdout; an unknown one: a usage error naming them.
function Cli:dispatch(commands, args, help)
  local cmd = args[1]
  if cmd == nil then
    io.stderr:write(help)
    md.exit(2)
  elseif cmd == "--help" or cmd == "-h" or cmd == "help" then
    M.show_help(help)
  elseif not commands[cmd] then
    local names = {}
    for name in pairs(commands) do names[#names + 1] = name end
    table.sort(names)
    self:usage_error(nil, "unknown command '%s' (expected %s)", cmd, table.concat(names, ", "))
  end
  commands[cmd](table.move(args, 2, #args, 1, {}))
  io.stdout:flush()
end

--- Print a help text and exit 0.
function M.show_help(text)
  io.stdout:write(text)
  io.stdout:flush()
  md.exit(0)
end

--- Shortest decimal text that reads back to the same float (float32 with
--- single = true): 230.5 prints as 230.5, 0.1 + 0.2 as 0.30000000000000004.
function M.float_text(v, single)
  if v ~= v then return "nan" end
  if v == math.huge then return "inf" end
  if v == -math.huge then return "-inf" end
  if math.type(v) == "integer" then return format("%d", v) end
  for digits = 1, 17 do
    local s = format("%." .. digits .. "g", v)
    local back = tonumber(s)
    if single then back = string.unpack("<f", string.pack("<f", back)) end
    if back == v then return s end
  end
  return format("%.17g", v)
end

--- Text of a number: integers, and floats with an integral value (a
--- scaled 230.0 V), as integers; other floats in the shortest exact form.
function M.number_text(v, single)
  if math.type(v) == "integer" then return format("%d", v) end
  local i = math.tointeger(v)
  if i and math.abs(v) < 2 ^ 53 then return format("%d", i) end
  return M.float_text(v, single)
end

return M
