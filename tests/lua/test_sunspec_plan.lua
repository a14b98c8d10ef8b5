-- moondog.sunspec.plan on the one read planner (issue 16, item 6): its
-- rule (a value and its scale factor in one read) is the keep_with option
-- of moondog.modbus.planner now. The plans must be the ones the former
-- SunSpec-only greedy made: that greedy is kept below as the oracle and
-- compared on every shipped model definition, alone and as device images,
-- with several read limits and with reads kept inside models.

local T = require "moondog.testing"
local plan = require "moondog.sunspec.plan"
local planner = require "moondog.modbus.planner"
local models = require "moondog.sunspec.models"
local layout = require "moondog.sunspec.layout"

-- {===== the former algorithm (lua/moondog/sunspec/plan.lua before issue 16) =====

local function old_atoms(slots, pairs)
  local member = {}
  for _, s in ipairs(slots) do member[s] = true end
  local spans = {}
  for i, s in ipairs(slots) do
    local lo, hi = s.addr, s.addr + s.size
    local sf = pairs and s.sf
    if sf and member[sf] then
      if sf.addr < lo then lo = sf.addr end
      if sf.addr + 1 > hi then hi = sf.addr + 1 end
    end
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

local function old_fit_atoms(slots, max)
  local atoms = old_atoms(slots, true)
  local loose
  for _, a in ipairs(atoms) do
    if a.hi - a.lo > max then loose = true end
  end
  if not loose then return atoms end
  local points = old_atoms(slots, false)
  local out, k = {}, 1
  for _, a in ipairs(atoms) do
    if a.hi - a.lo > max then
      while points[k] and points[k].lo < a.lo do k = k + 1 end
      while points[k] and points[k].hi <= a.hi do
        out[#out + 1] = points[k]
        k = k + 1
      end
    else
      out[#out + 1] = a
    end
  end
  return out
end

local function old_region_of(regions, addr)
  if not regions then return 0 end
  for i, r in ipairs(regions) do
    if addr >= r.lo and addr < r.hi then return i end
  end
  return -1
end

local function old_ranges(slots, max, regions)
  local atoms = old_fit_atoms(slots, max)
  local ranges = {}
  local i = 1
  while atoms[i] do
    local lo = atoms[i].lo
    local region = old_region_of(regions, lo)
    local j = i
    while atoms[j + 1] and atoms[j + 1].hi - lo <= max
      and old_region_of(regions, atoms[j + 1].lo) == region do
      j = j + 1
    end
    local hi = atoms[j].hi
    if hi - lo > max then hi = lo + max end
    ranges[#ranges + 1] = { addr = lo, count = hi - lo }
    i = j + 1
  end
  return ranges
end

-- }=====

local function show(ranges)
  local t = {}
  for i, r in ipairs(ranges) do t[i] = r.addr .. "+" .. r.count end
  return table.concat(t, " ")
end

-- The slots and regions of models placed one after the other from 40002,
-- as a device lays them out; counts sizes repeating groups.
local function image(ids, counts)
  local slots, regions, addr = {}, {}, 40002
  local unread = function() return false end -- count points: sized from L
  for _, id in ipairs(ids) do
    local def = assert(models.get(id), "model " .. id)
    local len = layout.length(def, counts)
    local inst = assert(layout.build(def, addr, len, unread))
    for _, s in ipairs(inst.slots) do slots[#slots + 1] = s end
    regions[#regions + 1] = { lo = addr, hi = addr + len + 2 }
    addr = addr + len + 2
  end
  table.sort(slots, function(a, b) return a.addr < b.addr end)
  return slots, regions
end

-- Limits down to the longest SunSpec point (a 32-register string in model
-- 701): below that the former planner cut a string short ("cannot happen
-- in SunSpec", as a device's max_regs is never that small), where the
-- planner reads it in consecutive parts.
local function compare(what, slots, regions)
  for _, max in ipairs({ 125, 64, 40, 32 }) do
    for _, reg in ipairs({ false, true }) do
      local r = reg and regions or nil
      local want = show(old_ranges(slots, max, r))
      local got = show(plan.ranges(slots, max, r))
      if got ~= want then
        error(string.format("%s, max %d%s:\n  before: %s\n  now:    %s", what, max,
          reg and ", inside models" or "", want, got), 2)
      end
    end
  end
end

T.test("every shipped model alone: the same ranges as the former planner", function()
  local n = 0
  for _, id in ipairs(models.ids()) do
    local slots, regions = image({ id }, { module = 3 })
    compare("model " .. id, slots, regions)
    n = n + 1
  end
  assert(n >= 30, "the shipped models were compared (" .. n .. ")")
end)

T.test("device images, incl. model 160 with atoms longer than a read: the same ranges", function()
  compare("inverter", image({ 1, 103, 120, 121, 122, 123, 160 }, { module = 2 }))
  compare("meter", image({ 1, 203 }))
  compare("storage", image({ 1, 103, 124 }))
  compare("160 x 40", image({ 1, 103, 160 }, { module = 40 }))
  compare("everything", image(models.ids(), { module = 4 }))
end)

T.test("keep_with: a value and its scale factor share a read; without it they may not", function()
  local a = { kind = "holding", address = 0, name = "A" }
  local sf = { kind = "holding", address = 12, name = "W_SF" }
  local w = { kind = "holding", address = 5, count = 2, name = "W", with = sf }
  local function where(reads, p)
    for i, r in ipairs(reads) do
      for _, q in ipairs(r.points) do if q == p then return i end end
    end
  end
  local reads = assert(planner.plan({ a, w, sf }, { max_regs = 10, max_gap = 100 }))
  T.eq(#reads, 2)
  assert(where(reads, w) ~= where(reads, sf), "the plain greedy cuts W from its factor")
  reads = assert(planner.plan({ a, w, sf }, { max_regs = 10, max_gap = 100, keep_with = true }))
  T.eq(#reads, 2)
  T.eq(where(reads, w), where(reads, sf), "keep_with reads them together")
  T.eq(reads[2].address, 5)
  T.eq(reads[2].count, 8)
  -- Farther apart than one read: the atom falls back to its points.
  reads = assert(planner.plan({ w, sf }, { max_regs = 5, max_gap = 100, keep_with = true }))
  T.eq(#reads, 2, "too far apart for one read")
  -- breaks: no read spans a model boundary.
  local b = { kind = "holding", address = 4 }
  reads = assert(planner.plan({ a, b }, { breaks = { 3 } }))
  T.eq(#reads, 2, "a break splits the read")
  reads = assert(planner.plan({ a, b }, { breaks = { 0, 5 } }))
  T.eq(#reads, 1, "breaks at the ends do not")
end)
