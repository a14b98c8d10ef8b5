-- moondog.devices.modbus: the driver for Modbus device profiles
-- (protocol = "modbus"; see devices/README.md for the device object).
--
--   local dev = assert(md.devices.open("sdm630", "tcp://192.168.1.60:502?unit=1"))
--   local values = dev:read()          -- {l1_voltage = 230.1, import_energy = 1234.5, ...}
--   dev:write("active_power_limit", 50)
--
-- A point's source is a register spec:
--   source = { kind = "holding" | "input" | "coil" | "discrete", addr = 0..65535,
--              type = "uint16" (default) | "int16" | "uint32" | "int32" | "uint64" |
--                     "int64" | "float32" | "float64" | "string",
--              order = "ABCD" (default) | "CDAB" | "BADC" | "DCBA",
--              count = registers (strings only), fc16 = true (write one register
--              with function 16 instead of 6) }
-- Coils and discrete inputs are bools. A register point may also be a bool
-- (non-zero) or an enum: `options` names the values 0, 1, 2... unless
-- `codes` lists the raw value of each option. `scale` multiplies the raw
-- value (writes divide and round for integer types). Values come back
-- rounded to what the register holds: float32 to 7 significant digits, a
-- scaled integer to the decimals of its scale (0.1 -> 1 decimal), so that
-- 2301 * 0.1 reads 230.1, not 230.10000000000002.
--
-- profile.info gives the device facts describe() returns: a string is the
-- fact itself, a register spec is read (e.g. serial = {kind = "holding",
-- addr = 64512, type = "uint32"}). profile.max_gap, profile.max_regs and
-- profile.avoid go to the read planner (moondog.modbus.planner).
--
-- Reads are planned once per device with md.modbus.plan: every poll costs
-- the fewest transactions. A read that the device answers with an
-- exception (illegal address or function) leaves its points out of the
-- result; a timeout or a lost connection fails the whole read (nil,
-- message, code) and marks the device offline.
--
-- open(profile, target, opts): target is a Modbus address
-- ("tcp://host:502?unit=1", "rtu:///dev/ttyUSB0?baud=9600&unit=3", ...) or
-- an open bus (md.modbus.open) to share; opts.unit, opts.id, opts.timeout.
--
-- check(profile) collects every mistake open() would raise at, and more
-- (info sources, probe); identify(profile, bus, unit) runs the profile's
-- probe (devices/README.md) against a device.
--
-- simulate(profile, url, opts) serves a profile's registers with
-- md.modbus.serve, for tests and the demo (see the end of this file).

local modbus = require "moondog.modbus"
local planner = require "moondog.modbus.planner"
local codec = require "moondog.modbus.codec"
local point = require "moondog.devices.point"
local base = require "moondog.devices.base"
local now = require("moondog.core").now

local M = {}

local format = string.format

local register_types = {
  int16 = 1, uint16 = 1, int32 = 2, uint32 = 2, int64 = 4, uint64 = 4, float32 = 2, float64 = 4,
  string = true,
}
local orders = { ABCD = true, CDAB = true, BADC = true, DCBA = true }
local kinds = { holding = true, input = true, coil = true, discrete = true }
local is_bits = { coil = true, discrete = true }
-- Exceptions that mean "this device does not have these addresses".
local not_implemented = { illegal_data_address = true, illegal_function = true, illegal_data_value = true }

