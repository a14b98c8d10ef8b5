-- moondog.modbus.vreglink: Victron's VregLink over Modbus (md.modbus.vreglink),
-- reading and setting a device's VE registers ("vregs": product id, custom
-- name, settings) through one block of holding registers, and a VregLink
-- simulator for tests.
--
--   local link = md.modbus.vreglink(bus, 0x4000)     -- or a unit handle, or a Modbus device
--   local id, err, code = link:get(0x0100)           -- the vreg's bytes, e.g. "\x00\x12\x34\xFE"
--   assert(link:set(0x010C, "My Precious"))          -- true, or nil, message, code
--
-- Facts from Victron's dbus-modbus-client README ("VregLink") and its
-- vreglink.py (github.com/victronenergy/dbus-modbus-client): the block is
-- up to 125 holding registers at a device-specific base, accessed only with
-- function 23 (read/write multiple registers), every access starting at the
-- block's first register; bytes are packed into registers high byte first.
-- A write of [vreg] selects the vreg to read; a write of [vreg, size,
-- data...] sets it (size in bytes: twice the data registers, or one less).
-- The read part answers [vreg, status, size, data...], the size being the
-- vreg's real size even when fewer registers were asked for. Status words:
--   0x0000 success
--   0x8000 read: unknown error          -> code "vreg_read_failed"
--   0x8001 read: vreg does not exist    -> code "vreg_unknown"
--   0x8002 read: vreg is write-only     -> code "vreg_write_only"
--   0x8100 write: unknown error         -> code "vreg_write_failed"
--   0x8101 write: vreg does not exist   -> code "vreg_unknown"
--   0x8102 write: vreg is read-only     -> code "vreg_read_only"
--   0x8104 write: data invalid for vreg -> code "vreg_invalid_data"
-- Any other status is code "vreg_failed". An answer for another vreg than
-- the one asked is code "malformed"; Modbus failures keep their codes
-- (timeout, illegal_data_address, ...). Wrong arguments raise.
--
-- get asks for opts.size data registers (default 16) with the header, and
-- when the vreg is longer reads once more with room for all of it (up to
-- 122 registers, 244 bytes: the block less its header). set sends up to
-- 238 bytes (function 23 writes at most 121 registers).
--
-- The simulator (vreglink.serve) is a small Modbus TCP server of its own on
-- moondog.stream rather than md.modbus.serve: there the write part of a
-- function 23 request is applied in C after the hooks ran, so a hook cannot
-- make the read part answer a status where the write just put the size.
-- It answers function 23 at the block's base and function 3 inside the
-- block (the last answer), exception 1 for any other function, 2 for an
-- address outside the block, 3 for a malformed count, 0x0B for another unit.

local md = require "moondog"
local stream = require "moondog.stream"
local accept = require "moondog.accept"

local M = {}

local format = string.format

local BLOCK = 125          -- registers in a VregLink block at most
local MAX_DATA_REGS = BLOCK - 3
local MAX_SET_BYTES = (121 - 2) * 2

-- status word -> {code, what}
local statuses = {
  [0x8000] = { "vreg_read_failed", "the device could not read it (status 0x8000, unknown error)" },
  [0x8001] = { "vreg_unknown", "the device has no such vreg (status 0x8001)" },
  [0x8002] = { "vreg_write_only", "it is write-only (status 0x8002)" },
  [0x8100] = { "vreg_write_failed", "the device could not set it (status 0x8100, unknown error)" },
  [0x8101] = { "vreg_unknown", "the device has no such vreg (status 0x8101)" },
  [0x8102] = { "vreg_read_only", "it is read-only (status 0x8102)" },
  [0x8104] = { "vreg_invalid_data", "the device refused the value as invalid for it (status 0x8104)" },
}
M.statuses = {}
for word, s in pairs(statuses) do M.statuses[word] = s[1] end

