-- moondog modbus: read, write, scan, identify and simulate Modbus devices
-- from the shell.
--
--   moondog modbus read  URL --address A [--count C] [--kind K] [--type T] [--json]
--   moondog modbus write URL --address A VALUE...
--   moondog modbus scan  URL [--from 1 --to 247]
--   moondog modbus info  URL
--   moondog modbus serve URL [--unit N] [--regs FILE]
--   moondog modbus proxy UPSTREAM --listen URL [--allow-write R] [--max-age S]
--
-- URLs are those of moondog.modbus.address (tcp://, udp://, rtu://,
-- rtu+tcp://, rtu+udp://). Results go to stdout, diagnostics to stderr.
-- Exit codes: 0 done, 1 the device or the connection failed (one line that
-- says what failed and what to try), 2 the command line is wrong.
--
-- Each subcommand declares its options in a table; one small parser
-- accepts `--opt value` and `--opt=value`, and rejects anything unknown.
-- Numbers are printed in the shortest form that reads back to the same
-- value of the register type (a float32 230.5 prints as 230.5, not as
-- 230.50000000000000), so that --json output is exact and stable.

local md = require "moondog"
local modbus = require "moondog.modbus"
local codec = require "moondog.modbus.codec"
local errors = require "moondog.err"

local format = string.format
local to_printable = require("moondog.text").printable
local TOOL = "moondog modbus"

-- {===== output and exits =====

local cli = require "moondog.cli"
local C = cli.new(TOOL)

-- Shared with the other tools (moondog.cli): one-line exits, hints, exact floats.
local say, connect_codes, float_text = cli.say, cli.connect_codes, cli.float_text

-- A command-line mistake: one line, a pointer to --help, exit code 2.
local function usage_error(cmd, fmt, ...)
  C:usage_error(cmd, fmt, ...)
end

-- A device or I/O failure: one line with what failed and a hint, exit 1.
local function io_error(url, err, code)
  C:io_error(url, err, code)
end

-- A device string in quotes, for a terminal: not %q, which writes a newline
-- in the string as a real one and passes other control bytes' effects on
-- as escapes only partly (issue 17).
local function quoted(v)
  return '"' .. to_printable((v:gsub('[\\"]', "\\%0"))) .. '"'
end

local function value_text(v, vtype)
  if type(v) == "boolean" then return v and "1" or "0" end
  if type(v) == "string" then return v end
  if math.type(v) == "integer" then return format("%d", v) end
  return float_text(v, vtype == "float32")
end

-- A JSON array of values: cjson escapes strings, numbers use value_text
-- (cjson would print 14 significant digits), NaN and infinities are null.
local function json_array(values, vtype)
  local cjson = require "cjson"
  local items = {}
  for i, v in ipairs(values) do
    if type(v) == "string" then
      items[i] = cjson.encode(v)
    elseif type(v) == "boolean" then
      items[i] = tostring(v)
    elseif v ~= v or v == math.huge or v == -math.huge then
      items[i] = "null"
    else
      items[i] = value_text(v, vtype)
    end
  end
  return "[" .. table.concat(items, ",") .. "]"
end

-- }=====

-- {===== options =====

-- Options: `--opt value` and `--opt=value`, unknown ones refused (moondog.cli).
local function parse_args(cmd, args, spec)
  return C:parse(cmd, args, spec)
end

local function int_opt(cmd, name, text, lo, hi)
  return C:int(cmd, name, text, lo, hi)
end

local function seconds_opt(cmd, text)
  return C:seconds(cmd, text)
end

local kinds = { holding = true, input = true, coil = true, discrete = true }
local kind_alias = { holdings = "holding", inputs = "input", coils = "coil", discretes = "discrete" }

local function kind_opt(cmd, text)
  local k = kind_alias[text or "holding"] or text or "holding"
  if not kinds[k] then
    usage_error(cmd, "unknown --kind '%s' (expected holding, input, coil or discrete)", text)
  end
  return k
end

local function type_opt(cmd, vtype, order)
  if vtype == nil then
    if order ~= nil then usage_error(cmd, "--order applies only with --type") end
    return nil
  end
  local known = false
  for _, t in ipairs(codec.types) do known = known or t == vtype end
  if not known then
    usage_error(cmd, "unknown --type '%s' (expected %s)", vtype, table.concat(codec.types, ", "))
  end
  order = (order or "ABCD"):upper()
  known = false
  for _, o in ipairs(codec.orders) do known = known or o == order end
  if not known then
    usage_error(cmd, "unknown --order '%s' (expected %s)", order, table.concat(codec.orders, ", "))
  end
  return vtype, order
end

-- The URL positional, checked with the address parser; opens the bus.
local function open_bus(cmd, pos, timeout, default_timeout)
  local url = pos[1]
  if not url then
    usage_error(cmd, "missing the device URL (e.g. tcp://192.168.1.50:502 or rtu:///dev/ttyUSB0?baud=9600)")
  end
  local parsed, perr = modbus.address.parse(url)
  if not parsed then
    usage_error(cmd, "%s", perr)
  end
  local bus, err, code = modbus.open(url, { timeout = timeout or parsed.timeout or default_timeout })
  if not bus then
    io_error(url, err, code)
  end
  return bus, parsed
end

local show_help = cli.show_help

local common_help = [=[
URL is tcp://HOST[:PORT], udp://HOST[:PORT], rtu+tcp://HOST:PORT,
rtu+udp://HOST:PORT or rtu:///dev/ttyUSB0?baud=9600&parity=N (unit=, timeout=
and retries= work as URL parameters too).
]=]

-- }=====

