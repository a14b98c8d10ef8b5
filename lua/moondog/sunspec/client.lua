-- moondog.sunspec.client: a SunSpec device seen from Lua (md.sunspec.open).
--
--   local dev = assert(md.sunspec.open("tcp://192.168.1.50:502?unit=1"))
--   dev[103].W, dev.inverter.W, dev.common.SN    -- values as of the last read
--   dev[160].module[2].DCW                       -- repeating groups are arrays
--   assert(dev:read())                           -- everything, in few requests
--   assert(dev.inverter:read())                  -- one model (also dev:read(103))
--   dev.controls:write{ WMaxLimPct = 50, WMaxLim_Ena = "ENABLED" }
--
-- Discovery (moondog.sunspec.discover) finds the map; its bytes are also
-- the first full read, so a device is ready with every value after open.
-- Models are reached by id (dev[103], the first model 103), by name
-- (dev.inverter_three_phase, dev.DERMeasureAC), by short name (see
-- `aliases`) or in order (dev.models, dev:models_by_id(160) for repeated
-- ones). Values: scale factors applied, nil when the device does not
-- implement the point, enums as symbol names, bitfields as lists of the
-- names of the bits set (which also answer flags.NAME == true).
--
-- Reading: moondog.sunspec.plan turns the points into the fewest reads of
-- at most 125 registers, across model boundaries, with every value and its
-- scale factor in the same read; scale factors are read every time,
-- never cached. Points the definitions mark static (names, serial
-- numbers, ratings) are read at discovery and again only with
-- dev:read{static = true}; so is the common model (1), which describes
-- the device, when dev:read() reads everything (dev:read(1) reads it).
-- Plans are cached per set of models. A device
-- that answers a read spanning two models with an exception is read again
-- one model at a time, and from then on always so.
--
-- Writing: values are checked (access, type, range, symbols) before
-- anything is sent; a point with a scale factor has its factor read fresh
-- first; contiguous points go out in one write (function 16), and so do
-- points with only RW registers between them (the gaps are read first and
-- written back unchanged: model 123's limit, revert time and enable flag
-- are one write); with {verify = true} the registers are read back and
-- compared.
--
-- Errors: misuse (unknown point, wrong argument) raises; the device or the
-- value returns nil, message, code: codes of moondog.modbus, and
-- "not_sunspec", "read_only", "range", "type", "no_scale_factor", "verify".

local modbus = require "moondog.modbus"
local mbcodec = require "moondog.modbus.codec"
local codec = require "moondog.sunspec.codec"
local discover = require "moondog.sunspec.discover"
local layout = require "moondog.sunspec.layout"
local plan = require "moondog.sunspec.plan"
local log = require "moondog.log"

local M = {}

local format = string.format

-- Short names for the models most scripts want, tried in this order.
M.aliases = {
  common = { 1 },
  inverter = { 103, 113, 102, 112, 101, 111 },
  nameplate = { 120 }, settings = { 121 }, status = { 122 }, controls = { 123 },
  storage = { 124 }, mppt = { 160 },
  meter = { 203, 213, 204, 214, 202, 212, 201, 211 },
  der_measure_ac = { 701 }, der_capacity = { 702 }, der_enter_service = { 703 },
  der_control_ac = { 704 }, der_storage = { 713 }, der_measure_dc = { 714 }, der_control = { 715 },
  battery = { 802 },
}

local Device = {}
local Model = {}