-- Bytes -> registers, high byte first, an odd last byte padded with 0.
local function to_regs(bytes)
  if #bytes % 2 == 1 then bytes = bytes .. "\0" end
  local regs = { string.unpack(string.rep(">I2", #bytes // 2), bytes) }
  regs[#regs] = nil -- string.unpack's next position
  return regs
end

-- Registers first..last of regs -> bytes.
local function to_bytes(regs, first, last)
  local parts = {}
  for i = first, last do parts[#parts + 1] = string.pack(">I2", regs[i]) end
  return table.concat(parts)
end

-- {===== client =====

local Link = {}
Link.__index = Link

local function check_vreg(vreg, what)
  if math.type(vreg) ~= "integer" or vreg < 0 or vreg > 0xFFFF then
    error(format("%s: vreg must be an integer 0..0xFFFF, got %s", what, tostring(vreg)), 3)
  end
end

local function failed(self, vreg, verb, status)
  local s = statuses[status]
  if s then
    return nil, format("VregLink %s vreg 0x%04X at %d: %s", verb, vreg, self.base, s[2]), s[1]
  end
  return nil, format("VregLink %s vreg 0x%04X at %d: the device answered status 0x%04X, which "
    .. "Victron's VregLink document does not define", verb, vreg, self.base, status), "vreg_failed"
end

local function exchange(self, vreg, verb, wregs, rcount)
  local regs, err, code = self.bus:write_read(self.unit, self.base, wregs, self.base, rcount)
  if not regs then
    return nil, format("VregLink %s vreg 0x%04X at %d: %s", verb, vreg, self.base, err), code
  end
  if regs[1] ~= vreg then
    return nil, format("VregLink %s vreg 0x%04X at %d: the device answered for vreg 0x%04X; "
      .. "check that %d is the device's VregLink base", verb, vreg, self.base, regs[1], self.base),
      "malformed"
  end
  if regs[2] ~= 0 then
    return failed(self, vreg, verb, regs[2])
  end
  return regs
end

--- link:get(vreg) -> the vreg's bytes, or nil, message, code
function Link:get(vreg)
  check_vreg(vreg, "vreglink:get")
  local regs, err, code = exchange(self, vreg, "get", { vreg }, 3 + self.size)
  if not regs then return nil, err, code end
  local size = regs[3]
  if size > 2 * (#regs - 3) then
    local need = (size + 1) // 2
    if need > MAX_DATA_REGS then
      return nil, format("VregLink get vreg 0x%04X at %d: its value is %d bytes, more than a "
        .. "VregLink block holds (%d)", vreg, self.base, size, 2 * MAX_DATA_REGS), "range"
    end
    regs, err, code = exchange(self, vreg, "get", { vreg }, 3 + need)
    if not regs then return nil, err, code end
    size = math.min(regs[3], 2 * (#regs - 3))
  end
  return to_bytes(regs, 4, #regs):sub(1, size)
end

--- link:set(vreg, bytes) -> true, or nil, message, code
function Link:set(vreg, bytes)
  check_vreg(vreg, "vreglink:set")
  if type(bytes) ~= "string" then
    error(format("vreglink:set: the value must be a string of bytes, got %s", type(bytes)), 2)
  end
  if #bytes > MAX_SET_BYTES then
    error(format("vreglink:set: %d bytes; one function 23 request carries at most %d", #bytes,
      MAX_SET_BYTES), 2)
  end
  local wregs = to_regs(bytes)
  table.insert(wregs, 1, #bytes)
  table.insert(wregs, 1, vreg)
  local regs, err, code = exchange(self, vreg, "set", wregs, 2)
  if not regs then return nil, err, code end
  return true
end

function Link:__tostring()
  return format("vreglink at %d on unit %d", self.base, self.unit)
end

--- vreglink.new(dev, base [, opts]) -> link. dev: a bus (md.modbus.open,
--- its URL's unit unless opts.unit), a unit handle (bus:unit(n)) or a Modbus
--- device (md.devices.open). opts.size: data registers a get asks for first.
function M.new(dev, base, opts)
  opts = opts or {}
  local bus, unit = dev, nil
  if type(dev) == "table" and dev.bus then
    bus = dev.bus -- a unit handle (.id) or a Modbus device (.unit)
    unit = math.type(dev.id) == "integer" and dev.id or dev.unit
  end
  local ok, has = pcall(function() return bus.write_read and bus.default_unit end)
  if not (ok and has) then
    error("md.modbus.vreglink: expected a Modbus bus, unit handle or Modbus device, got "
      .. tostring(dev), 2)
  end
  unit = opts.unit or unit or bus:default_unit()
  if math.type(base) ~= "integer" or base < 0 or base > 0xFFFF - BLOCK + 1 then
    error(format("md.modbus.vreglink: base must be the register address of the VregLink block "
      .. "(0..%d), got %s", 0xFFFF - BLOCK + 1, tostring(base)), 2)
  end
  local size = opts.size or 16
  if math.type(size) ~= "integer" or size < 1 or size > MAX_DATA_REGS then
    error(format("md.modbus.vreglink: opts.size must be 1..%d registers, got %s", MAX_DATA_REGS,
      tostring(size)), 2)
  end
  return setmetatable({ bus = bus, unit = unit, base = base, size = size }, Link)
end

-- }=====

-- {===== simulator =====

local Sim = {}
Sim.__index = Sim

-- The vreg access after a write of regs: the answer {vreg, status, size, data...}.
function Sim:_access(regs)
  local vreg = regs[1]
  local v = self.vregs[vreg]
  local function answer(status)
    local value = status == 0 and v.value or ""
    local out = to_regs(value)
    table.insert(out, 1, #value)
    table.insert(out, 1, status)
    table.insert(out, 1, vreg)
    return out
  end
  if #regs == 1 then
    self.counters.gets = self.counters.gets + 1
    if not v then return { vreg, 0x8001, 0 } end
    if v.access == "w" then return { vreg, 0x8002, 0 } end
    if v.fail then return { vreg, 0x8000, 0 } end
    return answer(0)
  end
  self.counters.sets = self.counters.sets + 1
  if not v then return { vreg, 0x8101, 0 } end
  if v.access == "r" then return { vreg, 0x8102, 0 } end
  if v.fail then return { vreg, 0x8100, 0 } end
  local size, nbytes = regs[2], 2 * (#regs - 2)
  if size ~= nbytes and size ~= nbytes - 1 then return { vreg, 0x8104, 0 } end
  local bytes = to_bytes(regs, 3, #regs):sub(1, size)
  if v.valid and not v.valid(bytes) then return { vreg, 0x8104, 0 } end
  v.value = bytes
  if v.access == "w" then return { vreg, 0, 0 } end
  return answer(0)
end

local function exception(tid, unit, fc, ex)
  return string.pack(">I2I2I2BBB", tid, 0, 3, unit, fc | 0x80, ex)
end

-- One request PDU -> the response frame.
function Sim:_request(tid, unit, pdu)
  self.counters.requests = self.counters.requests + 1
  local fc = pdu:byte(1)
  if unit ~= self.unit then return exception(tid, unit, fc, 0x0B) end
  local base = self.base
  if fc == 23 and #pdu >= 10 then
    self.counters.fc23 = self.counters.fc23 + 1
    local raddr, rcount, waddr, wcount, nbytes = string.unpack(">I2I2I2I2B", pdu, 2)
    if rcount < 1 or rcount > 125 or wcount < 1 or wcount > 121 or nbytes ~= 2 * wcount
      or #pdu ~= 10 + nbytes then
      return exception(tid, unit, fc, 3)
    end
    if raddr ~= base or waddr ~= base or rcount > BLOCK or wcount > BLOCK then
      return exception(tid, unit, fc, 2)
    end
    local regs = { string.unpack(string.rep(">I2", wcount), pdu, 11) }
    regs[#regs] = nil -- string.unpack's next position
    self.written = regs
    self.last = self:_access(regs)
    fc = 23
  elseif fc == 3 and #pdu == 5 then
    local raddr, rcount = string.unpack(">I2I2", pdu, 2)
    if rcount < 1 or rcount > 125 then return exception(tid, unit, fc, 3) end
    if raddr < base or raddr + rcount > base + BLOCK then return exception(tid, unit, fc, 2) end
  else
    return exception(tid, unit, fc, 1)
  end
  local first, count = string.unpack(">I2I2", pdu, 2) -- the read part, FC 3 and FC 23 alike
  local words = {}
  for i = 1, count do words[i] = self.last[first - base + i] or 0 end
  local body = string.pack(">BB" .. string.rep("I2", count), fc, 2 * count, table.unpack(words))
  return string.pack(">I2I2I2B", tid, 0, #body + 1, unit) .. body
end

function Sim:_serve_conn(conn)
  local _guard <close> = setmetatable({}, { __close = function()
    self.conns[conn] = nil
    conn:close()
  end })
  self.conns[conn] = true
  local buf = ""
  while true do
    local data = conn:read(4096)
    if not data then return end
    buf = buf .. data
    while #buf >= 7 do
      local tid, pid, len, unit = string.unpack(">I2I2I2B", buf)
      if pid ~= 0 or len < 2 or len > 254 then return end -- not Modbus: drop the client
      if #buf < 6 + len then break end
      local pdu = buf:sub(8, 6 + len)
      buf = buf:sub(7 + len)
      if not conn:write(self:_request(tid, unit, pdu)) then return end
    end
  end
end

local function accept_loop(self)
  accept.loop(self.listener, "vreglink simulator", function(conn)
    self:_serve_conn(conn)
    self.tasks[md.current()] = nil
  end, { on_task = function(task) self.tasks[task] = true end })
end

--- sim:url() -> "tcp://127.0.0.1:<port>?unit=<unit>"
function Sim:url()
  return format("tcp://%s:%d?unit=%d", self.host, self.listener:port(), self.unit)
end

--- sim:get(vreg) -> the vreg's bytes now (nil: no such vreg)
function Sim:get(vreg)
  return self.vregs[vreg] and self.vregs[vreg].value
end

--- sim:set(vreg, bytes) -> changes a vreg's value as the device would
function Sim:set(vreg, bytes)
  self.vregs[vreg] = self.vregs[vreg] or { access = "rw" }
  self.vregs[vreg].value = bytes
end

--- sim.written: the registers the last function 23 request wrote.
--- sim:stats() -> {requests, fc23, gets, sets}
function Sim:stats()
  local s = {}
  for k, v in pairs(self.counters) do s[k] = v end
  return s
end

function Sim:close()
  if self.closed then return end
  self.closed = true
  self.acceptor:cancel()
  self.listener:close()
  for task in pairs(self.tasks) do task:cancel() end
  for conn in pairs(self.conns) do conn:close() end
  self.tasks, self.conns = {}, {}
end

Sim.__close = Sim.close

--- vreglink.serve(url, opts) -> simulator, or nil, message, code (the port).
--- url: "tcp://127.0.0.1:0" (port 0: any free port); opts.unit (1),
--- opts.base (the block's address, 0x4000), opts.vregs = {[vreg] = {value =
--- bytes, access = "rw" | "r" | "w", fail = true (answer the unknown-error
--- status), valid = function(bytes) -> false to answer invalid data}}.
function M.serve(url, opts)
  opts = opts or {}
  local host, port = tostring(url):match("^tcp://([^:/]+):(%d+)")
  if not host then
    error("vreglink.serve: expected an address such as 'tcp://127.0.0.1:0', got " .. tostring(url), 2)
  end
  local vregs = {}
  for vreg, v in pairs(opts.vregs or {}) do
    check_vreg(vreg, "vreglink.serve")
    if type(v.value) ~= "string" then
      error(format("vreglink.serve: vreg 0x%04X needs value = a string of bytes", vreg), 2)
    end
    vregs[vreg] = { value = v.value, access = v.access or "rw", fail = v.fail, valid = v.valid }
  end
  local listener, err, code = stream.listen(host, math.tointeger(port))
  if not listener then return nil, err, code end
  local self = setmetatable({
    listener = listener, host = host, unit = opts.unit or 1, base = opts.base or 0x4000, vregs = vregs,
    last = {}, conns = {}, tasks = {}, counters = { requests = 0, fc23 = 0, gets = 0, sets = 0 },
  }, Sim)
  self.acceptor = md.spawn(accept_loop, self)
  self.acceptor:name("vreglink simulator on port " .. listener:port())
  return self
end

-- }=====

return M