-- {===== read =====

local read_help = [=[
usage: moondog modbus read URL --address A [--count C] [--kind K]
                           [--unit N] [--type T [--order O]] [--json] [--timeout S]

Reads registers or bits and prints one "address value" line each.
  --address A   first address, 0-based as on the wire (register "40001" in a
                manual is usually --address 0 --kind holding); 0x hex works
  --count C     how many registers or bits (default 1); with --type, how
                many values (for --type string: the string's length in registers)
  --kind K      holding (default), input, coil or discrete
  --unit N      unit (slave) id 0..255 (default: the URL's unit=, else 1)
  --type T      decode values: int16, uint16, int32, uint32, int64, uint64,
                float32, float64, string
  --order O     word/byte order of multi-register values: ABCD (default, big-
                endian), CDAB (word-swapped), BADC, DCBA
  --json        print only a JSON array of the values
  --timeout S   response timeout in seconds (default 1)
]=] .. common_help

local read_spec = {
  address = { arg = "A" }, count = { arg = "C" }, kind = { arg = "K" }, unit = { arg = "N" },
  type = { arg = "T" }, order = { arg = "O" }, json = {}, timeout = { arg = "S" }, help = {},
  short = { a = "address", c = "count", k = "kind", u = "unit", t = "type", j = "json", h = "help" },
}

local readers = {
  holding = "read_holding", input = "read_input", coil = "read_coils", discrete = "read_discrete",
}

-- Reads n registers or bits from addr, in as many requests as the limits need.
local function read_span(bus, url, unit, kind, addr, n)
  local limit = (kind == "coil" or kind == "discrete") and 2000 or 125
  local out = {}
  local at = addr
  while at < addr + n do
    local c = math.min(limit, addr + n - at)
    local part, err, code = bus[readers[kind]](bus, unit, at, c)
    if not part then
      io_error(url, err, code)
    end
    table.move(part, 1, #part, #out + 1, out)
    at = at + c
  end
  return out
end

local function cmd_read(args)
  local o, pos = parse_args("read", args, read_spec)
  if o.help then show_help(read_help) end
  if #pos > 1 then usage_error("read", "unexpected argument '%s' (read takes one URL)", pos[2]) end
  if not o.address then usage_error("read", "missing --address (the first register or bit to read)") end
  local addr = int_opt("read", "address", o.address, 0, 65535)
  local kind = kind_opt("read", o.kind)
  local vtype, order = type_opt("read", o.type, o.order)
  local bits = kind == "coil" or kind == "discrete"
  if vtype and bits then usage_error("read", "--type applies to registers, not to %s bits", kind) end
  local count = int_opt("read", "count", o.count or "1", 1, 65536)
  local size = vtype and (vtype == "string" and count or modbus.sizeof(vtype)) or 1
  local nregs = vtype == "string" and count or count * size
  if addr + nregs > 65536 then
    usage_error("read", "--address %d plus %d %s goes past address 65535", addr, nregs,
      bits and "bits" or "registers")
  end
  local timeout = seconds_opt("read", o.timeout)
  local bus, parsed = open_bus("read", pos, timeout, 1)
  local unit = int_opt("read", "unit", o.unit, 0, 255) or parsed.unit or 1
  local data = read_span(bus, parsed.url, unit, kind, addr, nregs)
  bus:close()

  local values, addrs = {}, {}
  if vtype == "string" then
    values[1] = codec.decode(data, "string", order, 1, nregs)
    addrs[1] = addr
  elseif vtype then
    for i = 1, count do
      values[i] = codec.decode(data, vtype, order, (i - 1) * size + 1)
      addrs[i] = addr + (i - 1) * size
    end
  else
    for i, v in ipairs(data) do
      values[i] = v
      addrs[i] = addr + i - 1
    end
  end
  if o.json then
    io.stdout:write(json_array(values, vtype), "\n")
    return
  end
  local width = #tostring(addrs[#addrs])
  for i, v in ipairs(values) do
    if vtype == "string" then
      io.stdout:write(format("%" .. width .. "d  %s\n", addrs[i], quoted(v)))
    elseif vtype or bits then
      io.stdout:write(format("%" .. width .. "d  %s\n", addrs[i], value_text(v, vtype)))
    else
      local signed = v >= 0x8000 and format("  (%d)", v - 0x10000) or ""
      io.stdout:write(format("%" .. width .. "d  %5d  0x%04X%s\n", addrs[i], v, v, signed))
    end
  end
end

-- }=====

-- {===== write =====

local write_help = [=[
usage: moondog modbus write URL --address A [--kind holding|coil] [--unit N]
                            [--type T [--order O]] [--multiple] [--verbose] VALUE...

Writes holding registers (default) or coils starting at --address.
One register is written with function 6, several with 16 (--multiple forces
16 for devices that only know it); one coil with 5, several with 15.
  VALUE         registers: integers -32768..65535 (0x hex works);
                coils: 1/0, true/false, on/off;
                with --type: numbers of that type, or one text for string
  --address A   first address, 0-based as on the wire
  --type T      encode values: int16, uint16, int32, uint32, int64, uint64,
                float32, float64, string (--count C pads a string to C registers)
  --order O     ABCD (default), CDAB, BADC, DCBA
  --verbose     say what was written
  --timeout S   response timeout in seconds (default 1)
Prints nothing on success.
]=] .. common_help

local write_spec = {
  address = { arg = "A" }, kind = { arg = "K" }, unit = { arg = "N" }, type = { arg = "T" },
  order = { arg = "O" }, count = { arg = "C" }, multiple = {}, verbose = {}, timeout = { arg = "S" },
  help = {},
  short = { a = "address", k = "kind", u = "unit", t = "type", v = "verbose", h = "help" },
}

local bool_words = { ["1"] = true, ["0"] = false, ["true"] = true, ["false"] = false,
                     on = true, off = false }

-- Registers for the VALUE arguments (an array of integers), or coils.
local function write_values(o, values, kind, vtype, order)
  if kind == "coil" then
    local bits = {}
    for i, text in ipairs(values) do
      local b = bool_words[text:lower()]
      if b == nil then
        usage_error("write", "coil value '%s' is not 1/0, true/false or on/off", text)
      end
      bits[i] = b
    end
    return bits
  end
  local regs = {}
  if vtype == "string" then
    if #values ~= 1 then
      usage_error("write", "--type string takes one VALUE (quote text with spaces)")
    end
    local n = int_opt("write", "count", o.count, 1, 123) or (#values[1] + 1) // 2
    local r, err = codec.encode(values[1], "string", order, n)
    if not r then usage_error("write", "cannot encode '%s': %s", values[1], err) end
    return r
  end
  if o.count then usage_error("write", "--count applies only to --type string") end
  for _, text in ipairs(values) do
    local v = tonumber(text)
    if vtype then
      if v == nil then usage_error("write", "'%s' is not a number", text) end
      if vtype ~= "float32" and vtype ~= "float64" then
        v = math.tointeger(v)
        if v == nil then usage_error("write", "'%s' is not an integer (--type %s)", text, vtype) end
      end
      local r = codec.encode(v, vtype, order)
      if not r then
        usage_error("write", "%s does not fit --type %s", text, vtype)
      end
      table.move(r, 1, #r, #regs + 1, regs)
    else
      v = math.tointeger(v)
      if v == nil or v < -32768 or v > 65535 then
        usage_error("write", "register value '%s' must be an integer -32768..65535 (or use --type)", text)
      end
      regs[#regs + 1] = v < 0 and v + 0x10000 or v
    end
  end
  return regs
end

local function cmd_write(args)
  local o, pos = parse_args("write", args, write_spec)
  if o.help then show_help(write_help) end
  if not o.address then usage_error("write", "missing --address (the first register or coil to write)") end
  local addr = int_opt("write", "address", o.address, 0, 65535)
  local kind = kind_opt("write", o.kind)
  if kind == "input" or kind == "discrete" then
    usage_error("write", "%s %s are read-only; write holding registers or coils", kind,
      kind == "input" and "registers" or "inputs")
  end
  local vtype, order = type_opt("write", o.type, o.order)
  if vtype and kind == "coil" then usage_error("write", "--type applies to registers, not to coils") end
  local url_arg = pos[1]
  local values = table.move(pos, 2, #pos, 1, {})
  if #values == 0 then
    usage_error("write", "missing VALUE (what to write, e.g. %s)", kind == "coil" and "1" or "230")
  end
  local data = write_values(o, values, kind, vtype, order)
  local max = kind == "coil" and 1968 or 123
  if #data > max then
    usage_error("write", "%d %s are too many for one request (at most %d)", #data,
      kind == "coil" and "coils" or "registers", max)
  end
  if addr + #data > 65536 then
    usage_error("write", "--address %d plus %d values goes past address 65535", addr, #data)
  end
  local timeout = seconds_opt("write", o.timeout)
  local bus, parsed = open_bus("write", { url_arg }, timeout, 1)
  local unit = int_opt("write", "unit", o.unit, 0, 255) or parsed.unit or 1
  local ok, err, code
  if kind == "coil" then
    if #data == 1 and not o.multiple then
      ok, err, code = bus:write_coil(unit, addr, data[1])
    else
      ok, err, code = bus:write_coils(unit, addr, data)
    end
  elseif #data == 1 and not o.multiple then
    ok, err, code = bus:write_register(unit, addr, data[1])
  else
    ok, err, code = bus:write_registers(unit, addr, data)
  end
  bus:close()
  if not ok then
    io_error(parsed.url, err, code)
  end
  if o.verbose then
    say("wrote %d %s at %d on unit %d of %s", #data,
      kind == "coil" and (#data == 1 and "coil" or "coils") or (#data == 1 and "register" or "registers"),
      addr, unit, parsed.url)
  end
end

-- }=====

-- {===== scan =====

local scan_help = [=[
usage: moondog modbus scan URL [--from 1] [--to 247] [--address A] [--kind K]
                           [--timeout S] [--json]

Finds which unit ids answer: reads one register (or bit) at --address
(default 0) from each unit in turn. An exception answer (e.g. "illegal data
address") counts as "a device is there"; a gateway's "target failed to
respond" does not. Prints one line per unit found (--json: a JSON array of
the unit ids) and shows progress on stderr. Exits 1 when no unit answered.
  --from N, --to N   range of unit ids (default 1..247)
  --kind K           holding (default), input, coil or discrete
  --timeout S        how long to wait for each unit (default 0.3)
]=] .. common_help

local scan_spec = {
  from = { arg = "N" }, to = { arg = "N" }, address = { arg = "A" }, kind = { arg = "K" },
  timeout = { arg = "S" }, json = {}, help = {},
  short = { a = "address", k = "kind", j = "json", h = "help" },
}

-- Answers that come from a gateway, not from the unit asked.
local gateway_codes = { gateway_path_unavailable = true, gateway_target_failed = true }
-- Failures of the link itself: scanning on makes no sense.
local fatal_codes = {
  refused = true, connect_timeout = true, unreachable = true, connect = true, no_device = true,
  permission = true, closed = true, dns = true,
}

-- Whether fd 2 is a terminal (the shell's test -t inherits our stderr).
local function stderr_is_tty()
  local ok = os.execute("test -t 2")
  return ok == true
end

local function cmd_scan(args)
  local o, pos = parse_args("scan", args, scan_spec)
  if o.help then show_help(scan_help) end
  if #pos > 1 then usage_error("scan", "unexpected argument '%s' (scan takes one URL)", pos[2]) end
  local from = int_opt("scan", "from", o.from or "1", 0, 255)
  local to = int_opt("scan", "to", o.to or "247", 0, 255)
  if from > to then usage_error("scan", "--from %d is above --to %d", from, to) end
  local addr = int_opt("scan", "address", o.address or "0", 0, 65535)
  local kind = kind_opt("scan", o.kind)
  local timeout = seconds_opt("scan", o.timeout)
  local bus, parsed = open_bus("scan", pos, timeout, 0.3)
  local tty = stderr_is_tty()
  local found, garbled, lost = {}, {}, 0
  local function progress(unit)
    if tty then
      io.stderr:write(format("\r\27[Kscanning unit %d (%d..%d), found %d", unit, from, to, #found))
      io.stderr:flush()
    end
  end
  local function clear()
    if tty then io.stderr:write("\r\27[K") end
  end
  if not tty then say("scanning units %d..%d of %s", from, to, parsed.url) end
  for unit = from, to do
    progress(unit)
    local r, err, code = bus[readers[kind]](bus, unit, addr, 1)
    local line
    if r then
      found[#found + 1] = unit
      line = format("unit %d: %s %d = %s", unit, kind, addr, value_text(r[1]))
    elseif fatal_codes[code] then
      clear()
      io_error(parsed.url, err, code)
    elseif code == "connection_lost" then
      -- Some gateways drop the connection on an unknown unit; a link that
      -- keeps failing is down.
      lost = lost + 1
      if lost >= 3 then
        clear()
        io_error(parsed.url, err, code)
      end
    elseif code == "timeout" or gateway_codes[code] then
      line = nil
    elseif errors.is_exception(code) then
      found[#found + 1] = unit
      line = format("unit %d: answers with exception '%s' (a device is there)", unit, code)
    else
      garbled[#garbled + 1] = format("unit %d: %s", unit, err)
    end
    if code ~= "connection_lost" then lost = 0 end
    if line and not o.json then
      clear()
      io.stdout:write(line, "\n")
      io.stdout:flush()
    end
  end
  clear()
  bus:close()
  for _, g in ipairs(garbled) do
    say("%s: %s — %s", TOOL, g, "something answered, but not clearly; check line settings and wiring")
  end
  if o.json then
    io.stdout:write("[", table.concat(found, ","), "]\n")
  end
  if #found == 0 then
    say("%s: no unit answered at %s in %d..%d — check the URL, wiring and line settings, or raise --timeout",
      TOOL, parsed.url, from, to)
    io.stdout:flush()
    md.exit(1)
  end
  say("found %d unit(s): %s", #found, table.concat(found, ", "))
end

-- }=====

-- {===== info =====

local info_help = [=[
usage: moondog modbus info URL [--unit N] [--timeout S] [--json]

Asks a device who it is: Read Device Identification (function 43/14: vendor,
product code, revision, ...) and Report Server ID (function 17). Either may
be unsupported; exits 1 only when both fail.
]=] .. common_help

local info_spec = { unit = { arg = "N" }, timeout = { arg = "S" }, json = {}, help = {},
                    short = { u = "unit", j = "json", h = "help" } }

local object_order = { "vendor_name", "product_code", "revision", "vendor_url", "product_name",
                       "model_name", "user_application_name" }

-- Bytes as text a person can read: printable ASCII kept, others as \xNN.
local function printable(s)
  return (s:gsub("[^\32-\126]", function(c) return format("\\x%02X", c:byte()) end))
end

local function cmd_info(args)
  local o, pos = parse_args("info", args, info_spec)
  if o.help then show_help(info_help) end
  if #pos > 1 then usage_error("info", "unexpected argument '%s' (info takes one URL)", pos[2]) end
  local timeout = seconds_opt("info", o.timeout)
  local bus, parsed = open_bus("info", pos, timeout, 1)
  local unit = int_opt("info", "unit", o.unit, 0, 255) or parsed.unit or 1
  local info, ierr, icode = bus:read_device_info(unit, 1)
  if info then -- regular objects too, when the device has them
    local more = bus:read_device_info(unit, 2)
    for id, text in pairs(more and more.objects or {}) do
      info.objects[id] = text
    end
  elseif connect_codes[icode] then
    io_error(parsed.url, ierr, icode)
  end
  local sid, serr, scode = bus:report_server_id(unit)
  bus:close()
  if not info and not sid then
    io_error(parsed.url, ierr, icode)
  end
  if o.json then
    local cjson = require "cjson"
    local out = { unit = unit }
    if info then
      out.device_id = {}
      for id, text in pairs(info.objects) do
        out.device_id[object_order[id + 1] or tostring(id)] = text
      end
    end
    out.server_id = sid and printable(sid) or nil
    io.stdout:write(cjson.encode(out), "\n")
    return
  end
  io.stdout:write(format("unit %d at %s\n", unit, parsed.url))
  if info then
    local ids = {}
    for id in pairs(info.objects) do ids[#ids + 1] = id end
    table.sort(ids)
    for _, id in ipairs(ids) do
      local name = object_order[id + 1] or format("object 0x%02X", id)
      io.stdout:write(format("  %-22s %s\n", name, printable(info.objects[id])))
    end
  else
    io.stdout:write(format("  device identification: not available (%s)\n", icode))
  end
  if sid then
    io.stdout:write(format("  %-22s %s\n", "server id (fc 17)", printable(sid)))
  else
    io.stdout:write(format("  server id (fc 17): not available (%s)\n", scode or serr))
  end
end

-- }=====

-- {===== serve =====

local serve_help = [=[
usage: moondog modbus serve URL [--unit N] [--regs FILE] [--strict] [--verbose]
                            [--profile NAME [--set POINT=VALUE]...] [--attach]

Runs a Modbus server (a simulator) until Ctrl-C or SIGTERM. It holds all four
tables (holding, input, coil, discrete), all writable by clients, all zero
unless --regs loads values. Prints its real URL (with the bound port when
the URL says port 0) as the first line on stdout.
  URL           tcp://127.0.0.1:0 (0: any free port), udp://..., rtu+tcp://...,
                rtu+udp://..., rtu:///dev/ttyUSB0?baud=9600 (or a pty)
  --unit N      answer only these unit ids, each with its own map (repeat, or
                1,2,5-7); default: every unit id, all sharing one map
  --regs FILE   preload values: lines "address value [value...]", the address
                with an optional kind prefix (h holding, the default, i input,
                c coil, d discrete), e.g. "100 17254 32768" or "c3 1"; # comments.
                Typed: "address TYPE [ORDER] value...", e.g. "i0 float32 230.1",
                "h10 int32 CDAB -5", "h20 string ACME" (int16 ... float64)
  --profile NAME  simulate a device profile (moondog devices lists them): its
                points are served where the profile reads them, encoded with its
                types, word order and scale
  --set P=V     a point's value in engineering units, e.g. --set voltage=230.1
                (repeat); enums take an option name, bools true/false
  --attach      let `moondog attach` open a REPL in this server (socket:
                $MOONDOG_ATTACH, else the default); there `sim:set("voltage",
                231)` and `sim:get(...)` change and show points, `srv` is the server
  --strict      only the addresses --regs sets exist; reads and writes anywhere
                else answer "illegal data address"
  --verbose     log every request (same as moondog --log-level debug)
]=]

local serve_spec = { unit = { arg = "N", list = true }, regs = { arg = "FILE" }, strict = {},
                     profile = { arg = "NAME" }, set = { arg = "P=V", list = true }, attach = {},
                     verbose = {}, help = {}, short = { u = "unit", v = "verbose", h = "help" } }

-- --set texts into {point = value}, each value read as its point's kind
-- (number, bool, enum option or text); usage errors name the point.
local function set_values(profile, texts)
  local point = require "moondog.devices.point"
  local by_name = {}
  for _, p in ipairs(profile.points or {}) do by_name[p.name] = p end
  local values = {}
  for _, text in ipairs(texts or {}) do
    local name, v = text:match("^([%w_]+)=(.*)$")
    if not name then usage_error("serve", "--set '%s': expected POINT=VALUE, e.g. voltage=230.1", text) end
    local p = by_name[name]
    if not p then
      local names = {}
      for _, q2 in ipairs(profile.points or {}) do names[#names + 1] = q2.name end
      usage_error("serve", "--set: profile %s has no point '%s' (it has %s)", profile.name, name,
        table.concat(names, ", "))
    end
    local kind = point.kind(p)
    if kind == "number" or kind == "integer" then
      local n = tonumber(v)
      if not n then usage_error("serve", "--set %s: '%s' is not a number", name, v) end
      if kind == "integer" then n = math.tointeger(n) or n end
      values[name] = n
    elseif kind == "bool" then
      local b = ({ ["true"] = true, ["false"] = false, on = true, off = false, ["1"] = true, ["0"] = false })[
        v:lower()]
      if b == nil then usage_error("serve", "--set %s: '%s' is not true or false", name, v) end
      values[name] = b
    else
      values[name] = v
    end
  end
  return values
end

-- "1,2,5-7" (possibly from several --unit options) into a sorted list.
local function unit_list(cmd, texts)
  local set, list = {}, {}
  for _, text in ipairs(texts) do
    for item in text:gmatch("[^,]+") do
      local a, b = item:match("^(%d+)%-(%d+)$")
      a = int_opt(cmd, "unit", a or item, 1, 255)
      b = b and int_opt(cmd, "unit", b, 1, 255) or a
      if b < a then usage_error(cmd, "--unit range '%s' runs backwards", item) end
      for u = a, b do
        if not set[u] then
          set[u] = true
          list[#list + 1] = u
        end
      end
    end
  end
  table.sort(list)
  return list
end

local function cmd_serve(args)
  local o, pos = parse_args("serve", args, serve_spec)
  if o.help then show_help(serve_help) end
  if #pos > 1 then usage_error("serve", "unexpected argument '%s' (serve takes one URL)", pos[2]) end
  local url = pos[1]
  if not url then usage_error("serve", "missing the URL to listen on (e.g. tcp://127.0.0.1:1502)") end
  local units = o.unit and unit_list("serve", o.unit) or nil
  if o.regs then
    local f = io.open(o.regs, "r")
    if not f then usage_error("serve", "cannot read --regs file '%s'", o.regs) end
    f:close()
  end
  if o.set and not o.profile then usage_error("serve", "--set needs --profile (the points' profile)") end
  local profile, preset
  if o.profile then
    local devices = require "moondog.devices"
    local ok, loaded = pcall(devices.load, o.profile)
    if not ok then usage_error("serve", "%s", tostring(loaded):gsub("^[^:]+:%d+: ", "")) end
    if loaded.protocol ~= "modbus" then
      usage_error("serve", "profile %s speaks %s, not modbus; use moondog %s serve", o.profile,
        tostring(loaded.protocol), tostring(loaded.protocol))
    end
    profile, preset = loaded, set_values(loaded, o.set)
  end
  if type(modbus.serve) ~= "function" then
    say("%s serve: this moondog has no Modbus server (md.modbus.serve is missing)", TOOL)
    md.exit(1)
  end
  if o.verbose then md.log.level("debug") end
  local level = md.log.level()
  local debug = level == "debug" or level == "trace"
  local srv, err, code = modbus.serve(url, {
    units = units,
    strict = o.strict and true or false,
    device_id = { vendor_name = "moondog", product_code = "moondog-sim",
                  revision = md.version or "0", product_name = "moondog modbus serve" },
    on_read = debug and function(unit, kind, addr, count)
      md.log.debug("unit %d: read %s %d+%d", unit, kind, addr, count)
    end or nil,
    on_write = debug and function(unit, kind, addr, values)
      md.log.debug("unit %d: write %s %d+%d", unit, kind, addr, #values)
    end or nil,
  })
  if not srv and code == "bad_address" then
    usage_error("serve", "%s", tostring(err))
  elseif not srv then
    local hint = code == "in_use" and " — another program listens there; pick another port or 0"
      or code == "permission" and " — ports below 1024 need root; use e.g. 1502"
      or ""
    say("%s serve: cannot serve %s: %s%s", TOOL, url, tostring(err), hint)
    md.exit(1)
  end
  if not units and #srv:units() > 0 then units = srv:units() end -- "tcp://...?unit=100" serves unit 100
  if o.regs then
    for _, unit in ipairs(units or { false }) do
      unit = unit or nil -- nil: the one map shared by every unit
      local ok, lerr = srv:load(unit, o.regs)
      if not ok then
        srv:close()
        say("%s serve: %s", TOOL, tostring(lerr))
        md.exit(2)
      end
    end
  end
  rawset(_G, "srv", srv) -- for an attached REPL
  if profile then
    local driver = require "moondog.devices.modbus"
    for _, unit in ipairs(units or { false }) do
      local ok, sim = pcall(driver.simulator, profile, srv, unit or nil)
      if ok then
        ok, sim = pcall(function()
          for k, v in pairs(preset) do sim:set(k, v) end
          return sim
        end)
      end
      if not ok then
        srv:close()
        say("%s serve: --set: %s", TOOL, tostring(sim):gsub("^[^:]+:%d+: ", ""))
        md.exit(2)
      end
      if rawget(_G, "sim") == nil then rawset(_G, "sim", sim) end -- the first unit's
    end
  end
  local listener
  if o.attach then
    local lerr, lcode
    listener, lerr, lcode = md.attach.listen()
    if not listener then
      srv:close()
      say("%s serve: --attach: %s (%s)", TOOL, tostring(lerr), tostring(lcode))
      md.exit(1)
    end
    rawset(_G, "attach_listener", listener)
  end
  io.stdout:write(srv:url(), "\n")
  io.stdout:flush()
  md.log.info("serving %s%s%s; Ctrl-C stops", srv:url(),
    units and (" for unit(s) " .. table.concat(units, ",")) or "",
    profile and (" as " .. profile.name) or "")
  if listener then md.log.info("attach with: moondog attach %s", listener:path()) end
end

local proxy_help = [=[
usage: moondog modbus proxy UPSTREAM --listen URL [--allow-write RANGES] [--max-age S]
                            [--refuse illegal_function|illegal_data_address|ignore]

Lets any number of Modbus clients share one device that accepts a single
client (many inverters do): moondog holds the one connection to UPSTREAM and
answers everyone else on --listen, from a register cache where it can. Runs
until Ctrl-C or SIGTERM; prints its real URL as the first line on stdout.
  UPSTREAM        the device, e.g. tcp://192.168.1.50:502?unit=1 or
                  rtu:///dev/ttyUSB0?baud=9600&unit=3
  --listen URL    where clients connect: tcp://0.0.0.0:1502, udp://...,
                  rtu+tcp://..., or a serial line as a slave
  --max-age S     answer from registers read less than S seconds ago
                  (default 1; 0: every read goes to the device); identical
                  requests in flight are sent once
  --allow-write R registers clients may write, e.g. 40100-40110 (repeat, or
                  comma-separated); every other write is refused
  --refuse HOW    what a refused write gets: illegal_data_address (default),
                  illegal_function, or ignore (acknowledged, not written)
For several devices with profiles, use a site script: site:serve_modbus{...}
(docs/site.md).
]=]

local proxy_spec = { listen = { arg = "URL" }, ["allow-write"] = { arg = "RANGES", list = true },
                     ["max-age"] = { arg = "S" }, refuse = { arg = "HOW" }, help = {},
                     short = { h = "help" } }

local function cmd_proxy(args)
  local o, pos = parse_args("proxy", args, proxy_spec)
  if o.help then show_help(proxy_help) end
  if #pos > 1 then usage_error("proxy", "unexpected argument '%s' (proxy takes one UPSTREAM)", pos[2]) end
  local upstream = pos[1]
  if not upstream then
    usage_error("proxy", "missing the UPSTREAM device (e.g. tcp://192.168.1.50:502?unit=1)")
  end
  if not o.listen then usage_error("proxy", "missing --listen URL (e.g. tcp://0.0.0.0:1502)") end
  local allow = {}
  for _, text in ipairs(o["allow-write"] or {}) do
    for item in text:gmatch("[^,]+") do
      if not item:match("^%d+%-%d+$") and not item:match("^%d+$") then
        usage_error("proxy", "--allow-write '%s' is not a register or a range such as 40100-40110", item)
      end
      allow[#allow + 1] = item
    end
  end
  local max_age = 1
  if o["max-age"] then
    max_age = tonumber(o["max-age"])
    if not max_age or max_age < 0 or max_age > 3600 then
      usage_error("proxy", "--max-age must be seconds, 0 <= S <= 3600, got '%s'", o["max-age"])
    end
  end
  local refuse = o.refuse or "illegal_data_address"
  if refuse ~= "illegal_data_address" and refuse ~= "illegal_function" and refuse ~= "ignore" then
    usage_error("proxy", "--refuse must be illegal_data_address, illegal_function or ignore, got '%s'",
      refuse)
  end
  local ok, perr = require("moondog.modbus.address").parse(upstream)
  if not ok then usage_error("proxy", "%s", perr) end
  local gw, err, code = require("moondog.site.gateway").proxy(upstream, {
    listen = o.listen, allow_write = allow, max_age = max_age, refuse = refuse,
  })
  if not gw and code == "bad_address" then
    usage_error("proxy", "%s", tostring(err))
  elseif not gw then
    say("%s proxy: cannot serve %s for %s: %s", TOOL, o.listen, upstream, tostring(err))
    md.exit(1)
  end
  io.stdout:write(gw:url(), "\n")
  io.stdout:flush()
  md.log.info("proxy for %s on %s; Ctrl-C stops", upstream, gw:url())
end

-- }=====

local help = [=[
usage: moondog modbus COMMAND URL [options]

  read    read registers or bits (decoded with --type)
  write   write registers or coils
  scan    find which unit ids answer
  info    device identification (function 43) and server id (function 17)
  serve   run a simulated device
  proxy   let many clients share one device that accepts a single client

"moondog modbus COMMAND --help" explains each command. Exit codes: 0 done,
1 the device or the connection failed, 2 the command line is wrong.
]=] .. common_help

local commands = { read = cmd_read, write = cmd_write, scan = cmd_scan, info = cmd_info,
                   serve = cmd_serve, proxy = cmd_proxy }

C:dispatch(commands, { ... }, help)