-- {===== models =====

Model.__index = function(m, k)
  local f = Model[k]
  if f ~= nil then return f end
  return rawget(m, "values")[k]
end

local function method_names(class, into)
  for k, v in pairs(class) do
    if type(v) == "function" and not k:match("^__") then into[#into + 1] = k end
  end
  return into
end

-- For the REPL's completion: points and groups, then the methods.
function Model.__complete(m)
  local names = {}
  local tree = m:tree()
  for _, pt in ipairs(tree and tree.points or {}) do names[#names + 1] = pt.name end
  for _, g in ipairs(tree and tree.groups or {}) do names[#names + 1] = g.name end
  return method_names(Model, names)
end

function Model.__tostring(m)
  return format("SunSpec model %d (%s) at %d, L = %d", m.id, m.name, m.address, m.length)
end

-- Registers of a model without a usable definition, one slot per
-- register (copied as they are, never decoded).
local function raw_slots(m)
  local slots, regs = {}, {}
  for i = 1, m.length do
    slots[i] = { addr = m.address + 1 + i, size = 1, type = "raw16", raw = true, values = regs,
                 key = i, path = format("[%d]", i) }
  end
  m.registers = regs
  return slots
end

local function new_model(dev, e)
  local m = setmetatable({
    id = e.id, name = e.def and e.def.name or format("model_%d", e.id), address = e.addr,
    length = e.len, device = dev, def = e.inst and e.def or nil, _inst = e.inst,
    raw = e.inst == nil, why = e.why,
  }, Model)
  if e.inst then
    m.values = e.inst.values
    m._slots = e.inst.slots
  else
    m.values = {}
    m._slots = raw_slots(m)
  end
  return m
end

--- m:read([opts]) -> m, or nil, message, code (see Device:read).
function Model:read(opts)
  local ok, err, code = self.device:read(self, opts)
  if not ok then return nil, err, code end
  return self
end

local function point_slot(m, path, level)
  if type(path) ~= "string" then
    error(format("model %d: point names are strings such as 'W' or 'module[2].DCW', got %s",
      m.id, type(path)), level + 1)
  end
  local s = m._inst and layout.find(m._inst, path)
  if not s then
    error(format("model %d (%s) has no point '%s'%s", m.id, m.name, path,
      m.raw and " (the model is kept raw: " .. tostring(m.why) .. ")" or ""), level + 1)
  end
  return s
end

--- m:info(path) -> the point's definition {name, type, size, units, sf,
--- access, mandatory, static, symbols, ...}; "module.DCW" or
--- "module[1].DCW" for a point of a repeating group.
function Model:info(path)
  local p = self.def and layout.point_def(self.def, (path:gsub("%[%d+%]", "")))
  if not p then point_slot(self, path, 2) end
  return p
end

--- m:units(path) -> "W", "V", ... or nil.
function Model:units(path)
  return self:info(path).units
end

--- m:paths() -> every point path of this model instance in register order
--- ("ID", "L", ..., "module[3].DCEvt").
function Model:paths()
  local list = {}
  for i, s in ipairs(self._slots) do list[i] = s.path end
  return list
end

-- One group instance as a tree (see Model:tree).
local function subtree(ginst)
  local t = { points = {}, groups = {} }
  for _, p in ipairs(ginst.def.points) do
    local s = ginst.slots[p.name]
    t.points[#t.points + 1] = { name = p.name, path = s.path, value = s.values[s.key],
                                units = p.units, point = p }
  end
  for _, g in ipairs(ginst.def.groups) do
    local list = {}
    for i, child in ipairs(ginst.groups[g.name] or {}) do list[i] = subtree(child) end
    t.groups[#t.groups + 1] = { name = g.name, instances = list }
  end
  return t
end

--- m:tree() -> {points = {{name, path, value, units, point}, ...},
--- groups = {{name, instances = {tree, ...}}, ...}}: the values as last
--- read, in register order, for printing; nil for a raw model.
function Model:tree()
  return self._inst and subtree(self._inst.root)
end

--- m:has(path) -> true when this model instance has the point ("W",
--- "module[2].DCW"): false for a group instance the device lacks, or a
--- model kept raw. m:get and m:info raise where this is false.
function Model:has(path)
  return type(path) == "string" and self._inst ~= nil and layout.find(self._inst, path) ~= nil
end

--- m:get(path) -> value of "W" or "module[2].DCW" as last read.
function Model:get(path)
  local s = point_slot(self, path, 2)
  return s.values[s.key]
end

-- }=====

-- {===== the device =====

Device.__index = function(dev, k)
  local f = Device[k]
  if f ~= nil then return f end
  return dev:model(k)
end

-- For the REPL's completion: the methods (models are fields).
function Device.__complete()
  return method_names(Device, {})
end

function Device.__tostring(dev)
  return format("SunSpec device %s, base %d, %d model(s)", dev.where, dev.base, #dev.models)
end

--- dev:model(key) -> model or nil: key an id (first of that id), a model
--- name, a short name (M.aliases) or a model object.
function Device:model(key)
  if getmetatable(key) == Model then return key end
  local list = rawget(self, "_by_id")[key]
  if list then return list[1] end
  if type(key) ~= "string" then return nil end
  local m = rawget(self, "_by_name")[key]
  if m then return m end
  for _, id in ipairs(M.aliases[key] or {}) do
    if self._by_id[id] then return self._by_id[id][1] end
  end
end

--- dev:models_by_id(id) -> list of the models with that id, in map order.
function Device:models_by_id(id)
  return table.move(self._by_id[id] or {}, 1, #(self._by_id[id] or {}), 1, {})
end

-- Model names in snake_case too: DERMeasureAC -> der_measure_ac.
local function snake(name)
  return (name:gsub("(%u+)(%u%l)", "%1_%2"):gsub("(%l)(%u)", "%1_%2"):lower())
end

-- Models by id and name, also as fields of the device itself (dev[103],
-- dev.inverter), so that the REPL can complete and show them.
local function index_models(dev)
  dev._by_id, dev._by_name = {}, {}
  for _, m in ipairs(dev.models) do
    local list = dev._by_id[m.id] or {}
    list[#list + 1] = m
    dev._by_id[m.id] = list
    for _, name in ipairs({ m.name, snake(m.name) }) do
      if dev._by_name[name] == nil then dev._by_name[name] = m end
    end
  end
  for id, list in pairs(dev._by_id) do dev[id] = list[1] end
  for name in pairs(M.aliases) do dev[name] = dev:model(name) end
  for name, m in pairs(dev._by_name) do
    if rawget(dev, name) == nil and Device[name] == nil then dev[name] = m end
  end
end

--- dev:close(): closes the bus when open() opened it.
function Device:close()
  local bus = rawget(self, "_own_bus")
  if bus then
    self._own_bus = nil
    bus:close()
  end
end

Device.__close = Device.close

-- }=====

-- {===== reading =====

local function is_exception(code)
  return code ~= nil and mbcodec.exceptions[code] ~= nil
end

-- The models a read spans, as "103 and 120".
local function models_in(dev, addr, count)
  local ids = {}
  for _, m in ipairs(dev.models) do
    if m.address < addr + count and m.address + m.length + 2 > addr then
      ids[#ids + 1] = format("%d at %d", m.id, m.address)
    end
  end
  return ids
end

local function store(r, bytes)
  local values = codec.decode(r.layout, bytes, r.addr)
  for j, s in ipairs(r.points) do
    local v = values[j]
    local conv = s.convert
    if v ~= nil and conv then v = conv(v) end
    s.values[s.key] = v
  end
  for _, s in ipairs(r.raw) do
    s.values[s.key] = string.unpack(">I2", bytes, 2 * (s.addr - r.addr) + 1)
  end
end

-- Points decoded unscaled because their scale factor is more than one
-- read away: scaled with the factor read in this same poll.
local function scale_post(p)
  for _, s in ipairs(p.post) do
    local v, sf = s.values[s.key], s.sf.values[s.sf.key]
    if v == nil or sf == nil then
      s.values[s.key] = nil
    elseif sf ~= 0 then
      s.values[s.key] = sf < 0 and v / 10.0 ^ -sf or v * 10.0 ^ sf
    end
  end
end

-- The slots of model m a poll reads: every point the definition does not
-- call static, every scale factor (never cached) and, with static, all.
local function poll_slots(m, static, out)
  for _, s in ipairs(m._slots) do
    if static or s.raw or not s.point.static or s.type == "sunssf" then
      out[#out + 1] = s
    end
  end
end

local function regions(dev)
  if not dev.no_cross_model then return nil end
  local list = {}
  for i, m in ipairs(dev.models) do list[i] = { lo = m.address, hi = m.address + m.length + 2 } end
  return list
end

-- The plan reading the models of list; `all` (every model, as a poll)
-- leaves out the common model unless static.
local function plan_for(dev, list, static, all)
  local keys = {}
  for i, m in ipairs(list) do keys[i] = m.address end
  local key = (all and "all:" or "") .. table.concat(keys, ",") .. (static and "+static" or "")
  local p = dev._plans[key]
  if not p then
    local slots = {}
    for _, m in ipairs(list) do
      if static or not (all and m.id == 1) then poll_slots(m, static, slots) end
    end
    table.sort(slots, function(a, b) return a.addr < b.addr end)
    p = plan.make(slots, { max = dev.max_regs, regions = regions(dev) })
    dev._plans[key] = p
  end
  return p
end

local function read_label(dev, r)
  return format("registers %d..%d (model %s)", r.addr, r.addr + r.count - 1,
    table.concat(models_in(dev, r.addr, r.count), ", "))
end

-- Run a plan; `bytes_of(r)` may supply bytes already at hand (discovery).
local function execute(dev, p, bytes_of)
  for _, r in ipairs(p.reads) do
    local bytes = bytes_of and bytes_of(r)
    local err, code
    if not bytes then
      bytes, err, code = dev._read(r.addr, r.count)
      dev.transactions = (dev.transactions or 0) + 1
    end
    if not bytes then
      return nil, format("sunspec %s: reading %s failed: %s", dev.where, read_label(dev, r), err),
        code, r
    end
    store(r, bytes)
  end
  scale_post(p)
  return true
end

-- The models named by dev:read's arguments (all when none).
local function models_of(dev, args)
  if #args == 0 then return dev.models end
  local list, seen = {}, {}
  for _, key in ipairs(args) do
    local m = dev:model(key)
    if not m then
      error(format("sunspec: this device has no model %s (it has %s)", tostring(key),
        dev:summary()), 3)
    end
    if not seen[m] then
      seen[m] = true
      list[#list + 1] = m
    end
  end
  table.sort(list, function(a, b) return a.address < b.address end)
  return list
end

--- dev:read([model...] [, opts]) -> dev, or nil, message, code.
--- Models by id, name or object; none: every model. Static points (and
--- the whole common model 1, which only describes the device) were read at
--- discovery and are read again only with opts.static = true.
function Device:read(...)
  local args = table.pack(...)
  local opts = {}
  if type(args[args.n]) == "table" and getmetatable(args[args.n]) ~= Model then
    opts = args[args.n]
    args.n = args.n - 1
  end
  local list = models_of(self, table.move(args, 1, args.n, 1, {}))
  local all = args.n == 0
  local p = plan_for(self, list, opts.static, all)
  local ok, err, code, r = execute(self, p)
  if not ok and is_exception(code) and not self.no_cross_model and #models_in(self, r.addr, r.count) > 1 then
    self.no_cross_model = true
    self._plans = {}
    log.warn("sunspec %s: the device refused a read across models (%s: %s); reading one "
      .. "model at a time from now on", self.where, read_label(self, r), code)
    ok, err, code = execute(self, plan_for(self, list, opts.static, all))
  end
  if not ok then return nil, err, code end
  return self
end

--- dev:summary() -> "1, 103, 160 (x2), 64999 (raw)": the model list in one line.
function Device:summary()
  local parts = {}
  for _, m in ipairs(self.models) do
    parts[#parts + 1] = tostring(m.id) .. (m.raw and " (raw)" or "")
  end
  return #parts > 0 and table.concat(parts, ", ") or "no models"
end

--- dev:plan_stats([opts]) -> transactions, registers of one dev:read(opts).
function Device:plan_stats(opts)
  return plan.count(plan_for(self, self.models, opts and opts.static, true))
end

-- }=====

-- {===== writing =====

local function check_writable(m, s)
  if s.point.access ~= "RW" then
    return nil, format("sunspec %s: %s of model %d (%s) is read-only; nothing was written",
      m.device.where, s.path, m.id, m.name), "read_only"
  end
  return true
end

-- The write request as a list of items {slot, input, bytes}, sorted by
-- address, checked as far as possible without the device.
local function collect(m, values)
  local items = {}
  for path, v in pairs(values) do
    local s = point_slot(m, path, 4)
    local ok, err, code = check_writable(m, s)
    if not ok then return nil, err, code end
    local input, ierr, icode = layout.input(s, v)
    if input == nil then
      return nil, format("sunspec %s: cannot write model %d: %s", m.device.where, m.id, ierr), icode
    end
    -- With the scale factor still to read, refuse what no factor can carry.
    local bytes, berr, bcode
    if s.sf then
      bytes = codec.encode(s.type, s.size, input, -10)
      if not bytes then bytes, berr, bcode = codec.encode(s.type, s.size, input, 10) end
    else
      bytes, berr, bcode = codec.encode(s.type, s.size, input, s.sf_const)
    end
    if not bytes then
      return nil, format("sunspec %s: cannot write %s = %s to model %d: %s", m.device.where,
        s.path, tostring(v), m.id, berr), bcode
    end
    items[#items + 1] = { slot = s, input = input, shown = v }
  end
  table.sort(items, function(a, b) return a.slot.addr < b.slot.addr end)
  return items
end

-- Read the scale factors the items need, all in one plan, fresh.
local function read_scale_factors(m, items)
  local seen, slots = {}, {}
  for _, it in ipairs(items) do
    local sf = it.slot.sf
    if sf and not seen[sf] then
      seen[sf] = true
      slots[#slots + 1] = sf
    end
  end
  if #slots == 0 then return true end
  table.sort(slots, function(a, b) return a.addr < b.addr end)
  return execute(m.device, plan.make(slots, { max = m.device.max_regs }))
end

local function encode_items(m, items)
  for _, it in ipairs(items) do
    local s = it.slot
    local sf = s.sf_const
    if s.sf then
      sf = s.sf.values[s.sf.key]
      if sf == nil then
        return nil, format("sunspec %s: cannot write %s of model %d: its scale factor %s is not "
          .. "implemented by the device", m.device.where, s.path, m.id, s.sf.path), "no_scale_factor"
      end
    end
    local bytes, err, code = codec.encode(s.type, s.size, it.input, sf)
    if not bytes then
      return nil, format("sunspec %s: cannot write %s = %s to model %d: %s", m.device.where,
        s.path, tostring(it.shown), m.id, err), code
    end
    it.bytes, it.sf = bytes, sf
  end
  return true
end

-- Contiguous items, at most 123 registers (the FC16 limit) each run.
local function runs(items)
  local list = {}
  for _, it in ipairs(items) do
    local r = list[#list]
    local s = it.slot
    if r and r.addr + r.count == s.addr and r.count + s.size <= 123 then
      r.count = r.count + s.size
      r.items[#r.items + 1] = it
    else
      list[#list + 1] = { addr = s.addr, count = s.size, items = { it } }
    end
  end
  for _, r in ipairs(list) do
    local parts = {}
    for i, it in ipairs(r.items) do parts[i] = it.bytes end
    r.bytes = table.concat(parts)
  end
  return list
end

-- Exceptions that mean the device would not take the bridged write.
local refused = { illegal_data_address = true, illegal_data_value = true, illegal_function = true }

-- One run for a write whose runs have gaps (model 123: WMaxLimPct at 5,
-- WMaxLimPct_RvrtTms at 7 and WMaxLim_Ena at 9, with WinTms and RmpTms in
-- between), when every register of every gap belongs to a point the
-- definition marks RW: the span is read just before and the gaps go back
-- with the values they hold, so that a limit, its revert time and its
-- enable flag reach the device in one function-16 write, not three (the
-- device applies them together). nil when a gap cannot be bridged (a
-- read-only or unlisted register, more than 123 registers) or the read
-- fails; the caller then writes the runs one by one.
local function bridge(m, list)
  if #list < 2 then return nil end
  local first, last = list[1], list[#list]
  local span = last.addr + last.count - first.addr
  if span > 123 then return nil end
  local rw = {}
  for _, sl in ipairs(m._slots) do
    if sl.point and sl.point.access == "RW" and sl.addr >= first.addr and sl.addr < first.addr + span then
      for a = sl.addr, sl.addr + sl.size - 1 do rw[a] = true end
    end
  end
  for i = 2, #list do
    for a = list[i - 1].addr + list[i - 1].count, list[i].addr - 1 do
      if not rw[a] then return nil end
    end
  end
  local bytes = m.device._read(first.addr, span)
  if not bytes or #bytes ~= 2 * span then return nil end
  local merged = { addr = first.addr, count = span, items = {}, bridged = true }
  for _, r in ipairs(list) do
    local off = 2 * (r.addr - first.addr)
    bytes = bytes:sub(1, off) .. r.bytes .. bytes:sub(off + #r.bytes + 1)
    table.move(r.items, 1, #r.items, #merged.items + 1, merged.items)
  end
  merged.bytes = bytes
  return merged
end

local function names_of(r)
  local names = {}
  for i, it in ipairs(r.items) do names[i] = it.slot.path end
  return table.concat(names, ", ")
end

-- Read every run back and compare with what was written.
local function verify(m, list)
  local dev = m.device
  for _, r in ipairs(list) do
    local back, err, code = dev._read(r.addr, r.count)
    if not back then
      return nil, format("sunspec %s: wrote %s of model %d, but reading it back failed: %s",
        dev.where, names_of(r), m.id, err), code
    end
    if back ~= r.bytes then
      for _, it in ipairs(r.items) do
        local off = 2 * (it.slot.addr - r.addr)
        local got = back:sub(off + 1, off + #it.bytes)
        if got ~= it.bytes then
          return nil, format("sunspec %s: wrote %s = %s to model %d at %d, but it reads back "
            .. "as 0x%s instead of 0x%s: the device did not take the value (check its limits "
            .. "and whether it is in a mode that accepts remote control)", dev.where,
            it.slot.path, tostring(it.shown), m.id, it.slot.addr,
            (got:gsub(".", function(c) return format("%02X", c:byte()) end)),
            (it.bytes:gsub(".", function(c) return format("%02X", c:byte()) end))), "verify"
        end
      end
    end
  end
  return true
end

-- What a read of the written registers will show, without reading.
local function remember_written(items)
  for _, it in ipairs(items) do
    local s = it.slot
    local one = codec.compile({ { type = s.type, size = s.size, offset = 0, sf = it.sf } })
    local v = codec.decode(one, it.bytes, 0)[1]
    if v ~= nil and s.convert then v = s.convert(v) end
    s.values[s.key] = v
  end
end

--- m:write{Point = value, ...} [, opts] or m:write("Point", value [, opts])
--- -> true, or nil, message, code. opts.verify = true reads back.
function Model:write(a, b, c)
  local values, opts
  if type(a) == "table" then
    values, opts = a, b
  elseif type(a) == "string" then
    values, opts = { [a] = b }, c
  else
    error("model:write: expected a table {Point = value} or a point name and a value", 2)
  end
  if self.raw then
    error(format("model %d at %d has no usable definition (%s): write its registers with "
      .. "md.modbus", self.id, self.address, tostring(self.why)), 2)
  end
  opts = opts or {}
  local items, err, code = collect(self, values)
  if not items then return nil, err, code end
  if #items == 0 then return true end
  local ok
  ok, err, code = read_scale_factors(self, items)
  if not ok then return nil, err, code end
  ok, err, code = encode_items(self, items)
  if not ok then return nil, err, code end
  local dev = self.device
  local list = runs(items)
  local merged = bridge(self, list)
  if merged then
    ok, err, code = dev._write(merged.addr, layout.to_registers(merged.bytes))
    if ok then
      list = { merged }
    elseif not refused[code] then
      return nil, format("sunspec %s: writing %s of model %d (registers %d..%d) failed: %s",
        dev.where, names_of(merged), self.id, merged.addr, merged.addr + merged.count - 1, err), code
    end -- refused: the runs alone, below
  end
  for _, r in ipairs(list) do
    if r.bridged then break end
    ok, err, code = dev._write(r.addr, layout.to_registers(r.bytes))
    if not ok then
      return nil, format("sunspec %s: writing %s of model %d (registers %d..%d) failed: %s",
        dev.where, names_of(r), self.id, r.addr, r.addr + r.count - 1, err), code
    end
  end
  remember_written(items)
  if opts.verify then return verify(self, list) end
  return true
end

-- }=====

-- {===== opening =====

local function is_bus(x)
  return type(x) == "userdata" and type(x.read_holding) == "function"
end

-- The bus and unit id for a target (URL, bus, or unit handle).
local function connect(target, opts)
  if type(target) == "string" then
    local bus, err, code = modbus.open(target, { timeout = opts.timeout })
    if not bus then return nil, err, code end
    return bus, opts.unit or bus:default_unit(), true
  elseif type(target) == "table" and is_bus(target.bus) and math.type(target.id) == "integer" then
    return target.bus, opts.unit or target.id, false
  elseif is_bus(target) then
    return target, opts.unit or target:default_unit(), false
  end
  error("sunspec.open: expected a Modbus URL such as 'tcp://192.168.1.50:502', a bus from "
    .. "md.modbus.open or a unit from bus:unit(n), got " .. type(target), 3)
end

local function check_opts(opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error("sunspec.open: opts must be a table", 3) end
  local base = opts.base
  if base ~= nil and (math.type(base) ~= "integer" or base < 0 or base > 65533) then
    error("sunspec.open: opts.base must be a register address 0..65533, got " .. tostring(base), 3)
  end
  local unit = opts.unit
  if unit ~= nil and (math.type(unit) ~= "integer" or unit < 0 or unit > 255) then
    error("sunspec.open: opts.unit must be a unit id 0..255, got " .. tostring(unit), 3)
  end
  local max = opts.max_regs
  if max ~= nil and (math.type(max) ~= "integer" or max < 4 or max > 125) then
    error("sunspec.open: opts.max_regs must be an integer 4..125", 3)
  end
  return opts
end

--- sunspec.open(target [, opts]) -> device, or nil, message, code.
--- target: a Modbus URL, a bus (md.modbus.open) or a unit (bus:unit(n)).
--- opts.unit, opts.base (try only this base address), opts.timeout
--- (seconds per request), opts.max_regs (registers per read, default 125,
--- for devices that refuse long reads).
function M.open(target, opts)
  opts = check_opts(opts)
  local bus, unit, own = connect(target, opts)
  if not bus then return nil, unit, own end
  local where = format("%s unit %d", bus:url(), unit)
  local ropts = { raw = true, timeout = opts.timeout }
  local wopts = { timeout = opts.timeout }
  local counters = { reads = 0, registers = 0 } -- what this device moved, for benchmarks
  local function read(addr, count)
    counters.reads = counters.reads + 1
    local bytes, err, code = bus:read_holding(unit, addr, count, ropts)
    if bytes then counters.registers = counters.registers + count end
    return bytes, err, code
  end
  local found, err, code = discover.run(read, {
    bases = opts.base and { opts.base }, max = opts.max_regs, where = where,
  })
  if not found then
    if own then bus:close() end
    return nil, err, code
  end
  local dev = setmetatable({
    bus = bus, unit = unit, where = where, base = found.base, models = {},
    warnings = found.warnings, no_cross_model = found.no_cross_model or false,
    truncated = found.truncated or false, max_regs = opts.max_regs or plan.MAX, counters = counters,
    _own_bus = own and bus or nil, _plans = {}, _read = read,
    _write = function(addr, regs) return bus:write_registers(unit, addr, regs, wopts) end,
  }, Device)
  for i, e in ipairs(found.models) do dev.models[i] = new_model(dev, e) end
  index_models(dev)
  -- The first full read: the bytes discovery read, cut where no value tears.
  local slots, at = {}, {}
  for _, m in ipairs(dev.models) do table.move(m._slots, 1, #m._slots, #slots + 1, slots) end
  table.sort(slots, function(a, b) return a.addr < b.addr end)
  local ranges = {}
  for i, b in ipairs(found.blocks) do
    ranges[i] = { addr = b.addr, count = #b.bytes // 2 }
    at[b.addr] = b.bytes
  end
  local first = plan.assign(ranges, slots, dev.max_regs)
  local ok, rerr, rcode = execute(dev, first, function(r) return not r.extra and at[r.addr] end)
  if ok and #first.orphans > 0 then -- points discovery had to cut: read them whole
    ok, rerr, rcode = execute(dev, plan.make(first.orphans, { max = dev.max_regs }))
  end
  if not ok then
    dev:close()
    return nil, rerr, rcode
  end
  return dev
end

-- }=====

M.Device, M.Model = Device, Model

return M
