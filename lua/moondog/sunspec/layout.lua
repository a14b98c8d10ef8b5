-- moondog.sunspec.layout: where every point of one model instance sits on a
-- device, and the Lua tables its values land in.
--
--   local layout = require "moondog.sunspec.layout"
--   local inst, why = layout.build(models.get(160), 40122, 68, count_of)
--   inst.slots[i]            -- every point in register order:
--                            --   {addr, size, type, point = P, path = "module[2].DCW",
--                            --    key = "DCW", values = table it lands in,
--                            --    sf = the slot of its scale factor | nil, sf_const = int | nil}
--   inst.by_path["module[2].DCW"], inst.by_path.W   -- slot by path
--   inst.values              -- { W = ..., module = { {DCW = ...}, ... } }
--
-- A model definition (moondog.sunspec.models) gives offsets inside a group
-- instance; a device gives the address of the model's ID register and the
-- length L it reports. Instances of a repeating group follow their parent's
-- own points back to back, so the address of every point depends on how
-- many instances each group has: a fixed count, the value of a count point
-- (count_of reads it from registers at hand), or, for count 0, as many as L
-- leaves room for. Building is the one place that works this out; reading,
-- writing and serving all use the slots it returns.
--
-- A length that contradicts the definition makes build return nil and a
-- sentence saying why (the caller keeps the model as raw registers). One
-- tolerance: a model may end before trailing `pad` points (model 1 with
-- L = 65, from devices older than the Pad register).
--
-- Pure Lua, no I/O.

local M = {}

local format = string.format

-- Enum points read as their symbol name (or the number when the device
-- sends a value the definition has no name for).
local function enum_converter(p)
  local names = p.symbol_of
  return function(v)
    return names[v] or v
  end
end

-- Bitfields read as a list of the names of the bits that are set ("bit5"
-- for a bit the definition does not name). The list also answers
-- flags.NAME == true, so that `if evt.GROUND_FAULT then` works.
local Flags = {
  __index = function(t, k)
    if type(k) == "string" then
      for _, name in ipairs(t) do
        if name == k then return true end
      end
      return false
    end
  end,
}
M.Flags = Flags

