-- moondog.sunspec.plan: the fewest register reads that fetch a set of
-- SunSpec points without tearing a value.
--
--   local plan = require "moondog.sunspec.plan"
--   local p = plan.make(slots, { max = 125, regions = {...} })
--   for _, r in ipairs(p.reads) do       -- r.addr, r.count, r.points, r.layout, r.raw
--     ... codec.decode(r.layout, bytes, r.addr) ...
--   end
--   p.post                               -- {slot, ...}: scaled after every read (see below)
--
-- Slots come from moondog.sunspec.layout. Two rules keep values honest:
--   1. a point never straddles two reads (a 32-bit counter read half
--      before and half after it wrapped is garbage);
--   2. a point and its scale factor come from the same read (a device may
--      change W_SF between two reads, and W read with the old factor is off
--      by a power of ten: the classic bug of cached scale factors).
-- A point with its scale factor, or points whose such spans overlap, form
-- an "atom" that a read must hold whole; cuts between reads fall only
-- between atoms. moondog.modbus.planner places them (its keep_with
-- option: one planner for every driver). Reads take atoms greedily from the lowest address,
-- each as far as `max` registers allow. For cuts restricted to atom
-- boundaries that greedy is optimal: any plan has a read holding the first
-- atom, and one starting there and reaching furthest covers at least as
-- much of the rest. Reads pass over registers nobody asked for (a SunSpec
-- map is contiguous, so they exist), and span model boundaries unless
-- `regions` (model address ranges) forbids it for a device that refuses.
--
-- When an atom alone exceeds `max` (model 160 with many modules: the
-- modules' scale factors sit before all of them), its points are cut on
-- point boundaries only, and each point that landed away from its scale
-- factor is read again together with it in an extra read, when the two are
-- at most `max` registers apart. Farther apart nothing fits one request:
-- the point is decoded unscaled and scaled with the factor from this same
-- poll (p.post).
--
-- Pure Lua, no I/O.

local codec = require "moondog.sunspec.codec"
local planner = require "moondog.modbus.planner"

local M = {}

M.MAX = 125

-- The span [lo, hi) that must sit in one read: the point, and with pairs
-- also its scale factor when that is among the slots read.
local function span(s, member, pairs)
  local lo, hi = s.addr, s.addr + s.size
  local sf = pairs and s.sf
  if sf and member[sf] then
    if sf.addr < lo then lo = sf.addr end
    if sf.addr + 1 > hi then hi = sf.addr + 1 end
  end
  return lo, hi
end

--- plan.atoms(slots [, pairs = true]) -> sorted list of {lo, hi}: merged
--- spans that no cut may enter. slots: sorted by address.
function M.atoms(slots, pairs)
  if pairs == nil then pairs = true end
  local member = {}
  for _, s in ipairs(slots) do member[s] = true end
  local spans = {}
  for i, s in ipairs(slots) do
    local lo, hi = span(s, member, pairs)
    spans[i] = { lo, hi }
  end
  table.sort(spans, function(a, b) return a[1] < b[1] end)
  local atoms = {}
  for _, sp in ipairs(spans) do
    local last = atoms[#atoms]
    if last and sp[1] < last.hi then
      if sp[2] > last.hi then last.hi = sp[2] end
    else
      atoms[#atoms + 1] = { lo = sp[1], hi = sp[2] }
    end
  end
  return atoms
end

--- plan.ranges(slots, max [, regions]) -> sorted list of {addr, count}.
--- The one read planner (moondog.modbus.planner) places them: each point
--- with its scale factor (keep_with), any registers passed over (a SunSpec
--- map is contiguous), no read across a region boundary.
function M.ranges(slots, max, regions)
  local points, of = {}, {}
  for i, s in ipairs(slots) do
    points[i] = { kind = "holding", address = s.addr, count = s.size }
    of[s] = points[i]
  end
  for i, s in ipairs(slots) do
    if s.sf and of[s.sf] then points[i].with = of[s.sf] end
  end
  local breaks
  if regions then
    breaks = {}
    for _, r in ipairs(regions) do
      breaks[#breaks + 1] = r.lo
      breaks[#breaks + 1] = r.hi
    end
  end
  local reads = assert(planner.plan(points, {
    max_regs = max, max_gap = 65535, keep_with = true, breaks = breaks,
  }))
  local ranges = {}
  for i, r in ipairs(reads) do ranges[i] = { addr = r.address, count = r.count } end
  return ranges
end

--- plan.last_cut(atoms, x) -> the highest address <= x where a read may
--- end without cutting an atom.
function M.last_cut(atoms, x)
  local cut = x
  for _, a in ipairs(atoms) do
    if a.lo >= x then break end
    if a.hi > x then
      cut = a.lo
      break
    end
  end
  return cut
end

-- {===== assigning points to reads =====

-- Index of the range holding [addr, addr + size), or nil.
local function range_of(ranges, addr, size)
  local lo, hi = 1, #ranges
  while lo <= hi do
    local mid = (lo + hi) // 2
    local r = ranges[mid]
    if addr < r.addr then
      hi = mid - 1
    elseif addr >= r.addr + r.count then
      lo = mid + 1
    else
      return addr + size <= r.addr + r.count and mid or nil
    end
  end
end

-- The codec layout of one read: its points in order, each scale factor
-- referring to its point in this same read. Registers of models without a
-- definition (slot.raw) are copied as they are, outside the codec.
local function compile(read, unscaled)
  local entries, pos, points, raw = {}, {}, {}, {}
  for _, s in ipairs(read.slots) do
    if s.raw then
      raw[#raw + 1] = s
    else
      points[#points + 1] = s
      pos[s] = #points
    end
  end
  for j, s in ipairs(points) do
    local e = { type = s.type, size = s.size, offset = s.addr }
    if s.sf_const then
      e.sf = s.sf_const
    elseif s.sf and not unscaled[s] then
      e.sf = { index = assert(pos[s.sf], "scale factor outside the read") }
    end
    entries[j] = e
  end
  read.points, read.raw = points, raw
  read.layout = codec.compile(entries)
  return read
end

local function new_read(r)
  return { addr = r.addr, count = r.count, slots = {} }
end

-- Extra reads for points cut away from their scale factor (see the top).
local function extra_reads(torn, max)
  table.sort(torn, function(a, b)
    return math.min(a.addr, a.sf.addr) < math.min(b.addr, b.sf.addr)
  end)
  local reads = {}
  for _, s in ipairs(torn) do
    local lo = math.min(s.addr, s.sf.addr)
    local hi = math.max(s.addr + s.size, s.sf.addr + 1)
    local r = reads[#reads]
    if r and hi - r.addr <= max then
      r.count = math.max(r.count, hi - r.addr)
    else
      r = { addr = lo, count = hi - lo, slots = {}, extra = true }
      reads[#reads + 1] = r
    end
    r.slots[#r.slots + 1] = s
    r.slots[#r.slots + 1] = s.sf
  end
  for _, r in ipairs(reads) do
    local seen, list = {}, {}
    for _, s in ipairs(r.slots) do
      if not seen[s] then
        seen[s] = true
        list[#list + 1] = s
      end
    end
    table.sort(list, function(a, b) return a.addr < b.addr end)
    r.slots = list
  end
  return reads
end

--- plan.assign(ranges, slots [, max]) -> {reads = {...}, post = {...}, orphans = {...}}
--- Puts each slot in the range holding it (ranges: sorted {addr, count})
--- and compiles each read's codec layout. Slots no range holds whole are
--- left out and listed in orphans (plan.make never makes any).
function M.assign(ranges, slots, max)
  max = max or M.MAX
  local reads, where, orphans = {}, {}, {}
  for i, r in ipairs(ranges) do reads[i] = new_read(r) end
  for _, s in ipairs(slots) do
    where[s] = range_of(ranges, s.addr, s.size)
    if not where[s] then orphans[#orphans + 1] = s end
  end
  local torn, post, unscaled = {}, {}, {}
  for _, s in ipairs(slots) do
    local sf = s.sf
    if sf and where[s] and where[sf] ~= where[s] then
      if math.max(s.addr + s.size, sf.addr + 1) - math.min(s.addr, sf.addr) <= max then
        torn[#torn + 1] = s
      else
        post[#post + 1] = s
        unscaled[s] = true
      end
    end
  end
  local moved = {}
  for _, s in ipairs(torn) do moved[s] = true end
  for _, s in ipairs(slots) do
    if where[s] and not moved[s] then
      local list = reads[where[s]].slots
      list[#list + 1] = s
    end
  end
  local out = {}
  for _, r in ipairs(reads) do
    if #r.slots > 0 then out[#out + 1] = compile(r, unscaled) end
  end
  for _, r in ipairs(extra_reads(torn, max)) do
    out[#out + 1] = compile(r, unscaled)
  end
  return { reads = out, post = post, orphans = orphans }
end

-- }=====

--- plan.make(slots, opts) -> {reads, post}: plan.ranges then plan.assign.
--- slots sorted by address; opts.max (default 125), opts.regions (reads
--- stay inside one of these {lo, hi} ranges).
function M.make(slots, opts)
  local max = opts and opts.max or M.MAX
  return M.assign(M.ranges(slots, max, opts and opts.regions), slots, max)
end

--- plan.count(p) -> transactions and registers a plan costs.
function M.count(p)
  local regs = 0
  for _, r in ipairs(p.reads) do regs = regs + r.count end
  return #p.reads, regs
end

return M
