-- moondog.modbus: Modbus clients for scripts, the REPL and the CLI tools.
--
--   local modbus = require "moondog.modbus"        -- also md.modbus
--   local bus = assert(modbus.open("tcp://192.168.1.50:502?unit=1"))
--   local regs, err, code = bus:read_holding(1, 40000, 10)   -- array of integers
--   local dev = bus:unit(3)                          -- unit id bound in
--   local w = dev:read_value(30775, "int32", { kind = "input" })
--
-- Addresses use the one URL syntax of moondog.modbus.address (tcp, udp, rtu,
-- rtu+tcp, rtu+udp). A bus is one connection shared by every unit on it;
-- its requests run one at a time, writes ahead of queued reads, while the
-- calling task waits and the engine goes on (sockets on the event loop, a
-- serial line in a worker thread).
--
-- One bus per endpoint. A device takes one master: two masters on an
-- RS-485 line corrupt each other's frames, and many inverters accept one
-- Modbus TCP client. modbus.shared(url) returns the bus this process
-- already has open for the URL's endpoint (modbus.endpoint(url): scheme,
-- host and port, or the serial device; not the unit), opening one only
-- when there is none, so that every consumer of a device goes through one
-- connection:
--
--   local meter = assert(modbus.shared("rtu:///dev/ttyUSB0?baud=9600&unit=1"))
--   local pv = assert(modbus.shared("rtu:///dev/ttyUSB0?baud=9600&unit=2"))
--   assert(meter == pv)   -- one line, one bus: pass the unit to each call
--
-- Every bus from modbus.open counts too. The same serial device with other
-- line settings (baud, parity, data, stop, rs485) is refused with code
-- "conflict". A serial line is opened exclusively: a second process, or a
-- second modbus.open of the device, fails at its first request with code
-- "busy".
--
-- Connecting. A bus connects on its first request. After a failed connect
-- it waits `backoff` seconds (default 0.5) before the next attempt, then
-- twice as long after each further failure, up to `backoff_max` (default
-- 5); both are URL parameters (tcp://10.0.0.5?backoff=0.2&backoff_max=2)
-- and open() options. Requests in between fail at once with the last
-- attempt's code and a message saying "not connected; next connect attempt
-- in 1.6 s (last attempt: Connection refused)". bus:stats() has
-- `connects`, `connect_failures` and, while backing off, `reconnect_in`
-- (seconds to the next attempt; nil otherwise).
--
-- Errors: a wrong argument raises; a device or I/O failure returns
-- nil, message, code. Codes: "timeout", "crc", "malformed",
-- "wrong_transaction", "wrong_unit", "connection_lost", "refused",
-- "unreachable", "dns", "connect_timeout", "no_device", "permission", "closed",
-- "busy" (a serial line another program or bus holds: see modbus.shared),
-- and for Modbus exceptions their names: "illegal_function",
-- "illegal_data_address", "illegal_data_value", "server_device_failure",
-- "acknowledge", "server_device_busy", "gateway_path_unavailable",
-- "gateway_target_failed", ...

local core = require "moondog.modbus.core"
local address = require "moondog.modbus.address"
local codec = require "moondog.modbus.codec"
local planner = require "moondog.modbus.planner"

local M = {
  address = address,
  codec = codec,
  planner = planner,
  decode = codec.decode,
  encode = codec.encode,
  plan = planner.plan,
}

local Bus = core.bus_methods

-- Registers per typed value.
local type_regs = {
  int16 = 1, uint16 = 1, int32 = 2, uint32 = 2, int64 = 4, uint64 = 4, float32 = 2, float64 = 4,
}

--- Registers a value of this type takes (strings: nil, their length varies).
function M.sizeof(vtype)
  return type_regs[vtype]
end
-- Per-bus settings kept on the Lua side (the bus itself is a C userdata).
local settings = setmetatable({}, { __mode = "k" })

-- Failures worth trying again: the device may answer the next time.
local transient = {
  timeout = true, crc = true, malformed = true, wrong_transaction = true, wrong_unit = true,
  connection_lost = true, server_device_busy = true,
}

-- {===== endpoints: one bus each =====

-- The open bus of each endpoint in this process; weak, so that a bus nobody
-- holds is still collected (and closed).
local by_endpoint = setmetatable({}, { __mode = "v" })

local function host_text(host)
  return host:find(":", 1, true) and "[" .. host .. "]" or host
end

local function endpoint_of(cfg)
  if cfg.transport == "serial" then
    return "rtu://" .. cfg.path
  end
  return string.format("%s://%s:%d", cfg.scheme, host_text(cfg.host), cfg.port)
end

-- A serial line's settings as written in a URL.
local function line_settings(cfg)
  return string.format("baud=%d&parity=%s&data=%d&stop=%d%s", cfg.baud, cfg.parity, cfg.data,
    cfg.stop, cfg.rs485 and "&rs485=1" or "")
end

local function parse(fname, url)
  if type(url) ~= "string" then
    error(string.format("modbus.%s: expected an address string such as 'tcp://host:502', got %s",
      fname, type(url)), 3)
  end
  return address.parse(url)
end

--- modbus.endpoint(url) -> the endpoint key of a Modbus URL, or nil, err.
--- The same key means the same connection: scheme, host and port for socket
--- transports ("tcp://127.0.0.1:1502"), the device for serial lines
--- ("rtu:///dev/ttyUSB0"); the unit and every other parameter are left out.
function M.endpoint(url)
  local cfg, err = parse("endpoint", url)
  if not cfg then
    return nil, err
  end
  return endpoint_of(cfg)
end

-- }=====

--- modbus.open(url [, opts]) -> bus, or nil, err, code
--- opts override the URL's parameters: unit, timeout, delay, retries,
--- backoff, backoff_max (seconds), connect_timeout. Always a new bus; see
--- modbus.shared for the bus of an endpoint.
function M.open(url, opts)
  local cfg, err = parse("open", url)
  if not cfg then
    return nil, err, "bad_address"
  end
  opts = opts or {}
  local conf = {
    transport = cfg.scheme, host = cfg.host, port = cfg.port, path = cfg.path,
    baud = cfg.baud, parity = cfg.parity, data = cfg.data, stop = cfg.stop, rs485 = cfg.rs485,
    timeout = opts.timeout or cfg.timeout, delay = opts.delay or cfg.delay,
    backoff = opts.backoff or cfg.backoff, backoff_max = opts.backoff_max or cfg.backoff_max,
    connect_timeout = opts.connect_timeout, url = cfg.url,
  }
  local bus, oerr, code = core.open(conf)
  if not bus then
    return nil, oerr, code
  end
  settings[bus] = {
    unit = opts.unit or cfg.unit or 1, retries = opts.retries or cfg.retries or 0, address = cfg,
  }
  local key = endpoint_of(cfg)
  local held = by_endpoint[key]
  if not held or held:closed() then
    by_endpoint[key] = bus
  end
  return bus
end

--- modbus.held(url) -> the open bus of the URL's endpoint in this process,
--- or nil (whatever its line settings).
function M.held(url)
  local cfg = parse("held", url)
  local bus = cfg and by_endpoint[endpoint_of(cfg)]
  if bus and not bus:closed() then return bus end
  return nil
end

--- modbus.shared(url [, opts]) -> bus, or nil, err, code
--- The bus this process has open for the URL's endpoint (modbus.endpoint),
--- whoever opened it, or a new one from modbus.open(url, opts) (opts only
--- apply then). A shared bus keeps the settings it was opened with
--- (timeout, backoff, ...) and its own default unit: callers take their
--- unit from their URL (address.parse(url).unit) and pass it to each call
--- or to bus:unit(id).
--- A serial device open with other line settings: nil, err, "conflict".
function M.shared(url, opts)
  local cfg, err = parse("shared", url)
  if not cfg then
    return nil, err, "bad_address"
  end
  local bus = by_endpoint[endpoint_of(cfg)]
  if not bus or bus:closed() then
    return M.open(url, opts)
  end
  local held = settings[bus].address
  if cfg.transport == "serial" and line_settings(held) ~= line_settings(cfg) then
    return nil, string.format(
      "serial line %s is already open in this process with %s, and %s asks for %s: a line "
      .. "has one speed and framing for all its devices; write the same settings in both "
      .. "addresses", cfg.path, line_settings(held), url, line_settings(cfg)), "conflict"
  end
  return bus
end

local function with_retries(bus, fn, ...)
  local retries = settings[bus] and settings[bus].retries or 0
  local a, b, c = fn(bus, ...)
  while a == nil and retries > 0 and transient[c] do
    retries = retries - 1
    a, b, c = fn(bus, ...)
  end
  return a, b, c
end

-- {===== the bus methods written in C (core/mbus_lua.c), documented for help() =====
-- Every one takes an optional last argument opts = {timeout = s, raw = true}
-- (raw: the response's data bytes as a string) and returns nil, err, code
-- on a device or I/O failure.

--- bus:read(unit, kind, addr, count [, opts]) -> array of registers (kind
--- "holding" or "input") or booleans ("coil", "discrete"); no retries.

--- bus:write_coil(unit, addr, bool [, opts]) -> true (FC 5)

--- bus:write_register(unit, addr, value [, opts]) -> true (FC 6)

--- bus:write_coils(unit, addr, {bools} [, opts]) -> true (FC 15)

--- bus:write_registers(unit, addr, {values} [, opts]) -> true (FC 16)

--- bus:mask_write(unit, addr, and_mask, or_mask [, opts]) -> true (FC 22)

--- bus:write_read(unit, waddr, {values}, raddr, rcount [, opts]) -> the
--- registers read (FC 23)

--- bus:report_server_id(unit [, opts]) -> the raw bytes after the byte count (FC 17)

--- bus:read_device_id(unit [, code = 1 [, object = 0]] [, opts]) -> one response:
--- {conformity, more, next_object, objects = {[id] = text}} (FC 43/14).
--- bus:read_device_info reads them all.

--- bus:stats([unit]) -> the counters of the whole bus, or of one unit (nil
--- for a unit never used): {requests, ok, failed, timeouts, errors = {timeout,
--- exception, crc, malformed, connection, other}, latency_mean_ms,
--- latency_max_ms, timeout}.

--- bus:timeout() -> the response timeout in seconds (it adapts to the
--- device unless the URL or open() set one).

--- bus:url() -> the address the bus was opened with.

--- bus:close(): closes the connection; the bus is unusable afterwards.
--- Also on garbage collection and for a `<close>` variable.

-- }=====

local read = Bus.read

--- bus:read_holding(unit, addr, count [, opts]) -> array of registers
--- (integers 0..65535), retried on transient errors as the URL says.
function Bus.read_holding(bus, unit, addr, count, opts)
  return with_retries(bus, read, unit, "holding", addr, count, opts)
end

--- bus:read_input(unit, addr, count [, opts]) -> array of input registers.
function Bus.read_input(bus, unit, addr, count, opts)
  return with_retries(bus, read, unit, "input", addr, count, opts)
end

--- bus:read_coils(unit, addr, count [, opts]) -> array of booleans.
function Bus.read_coils(bus, unit, addr, count, opts)
  return with_retries(bus, read, unit, "coil", addr, count, opts)
end

--- bus:read_discrete(unit, addr, count [, opts]) -> array of booleans
--- (discrete inputs).
function Bus.read_discrete(bus, unit, addr, count, opts)
  return with_retries(bus, read, unit, "discrete", addr, count, opts)
end

--- The unit id given in the URL (?unit=N) or to open(); 1 by default.
function Bus.default_unit(bus)
  return settings[bus] and settings[bus].unit or 1
end

--- bus:read_value(unit, addr, type [, {kind = "holding", order = "ABCD", count = n}])
--- Reads and decodes one typed value (count = registers for strings).
function Bus.read_value(bus, unit, addr, vtype, opts)
  opts = opts or {}
  local nregs = vtype == "string" and assert(opts.count, "read_value: strings need opts.count")
    or type_regs[vtype] or error("read_value: unknown type '" .. tostring(vtype) .. "'", 2)
  local regs, err, code = with_retries(bus, read, unit, opts.kind or "holding", addr, nregs, opts)
  if not regs then
    return nil, err, code
  end
  if vtype == "string" then
    return codec.decode(regs, vtype, opts.order or "ABCD", 1, nregs)
  end
  return codec.decode(regs, vtype, opts.order or "ABCD")
end

--- bus:write_value(unit, addr, value, type [, {order = "ABCD", count = n}])
function Bus.write_value(bus, unit, addr, value, vtype, opts)
  opts = opts or {}
  local regs, err, code = codec.encode(value, vtype, opts.order or "ABCD", opts.count)
  if not regs then return nil, err, code end -- "range": the value does not fit
  if #regs == 1 then
    return bus:write_register(unit, addr, regs[1], opts)
  end
  return bus:write_registers(unit, addr, regs, opts)
end

local object_names = {
  [0] = "vendor_name", "product_code", "revision", "vendor_url", "product_name",
  "model_name", "user_application_name",
}

--- bus:read_device_info(unit [, code = 1]) -> {vendor_name=, product_code=, ...}
--- Reads every object of the level (FC 43/14), following "more follows".
function Bus.read_device_info(bus, unit, level, opts)
  local info, object = { objects = {} }, 0
  for _ = 1, 64 do -- a device that never stops saying "more" is broken
    local r, err, code = bus:read_device_id(unit, level or 1, object, opts)
    if not r then
      return nil, err, code
    end
    for id, text in pairs(r.objects) do
      info.objects[id] = text
      if object_names[id] then
        info[object_names[id]] = text
      end
    end
    info.conformity = r.conformity
    if not r.more or r.next_object <= object then
      return info
    end
    object = r.next_object
  end
  return nil, "read device identification: the device kept answering 'more follows'", "malformed"
end

-- A unit handle: the bus's methods with the unit id bound in.
local Unit = {}
Unit.__index = Unit

--- bus:unit(id) -> a unit handle: the bus's methods with the unit id bound
--- in (unit:read_holding(addr, count), unit:read_value(addr, type), ...).
function Bus.unit(bus, id)
  if math.type(id) ~= "integer" or id < 0 or id > 255 then
    error("bus:unit: unit id must be an integer 0..255", 2)
  end
  return setmetatable({ bus = bus, id = id }, Unit)
end

for _, name in ipairs({
  "read", "read_holding", "read_input", "read_coils", "read_discrete", "write_coil",
  "write_register", "write_coils", "write_registers", "mask_write", "write_read",
  "report_server_id", "read_device_id", "read_device_info", "read_value", "write_value",
}) do
  Unit[name] = function(self, ...)
    return self.bus[name](self.bus, self.id, ...)
  end
end

function Unit:stats()
  return self.bus:stats(self.id)
end

function Unit:__tostring()
  return string.format("modbus unit %d on %s", self.id, self.bus:url())
end

--- modbus.device(url [, opts]) -> unit handle on a new bus (the URL's unit).
function M.device(url, opts)
  local bus, err, code = M.open(url, opts)
  if not bus then
    return nil, err, code
  end
  return bus:unit(bus:default_unit())
end

M.serve = require("moondog.modbus.server").serve

--- modbus.vreglink(dev, base [, opts]) -> a VregLink (Victron vregs over
--- function 23): link:get(vreg), link:set(vreg, bytes). See moondog.modbus.vreglink.
function M.vreglink(dev, base, opts)
  return require("moondog.modbus.vreglink").new(dev, base, opts)
end

return M
