-- moondog.sunspec.server: a simulated SunSpec device, served by the
-- Modbus server (md.modbus.serve). Also md.sunspec.serve.
--
--   local srv = assert(md.sunspec.serve("tcp://127.0.0.1:0", {
--     models = { 1, 103, 120, 121, 122, 123, { id = 160, count = 3 }, 203 },
--     values = { [1] = { SN = "INV-42" }, [103] = { W = 2500, Hz = 50.02 },
--                [160] = { module = { { DCW = 1200 }, { DCW = 1300 } } } },
--   }))
--   srv:set(103, "W", 1234.5)              -- scaled with the W_SF in the image
--   srv:get(160, "module[2].DCW")          --> 1300
--   srv:on_write(function(model, path, value, srv) ... end)
--   srv:simulate_inverter{ power = 5000 }  -- W follows the power limit a client writes
--   srv:url(), srv:stats(), srv:close()
--
-- Options:
--   models     list of model ids or names, or tables {id =, count = n (instances
--              of the repeating group), counts = {group = n}, L = length (a
--              length the definition contradicts is served raw: tests),
--              values = {...}, raw = {Point = raw integer or text, group =
--              {{...}}} (unscaled, as in pysunspec2 device images; cjson.null
--              or a missing key: not implemented), registers = {...} (the body
--              of a model served raw, e.g. one moondog has no definition for)}
--   values     {[id or name] = {Point = value, group = {{Point = value}, ...},
--              ["group[2].Point"] = value}}: scaled values for the first model
--              of that id; enums take symbol names, bitfields lists of names
--   image      {address = 40000, registers = {...}}: serve these registers
--              as they are instead (device images); srv:set/get then raise
--   base       40000 (default), 0 or 50000
--   unit       serve only this unit id (default: every id)
--   strict     true (default): reads past the map answer "illegal data
--              address", as most devices do; false: they read zeros
--   cross_model  false: refuse reads that span two models (as some devices do)
--   end_marker false: leave out the end marker (a truncated list, for tests)
--   on_read    function(unit, kind, addr, count, srv) of md.modbus.serve, to
--              inject faults; on_write: as srv:on_write
--
-- The image: 'SunS', then each model's ID, L and points, then the end
-- marker. Points nobody set hold their type's "not implemented" value;
-- mandatory points and scale factors get plausible defaults (model 1 names
-- moondog as the maker; scale factors suit their points' units), so a
-- client reads a believable device with no values given at all.
--
-- Writes from clients: a write must cover whole points that are writable
-- (access RW), else the device answers "illegal data address"; an enum
-- value outside its symbols gets "illegal data value". The registers are
-- applied, then every on_write function runs once per point with the
-- value as a client reads it (scaled, enums as symbols); one that returns
-- an exception name or code undoes the whole write and refuses it.
--
-- Errors: wrong arguments raise (unknown model or point, a value the point
-- cannot hold); failing to serve returns nil, message, code from
-- md.modbus.serve.

local modbus = require "moondog.modbus"
local codec = require "moondog.sunspec.codec"
local layout = require "moondog.sunspec.layout"
local models = require "moondog.sunspec.models"
local mdcore = require "moondog.core"
local log = require "moondog.log"

local M = {}

local format = string.format
local END_ID, END_LEN = 0xFFFF, 0

local Server = {}
Server.__index = Server

-- Scale factors the simulator picks when none is given, by the units of
-- the points that use them: two decimals for currents and frequency, one
-- for voltages, temperatures and percentages ("Pct", "% WMax"), whole
-- watts otherwise.
local default_sf = { A = -2, Hz = -2, V = -1, C = -1, Pct = -1, PF = -2, ["cos()"] = -3 }

-- Values a device of any model with these points would show at rest.
local plausible = { Hz = 50, PhVphA = 230, PhVphB = 230, PhVphC = 230, PhV = 230, St = "MPPT" }

-- {===== building the image =====

local function spec_of(entry, i)
  if type(entry) ~= "table" then entry = { id = entry } end
  local id = entry.id
  if type(id) == "string" then
    local def = models.get(id)
    if not def then error(format("sunspec.serve: models[%d]: no model called '%s'", i, id), 4) end
    id = def.id
  end
  if math.type(id) ~= "integer" or id < 1 or id > 65534 then
    error(format("sunspec.serve: models[%d]: expected a model id 1..65534 or a name, got %s", i,
      tostring(entry.id)), 4)
  end
  local spec = {}
  for k, v in pairs(entry) do spec[k] = v end
  spec.id = id
  return spec
end

-- Instances per repeating group: spec.counts, or spec.count for every
-- group whose count is not fixed; the point each count-point group uses.
local function group_counts(def, spec)
  local counts, by_point = {}, {}
  local function walk(g)
    for _, sub in ipairs(g.groups) do
      local c = sub.count
      if not (math.type(c) == "integer" and c > 0) then
        counts[sub.name] = spec.counts and spec.counts[sub.name] or spec.count or 1
        if type(c) == "string" then by_point[c] = counts[sub.name] end
      end
      walk(sub)
    end
  end
  walk(def.group)
  return counts, by_point
end

local function sentinel_bytes(inst, len)
  local parts = {}
  local at = inst.addr
  for _, s in ipairs(inst.slots) do
    if s.addr > at then parts[#parts + 1] = string.rep("\0\0", s.addr - at) end
    parts[#parts + 1] = s.type == "pad" and string.rep("\0\0", s.size) or codec.sentinel(s.type, s.size)
    at = s.addr + s.size
  end
  local body = string.pack(">I2I2", inst.def.id, len) .. table.concat(parts):sub(5)
  return body .. string.rep("\0\0", len + 2 - #body // 2)
end

-- One model of the image: {id, name, addr, len, def, inst, bytes}.
local function build_model(spec, addr)
  local def = models.get(spec.id)
  if spec.registers or not def then
    local regs = spec.registers or error(format("sunspec.serve: model %d has no definition; "
      .. "give its registers (registers = {...}) to serve it raw", spec.id), 4)
    local len = spec.L or #regs
    local parts = { string.pack(">I2I2", spec.id, len) }
    for i = 1, len do parts[#parts + 1] = string.pack(">I2", regs[i] or 0) end
    return { id = spec.id, name = format("model_%d", spec.id), addr = addr, len = len,
             bytes = table.concat(parts) }
  end
  local counts, by_point = group_counts(def, spec)
  local len = spec.L or layout.length(def, counts)
  if len + 2 + addr > 65536 then -- 16-bit lengths and addresses (issue 17: 160:100000)
    error(format("sunspec.serve: model %d (%s) would be %d registers long at address %d; "
      .. "the whole map must fit in 65536 registers: use fewer repeats", spec.id, def.name, len, addr), 0)
  end
  local inst = layout.build(def, addr, len, function(s) return by_point[s.key] end)
  local m = { id = spec.id, name = def.name, addr = addr, len = len, def = def, inst = inst,
              counts = by_point }
  if not inst then -- a length that contradicts the definition, on purpose
    m.def, m.name = nil, format("model_%d", spec.id)
    m.bytes = string.pack(">I2I2", spec.id, len) .. string.rep("\0\0", len)
    return m
  end
  m.bytes = sentinel_bytes(inst, len)
  return m
end

-- }=====

-- {===== registers of the image =====

local bytes_to_regs, regs_to_bytes = layout.to_registers, layout.to_bytes

function Server:_bytes(addr, count)
  return regs_to_bytes(self.core:get(self.unit, "holding", addr, count))
end

function Server:_put(addr, bytes)
  self.core:set(self.unit, "holding", addr, bytes_to_regs(bytes))
end

-- The value of slot s in the image, as a client reads it.
function Server:_value(s)
  local sf = s.sf_const
  if s.sf then
    sf = self:_value(s.sf)
    if sf == nil then return nil end
  end
  local one = codec.compile({ { type = s.type, size = s.size, offset = 0, sf = sf } })
  return layout.convert(s.point, codec.decode(one, self:_bytes(s.addr, s.size), 0)[1])
end

-- Store value v (as a person writes it) in slot s, scaled with the factor
-- in the image. Raises when it does not fit.
function Server:_store(m, s, v, level)
  local input, err = layout.input(s, v)
  local sf = s.sf_const
  if input ~= nil and s.sf then
    sf = self:_value(s.sf)
    if sf == nil then
      err = format("its scale factor %s is not implemented (set it first)", s.sf.path)
      input = nil
    end
  end
  local bytes
  if input ~= nil then bytes, err = codec.encode(s.type, s.size, input, sf) end
  if not bytes then
    error(format("sunspec server: cannot set %s = %s in model %d: %s", s.path, tostring(v), m.id,
      err), level + 1)
  end
  self:_put(s.addr, bytes)
end

-- }=====

-- {===== defaults and initial values =====

-- Flatten {W = 1, module = {{DCW = 2}}} into {["W"] = 1, ["module[1].DCW"] = 2}.
local function flatten(values, prefix, out)
  for k, v in pairs(values) do
    if type(k) == "string" and type(v) == "table" and v[1] ~= nil and type(v[1]) == "table" then
      for i, inst in ipairs(v) do flatten(inst, format("%s%s[%d].", prefix, k, i), out) end
    else
      out[prefix .. tostring(k)] = v
    end
  end
  return out
end

-- A count point nobody set counts the one repeating group beside it (160's
-- N, the number of modules).
local function instances_beside(inst, s)
  local function find(ginst)
    if ginst.slots[s.key] == s then
      local only
      for _, list in pairs(ginst.groups) do
        if only then return nil end
        only = list
      end
      return only and #only
    end
    for _, list in pairs(ginst.groups) do
      for _, child in ipairs(list) do
        local n = find(child)
        if n then return n end
      end
    end
  end
  return find(inst.root)
end

local function default_values(self, m)
  local d = {}
  if m.id == 1 then
    d = { Mn = "moondog", Md = "sunspec simulator", Vr = mdcore.version or "0", SN = "MD-SIM-0001",
          DA = self.unit or 1 }
  end
  for name, v in pairs(plausible) do
    local p = m.def.group.by_name[name]
    if p and (not p.value_of or p.value_of[v]) then d[name] = v end
  end
  for path, n in pairs(m.counts) do d[path] = n end
  for _, s in ipairs(m.inst.slots) do
    local p = s.point
    if p.type == "count" and d[s.path] == nil then
      d[s.path] = instances_beside(m.inst, s)
    elseif s.sf and d[s.sf.path] == nil then
      local units = p.units or ""
      d[s.sf.path] = default_sf[units] or (units:match("^%%") or units:match("^Pct")) and -1 or 0
    elseif p.mandatory and d[s.path] == nil and p.name ~= "ID" and p.name ~= "L" then
      if p.symbols and p.type:match("^enum") then
        d[s.path] = p.symbols[1].value
      elseif p.type:match("^acc") then
        d[s.path] = 1 -- an accumulator's 0 means "not implemented"
      elseif p.type ~= "string" and p.type ~= "pad" then
        d[s.path] = 0
      end
    end
  end
  return d
end

-- Set values in model m: scale factors first, then everything else.
local function apply_values(self, m, values, level)
  local sfs, rest = {}, {}
  for path, v in pairs(values) do
    local s = layout.find(m.inst, path)
    if not s then
      error(format("sunspec.serve: model %d (%s) has no point '%s'", m.id, m.name, path), level + 1)
    end
    local list = s.type == "sunssf" and sfs or rest
    list[#list + 1] = { s = s, v = v }
  end
  for _, list in ipairs({ sfs, rest }) do
    for _, it in ipairs(list) do self:_store(m, it.s, it.v, level + 1) end
  end
end

-- Raw values as in pysunspec2 device images: unscaled, null = not implemented.
local function apply_raw(self, m, raw)
  local cjson_null = package.loaded.cjson and package.loaded.cjson.null
  for path, v in pairs(flatten(raw, "", {})) do
    local s = layout.find(m.inst, path)
    if s and path ~= "ID" and path ~= "L" and v ~= cjson_null then
      local bytes, err = codec.encode(s.type, s.size, v)
      if not bytes and s.type == "pad" then bytes = string.pack(">I2", v) end
      if not bytes then
        error(format("sunspec.serve: model %d: raw %s = %s: %s", m.id, path, tostring(v), err), 4)
      end
      self:_put(s.addr, bytes)
    end
  end
end

-- }=====

-- {===== writes from clients =====

-- The model holding addr, or nil.
function Server:_model_at(addr)
  for _, m in ipairs(self.models) do
    if addr >= m.addr and addr < m.addr + m.len + 2 then return m end
  end
end

-- The points a write of n registers at addr covers, or nil, exception.
function Server:_written_points(addr, n)
  local last = addr + n - 1
  local m = self:_model_at(addr)
  if not m or not m.inst or last >= m.addr + m.len + 2 then return nil, "illegal_data_address" end
  local list, covered = {}, addr
  for _, s in ipairs(m.inst.slots) do
    if s.addr <= last and s.addr + s.size > addr then
      if s.point.access ~= "RW" or s.addr < addr or s.addr + s.size - 1 > last or s.addr ~= covered then
        return nil, "illegal_data_address"
      end
      list[#list + 1] = s
      covered = s.addr + s.size
    end
  end
  if covered ~= last + 1 then return nil, "illegal_data_address" end
  return m, list
end

function Server:_on_write(kind, addr, values)
  if kind ~= "holding" then return "illegal_data_address" end
  local m, points = self:_written_points(addr, #values)
  if not m then return points end
  local new = regs_to_bytes(values)
  for _, s in ipairs(points) do
    local p = s.point
    if p.symbol_of and p.type:match("^enum") then
      local v = string.unpack(s.size == 1 and ">I2" or ">I4", new, 2 * (s.addr - addr) + 1)
      if not p.symbol_of[v] and new:sub(2 * (s.addr - addr) + 1, 2 * (s.addr - addr + s.size))
        ~= codec.sentinel(s.type, s.size) then
        return "illegal_data_value"
      end
    end
  end
  local old = self:_bytes(addr, #values)
  self:_put(addr, new)
  for _, s in ipairs(points) do
    local value = self:_value(s)
    for _, fn in ipairs(self._write_hooks) do
      local ok, r = pcall(fn, m.id, s.path, value, self)
      if not ok then
        log.error("sunspec server %s: on_write for %d %s failed: %s", self:url(), m.id, s.path, r)
        r = "server_device_failure"
      end
      if r ~= nil and r ~= true and r ~= false then
        self:_put(addr, old)
        return r
      end
    end
  end
end

--- srv:on_write(fn): fn(model_id, path, value, srv) runs for every point a
--- client writes, after the write is applied; returning an exception name
--- ("illegal_data_value") or code undoes the write and refuses it.
function Server:on_write(fn)
  if type(fn) ~= "function" then error("srv:on_write: expected a function", 2) end
  self._write_hooks[#self._write_hooks + 1] = fn
end

-- }=====

-- {===== reads across models =====

-- Address ranges a read must not span when cross_model is false.
local function regions_of(self)
  local list = { { self.base, self.base + 2 } }
  for _, m in ipairs(self.models) do list[#list + 1] = { m.addr, m.addr + m.len + 2 } end
  if self.end_addr then list[#list + 1] = { self.end_addr, self.end_addr + 2 } end
  return list
end

local function spans_regions(regions, addr, count)
  for _, r in ipairs(regions) do
    if addr >= r[1] and addr < r[2] then return addr + count > r[2] end
  end
  return false
end

-- }=====

-- {===== serve =====

local function check_opts(opts)
  if type(opts) ~= "table" then error("sunspec.serve: expected an options table", 3) end
  local base = opts.base or 40000
  if math.type(base) ~= "integer" or base < 0 or base > 65000 then
    error("sunspec.serve: opts.base must be a register address such as 40000, 0 or 50000", 3)
  end
  if opts.image == nil and (type(opts.models) ~= "table" or #opts.models == 0) then
    error("sunspec.serve: opts.models must list the models to serve, e.g. {1, 103, 160}", 3)
  end
  if opts.image ~= nil and (type(opts.image) ~= "table" or type(opts.image.registers) ~= "table") then
    error("sunspec.serve: opts.image must be {address = 40000, registers = {...}}", 3)
  end
  return opts
end

-- Lay out the models back to back after 'SunS' and fill the image.
local function build(self, opts)
  local addr = self.base + 2
  local image = { "SunS" }
  for i, entry in ipairs(opts.models) do
    local m = build_model(spec_of(entry, i), addr)
    self.models[#self.models + 1] = m
    image[#image + 1] = m.bytes
    addr = addr + m.len + 2
    if addr > 0xFFFE then error("sunspec.serve: the models do not fit below address 65535", 3) end
  end
  if opts.end_marker ~= false then
    self.end_addr = addr
    image[#image + 1] = string.pack(">I2I2", END_ID, END_LEN)
  end
  self:_put(self.base, table.concat(image))
  for _, m in ipairs(self.models) do m.bytes = nil end
  local spec_values = opts.values or {}
  for i, m in ipairs(self.models) do
    if m.inst then
      local spec = spec_of(opts.models[i], i)
      if spec.raw then -- a device image: exactly what it says, no defaults
        apply_raw(self, m, spec.raw)
      else
        apply_values(self, m, default_values(self, m), 3)
      end
      local given = self:model(m.id) == m and (spec_values[m.id] or spec_values[m.name])
      if given then apply_values(self, m, flatten(given, "", {}), 3) end
      if spec.values then apply_values(self, m, flatten(spec.values, "", {}), 3) end
    end
  end
end

--- sunspec.serve(url, opts) -> server, or nil, message, code.
function M.serve(url, opts)
  opts = check_opts(opts)
  local self = setmetatable({ base = opts.base or 40000, models = {}, _write_hooks = {},
                              unit = opts.unit }, Server)
  local regions
  local user_read = opts.on_read
  local on_read
  if opts.cross_model == false or user_read then
    on_read = function(unit, kind, addr, count, mb)
      if regions and kind == "holding" and spans_regions(regions, addr, count) then
        return "illegal_data_address"
      end
      if user_read then return user_read(unit, kind, addr, count, mb) end
    end
  end
  local mb, err, code = modbus.serve(url, {
    units = opts.unit and { opts.unit } or nil, strict = opts.strict ~= false,
    device_id = opts.device_id,
    on_read = on_read,
    on_write = function(_, kind, addr, values) return self:_on_write(kind, addr, values) end,
  })
  if not mb then return nil, err, code end
  self.core = mb
  local ok, berr = pcall(function()
    if opts.image then
      self.raw_image = true
      self.core:set(self.unit, "holding", opts.image.address or self.base, opts.image.registers)
    else
      build(self, opts)
    end
  end)
  if not ok then
    mb:close()
    error(berr, 2)
  end
  if opts.cross_model == false then regions = regions_of(self) end
  if opts.on_write then self:on_write(opts.on_write) end
  return self
end

-- }=====

-- {===== methods =====

-- The model for key: an id (nth = which of several, default 1), a name,
-- or a model table of this server.
function Server:model(key, nth)
  nth = nth or 1
  for _, m in ipairs(self.models) do
    if m == key or m.id == key or m.name == key then
      nth = nth - 1
      if nth == 0 then return m end
    end
  end
end

local function point_of(self, key, path, level)
  if self.raw_image then
    error("sunspec server: this server serves a raw register image; it has no points", level + 1)
  end
  local m = self:model(key)
  if not m then error(format("sunspec server: no model %s is served", tostring(key)), level + 1) end
  if not m.inst then
    error(format("sunspec server: model %d is served raw; it has no points", m.id), level + 1)
  end
  local s = type(path) == "string" and layout.find(m.inst, path)
  if not s then
    error(format("sunspec server: model %d (%s) has no point '%s'", m.id, m.name, tostring(path)),
      level + 1)
  end
  return m, s
end

--- srv:set(model, path, value): model an id, name or srv:model(id, n);
--- value as a client reads it (scaled, a symbol name, a list of bit
--- names); nil makes the point "not implemented".
function Server:set(key, path, value)
  local m, s = point_of(self, key, path, 2)
  if value == nil then
    self:_put(s.addr, codec.sentinel(s.type, s.size))
  else
    self:_store(m, s, value, 2)
  end
end

--- srv:get(model, path) -> the value as a client reads it.
function Server:get(key, path)
  local _, s = point_of(self, key, path, 2)
  return self:_value(s)
end

--- srv:simulate_inverter{power = W}: an inverter that obeys the power
--- limit clients write (model 123 WMaxLimPct/WMaxLim_Ena, or 704
--- WMaxLimPct/WMaxLimPctEna), as a percentage of WMax (model 121 or 702;
--- default: power). Its W (models 101-103, 111-113, 701) is set to
--- min(power, limit); srv:set_power(w) changes the power available.
function Server:simulate_inverter(opts)
  opts = opts or {}
  local sim = { power = opts.power or 5000 }
  self._sim = sim
  local function limit_pct()
    if self:model(123) and self:get(123, "WMaxLim_Ena") == "ENABLED" then
      return self:get(123, "WMaxLimPct")
    elseif self:model(704) and self:get(704, "WMaxLimPctEna") == "ENABLED" then
      return self:get(704, "WMaxLimPct")
    end
  end
  local function wmax()
    return self:model(121) and self:get(121, "WMax") or self:model(702) and self:get(702, "WMax")
      or sim.power
  end
  function sim.update()
    local pct = limit_pct()
    local w = sim.power
    if pct then w = math.min(w, (wmax() or sim.power) * pct / 100) end
    for _, id in ipairs({ 101, 102, 103, 111, 112, 113, 701 }) do
      if self:model(id) then self:set(id, "W", w) end
    end
    sim.w = w
  end
  self:on_write(function(id)
    if id == 123 or id == 704 then sim.update() end
  end)
  sim.update()
  return sim
end

--- srv:set_power(w): power the simulated inverter could deliver now.
function Server:set_power(w)
  local sim = assert(self._sim, "srv:set_power: call srv:simulate_inverter first")
  sim.power = w
  sim.update()
end

function Server:url() return self.core:url() end
function Server:port() return self.core:port() end
function Server:stats() return self.core:stats() end

--- The register image as {address = base, registers = {...}}, 'SunS' to
--- the end marker (for dumps and tests).
function Server:image()
  local last = self.end_addr and self.end_addr + 2
    or (self.models[#self.models] and self.models[#self.models].addr + self.models[#self.models].len + 2)
  return { address = self.base, registers = self.core:get(self.unit, "holding", self.base, last - self.base) }
end

function Server:close()
  self.core:close()
end

Server.__close = Server.close

function Server:__tostring()
  return format("SunSpec server %s (%d models)", self:url(), #self.models)
end

-- }=====

return M