-- {===== profile checking =====

-- A register spec as a planner item {kind, address, count, type, order}.
-- Raises: the profile is part of the program.
local function source_item(where, s)
  if type(s) ~= "table" then
    error(format("%s: source must be a register spec {kind =, addr =, type =}, got %s", where, type(s)), 0)
  end
  if not kinds[s.kind] then
    error(format("%s: source.kind must be holding, input, coil or discrete, got %s", where,
      tostring(s.kind)), 0)
  end
  local addr = math.tointeger(s.addr)
  if not addr or addr < 0 or addr > 65535 then
    error(format("%s: source.addr must be an integer 0..65535, got %s", where, tostring(s.addr)), 0)
  end
  local item = { kind = s.kind, address = addr, order = (s.order or "ABCD"):upper(), fc16 = s.fc16 }
  if is_bits[s.kind] then
    if s.type ~= nil and s.type ~= "bool" then
      error(format("%s: a %s is a bool; source.type must be nil or 'bool'", where, s.kind), 0)
    end
    item.type, item.count = "bool", 1
    return item
  end
  item.type = s.type or "uint16"
  if not register_types[item.type] then
    error(format("%s: unknown source.type '%s'", where, tostring(s.type)), 0)
  end
  if not orders[item.order] then
    error(format("%s: source.order must be ABCD, CDAB, BADC or DCBA, got %s", where, tostring(s.order)), 0)
  end
  if item.type == "string" then
    item.count = math.tointeger(s.count)
    if not item.count or item.count < 1 or item.count > 125 then
      error(format("%s: a string source needs count = registers (1..125)", where), 0)
    end
  else
    item.count = register_types[item.type]
  end
  return item
end

local function check_point(where, p)
  local item = source_item(where, p.source)
  item.point = p
  if p.writable and (item.kind == "input" or item.kind == "discrete") then
    error(format("%s: %s registers are read-only; a writable point needs a holding register or a coil",
      where, item.kind), 0)
  end
  local kind = point.kind(p)
  if is_bits[item.kind] and kind ~= "bool" then
    error(format("%s: a %s holds a bool; set type = 'bool'", where, item.kind), 0)
  end
  if kind == "enum" and type(p.options) ~= "table" then
    error(format("%s: an enum needs options = {...}", where), 0)
  end
  if (item.type == "string") ~= (kind == "string") then
    error(format("%s: a string source goes with type = 'string' and nothing else", where), 0)
  end
  return item
end

-- }=====

