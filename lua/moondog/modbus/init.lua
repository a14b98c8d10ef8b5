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
-- "unreachable", "connect_timeout", "no_device", "permission", "closed",
-- "busy" (a serial line another program or bus holds),
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

--- modbus.open(url [, opts]) -> bus, or nil, err, code
--- opts override the URL's parameters: unit, timeout, delay, retries,
--- backoff, backoff_max (seconds), connect_timeout.
function M.open(url, opts)
  if type(url) ~= "string" then
    error("modbus.open: expected an address string such as 'tcp://host:502', got " .. type(url), 2)
  end
  local cfg, err = address.parse(url)
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
  settings[bus] = { unit = opts.unit or cfg.unit or 1, retries = opts.retries or cfg.retries or 0 }
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

local read = Bus.read

function Bus.read_holding(bus, unit, addr, count, opts)
  return with_retries(bus, read, unit, "holding", addr, count, opts)
end

function Bus.read_input(bus, unit, addr, count, opts)
  return with_retries(bus, read, unit, "input", addr, count, opts)
end

function Bus.read_coils(bus, unit, addr, count, opts)
  return with_retries(bus, read, unit, "coil", addr, count, opts)
end

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
  local regs = codec.encode(value, vtype, opts.order or "ABCD", opts.count)
  if #regs == 1 then
    return bus:write_register(unit, addr, regs[1], opts)
  end
  return bus:write_registers(unit, addr, regs, opts)
end

--- bus:read_device_info(unit [, code = 1]) -> {vendor_name=, product_code=, ...}
--- Reads every object of the level (FC 43/14), following "more follows".
local object_names = {
  [0] = "vendor_name", "product_code", "revision", "vendor_url", "product_name",
  "model_name", "user_application_name",
}
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

return M
