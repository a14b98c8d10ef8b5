-- moondog rct: read RCT Power devices, search the object registry and run
-- a simulated device from the shell.
--
--   moondog rct read-value --host H [--port 8899] (--name NAME | --id 0xID) [--verbose]
--   moondog rct list [PATTERN]
--   moondog rct serve [--port P] [--host H]
--
-- read-value prints only the value on stdout, so that scripts can use it;
-- --verbose puts id, name, type and unit around it. Diagnostics go to
-- stderr. Exit codes: 0 done, 1 the device or the connection failed (one
-- line saying what and what to try), 2 the command line is wrong.

local md = require "moondog"
local rct = require "moondog.rct"
local registry = require "moondog.rct.registry"
local cli_mod = require "moondog.cli"
local printable = require("moondog.text").printable

local format = string.format
local TOOL = "moondog rct"
local cli = cli_mod.new(TOOL)
local show_help = cli_mod.show_help

-- What to try for each failure code of the RCT client.
local hints = {
  refused = "is the device on, and is this its address? RCT devices listen on port 8899",
  unreachable = "is the host reachable? check the address and the network",
  dns = "the host name does not resolve: check its spelling, or use the IP address",
  connect_timeout = "is the host reachable? check the address and the network",
  connect = "check the address",
  timeout = "the device did not answer: it may be busy with another client (RCT devices serve few "
    .. "at a time), or it does not know this object; try again or raise --timeout",
  connection_lost = "the device dropped the connection: it serves few clients at a time; "
    .. "close the vendor app or other tools and try again",
  malformed = "the device answered with bytes that do not fit the object's type: try again "
    .. "(devices cut answers short when another client interrupts)",
}

-- A value as read-value prints it: floats in the shortest form of their
-- float32 (0.62, not 0.62000000476837), structures as JSON, the raw bytes
-- of an object the registry does not know in hex.
local function value_text(v, entry)
  local t = type(v)
  if t == "boolean" then
    return tostring(v)
  elseif t == "number" then
    return cli_mod.number_text(v, true)
  elseif t == "table" then
    return require("cjson").encode(v)
  elseif entry then
    return printable(v) -- a STRING object: the device's bytes, escapes and all
  end
  return (v:gsub(".", function(c) return format("%02x", c:byte()) end))
end

