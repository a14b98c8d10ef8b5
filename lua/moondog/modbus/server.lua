-- moondog.modbus.server: serve a register map over Modbus (a simulator, a
-- test peer, a gateway's far side). Also md.modbus.serve.
--
--   local srv = assert(md.modbus.serve("tcp://127.0.0.1:0", {
--     units = { 1, 2 },                 -- each its own map; default: one map for every unit
--     strict = false,                   -- true: only addresses that were set exist
--     device_id = { vendor_name = "ACME", product_code = "M1", revision = "1.0" },
--     server_id = "ACME-M1\xff",        -- FC 17 payload (the last byte: run indicator)
--     on_read = function(unit, kind, addr, count, srv, client) end,   -- update values, or refuse
--     on_write = function(unit, kind, addr, values, srv, client) end, -- refuse, or nil to accept
--     (client: "127.0.0.1:50312" of a TCP or UDP client, "serial" on a serial line)
--     idle_timeout = 60,                -- s: close a TCP client silent this long
--     frame_timeout = 5,                -- s: close one that leaves a frame unfinished
--     max_clients = 1024,               -- when full, the longest idle client is closed
--   }))
--   srv:port(), srv:url()                         -- the real port when 0 was asked for
--   srv:units()                                   -- {1, 2}: the units with maps of their own
--   srv:set(unit, "holding", 40000, { 1, 2, 3 })  -- also "input", "coil", "discrete"
--   srv:get(unit, "coil", 0, 8)                   -- {false, true, ...}
--   srv:set_value(unit, "holding", 40100, 230.5, "float32" [, "ABCD"])
--   srv:get_value(unit, "holding", 40100, "float32" [, "ABCD"])
--   srv:load(unit, "meter.regs")                  -- "h40001 123", "c3 1", ... per line
--   srv:stats()                                   -- requests, exceptions, bad_frames, clients, ...
--   srv:close()                                   -- also <close> and __gc
--   modbus.server.servers()                       -- the servers open now
--
-- Transports: every URL of moondog.modbus.address (tcp, udp, rtu+tcp,
-- rtu+udp: port 0 picks a free port; rtu:///dev/ttyUSB0 or a pty). The
-- server runs in C on the event loop (core/mbserver*.c) and serves many
-- clients at once without blocking the engine.
--
-- Units: with `units`, every id has its own map and srv:set/get need the
-- id; a request for another id goes unanswered on RTU (another device on
-- the bus) and gets exception 0x0B over MBAP (tcp, udp). Without `units`,
-- one map answers every id (1..247 on RTU, any on MBAP) and srv:set/get take
-- nil or any number as the unit; a URL with ?unit=N serves just that unit.
-- On RTU, unit 0 is the broadcast address: writes apply to every map and
-- are never answered (on_write sees unit 0).
--
-- Hooks run in tasks, never inside the C server: a request that needs one
-- is queued; this module's dispatcher task takes it (srv core's
-- next_request), runs the hook in a task of its own (so a slow hook only
-- holds up its own connection; each connection's requests stay in order),
-- then answers (reply), and C applies the request and sends the response.
-- Hooks run before anything is applied: on_write sees the values a write
-- would store (for a mask write, the resulting register value), on_read
-- runs before the values are read, so srv:set inside it shows. A hook
-- refuses by returning an exception code (1..255) or its name
-- ("illegal_data_address", "server_device_busy", ...). A hook that raises
-- is logged and its request answered with exception 4 (server device
-- failure). On strict maps, writes to addresses that do not exist are
-- refused (exception 2) before on_write is asked; reads are checked after
-- on_read, which may create the addresses.
--
-- Errors: wrong arguments raise; failing to serve (port in use, no such
-- device) returns nil, message, code with code "bad_address", "dns", "in_use",
-- "busy" (a serial line another program holds), "permission", "no_device"
-- or "open".

local core = require "moondog.modbus.server_core"
local address = require "moondog.modbus.address"
local codec = require "moondog.modbus.codec"
local mdcore = require "moondog.core"
local log = require "moondog.log"

local M = {}

local Server = {}
Server.__index = Server

-- Servers that are open: they serve (and keep the engine alive) whether or
-- not the script keeps a reference, so they must not be collected.
local live = {}

local exception_codes = codec.exceptions -- token -> code

local object_ids = {
  vendor_name = 0, product_code = 1, revision = 2, vendor_url = 3, product_name = 4,
  model_name = 5, user_application_name = 6,
}
local object_names = "vendor_name, product_code, revision, vendor_url, product_name, "
  .. "model_name, user_application_name"

local type_regs = {
  int16 = 1, uint16 = 1, int32 = 2, uint32 = 2, int64 = 4, uint64 = 4, float32 = 2, float64 = 4,
}

-- {===== options =====

-- address.parse rejects port 0 (a client needs a real port); a server
-- takes it as "any free port". Parse with a stand-in and put 0 back.
local function parse_url(url)
  local head, tail = url:match("^(.-:)0(%?.*)$")
  if not head then
    head, tail = url:match("^(.-:)0$"), ""
  end
  if not head then
    return address.parse(url)
  end
  local probe = head .. "1" .. tail
  local cfg, err = address.parse(probe)
  if not cfg then
    local i, j = err:find(probe, 1, true)
    if i then
      err = err:sub(1, i - 1) .. url .. err:sub(j + 1)
    end
    return nil, err
  end
  cfg.port = 0
  return cfg
end

local function check_units(units)
  if units == nil then
    return nil
  end
  if type(units) ~= "table" or #units == 0 then
    error("modbus.serve: opts.units must be a non-empty array of unit ids 1..255", 3)
  end
  for i, u in ipairs(units) do
    if math.type(u) ~= "integer" or u < 1 or u > 255 then
      error(string.format("modbus.serve: opts.units[%d] = %s is not a unit id 1..255 "
        .. "(0 is the RTU broadcast address)", i, tostring(u)), 3)
    end
  end
  return units
end

local function check_device_id(device_id)
  local objects = {
    [0] = "moondog", [1] = "moondog-server", [2] = mdcore.version,
  }
  if device_id == nil then
    return objects
  end
  if type(device_id) ~= "table" then
    error("modbus.serve: opts.device_id must be a table such as { vendor_name = 'ACME' }", 3)
  end
  for k, v in pairs(device_id) do
    local id = object_ids[k] or (math.type(k) == "integer" and k >= 0 and k <= 255 and k)
    if not id then
      error(string.format("modbus.serve: unknown device_id field '%s' (expected %s, or an "
        .. "object id 0..255)", tostring(k), object_names), 3)
    end
    if type(v) ~= "string" or #v > 244 then
      error(string.format("modbus.serve: device_id.%s must be a string of at most 244 bytes",
        tostring(k)), 3)
    end
    objects[id] = v
  end
  return objects
end

local function check_opts(opts)
  if opts == nil then
    return {}
  end
  if type(opts) ~= "table" then
    error("modbus.serve: opts must be a table, got " .. type(opts), 3)
  end
  for _, name in ipairs({ "on_read", "on_write" }) do
    if opts[name] ~= nil and type(opts[name]) ~= "function" then
      error(string.format("modbus.serve: opts.%s must be a function, got %s", name,
        type(opts[name])), 3)
    end
  end
  local sid = opts.server_id
  if sid ~= nil and (type(sid) ~= "string" or #sid < 1 or #sid > 251) then
    error("modbus.serve: opts.server_id must be a string of 1..251 bytes", 3)
  end
  return opts
end

-- }=====

-- {===== hooks =====

-- What a hook returned, as an exception code (nil: accept).
local function to_exception(r)
  if r == nil or r == false or r == true then
    return nil
  end
  if math.type(r) == "integer" and r >= 1 and r <= 255 then
    return r
  end
  if type(r) == "string" and exception_codes[r] then
    return exception_codes[r]
  end
  error(string.format("hook returned %s: expected nothing (accept), an exception code "
    .. "1..255 or a name such as 'illegal_data_address'", tostring(r)), 0)
end

local function run_hook(self, fn, ...)
  local ok, r = xpcall(function(...) return to_exception(fn(...)) end, debug.traceback, ...)
  if not ok then
    log.error("modbus server %s: hook failed, answering exception 4: %s", self._url, tostring(r))
    return exception_codes.server_device_failure
  end
  return r
end

-- One hooked request: on_write first (a refused write is never read back),
-- then on_read; the reply applies the request or sends the exception.
local function serve_request(self, req, on_read, on_write)
  local ex
  if req.write_kind and on_write then
    ex = run_hook(self, on_write, req.unit, req.write_kind, req.write_addr, req.values, self, req.client)
  end
  if not ex and req.read_kind and on_read then
    ex = run_hook(self, on_read, req.unit, req.read_kind, req.read_addr, req.read_count, self, req.client)
  end
  self.core:reply(req.id, ex)
end

-- The dispatcher task: one task per hooked request, so that a slow hook
-- holds up only its own connection. Ends when the server closes, taking
-- the hook tasks still running with it.
local function dispatch(self, on_read, on_write)
  local running = {}
  while true do
    local req = self.core:next_request()
    if not req then
      break
    end
    local task
    task = mdcore.spawn(function()
      serve_request(self, req, on_read, on_write)
      running[task] = nil
    end)
    task:name(string.format("modbus server %s: request %d", self._url, req.id))
    running[task] = true
  end
  for task in pairs(running) do
    task:cancel()
  end
end

-- }=====

-- {===== serve =====

--- modbus.serve(url [, opts]) -> server, or nil, message, code
function M.serve(url, opts)
  if type(url) ~= "string" then
    error("modbus.serve: expected an address string such as 'tcp://0.0.0.0:502', got "
      .. type(url), 2)
  end
  opts = check_opts(opts)
  local units = check_units(opts.units)
  local objects = check_device_id(opts.device_id)
  local cfg, err = parse_url(url)
  if not cfg then
    return nil, err, "bad_address"
  end
  if not units and cfg.unit and cfg.unit > 0 then
    units = { cfg.unit } -- "tcp://...:1502?unit=3" serves unit 3
  end
  local ud, oerr, code = core.open({
    transport = cfg.scheme, host = cfg.host, port = cfg.port, path = cfg.path,
    baud = cfg.baud, parity = cfg.parity, data = cfg.data, stop = cfg.stop, rs485 = cfg.rs485,
    units = units, strict = opts.strict and true or false,
    hook_reads = opts.on_read ~= nil, hook_writes = opts.on_write ~= nil, url = cfg.url,
    idle_timeout = opts.idle_timeout, frame_timeout = opts.frame_timeout, max_clients = opts.max_clients,
  })
  if not ud then
    return nil, oerr, code
  end
  local unit_ids = ud:units()
  if #unit_ids == 0 then
    unit_ids = { false } -- the shared map
  end
  for _, u in ipairs(unit_ids) do
    local unit = u or nil
    for id, text in pairs(objects) do
      ud:set_object(unit, id, text)
    end
    if opts.server_id then
      ud:set_server_id(unit, opts.server_id)
    end
  end
  local real = {}
  for k, v in pairs(cfg) do real[k] = v end
  if cfg.transport ~= "serial" then
    real.port = ud:port()
  end
  local self = setmetatable({ core = ud, _url = address.format(real) }, Server)
  live[self] = true
  if opts.on_read or opts.on_write then
    self._dispatcher = mdcore.spawn(dispatch, self, opts.on_read, opts.on_write)
    self._dispatcher:name("modbus server " .. self._url)
  end
  return self
end

-- }=====

-- {===== methods =====

--- srv:units() -> the unit ids with a map of their own, in order; {} when
--- one map answers every unit.
function Server:units()
  return self.core:units()
end

--- The bound port (tcp, udp, rtu+tcp, rtu+udp); nil for a serial line.
function Server:port()
  return self.core:port()
end

--- The canonical URL with the real port, e.g. "tcp://127.0.0.1:40123".
function Server:url()
  return self._url
end

--- srv:set(unit, kind, addr, values): values an array (or one value) of
--- integers 0..65535 (-32768..-1 stored as two's complement) for registers,
--- booleans (or 0/1) for coils and discrete inputs. In strict mode the
--- addresses exist from then on.
function Server:set(unit, kind, addr, values)
  self.core:set(unit, kind, addr, values)
end

--- srv:get(unit, kind, addr [, count = 1]) -> array
function Server:get(unit, kind, addr, count)
  return self.core:get(unit, kind, addr, count)
end

local function check_register_kind(kind, what)
  if kind ~= "holding" and kind ~= "input" then
    error(string.format("%s: typed values live in 'holding' or 'input' registers, not '%s'",
      what, tostring(kind)), 3)
  end
end

--- srv:set_value(unit, kind, addr, value, type [, order = "ABCD" [, nregs]])
--- Typed through moondog.modbus.codec; strings take ceil(#s / 2) registers
--- unless nregs says more (padded with NUL).
function Server:set_value(unit, kind, addr, value, vtype, order, nregs)
  check_register_kind(kind, "set_value")
  local regs, err = codec.encode(value, vtype, order or "ABCD", nregs)
  if not regs then error("set_value: " .. err, 2) end
  self.core:set(unit, kind, addr, regs)
end

--- srv:get_value(unit, kind, addr, type [, order = "ABCD" [, nregs]]) -> value
--- Strings need nregs, the number of registers they span.
function Server:get_value(unit, kind, addr, vtype, order, nregs)
  check_register_kind(kind, "get_value")
  local n = type_regs[vtype]
  if vtype == "string" then
    n = nregs or error("get_value: strings need a register count (the 6th argument)", 2)
  elseif not n then
    error(string.format("get_value: unknown type '%s'", tostring(vtype)), 2)
  end
  return codec.decode(self.core:get(unit, kind, addr, n), vtype, order or "ABCD")
end

local load_kinds = { [""] = "holding", h = "holding", i = "input", c = "coil", d = "discrete" }

-- One value of a register file: a decimal or 0x hex integer, or for bits
-- also true/false.
local function file_value(token, kind)
  local bits = kind == "coil" or kind == "discrete"
  if bits and (token == "true" or token == "false") then
    return token == "true"
  end
  local v = math.tointeger(tonumber(token))
  if not v or not token:match("^%-?%d+$") and not token:match("^0[xX]%x+$") then
    return nil, string.format("'%s' is not an integer", token)
  end
  if bits then
    if v ~= 0 and v ~= 1 then
      return nil, string.format("%s value %s is not 0 or 1", kind, token)
    end
    return v == 1
  end
  if v < -32768 or v > 65535 then
    return nil, string.format("register value %s is outside -32768..65535", token)
  end
  return v
end

-- "TYPE [ORDER] value..." after the address: each value encoded as TYPE
-- (int16 ... float64) in the word order (ABCD unless given), one after
-- another; a string takes the rest of the line as its text.
local function typed_line(kind, a, vtype, rest)
  if kind ~= "holding" and kind ~= "input" then
    return nil, string.format("%s is a type of registers, not of %s", vtype, kind)
  end
  local order = "ABCD"
  local o, after = rest:match("^(%u%u%u%u)%s+(.+)$")
  if o and ("ABCD CDAB BADC DCBA"):find(o, 1, true) then order, rest = o, after end
  local values = {}
  local tokens = {}
  if vtype == "string" then
    tokens[1] = rest
  else
    for token in rest:gmatch("%S+") do tokens[#tokens + 1] = token end
  end
  for _, token in ipairs(tokens) do
    local v = token
    if vtype ~= "string" then
      v = tonumber(token)
      if v == nil or v ~= v or v == math.huge or v == -math.huge then
        return nil, string.format("'%s' is not a number", token)
      end
      if not vtype:match("^float") then
        v = math.tointeger(v)
        if v == nil then return nil, string.format("%s value '%s' is not an integer", vtype, token) end
      end
    end
    local regs, err = codec.encode(v, vtype, order, vtype == "string" and (#v + 1) // 2 or nil)
    if not regs then
      return nil, string.format("'%s' does not fit a %s: %s", token, vtype, err)
    end
    table.move(regs, 1, #regs, #values + 1, values)
  end
  if a + #values > 65536 then
    return nil, string.format("%d registers from address %d go past 65535", #values, a)
  end
  return { kind = kind, addr = a, values = values }
end

-- One line: nil (blank or comment), an item, or nil + message.
local function parse_line(line)
  local text = line:gsub("#.*$", ""):match("^%s*(.-)%s*$")
  if text == "" then
    return nil
  end
  local prefix, addr, rest = text:match("^(%a?)(%d+)%s+(.+)$")
  local kind = prefix and load_kinds[prefix:lower()]
  if not kind then
    return nil, "expected 'address value...' with an optional kind prefix h, i, c or d, "
      .. "e.g. 'h40001 123' or 'c3 1'"
  end
  local a = math.tointeger(tonumber(addr))
  if not a or a > 65535 then
    return nil, string.format("address %s is outside 0..65535", addr)
  end
  local vtype, typed = rest:match("^(%a+%d*)%s+(.+)$")
  if vtype and (type_regs[vtype] or vtype == "string") then
    return typed_line(kind, a, vtype, typed)
  end
  local values = {}
  for token in rest:gmatch("%S+") do
    local v, err = file_value(token, kind)
    if v == nil then
      return nil, err
    end
    values[#values + 1] = v
  end
  if a + #values > 65536 then
    return nil, string.format("%d values from address %d go past 65535", #values, a)
  end
  return { kind = kind, addr = a, values = values }
end

--- srv:load(unit, path) -> true, or nil, message, code
--- Lines "address value [value...]" with an optional kind prefix (h holding,
--- the default, i input, c coil, d discrete), # comments; or typed,
--- "address TYPE [ORDER] value...": "i0 float32 230.1", "h100 int32 CDAB
--- -5 7", "h200 string ACME" (TYPE int16 ... float64 or string). Either the whole
--- file applies or nothing: a bad line is reported as "path:line: what".
function Server:load(unit, path)
  if type(path) ~= "string" then
    error("srv:load: expected a file name, got " .. type(path), 2)
  end
  local f, oerr = io.open(path, "r")
  if not f then
    return nil, "cannot load registers: " .. oerr, "io"
  end
  local text, rerr = f:read("a") -- a directory opens, then fails here
  f:close()
  if not text then
    return nil, string.format("cannot load registers from %s: %s", path, rerr), "io"
  end
  local items, n = {}, 0
  for line in text:gmatch("[^\n]*") do
    n = n + 1
    local item, err = parse_line(line)
    if err then
      return nil, string.format("%s:%d: %s", path, n, err), "syntax"
    end
    items[#items + 1] = item
  end
  for _, item in ipairs(items) do
    self.core:set(unit, item.kind, item.addr, item.values)
  end
  return true
end

--- srv:stats() -> {requests, exceptions, bad_frames, clients, accepted, dropped}
function Server:stats()
  return self.core:stats()
end

--- Stop serving; idempotent. Connections close, the hook tasks end.
function Server:close()
  live[self] = nil
  self.core:close() -- wakes the dispatcher, which then ends
end

Server.__close = Server.close
Server.__gc = Server.close

function Server:__tostring()
  return tostring(self.core)
end

--- The servers open now, e.g. for the REPL.
function M.servers()
  local list = {}
  for srv in pairs(live) do
    list[#list + 1] = srv
  end
  return list
end

-- }=====

return M