-- {===== values =====

-- Decimals that a scale factor gives (0.1 -> 1, 0.001 -> 3, 10 -> 0).
local function scale_decimals(scale)
  local d = 0
  while d < 12 and math.abs(scale * 10 ^ d - math.floor(scale * 10 ^ d + 0.5)) > 1e-9 do
    d = d + 1
  end
  return d
end

local function significant(v, digits)
  if v == 0 or v ~= v or v == math.huge or v == -math.huge then return v end
  return tonumber(format("%." .. digits .. "g", v))
end

local pow10 = {}
for k = 0, 12 do pow10[k] = 10.0 ^ k end
local log, floor, abs = math.log, math.floor, math.abs

-- A float32 as the shortest decimal of 7 significant digits: the same
-- number as significant(v, 7), without formatting a string (it ran for
-- every float of every poll: 2.6 % of a 1000-meter site's CPU). Exact:
-- a float32 (24-bit mantissa) times 10^k, k <= 12 (at most 28 bits), fits
-- in a double, so ties are seen and go to even as %g's do; a whole number
-- divided by 10^k is the double nearest to the decimal. Checked equal to
-- significant(v, 7) on 2.2 million float32 values.
local function float32_value(v)
  if v == 0 or v ~= v or v == math.huge or v == -math.huge then return v end
  local a = abs(v)
  local k = 6 - floor(log(a, 10))
  if k < 0 or k > 12 then return significant(v, 7) end
  local y = a * pow10[k]
  local x = floor(y + 0.5)
  if x - y == 0.5 and x % 2 == 1 then x = x - 1 end
  x = x / pow10[k]
  return v < 0 and -x or x
end

-- Registers (or bits) of one point -> its value, or nil when the raw value
-- means nothing (an enum code without an option). The point's registers
-- start at slice[at] (default 1), so a read's data is decoded in place.
local function decode(item, slice, at)
  local p = item.point
  if item.type == "bool" then
    return slice[at or 1] and true or false
  end
  if item.type == "string" then
    return codec.decode(slice, "string", item.order, at or 1, item.count)
  end
  local raw = codec.decode(slice, item.type, item.order, at or 1)
  local kind = point.kind(p)
  if kind == "bool" then
    return raw ~= 0
  elseif kind == "enum" then
    for i, option in ipairs(p.options) do
      if (p.codes and p.codes[i] or i - 1) == raw then return option end
    end
    return nil
  end
  if item.type == "float32" then
    raw = float32_value(raw)
  end
  local scale = p.scale
  if scale == nil or scale == 1 then
    return raw
  end
  local v = raw * scale
  if item.type == "float32" or item.type == "float64" then
    return significant(v, item.type == "float32" and 7 or 15)
  end
  return tonumber(format("%." .. scale_decimals(scale) .. "f", v))
end

-- A checked value -> registers to write (or a bool for a coil), or nil,
-- message, code when it does not fit the register.
local function encode(item, value)
  local p = item.point
  if is_bits[item.kind] then
    return value and true or false
  end
  local kind = point.kind(p)
  local raw = value
  if kind == "bool" then
    raw = value and 1 or 0
  elseif kind == "enum" then
    for i, option in ipairs(p.options) do
      if option == value then raw = p.codes and p.codes[i] or i - 1 end
    end
  elseif kind == "number" or kind == "integer" then
    if p.scale and p.scale ~= 1 then raw = value / p.scale end
    if item.type ~= "float32" and item.type ~= "float64" then
      raw = math.floor(raw + 0.5)
    end
  end
  local nregs = item.type == "string" and item.count or nil
  local regs, err, code = codec.encode(raw, item.type, item.order, nregs)
  if not regs then
    return nil, format("point %s: %s does not fit a %s register: %s", p.name, tostring(value), item.type,
      err), code
  end
  return regs
end

-- }=====

-- {===== the device =====

local Device = base.class("modbus")

-- Mark the reads whose points all lie wholly inside them (read.whole), the
-- ones Device:read decodes in place.
local function mark_whole(reads)
  for _, r in ipairs(reads) do
    local whole, last = true, r.address + r.count - 1
    for _, item in ipairs(r.points) do
      if item.address < r.address or item.address + (item.count or 1) - 1 > last then whole = false end
    end
    r.whole = whole
  end
  return reads
end

local reader = {
  holding = "read_holding", input = "read_input", coil = "read_coils", discrete = "read_discrete",
}

-- The read plan for a subset of points (nil: every point), made once per
-- subset: a site polls points of different intervals in a few recurring
-- combinations.
function Device:_plan(names)
  if names == nil then return self.reads end
  local key = table.concat(names, ",")
  local reads = self.plans[key]
  if reads then return reads end
  local list = {}
  for i, name in ipairs(names) do
    list[i] = self.items[name] or error(format("%s has no point '%s'", self.id, tostring(name)), 3)
  end
  reads = mark_whole(assert(planner.plan(list, {
    max_gap = self.profile.max_gap, max_regs = self.profile.max_regs, avoid = self.profile.avoid,
  })))
  self.plans[key] = reads
  return reads
end

--- dev:read([names]) -> {point = value}: every point, or only those named
--- (an array of point names), in the fewest transactions.
function Device:read(names)
  local values = {}
  for _, r in ipairs(self:_plan(names)) do
    local data, err, code = self.bus[reader[r.kind]](self.bus, self.unit, r.address, r.count)
    self.transactions = self.transactions + 1
    if data then
      -- the registers as read, for a gateway in front of the device (moondog.site.gateway)
      local b = self.blocks[r]
      if not b then
        b = { kind = r.kind, address = r.address, count = r.count }
        self.blocks[r] = b
      end
      b.data, b.time = data, now()
      if type(data) == "table" and #data == r.count and r.whole then
        -- every point lies wholly in the read: decode in place, no slices
        for _, item in ipairs(r.points) do
          values[item.point.name] = decode(item, data, item.address - r.address + 1)
        end
      else
        for item, slice in pairs(planner.split(r, data)) do
          values[item.point.name] = decode(item, slice)
        end
      end
    elseif not not_implemented[code] then
      self._online = false
      return nil, format("%s: %s", self.id, err), code
    end
  end
  self._online = true
  return values
end

function Device:_write(item, value)
  local regs, err, code = encode(item, value)
  if regs == nil then
    return nil, err, code
  end
  self.transactions = self.transactions + 1
  if item.kind == "coil" then
    return self.bus:write_coil(self.unit, item.address, regs)
  elseif #regs == 1 and not item.fc16 then
    return self.bus:write_register(self.unit, item.address, regs[1])
  end
  return self.bus:write_registers(self.unit, item.address, regs)
end

-- Several checked values: every value encoded first (one that does not fit
-- refuses them all), then holding registers that follow each other go out
-- as one function-16 write (at most 123 registers each); coils, and a lone
-- register, are written as _write would.
function Device:_write_many(list)
  local regs_of = {}
  for _, w in ipairs(list) do
    local regs, err, code = encode(w.item, w.value)
    if regs == nil then return nil, err, code end
    regs_of[w] = regs
  end
  local sorted = {}
  for i, w in ipairs(list) do sorted[i] = w end
  table.sort(sorted, function(a, b)
    if a.item.kind ~= b.item.kind then return a.item.kind < b.item.kind end
    return a.item.address < b.item.address
  end)
  local runs = {}
  for _, w in ipairs(sorted) do
    local item, r = w.item, runs[#runs]
    local n = item.kind == "holding" and #regs_of[w] or 0
    if r and item.kind == "holding" and r.kind == "holding" and r.address + #r.regs == item.address
        and #r.regs + n <= 123 then
      table.move(regs_of[w], 1, n, #r.regs + 1, r.regs)
      r.ws[#r.ws + 1] = w
    else
      local regs = regs_of[w]
      if item.kind == "holding" then regs = table.move(regs, 1, n, 1, {}) end
      runs[#runs + 1] = { kind = item.kind, address = item.address, regs = regs, ws = { w } }
    end
  end
  for _, r in ipairs(runs) do
    local ok, err, code
    if #r.ws == 1 then
      ok, err, code = self:_write(r.ws[1].item, r.ws[1].value)
    else
      self.transactions = self.transactions + 1
      ok, err, code = self.bus:write_registers(self.unit, r.address, r.regs)
    end
    if not ok then return nil, err, code end
  end
  return true
end

-- Info sources: a string is the fact itself, a register spec is read.
function Device:_read_info(sources)
  local facts = {}
  for field, spec in pairs(sources) do
    if type(spec) == "string" then
      facts[field] = spec
    else
      local item = source_item(format("profile %s, info.%s", self.profile.name, field), spec)
      local data, err, code = self.bus[reader[item.kind]](self.bus, self.unit, item.address, item.count)
      self.transactions = self.transactions + 1
      if data then
        item.point = { name = field, type = item.type == "string" and "string" or "integer" }
        facts[field] = decode(item, data)
      elseif not not_implemented[code] then
        return nil, format("%s: reading %s: %s", self.id, field, err), code
      end
    end
  end
  return facts
end

function Device:close()
  if self.own_bus and self.bus then
    self.bus:close()
  end
  self.bus = nil
end

-- The checked items, read plan and plan cache of a profile, shared by the
-- devices opened with the same profile table (a site of a thousand meters
-- of one model holds them once, not a thousand times: about 5 KB a
-- device). Reused only while the profile's points are the same tables
-- with the same sources and planner options; a profile changed in place
-- is checked and planned again.
local shared = setmetatable({}, { __mode = "k" })

local function source_key(p)
  local s = p.source
  if type(s) ~= "table" then return nil end
  return format("%s|%s|%s|%s|%s|%s", tostring(s.kind), tostring(s.addr), tostring(s.type),
    tostring(s.order), tostring(s.count), tostring(s.fc16))
end

local function same_profile(c, profile)
  local points = profile.points
  if #points ~= #c.points or profile.max_gap ~= c.max_gap or profile.max_regs ~= c.max_regs
      or profile.avoid ~= c.avoid then
    return false
  end
  for i, p in ipairs(points) do
    if p ~= c.points[i] or p.name ~= c.names[i] or source_key(p) ~= c.sources[i] then return false end
  end
  return true
end

local function checked(profile)
  local c = shared[profile]
  if c and same_profile(c, profile) then return c end
  local items, list = base.points(profile, check_point)
  -- The register specs of profile.info are checked now too, as the points
  -- are: a broken one is an error at open, not at the first describe().
  for field, spec in pairs(type(profile.info) == "table" and profile.info or {}) do
    if type(spec) ~= "string" then
      source_item(format("profile %s, info.%s", profile.name or "?", field), spec)
    end
  end
  local reads, perr = planner.plan(list, {
    max_gap = profile.max_gap, max_regs = profile.max_regs, avoid = profile.avoid,
  })
  if not reads then return nil, perr end
  mark_whole(reads)
  c = { items = items, reads = reads, plans = {}, points = {}, names = {}, sources = {},
        max_gap = profile.max_gap, max_regs = profile.max_regs, avoid = profile.avoid }
  for i, p in ipairs(profile.points) do
    c.points[i], c.names[i], c.sources[i] = p, p.name, source_key(p)
  end
  shared[profile] = c
  return c
end

--- open(profile, target [, opts]) -> device, or nil, message, code
function M.open(profile, target, opts)
  opts = opts or {}
  local c, perr = checked(profile)
  if not c then
    error(format("profile %s: %s", profile.name or "?", perr), 2)
  end
  local items, reads = c.items, c.reads
  local bus, own_bus = target, false
  if type(target) == "string" then
    local err, code
    bus, err, code = modbus.open(target, { timeout = opts.timeout })
    if not bus then return nil, err, code end
    own_bus = true
  elseif type(target) ~= "userdata" then
    error("modbus device: target must be a Modbus address such as 'tcp://host:502?unit=1' or an open bus", 2)
  end
  local id = base.id(profile, opts, "modbus")
  return setmetatable({
    id = id, profile = profile, bus = bus, own_bus = own_bus,
    unit = opts.unit or bus:default_unit(), items = items, reads = reads, plans = c.plans, transactions = 0,
    blocks = {},
    _online = false,
  }, Device)
end

-- }=====

-- {===== checks and probe =====

-- Info fields in a stable order, for messages.
local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

-- profile.probe says how to tell the device from others on the bus: an
-- array of tests that must all hold, each a register spec as `source` and
-- one condition on the value read (after `mask`, a bitwise and, for
-- integer types):
--   equals = v          the value is v (a number, or text for a string source)
--   one_of = {v, ...}   the value is one of these
--   min = a, max = b    the value lies in a..b (either may be left out)
--   match = "^MIN"      a string source matches this Lua pattern

local probe_conditions = { "equals", "one_of", "min", "max", "match" }

-- Raise unless probe test i is well formed; returns its planner item.
local function check_probe_test(profile, i, test)
  local where = format("profile %s, probe[%d]", profile.name or "?", i)
  if type(test) ~= "table" then
    error(format("%s: a probe test is a table {source = {...}, equals = ...}", where), 0)
  end
  local item = source_item(where, test.source)
  local n = 0
  for _, c in ipairs(probe_conditions) do
    if test[c] ~= nil then n = n + 1 end
  end
  if n == 0 then
    error(format("%s: needs a condition: equals, one_of, min/max or match", where), 0)
  end
  if test.one_of ~= nil and (type(test.one_of) ~= "table" or #test.one_of == 0) then
    error(format("%s: one_of must be a list of values", where), 0)
  end
  for _, c in ipairs { "min", "max", "mask" } do
    if test[c] ~= nil and type(test[c]) ~= "number" then
      error(format("%s: %s must be a number", where, c), 0)
    end
  end
  if test.match ~= nil and (item.type ~= "string" or type(test.match) ~= "string") then
    error(format("%s: match takes a Lua pattern and a string source", where), 0)
  end
  local integer_source = item.type ~= "string" and item.type ~= "bool" and not item.type:find("float")
  if test.mask ~= nil and (math.type(test.mask) ~= "integer" or not integer_source) then
    error(format("%s: mask takes an integer and an integer source", where), 0)
  end
  return item
end

-- Whether a value read passes a probe test.
local function probe_passes(test, v)
  if test.mask and math.type(v) == "integer" then v = v & test.mask end
  if test.equals ~= nil and v ~= test.equals then return false end
  if test.one_of ~= nil then
    local found = false
    for _, x in ipairs(test.one_of) do found = found or x == v end
    if not found then return false end
  end
  if (test.min ~= nil or test.max ~= nil) and (type(v) ~= "number" or v ~= v) then return false end
  if test.min ~= nil and v < test.min then return false end
  if test.max ~= nil and v > test.max then return false end
  if test.match ~= nil and not tostring(v):find(test.match) then return false end
  return true
end

--- identify(profile, bus [, unit]) -> true when the device at unit answers
--- every test of profile.probe; false and why not (a test that fails or a
--- register the device does not have); nil, message, code when the bus
--- fails (timeout, ...). Raises on a profile without a probe.
function M.identify(profile, bus, unit)
  profile = require("moondog.devices").load(profile)
  if type(profile.probe) ~= "table" or #profile.probe == 0 then
    error(format("profile %s has no probe", profile.name or "?"), 2)
  end
  unit = unit or bus:default_unit()
  for i, test in ipairs(profile.probe) do
    local item = check_probe_test(profile, i, test)
    local data, err, code = bus[reader[item.kind]](bus, unit, item.address, item.count)
    if not data then
      if not_implemented[code] then
        return false, format("probe[%d]: %s %d: %s", i, item.kind, item.address, err)
      end
      return nil, err, code
    end
    local v
    if item.type == "bool" then
      v = data[1] and true or false
    else
      v = codec.decode(data, item.type, item.order, 1, item.type == "string" and item.count or nil)
      if item.type == "float32" then v = significant(v, 7) end
    end
    if not probe_passes(test, v) then
      return false, format("probe[%d]: %s %d reads %s", i, item.kind, item.address, tostring(v))
    end
  end
  return true
end

--- check(profile) -> mistakes, items: what open() checks (every point, the
--- read plan), the register specs of profile.info and the tests of
--- profile.probe, with every mistake collected as a message instead of
--- raising at the first.
function M.check(profile)
  local mistakes, list = base.check(profile, check_point)
  if #mistakes == 0 then
    local reads, err = planner.plan(list, {
      max_gap = profile.max_gap, max_regs = profile.max_regs, avoid = profile.avoid,
    })
    if not reads then mistakes[#mistakes + 1] = format("profile %s: %s", profile.name or "?", err) end
  end
  if profile.probe ~= nil then
    if type(profile.probe) ~= "table" or #profile.probe == 0 then
      mistakes[#mistakes + 1] = format("profile %s: probe must be a list of tests {source =, equals = ...}",
        profile.name or "?")
    else
      for i, test in ipairs(profile.probe) do
        local ok, err = pcall(check_probe_test, profile, i, test)
        if not ok then mistakes[#mistakes + 1] = tostring(err) end
      end
    end
  end
  local info = type(profile.info) == "table" and profile.info or {}
  for _, field in ipairs(sorted_keys(info)) do
    if type(info[field]) ~= "string" then
      local where = format("profile %s, info.%s", profile.name or "?", field)
      local ok, err = pcall(source_item, where, info[field])
      if not ok then mistakes[#mistakes + 1] = tostring(err) end
    end
  end
  return mistakes, list
end

-- }=====

-- {===== simulator =====

local Sim = {}
Sim.__index = Sim

--- sim:set(name, value) puts a point's value into the served registers.
function Sim:set(name, value)
  local item = self.items[name] or error("simulate: no point " .. tostring(name), 2)
  local regs = is_bits[item.kind] and { value and true or false } or assert(encode(item, value))
  self.server:set(self.unit, item.kind, item.address, regs)
end

--- sim:get(name) -> the value the registers hold now (after writes from clients).
function Sim:get(name)
  local item = self.items[name] or error("simulate: no point " .. tostring(name), 2)
  return decode(item, self.server:get(self.unit, item.kind, item.address, item.count))
end

function Sim:url() return self.server:url() end
function Sim:port() return self.server:port() end
function Sim:close() self.server:close() end
Sim.__close = Sim.close

--- simulator(profile, server [, unit [, opts]]) -> simulator: the profile's
--- points on a server already running (md.modbus.serve); unit nil: the map
--- every unit shares. opts.values and opts.info as for simulate.
-- A value that passes probe test `test`, or nil (a string pattern: none
-- can be made up): a simulator answers its own profile's probe.
local function probe_value(test, item)
  local v = test.equals
  if v == nil and test.one_of then v = test.one_of[1] end
  if v == nil and (test.min or test.max) then
    v = test.min and test.max and (test.min + test.max) / 2 or test.min or test.max
    if not item.type:find("float") then v = math.floor(v) end
  end
  return v
end

local function simulate_probe(profile, server, unit)
  for i, test in ipairs(profile.probe or {}) do
    local item = check_probe_test(profile, i, test)
    local v = probe_value(test, item)
    local regs = v ~= nil and item.kind ~= "coil" and item.kind ~= "discrete"
      and codec.encode(v, item.type, item.order)
    if regs then server:set(unit, item.kind, item.address, regs) end
  end
end

function M.simulator(profile, server, unit, opts)
  opts = opts or {}
  profile = require("moondog.devices").load(profile)
  local items = base.points(profile, check_point)
  local sim = setmetatable({ server = server, unit = unit, items = items, profile = profile }, Sim)
  -- before the values: a value a test or script sets wins over the probe's
  simulate_probe(profile, server, unit)
  for name, value in pairs(opts.values or {}) do
    sim:set(name, value)
  end
  for field, value in pairs(opts.info or {}) do
    local spec = (profile.info or {})[field]
    if type(spec) == "table" then
      local item = source_item("simulate info." .. field, spec)
      server:set(unit, item.kind, item.address, assert(codec.encode(value, item.type, item.order,
        item.type == "string" and item.count or nil)))
    end
  end
  return sim
end

--- simulate(profile, url [, opts]) -> simulator, or nil, message, code.
--- Serves the profile's points (and values that pass its probe, so that
--- moondog probe and a site's "auto" identify it) on url ("tcp://127.0.0.1:0" picks a port)
--- with opts.values = {point = value} and opts.info = {serial = "..."}
--- (for info fields the profile reads from registers); opts.unit (1),
--- opts.on_write / opts.on_read / opts.device_id as for md.modbus.serve.
function M.simulate(profile, url, opts)
  opts = opts or {}
  profile = require("moondog.devices").load(profile)
  local unit = opts.unit or 1
  local server, err, code = modbus.serve(url, {
    units = { unit }, on_write = opts.on_write, on_read = opts.on_read, device_id = opts.device_id,
  })
  if not server then return nil, err, code end
  return M.simulator(profile, server, unit, opts)
end

-- }=====

return M