local function bitfield_converter(p, bits)
  local names = p.symbol_of or {}
  return function(v)
    local list = setmetatable({}, Flags)
    for bit = 0, bits - 1 do
      if v & (1 << bit) ~= 0 then
        list[#list + 1] = names[bit] or format("bit%d", bit)
      end
    end
    return list
  end
end

local bitfield_bits = { bitfield16 = 16, bitfield32 = 32, bitfield64 = 64 }

-- The function turning a decoded number into what Lua sees, or nil.
local function converter(p)
  if p.type:match("^enum") and p.symbol_of then
    return enum_converter(p)
  elseif bitfield_bits[p.type] then
    return bitfield_converter(p, bitfield_bits[p.type])
  end
end

-- Converters are per point definition; definitions are shared and
-- read-only, so cache beside them.
local converters = setmetatable({}, { __mode = "k" })

local function converter_of(p)
  local c = converters[p]
  if c == nil then
    c = converter(p) or false
    converters[p] = c
  end
  return c or nil
end

--- layout.convert(P, v) -> v as Lua shows it (enum symbol, bitfield list).
function M.convert(p, v)
  local c = v ~= nil and converter_of(p)
  if c then return c(v) end
  return v
end

-- {===== building =====

-- The slot called name in this group instance or an enclosing one.
local function find_slot(ginst, name)
  while ginst do
    local s = ginst.slots[name]
    if s then return s end
    ginst = ginst.parent
  end
end

-- How many instances of group g inside ginst; nil, why when unknown.
local function instances(g, ginst, ctx)
  local c = g.count
  if math.type(c) == "integer" and c > 0 then
    return c
  elseif c == 0 then
    ctx.zero_groups = ctx.zero_groups + 1
    return ctx.count0
  end
  local s = find_slot(ginst, c)
  local n = s and ctx.count_of(s)
  if n == false then -- the count point is not implemented: size the group from L
    ctx.zero_groups = ctx.zero_groups + 1
    return ctx.count0
  elseif n == nil then
    return nil, format("the count point %s of group %s has not been read", c, g.name)
  end
  if math.type(n) ~= "integer" or n < 0 or n > 0xFFFF then
    return nil, format("the count point %s of group %s holds %s", c, g.name, tostring(n))
  end
  return n
end

-- Place one instance of group g at addr; returns the instance and the
-- address after it, or nil, why.
local function place(g, addr, parent, path, ctx)
  local ginst = { def = g, values = {}, slots = {}, parent = parent, groups = {} }
  for _, p in ipairs(g.points) do
    local s = {
      addr = addr + p.offset, size = p.size, type = p.type, point = p, key = p.name,
      values = ginst.values, path = path .. p.name, convert = converter_of(p),
    }
    ginst.slots[p.name] = s
    ctx.slots[#ctx.slots + 1] = s
  end
  for _, p in ipairs(g.points) do
    local s = ginst.slots[p.name]
    if math.type(p.sf) == "integer" then
      s.sf_const = p.sf
    elseif p.sf then
      s.sf = find_slot(ginst, p.sf)
    end
  end
  local at = addr + g.size
  for _, sub in ipairs(g.groups) do
    local n, why = instances(sub, ginst, ctx)
    if not n then return nil, why end
    local list, values = {}, {}
    for i = 1, n do
      if at > ctx.limit then -- counts that cannot fit L: stop before placing millions
        return nil, format("the count of group %s (%d) does not fit in L", sub.name, n)
      end
      local child, after = place(sub, at, ginst, format("%s%s[%d].", path, sub.name, i), ctx)
      if not child then return nil, after end
      list[i], values[i] = child, child.values
      at = after
    end
    ginst.groups[sub.name] = list
    ginst.values[sub.name] = values
  end
  return ginst, at
end

local function attempt(def, addr, len, count_of, count0)
  local ctx = { slots = {}, count_of = count_of, count0 = count0, zero_groups = 0,
                limit = addr + len + 2 }
  local root, after = place(def.group, addr, nil, "", ctx)
  if not root then return nil, after end
  return { root = root, slots = ctx.slots, size = after - addr, zero_groups = ctx.zero_groups }
end

-- Number of instances of the count-0 group that makes the model L long.
local function solve_count0(def, addr, len, count_of)
  local none, why = attempt(def, addr, len, count_of, 0)
  if not none then return nil, why end
  if none.zero_groups == 0 then return 0 end
  if none.size == len + 2 then return 0 end -- no room for any instance
  if none.zero_groups > 1 then
    return nil, "its definition has several groups sized by L, which L alone cannot size"
  end
  local one, owhy = attempt(def, addr, len, count_of, 1)
  if not one then return nil, owhy end
  local per = one.size - none.size
  local room = len + 2 - none.size
  if per <= 0 or room < 0 or room % per ~= 0 then
    return nil, format("L = %d leaves %d register(s) after the fixed points, not a whole "
      .. "number of %d-register repeating groups", len, room, per)
  end
  return room // per
end

-- Trailing pad points beyond L (model 1 with L = 65) are dropped.
local function drop_trailing_pads(inst, end_addr)
  local slots = inst.slots
  while #slots > 0 and slots[#slots].addr >= end_addr do
    local s = slots[#slots]
    if s.type ~= "pad" then return false end
    s.values[s.key] = nil
    slots[#slots] = nil
  end
  return #slots == 0 or slots[#slots].addr + slots[#slots].size <= end_addr
end

--- layout.build(def, addr, len [, count_of]) -> inst, or nil, why
--- def: a model definition; addr: address of its ID register; len: the L
--- the device reports; count_of(slot) -> the raw integer in a count point,
--- false when the device does not implement it (the group is then sized
--- from L), or nil when its register has not been read.
function M.build(def, addr, len, count_of)
  count_of = count_of or function() return nil end
  local n, why = solve_count0(def, addr, len, count_of)
  if not n then return nil, why end
  local inst
  inst, why = attempt(def, addr, len, count_of, n)
  if not inst then return nil, why end
  if inst.size ~= len + 2 and not (inst.size > len + 2 and drop_trailing_pads(inst, addr + len + 2)) then
    return nil, format("its definition needs L = %d, the device says L = %d", inst.size - 2, len)
  end
  inst.def, inst.addr, inst.len, inst.values = def, addr, len, inst.root.values
  inst.by_path = {}
  for i, s in ipairs(inst.slots) do
    s.index = i
    inst.by_path[s.path] = s
  end
  inst.size = nil
  return inst
end

--- layout.length(def [, counts]) -> L of a model with these instance counts:
--- counts[group name] for groups sized by L or by a count point (default 1).
--- For the server, which chooses the counts and writes the count points.
function M.length(def, counts)
  counts = counts or {}
  local function size(g)
    local n = g.size
    for _, sub in ipairs(g.groups) do
      local c = sub.count
      if not (math.type(c) == "integer" and c > 0) then c = counts[sub.name] or 1 end
      n = n + c * size(sub)
    end
    return n
  end
  return size(def.group) - 2
end

-- }=====

-- {===== values from people =====

local unsigned = {
  uint16 = true, uint32 = true, uint64 = true, acc16 = true, acc32 = true, acc64 = true,
  enum16 = true, enum32 = true, bitfield16 = true, bitfield32 = true, bitfield64 = true,
  count = true,
}

--- layout.input(slot, v) -> what a person wrote for a point (a symbol
--- name, a list of bit names, a number, text) as the number or text the
--- codec takes; nil, message, code ("range", "type") when it cannot be.
function M.input(s, v)
  local p = s.point
  if p.type:match("^enum") and p.value_of then
    if type(v) == "string" then
      local n = p.value_of[v]
      if n then return n end
    elseif math.type(v) == "integer" and p.symbol_of[v] then
      return v
    end
    local names = {}
    for _, sym in ipairs(p.symbols) do names[#names + 1] = sym.name end
    return nil, format("%s must be one of %s, not %s", s.path, table.concat(names, ", "),
      tostring(v)), "range"
  end
  if p.type:match("^bitfield") and type(v) == "string" then
    local list = {}
    for name in v:gmatch("[^,%s]+") do list[#list + 1] = name end
    v = list -- "A,B" as from a command line
  end
  if p.type:match("^bitfield") and type(v) == "table" then
    local n = 0
    for _, name in ipairs(v) do
      local bit = p.value_of and p.value_of[name] or tonumber(tostring(name):match("^bit(%d+)$"))
      if not bit then
        return nil, format("%s has no bit called %s", s.path, tostring(name)), "range"
      end
      n = n | (1 << bit)
    end
    return n
  end
  if p.type ~= "string" and p.type ~= "ipaddr" and p.type ~= "ipv6addr" and p.type ~= "eui48"
    and type(v) ~= "number" then
    return nil, format("%s takes a number, not %s", s.path, type(v) == "string"
      and format("'%s'", v) or type(v)), "type"
  end
  if unsigned[p.type] and type(v) == "number" and v < 0 then
    return nil, format("%s cannot be negative (%s), got %s", s.path, p.type, tostring(v)), "range"
  end
  return v
end

-- }=====

--- layout.to_registers(bytes) -> array of 16-bit register values.
function M.to_registers(bytes)
  local regs = {}
  for i = 1, #bytes // 2 do regs[i] = string.unpack(">I2", bytes, 2 * i - 1) end
  return regs
end

--- layout.to_bytes(regs) -> big-endian bytes of 16-bit register values.
function M.to_bytes(regs)
  local parts = {}
  for i, r in ipairs(regs) do parts[i] = string.pack(">I2", r) end
  return table.concat(parts)
end

--- layout.parse_path("module[2].DCW") -> {"module", 2, "DCW"}, or nil.
--- Accepts the dotted form too: "module.2.DCW".
function M.parse_path(path)
  local parts = {}
  for item in path:gmatch("[^%.]+") do
    local name, idx = item:match("^([%w_%-]+)%[(%d+)%]$")
    if name then
      parts[#parts + 1] = name
      parts[#parts + 1] = math.tointeger(tonumber(idx))
    elseif item:match("^%d+$") then
      parts[#parts + 1] = math.tointeger(tonumber(item))
    elseif item:match("^[%w_%-]+$") then
      parts[#parts + 1] = item
    else
      return nil
    end
  end
  return #parts > 0 and parts or nil
end

--- layout.canonical(path) -> "module[2].DCW" for any accepted spelling, or nil.
function M.canonical(path)
  local parts = M.parse_path(path)
  if not parts then return nil end
  local out = {}
  for _, p in ipairs(parts) do
    if math.type(p) == "integer" then
      out[#out] = format("%s[%d]", out[#out], p)
    else
      out[#out + 1] = p
    end
  end
  return table.concat(out, ".")
end

--- layout.find(inst, path) -> slot or nil (path as in parse_path).
function M.find(inst, path)
  local s = inst.by_path[path]
  if s then return s end
  local c = M.canonical(path)
  return c and inst.by_path[c]
end

--- layout.point_def(def, path) -> P for "W" or "module.DCW" (no indexes), or nil.
function M.point_def(def, path)
  local g = def.group
  local parts = M.parse_path(path)
  if not parts then return nil end
  for i, part in ipairs(parts) do
    if math.type(part) ~= "integer" then
      if i == #parts then return g.by_name[part] end
      local found
      for _, sub in ipairs(g.groups) do
        if sub.name == part then found = sub end
      end
      if not found then return nil end
      g = found
    end
  end
end

return M