-- {===== read-value =====

local read_help = [=[
usage: moondog rct read-value --host HOST [--port 8899] (--name NAME | --id 0xID)
                              [--verbose] [--timeout S] [--retries N]

Reads one object from an RCT Power device and prints its value alone on
stdout: a number, true/false, or text (objects the registry does not know:
their raw bytes in hex; structures: JSON). --verbose prints
"ID  NAME  TYPE  VALUE [UNIT]" instead. Enumerations print their number;
--verbose adds the symbol.

  --host H        the device (an IP address or name)
  --port P        its TCP port (default 8899)
  --name NAME     the object by registry name, e.g. battery.soc
  --id 0xID       the object by id, e.g. 0x959930BF (also ids not in the registry)
  --timeout S     seconds to wait for the answer (default 2)
  --retries N     tries after a timeout or a garbled answer (default 2)
  -v, --verbose   id, name, type and unit around the value

Find names with `moondog rct list PATTERN`.
]=]

local function cmd_read_value(args)
  local o, pos = cli:parse("read-value", args, {
    host = { arg = "HOST" }, port = { arg = "PORT" }, name = { arg = "NAME" }, id = { arg = "0xID" },
    verbose = {}, timeout = { arg = "S" }, retries = { arg = "N" }, help = {},
    short = { v = "verbose", h = "help" },
  })
  if o.help then show_help(read_help) end
  if #pos > 0 then cli:usage_error("read-value", "unexpected argument '%s'", pos[1]) end
  if not o.host then cli:usage_error("read-value", "missing --host (the device's address)") end
  if (o.name == nil) == (o.id == nil) then
    cli:usage_error("read-value", "give exactly one of --name NAME and --id 0xID")
  end
  local entry, key
  if o.id then
    key = registry.parse_id(o.id) or math.tointeger(tonumber(o.id))
    if not key or key < 0 or key > 0xFFFFFFFF then
      cli:usage_error("read-value", "--id must be a 32-bit id such as 0x959930BF, got '%s'", o.id)
    end
    entry = registry.get(key)
  else
    entry = registry.get(o.name)
    if not entry then
      local similar = registry.search(o.name:match("[%w_]+$") or o.name)
      cli:usage_error("read-value", "no object named '%s' in the registry%s", o.name,
        #similar > 0 and #similar <= 5 and (" (did you mean " .. similar[1].name .. "?)") or "")
    end
    key = entry.id
  end
  local port = cli:int("read-value", "port", o.port, 1, 65535) or 8899
  local client = rct.client(o.host, port, {
    timeout = cli:seconds("read-value", o.timeout),
    retries = cli:int("read-value", "retries", o.retries, 0, 10),
  })
  local value, err, code = client:read(key)
  client:close()
  if value == nil then
    cli:io_error(client.target, err, code, hints)
  end
  local text = value_text(value, entry)
  if o.verbose then
    local symbol = registry.symbol(entry, value)
    io.stdout:write(format("%s  %s  %s  %s%s%s\n", registry.hex(key), entry and entry.name or "(unknown)",
      entry and entry.response or "raw", text, symbol and (" (" .. symbol .. ")") or "",
      entry and entry.unit and (" " .. entry.unit) or ""))
  else
    io.stdout:write(text, "\n")
  end
end

-- }=====

-- {===== list =====

local list_help = [=[
usage: moondog rct list [PATTERN]

Lists the RCT objects whose name contains PATTERN (any case; all without
one): id, name, type (request>answer when they differ), unit, and "rw"
for the objects moondog may write. Exits 1 when nothing matches.
]=]

local function cmd_list(args)
  local o, pos = cli:parse("list", args, { help = {}, short = { h = "help" } })
  if o.help then show_help(list_help) end
  if #pos > 1 then cli:usage_error("list", "give one PATTERN at most (quote it if it has spaces)") end
  local found = registry.search(pos[1])
  if #found == 0 then
    cli_mod.say("%s list: no object name contains '%s'", TOOL, pos[1])
    md.exit(1)
  end
  local types, wname, wtype, wunit = {}, 0, 0, 0
  for i, e in ipairs(found) do
    types[i] = e.type == e.response and e.type or (e.type .. ">" .. e.response)
    wname, wtype = math.max(wname, #e.name), math.max(wtype, #types[i])
    wunit = math.max(wunit, utf8.len(e.unit or "") or 0)
  end
  local out = {}
  local function pad(text, width) -- by characters: units hold "°"
    return text .. (" "):rep(width - (utf8.len(text) or #text))
  end
  for i, e in ipairs(found) do
    local cols = { registry.hex(e.id), pad(e.name, wname), pad(types[i], wtype) }
    if wunit > 0 then cols[#cols + 1] = pad(e.unit or "", wunit) end
    cols[#cols + 1] = e.writable and "rw" or ""
    out[i] = table.concat(cols, "  "):gsub("%s+$", "")
  end
  io.stdout:write(table.concat(out, "\n"), "\n")
end

-- }=====

-- {===== serve =====

local serve_help = [=[
usage: moondog rct serve [--port P] [--host H]

Runs a simulated RCT Power device until Ctrl-C: it answers reads of every
registry object with a plausible value and accepts writes to writable
objects. Prints "HOST:PORT" on stdout once it listens.

  --port P   TCP port (default 8899; 0 picks a free one)
  --host H   address to listen on (default 127.0.0.1; * for every address)
]=]

local function cmd_serve(args)
  local o, pos = cli:parse("serve", args, { port = { arg = "P" }, host = { arg = "H" }, help = {},
    short = { h = "help" } })
  if o.help then show_help(serve_help) end
  if #pos > 0 then cli:usage_error("serve", "unexpected argument '%s'", pos[1]) end
  local port = cli:int("serve", "port", o.port, 0, 65535) or 8899
  local host = o.host or "127.0.0.1"
  local sim, err, code = rct.serve({ host = host, port = port })
  if not sim then
    local hint = code == "in_use" and " — another program listens there; pick another --port (0: any)"
      or code == "permission" and " — ports below 1024 need root"
      or ""
    cli_mod.say("%s serve: %s%s", TOOL, tostring(err), hint)
    md.exit(1)
  end
  io.stdout:write(format("%s:%d\n", host, sim:port()))
  io.stdout:flush()
  md.log.info("simulated RCT Power device on %s:%d; Ctrl-C stops", host, sim:port())
end

-- }=====

local help = [=[
usage: moondog rct COMMAND [options]

  read-value   read one object from a device and print its value
  list         search the object registry by name
  serve        run a simulated device

"moondog rct COMMAND --help" explains each command. Exit codes: 0 done,
1 the device or the connection failed, 2 the command line is wrong.
]=]

local commands = { ["read-value"] = cmd_read_value, list = cmd_list, serve = cmd_serve }

cli:dispatch(commands, { ... }, help)
