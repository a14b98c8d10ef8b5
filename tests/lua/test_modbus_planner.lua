-- Tests for moondog.modbus.planner: merging, limits, gaps, avoided ranges,
-- oversized and overlapping points, kinds and order, split() and stats(),
-- realistic meter and inverter lists, and randomised plans checked against
-- the rules and against a brute-force optimum.

local T = require "moondog.testing"
local planner = require "moondog.modbus.planner"

local kind_order = { coil = 1, discrete = 2, holding = 3, input = 4 }
local is_bits = { coil = true, discrete = true }

local function pt(kind, address, count, extra)
  local p = extra or {}
  p.kind, p.address, p.count = kind, address, count
  return p
end

local function plan(points, opts)
  local reads, err = planner.plan(points, opts)
  if not reads then error("unexpected plan error: " .. err, 2) end
  return reads
end

-- "holding 0+10 [1,2] | input 5+2 [3]": reads with the input indexes of
-- their points, to compare plans in one line.
local function shape(reads, points)
  local index = {}
  for i, p in ipairs(points) do index[p] = index[p] or i end
  local out = {}
  for _, r in ipairs(reads) do
    local ids = {}
    for _, p in ipairs(r.points) do ids[#ids + 1] = tostring(index[p]) end
    out[#out + 1] = string.format("%s %d+%d [%s]", r.kind, r.address, r.count, table.concat(ids, ","))
  end
  return table.concat(out, " | ")
end

-- The same without point indexes.
local function spans(reads)
  local out = {}
  for _, r in ipairs(reads) do out[#out + 1] = string.format("%s %d+%d", r.kind, r.address, r.count) end
  return table.concat(out, " | ")
end

-- Check every rule a plan must follow; raises with the broken one.
local function check_plan(reads, points, opts)
  opts = opts or {}
  local regs, bits = opts.max_regs or 125, opts.max_bits or 2000
  local limit = { holding = regs, input = regs, coil = bits, discrete = bits }
  local reg_gap, bit_gap = opts.max_gap or 10, opts.max_bit_gap or 32
  local max_gap = { holding = reg_gap, input = reg_gap, coil = bit_gap, discrete = bit_gap }
  local listed = {}
  for i, r in ipairs(reads) do
    local last = r.address + r.count - 1
    assert(r.count >= 1 and r.count <= limit[r.kind], "read over the limit: " .. spans({ r }))
    assert(r.address >= 0 and last <= 65535, "read outside 0..65535")
    if i > 1 then
      local q = reads[i - 1]
      assert(kind_order[q.kind] < kind_order[r.kind]
        or (q.kind == r.kind and q.address <= r.address), "reads out of order")
    end
    for _, a in ipairs(opts.avoid or {}) do
      assert(a.kind ~= r.kind or a.last < r.address or a.first > last,
        "read spans an avoided range: " .. spans({ r }))
    end
    local wanted = {}
    assert(#r.points >= 1, "read without points")
    for _, p in ipairs(r.points) do
      assert(p.kind == r.kind, "read mixes kinds")
      local first, plast = math.max(p.address, r.address), math.min(p.address + (p.count or 1) - 1, last)
      assert(first <= plast, "read lists a point it does not touch")
      for a = first, plast do wanted[a] = true end
      listed[p] = listed[p] or {}
      table.insert(listed[p], r)
    end
    assert(wanted[r.address] and wanted[last], "read starts or ends on an unrequested address")
    local run = 0
    for a = r.address, last do
      run = wanted[a] and 0 or run + 1
      assert(run <= max_gap[r.kind], "read passes over a gap wider than max_gap: " .. spans({ r }))
    end
  end
  for _, p in ipairs(points) do
    local rs = listed[p]
    local count = p.count or 1
    assert(rs, "point not planned")
    if count <= limit[p.kind] then
      T.eq(#rs, 1, "reads holding a point that fits in one")
      local r = rs[1]
      assert(r.address <= p.address and p.address + count <= r.address + r.count,
        "point split across reads")
    else
      for a = p.address, p.address + count - 1 do
        local hit = false
        for _, r in ipairs(rs) do
          if a >= r.address and a < r.address + r.count then hit = true end
        end
        assert(hit, "oversized point not fully covered at address " .. a)
      end
    end
  end
  return true
end

-- Data a device would return for a read: registers hold 1000 + address,
-- coils are true on odd addresses.
local function fake_data(r)
  local data = {}
  for i = 1, r.count do
    local a = r.address + i - 1
    data[i] = is_bits[r.kind] and (a % 2 == 1) or 1000 + a
  end
  return data
end

local function fake_bytes(r)
  local parts = {}
  for i = 1, r.count do parts[i] = string.pack(">I2", (1000 + r.address + i - 1) % 65536) end
  return table.concat(parts)
end

-- Every point's assembled value must be exactly its own addresses.
local function check_values(values, points)
  for _, p in ipairs(points) do
    local v = values[p]
    local count = p.count or 1
    assert(v, "no value for a point")
    if type(v) == "string" then
      T.eq(#v, 2 * count, "bytes for a point")
      for i = 1, count do
        T.eq(string.unpack(">I2", v, 2 * i - 1), (1000 + p.address + i - 1) % 65536, "register value")
      end
    else
      T.eq(#v, count, "values for a point")
      for i = 1, count do
        local a = p.address + i - 1
        T.eq(v[i], is_bits[p.kind] and (a % 2 == 1) or 1000 + a, "value at " .. a)
      end
    end
  end
end

-- Deterministic pseudo-random numbers (an LCG), independent of math.random.
local function rng(seed)
  local state = seed
  return function(lo, hi)
    state = (state * 6364136223846793005 + 1442695040888963407) & 0x7fffffffffffffff
    return lo + (state >> 16) % (hi - lo + 1)
  end
end

-- {===== merging and gaps =====

T.test("no points, no reads", function()
  T.eq(#plan({}), 0)
end)

T.test("one point", function()
  local p = pt("holding", 40000, 2)
  local reads = plan({ p })
  T.eq(spans(reads), "holding 40000+2")
  assert(rawequal(reads[1].points[1], p), "points are returned by reference")
end)

T.test("count defaults to 1", function()
  local reads = plan({ { kind = "input", address = 7 } })
  T.eq(spans(reads), "input 7+1")
end)

T.test("adjacent points merge into one read", function()
  local points = { pt("holding", 0, 2), pt("holding", 2, 2), pt("holding", 4, 1) }
  T.eq(shape(plan(points), points), "holding 0+5 [1,2,3]")
end)

T.test("default max_gap is 10 registers", function()
  local points = { pt("input", 0, 2), pt("input", 12, 2) }          -- gap 10
  T.eq(spans(plan(points)), "input 0+14")
  points = { pt("input", 0, 2), pt("input", 13, 2) }                -- gap 11
  T.eq(spans(plan(points)), "input 0+2 | input 13+2")
  T.eq(planner.DEFAULT_GAP, 10)
end)

T.test("max_gap option, including 0", function()
  local points = { pt("holding", 0, 1), pt("holding", 2, 1), pt("holding", 3, 1), pt("holding", 9, 1) }
  T.eq(spans(plan(points, { max_gap = 0 })), "holding 0+1 | holding 2+2 | holding 9+1")
  T.eq(spans(plan(points, { max_gap = 1 })), "holding 0+4 | holding 9+1")
  T.eq(spans(plan(points, { max_gap = 5 })), "holding 0+10")
  check_plan(plan(points, { max_gap = 1 }), points, { max_gap = 1 })
end)

T.test("default max_bit_gap is 32 bits", function()
  local points = { pt("coil", 0, 1), pt("coil", 33, 1) }             -- gap 32
  T.eq(spans(plan(points)), "coil 0+34")
  points = { pt("coil", 0, 1), pt("coil", 34, 1) }                   -- gap 33
  T.eq(spans(plan(points)), "coil 0+1 | coil 34+1")
  T.eq(spans(plan(points, { max_bit_gap = 33 })), "coil 0+35")
  -- the register gap does not apply to bits, nor the bit gap to registers
  T.eq(spans(plan(points, { max_gap = 0 })), "coil 0+1 | coil 34+1")
  T.eq(spans(plan({ pt("holding", 0, 1), pt("holding", 20, 1) }, { max_bit_gap = 100 })),
    "holding 0+1 | holding 20+1")
end)

T.test("points are listed in address order", function()
  local points = { pt("holding", 8, 1), pt("holding", 0, 2), pt("holding", 4, 2) }
  T.eq(shape(plan(points), points), "holding 0+9 [2,3,1]")
end)

-- }=====

-- {===== limits =====

T.test("max_regs boundary: 125 registers is one read", function()
  local points = { pt("holding", 0, 1), pt("holding", 124, 1) }
  local opts = { max_gap = 200 }
  T.eq(spans(plan(points, opts)), "holding 0+125")
  points = { pt("holding", 0, 1), pt("holding", 125, 1) }
  T.eq(spans(plan(points, opts)), "holding 0+1 | holding 125+1")
end)

T.test("max_regs boundary with a two-register value", function()
  local points = {}
  for a = 0, 122, 2 do points[#points + 1] = pt("input", a, 2) end    -- 0..123
  points[#points + 1] = pt("input", 124, 1)                           -- 125 registers
  T.eq(#plan(points), 1)
  points[#points] = pt("input", 124, 2)                               -- would be 126
  local reads = plan(points)
  T.eq(spans(reads), "input 0+124 | input 124+2")
  check_plan(reads, points)
end)

T.test("a point of exactly 125 is one read, 126 is two", function()
  T.eq(spans(plan({ pt("holding", 1000, 125) })), "holding 1000+125")
  local p = pt("holding", 1000, 126)
  local reads = plan({ p })
  T.eq(spans(reads), "holding 1000+125 | holding 1125+1")
  assert(reads[1].points[1] == p and reads[2].points[1] == p, "the point is listed in both reads")
end)

T.test("max_regs option lowers the limit", function()
  local points = {}
  for a = 0, 98, 2 do points[#points + 1] = pt("holding", a, 2) end   -- 100 registers
  local reads = plan(points, { max_regs = 45 })
  T.eq(spans(reads), "holding 0+44 | holding 44+44 | holding 88+12")
  check_plan(reads, points, { max_regs = 45 })
end)

T.test("bits limit 2000", function()
  local points = { pt("coil", 0, 1000), pt("coil", 1000, 1000) }
  T.eq(spans(plan(points)), "coil 0+2000")
  points[#points + 1] = pt("coil", 2000, 1)
  T.eq(spans(plan(points)), "coil 0+2000 | coil 2000+1")
  T.eq(spans(plan({ pt("discrete", 0, 2000) })), "discrete 0+2000")
  T.eq(spans(plan({ pt("discrete", 0, 2001) })), "discrete 0+2000 | discrete 2000+1")
end)

T.test("max_bits option", function()
  local points = { pt("discrete", 0, 8), pt("discrete", 8, 8) }
  T.eq(spans(plan(points, { max_bits = 8 })), "discrete 0+8 | discrete 8+8")
  T.eq(spans(plan(points, { max_bits = 16 })), "discrete 0+16")
end)

T.test("a read never reaches past address 65535", function()
  local points = { pt("holding", 65530, 6), pt("holding", 65400, 10) }
  local reads = plan(points, { max_gap = 200 })
  T.eq(spans(reads), "holding 65400+10 | holding 65530+6")
  check_plan(reads, points, { max_gap = 200 })
end)

-- }=====

-- {===== avoided ranges =====

T.test("an avoided range splits a run", function()
  local points = { pt("holding", 0, 2), pt("holding", 2, 1), pt("holding", 4, 2) }
  local opts = { avoid = { { kind = "holding", first = 3, last = 3 } } }
  local reads = plan(points, opts)
  T.eq(spans(reads), "holding 0+3 | holding 4+2")
  check_plan(reads, points, opts)
end)

T.test("an avoided range inside a small gap splits the read", function()
  local points = { pt("input", 100, 2), pt("input", 108, 2) }
  T.eq(spans(plan(points)), "input 100+10")
  local opts = { avoid = { { kind = "input", first = 104, last = 105 } } }
  T.eq(spans(plan(points, opts)), "input 100+2 | input 108+2")
end)

T.test("avoid without last is one address", function()
  local points = { pt("input", 0, 1), pt("input", 2, 1) }
  T.eq(spans(plan(points, { avoid = { { kind = "input", first = 1 } } })), "input 0+1 | input 2+1")
end)

T.test("an avoided range of another kind changes nothing", function()
  local points = { pt("input", 0, 2), pt("input", 4, 2) }
  local opts = { avoid = { { kind = "holding", first = 2, last = 3 },
                           { kind = "coil", first = 0, last = 99 } } }
  T.eq(spans(plan(points, opts)), "input 0+6")
end)

T.test("several avoided ranges, in any order", function()
  local points = {}
  for a = 0, 40, 4 do points[#points + 1] = pt("holding", a, 2) end
  local opts = { avoid = { { kind = "holding", first = 30, last = 31 },
                           { kind = "holding", first = 10, last = 11 } } }
  local reads = plan(points, opts)
  T.eq(spans(reads), "holding 0+10 | holding 12+18 | holding 32+10")
  check_plan(reads, points, opts)
end)

T.test("a point overlapping an avoided range is an error naming it", function()
  local points = { pt("input", 0, 2), pt("input", 10, 2, { name = "pv_power" }) }
  local reads, err = planner.plan(points, { avoid = { { kind = "input", first = 11, last = 20 } } })
  T.eq(reads, nil)
  assert(err:find("point #2 'pv_power' (input 10..11)", 1, true), err)
  assert(err:find("avoided input range 11..20", 1, true), err)
end)

T.test("an oversized point overlapping an avoided range is an error", function()
  local points = { pt("holding", 0, 200) }
  local reads, err = planner.plan(points, { avoid = { { kind = "holding", first = 150, last = 150 } } })
  T.eq(reads, nil)
  assert(err:find("point #1 (holding 0..199) overlaps the avoided holding range 150..150", 1, true), err)
end)

T.test("an oversized point next to an avoided range is fine", function()
  local points = { pt("holding", 0, 200), pt("holding", 201, 1) }
  local opts = { avoid = { { kind = "holding", first = 200, last = 200 } } }
  local reads = plan(points, opts)
  T.eq(spans(reads), "holding 0+125 | holding 125+75 | holding 201+1")
  check_plan(reads, points, opts)
end)

-- }=====

-- {===== oversized points =====

T.test("a 200-register block is cut into 125 + 75", function()
  local p = pt("input", 5000, 200, { name = "log" })
  local reads = plan({ p })
  T.eq(spans(reads), "input 5000+125 | input 5125+75")
  assert(reads[1].points[1] == p and reads[2].points[1] == p, "listed in both")
end)

T.test("points after an oversized one join its last chunk", function()
  local points = { pt("holding", 0, 200), pt("holding", 202, 2), pt("holding", 210, 2) }
  local reads = plan(points)
  T.eq(shape(reads, points), "holding 0+125 [1] | holding 125+87 [1,2,3]")
  check_plan(reads, points)
end)

T.test("an oversized point joins the open read when that saves a read", function()
  local points = { pt("holding", 0, 2), pt("holding", 4, 200) }
  local reads = plan(points)
  T.eq(shape(reads, points), "holding 0+125 [1,2] | holding 125+79 [2]")
  check_plan(reads, points)
end)

T.test("an oversized point starts its own chunks when joining would not help", function()
  -- joined: 0+125, 125+125, 250+130 (too long for 376..379); alone: 0+120, 130+125, 255+125.
  local points = { pt("holding", 0, 120), pt("holding", 130, 130), pt("holding", 376, 4) }
  local opts = { max_gap = 120 }
  local reads = plan(points, opts)
  T.eq(shape(reads, points), "holding 0+120 [1] | holding 130+125 [2] | holding 255+125 [2,3]")
  check_plan(reads, points, opts)
end)

T.test("a point nested in an oversized one joins the chunk that holds it", function()
  local points = { pt("input", 0, 300), pt("input", 10, 2), pt("input", 130, 2), pt("input", 299, 1) }
  local reads = plan(points)
  T.eq(shape(reads, points), "input 0+125 [1,2] | input 125+125 [1,3] | input 250+50 [1,4]")
  check_plan(reads, points)
end)

T.test("a small point straddling two chunks gets its own read", function()
  local points = { pt("input", 0, 300), pt("input", 124, 2) }
  local reads = plan(points)
  T.eq(shape(reads, points), "input 0+125 [1] | input 124+2 [2] | input 125+125 [1] | input 250+50 [1]")
  check_plan(reads, points)
end)

T.test("overlapping oversized points share chunks", function()
  local points = { pt("holding", 0, 200), pt("holding", 100, 200) }
  local reads = plan(points)
  T.eq(shape(reads, points), "holding 0+125 [1,2] | holding 125+125 [1,2] | holding 250+50 [2]")
  check_plan(reads, points)
end)

T.test("an oversized point inside an oversized one", function()
  local points = { pt("holding", 0, 400), pt("holding", 10, 130) }
  local reads = plan(points)
  T.eq(shape(reads, points),
    "holding 0+125 [1,2] | holding 125+125 [1,2] | holding 250+125 [1] | holding 375+25 [1]")
  check_plan(reads, points)
end)

T.test("an oversized coil block", function()
  local points = { pt("coil", 0, 4500), pt("coil", 4510, 1) }
  local reads = plan(points)
  T.eq(spans(reads), "coil 0+2000 | coil 2000+2000 | coil 4000+511")
  check_plan(reads, points)
end)

-- }=====

-- {===== duplicates, overlaps, kinds, order =====

T.test("the same point table twice is planned once", function()
  local p = pt("holding", 3, 2)
  local reads = plan({ p, p, pt("holding", 5, 1) })
  T.eq(#reads, 1)
  T.eq(#reads[1].points, 2)
end)

T.test("equal points from different tables are both listed", function()
  local a, b = pt("holding", 3, 2, { name = "a" }), pt("holding", 3, 2, { name = "b" })
  local reads = plan({ a, b })
  T.eq(spans(reads), "holding 3+2")
  T.eq(#reads[1].points, 2)
  assert(reads[1].points[1] == a and reads[1].points[2] == b, "input order for equal points")
end)

T.test("overlapping points share one read", function()
  local points = { pt("input", 0, 4), pt("input", 2, 2), pt("input", 1, 6), pt("input", 3, 1) }
  local reads = plan(points)
  T.eq(shape(reads, points), "input 0+7 [1,3,2,4]")
  check_plan(reads, points)
end)

T.test("a u32 and its two u16 halves", function()
  local points = { pt("holding", 30775, 2, { name = "pac" }), pt("holding", 30775, 1),
                   pt("holding", 30776, 1) }
  local reads = plan(points)
  T.eq(shape(reads, points), "holding 30775+2 [1,2,3]")
end)

T.test("mixed kinds never share a read and come in function-code order", function()
  local points = {
    pt("input", 0, 2), pt("holding", 0, 2), pt("discrete", 0, 1), pt("coil", 0, 1),
    pt("input", 2, 2), pt("holding", 2, 2), pt("discrete", 1, 1), pt("coil", 1, 1),
  }
  local reads = plan(points)
  T.eq(shape(reads, points), "coil 0+2 [4,8] | discrete 0+2 [3,7] | holding 0+4 [2,6] | input 0+4 [1,5]")
  check_plan(reads, points)
end)

T.test("the plan does not depend on the input order", function()
  local points = {}
  local next_int = rng(7)
  local kinds = { "holding", "input", "coil", "discrete" }
  for i = 1, 60 do
    points[i] = pt(kinds[next_int(1, 4)], next_int(0, 400), next_int(1, 4), { id = i })
  end
  -- Equal points keep their input order inside a read, so compare the ids
  -- of each read as a sorted set.
  local function ids(reads)
    local out = {}
    for _, r in ipairs(reads) do
      local list = {}
      for _, p in ipairs(r.points) do list[#list + 1] = p.id end
      table.sort(list)
      out[#out + 1] = string.format("%s %d+%d [%s]", r.kind, r.address, r.count, table.concat(list, ","))
    end
    return table.concat(out, " | ")
  end
  local want = ids(plan(points))
  T.eq(ids(plan(points)), want, "same input, same plan")
  for _ = 1, 5 do
    local shuffled = {}
    for i, p in ipairs(points) do shuffled[i] = p end
    for i = #shuffled, 2, -1 do
      local j = next_int(1, i)
      shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
    end
    T.eq(ids(plan(shuffled)), want, "shuffled input")
  end
end)

T.test("extra fields are preserved and the input is not changed", function()
  local decode = function() end
  local p = pt("input", 52, 2, { name = "frequency", type = "f32", scale = 1, decode = decode })
  local points = { p }
  local reads = plan(points)
  assert(rawequal(reads[1].points[1], p), "same table")
  T.eq(p.name, "frequency"); T.eq(p.decode, decode); T.eq(p.type, "f32")
  T.eq(#points, 1)
  local keys = 0
  for _ in pairs(p) do keys = keys + 1 end
  T.eq(keys, 7, "fields of the point")
end)

T.test("unit is ignored", function()
  T.eq(spans(plan({ pt("holding", 0, 1) }, { unit = 3 })), "holding 0+1")
end)

-- }=====

-- {===== argument errors raise =====

local function raises(fn, part)
  local ok, err = pcall(fn)
  assert(not ok, "expected an error containing " .. part)
  assert(tostring(err):find(part, 1, true), err)
end

T.test("malformed points raise", function()
  raises(function() planner.plan("x") end, "points must be an array of point tables, got string")
  raises(function() planner.plan({ 5 }) end, "point #1 must be a table, got number")
  raises(function() planner.plan({ pt("holding_register", 0, 1) }) end,
    "point #1 has kind \"holding_register\" (expected holding, input, coil or discrete)")
  raises(function() planner.plan({ { address = 0 } }) end, "point #1 has kind nil")
  raises(function() planner.plan({ pt("input", 0, 1), pt("input", -1, 1) }) end,
    "point #2 needs an integer address 0..65535, got -1")
  raises(function() planner.plan({ pt("input", 65536, 1) }) end, "address 0..65535, got 65536")
  raises(function() planner.plan({ pt("input", 1.5, 1) }) end, "got 1.5")
  raises(function() planner.plan({ pt("input", "10", 1) }) end, "got \"10\"")
  raises(function() planner.plan({ pt("input", 0, 0) }) end, "point #1 needs a positive integer count, got 0")
  raises(function() planner.plan({ pt("input", 0, 2.5) }) end, "count, got 2.5")
  raises(function() planner.plan({ pt("input", 65535, 2) }) end, "point #1 ends past address 65535")
end)

T.test("integral floats are accepted as integers", function()
  T.eq(spans(plan({ pt("input", 10.0, 2.0) })), "input 10+2")
  T.eq(math.type(plan({ pt("input", 10.0, 2.0) })[1].address), "integer")
end)

T.test("bad options raise", function()
  local p = { pt("holding", 0, 1) }
  raises(function() planner.plan(p, 5) end, "opts must be a table or nil, got number")
  raises(function() planner.plan(p, { max_regs = 126 }) end,
    "opts.max_regs must be an integer 1..125, got 126")
  raises(function() planner.plan(p, { max_regs = 0 }) end, "opts.max_regs")
  raises(function() planner.plan(p, { max_bits = 2001 }) end, "opts.max_bits must be an integer 1..2000")
  raises(function() planner.plan(p, { max_gap = -1 }) end, "opts.max_gap")
  raises(function() planner.plan(p, { max_bit_gap = "x" }) end, "opts.max_bit_gap")
  raises(function() planner.plan(p, { avoid = 3 }) end, "opts.avoid must be an array")
  raises(function() planner.plan(p, { avoid = { { kind = "reg", first = 1 } } }) end, "opts.avoid[1]")
  raises(function() planner.plan(p, { avoid = { { kind = "input", first = 5, last = 4 } } }) end,
    "opts.avoid[1]")
  raises(function() planner.plan(p, { avoid = { { kind = "input" } } }) end, "opts.avoid[1]")
end)

-- }=====

-- {===== split =====

T.test("split an array of registers", function()
  local a, b, c = pt("holding", 10, 2), pt("holding", 13, 1), pt("holding", 11, 3)
  local reads = plan({ a, b, c })
  T.eq(spans(reads), "holding 10+4")
  local s = planner.split(reads[1], { 1, 2, 3, 4 })
  T.eq(table.concat(s[a], ","), "1,2")
  T.eq(table.concat(s[b], ","), "4")
  T.eq(table.concat(s[c], ","), "2,3,4")
end)

T.test("split a byte string of registers", function()
  local a, b = pt("input", 0, 2), pt("input", 5, 1)
  local reads = plan({ a, b })
  local data = string.pack(">I2I2I2I2I2I2", 0x4120, 0x0000, 7, 8, 9, 0xBEEF)
  local s = planner.split(reads[1], data)
  T.eq(string.unpack(">f", s[a]), 10.0, "float32 from two registers")
  T.eq(s[b], "\xBE\xEF")
end)

T.test("split coils and discrete inputs as booleans", function()
  local a, b = pt("coil", 0, 3), pt("coil", 4, 1)
  local reads = plan({ a, b })
  local s = planner.split(reads[1], { true, false, true, false, true })
  T.eq(#s[a], 3); T.eq(s[a][2], false); T.eq(s[a][3], true); T.eq(s[b][1], true)
  local d = pt("discrete", 7, 2)
  s = planner.split(plan({ d })[1], { false, false })
  T.eq(#s[d], 2); T.eq(s[d][1], false)
end)

T.test("split gives the part of an oversized point, or joins parts with into", function()
  local big, after = pt("holding", 0, 200), pt("holding", 200, 2)
  local reads = plan({ big, after })
  T.eq(#reads, 2)
  local parts = planner.split(reads[2], fake_data(reads[2]))
  T.eq(#parts[big], 75); T.eq(parts[big][1], 1125); T.eq(#parts[after], 2)
  local values = {}
  for _, r in ipairs(reads) do planner.split(r, fake_data(r), values) end
  check_values(values, { big, after })
  local bytes = {}
  for _, r in ipairs(reads) do planner.split(r, fake_bytes(r), bytes) end
  check_values(bytes, { big, after })
  -- a second poll cycle into the same table starts afresh
  for _, r in ipairs(reads) do planner.split(r, fake_bytes(r), bytes) end
  check_values(bytes, { big, after })
  for _, r in ipairs(reads) do planner.split(r, fake_data(r), values) end
  check_values(values, { big, after })
end)

T.test("split into with parts out of order raises", function()
  local big = pt("input", 0, 300)
  local reads = plan({ big })
  local into = {}
  raises(function() planner.split(reads[2], fake_bytes(reads[2]), into) end, "must be split in plan order")
  planner.split(reads[1], fake_data(reads[1]), into)
  raises(function() planner.split(reads[3], fake_data(reads[3]), into) end, "must be split in plan order")
end)

T.test("split checks its arguments", function()
  local r = plan({ pt("holding", 0, 2) })[1]
  raises(function() planner.split({}, {}) end, "expected a read returned by planner.plan")
  raises(function() planner.split(r, { 1 }) end, "got 1 values for a read of 2")
  raises(function() planner.split(r, "abc") end, "got 3 bytes for a read of 2")
  raises(function() planner.split(r, 5) end, "data must be an array or a byte string, got number")
  raises(function() planner.split(r, { 1, 2 }, 5) end, "into must be a table or nil")
  local c = plan({ pt("coil", 0, 8) })[1]
  raises(function() planner.split(c, "\xff") end, "data of a coil read must be an array of booleans")
end)

T.test("split returns new slices and leaves the data alone", function()
  local a = pt("holding", 0, 2)
  local r = plan({ a })[1]
  local data = { 5, 6 }
  local s = planner.split(r, data)
  assert(s[a] ~= data, "a new table")
  s[a][1] = 99
  T.eq(data[1], 5)
end)

-- }=====

-- {===== stats and realistic lists =====

T.test("stats counts transactions, registers, bits and extras", function()
  local points = { pt("holding", 0, 2), pt("holding", 4, 2), pt("coil", 0, 3), pt("input", 0, 300) }
  local reads = plan(points)
  local s = planner.stats(reads, points)
  T.eq(s.transactions, 5); T.eq(s.registers, 306); T.eq(s.bits, 3); T.eq(s.extra, 2)
  T.eq(s.one_per_point, 6, "the 300-register point needs 3 reads even alone")
  raises(function() planner.stats(nil, points) end, "planner.stats")
end)

-- An Eastron SDM630-like three-phase meter: float32 input registers. Phase
-- values 0x00..0x2E in one block, then totals, demand, line voltages,
-- neutral current and the energy totals at 0x156/0x158.
local function sdm630()
  local points = {}
  for a = 0x00, 0x2E, 2 do points[#points + 1] = pt("input", a, 2, { type = "f32" }) end
  for _, a in ipairs({ 0x30, 0x34, 0x38, 0x3C, 0x3E, 0x46, 0x48, 0x4A, 0x4E, 0x54, 0x56,
                       0xC8, 0xCA, 0xCC, 0xE0, 0x156, 0x158 }) do
    points[#points + 1] = pt("input", a, 2, { type = "f32" })
  end
  return points
end

T.test("SDM630-like meter: 41 points in 4 reads", function()
  local points = sdm630()
  T.eq(#points, 41)
  local reads = plan(points, { max_gap = 10 })
  check_plan(reads, points, { max_gap = 10 })
  local s = planner.stats(reads, points)
  assert(s.transactions <= 4, "too many reads: " .. spans(reads))
  T.eq(s.one_per_point, 41)
  T.eq(spans(reads), "input 0+88 | input 200+6 | input 224+2 | input 342+4")
  T.eq(s.registers, 100); T.eq(s.extra, 18)
end)

T.test("SDM630-like meter with other settings", function()
  local points = sdm630()
  local reads = plan(points, { max_gap = 0 })
  check_plan(reads, points, { max_gap = 0 })
  T.eq(#reads, 10)
  T.eq(planner.stats(reads, points).extra, 0)
  reads = plan(points, { max_gap = 25 })
  check_plan(reads, points, { max_gap = 25 })
  T.eq(#reads, 3)
  reads = plan(points, { max_regs = 45 })
  check_plan(reads, points, { max_regs = 45 })
  T.eq(#reads, 5)
end)

-- A Growatt-like hybrid inverter: input registers 0..110 (PV, AC, energy,
-- temperatures, fault codes; u16 and u32 values with holes) plus battery and
-- grid values above 1000.
local function growatt()
  local spec = {
    { 0, 1 }, { 1, 2 }, { 3, 1 }, { 4, 1 }, { 5, 2 }, { 7, 1 }, { 8, 1 }, { 9, 2 },
    { 35, 2 }, { 37, 1 }, { 38, 1 }, { 39, 1 }, { 40, 2 }, { 42, 1 }, { 43, 1 }, { 44, 2 },
    { 46, 1 }, { 47, 1 }, { 48, 2 }, { 53, 2 }, { 55, 2 }, { 57, 2 }, { 59, 2 }, { 61, 2 },
    { 63, 2 }, { 65, 2 }, { 91, 2 }, { 93, 1 }, { 94, 1 }, { 95, 1 }, { 98, 1 }, { 99, 1 },
    { 104, 1 }, { 105, 1 }, { 110, 1 },
    { 1009, 2 }, { 1011, 2 }, { 1013, 1 }, { 1014, 1 }, { 1015, 2 }, { 1021, 2 }, { 1029, 2 },
    { 1037, 2 }, { 1044, 2 }, { 1046, 2 }, { 1048, 2 }, { 1050, 2 }, { 1052, 2 }, { 1054, 2 },
    { 1056, 2 }, { 1058, 2 }, { 1060, 2 }, { 1062, 2 },
  }
  local points = {}
  for _, s in ipairs(spec) do points[#points + 1] = pt("input", s[1], s[2]) end
  return points
end

T.test("Growatt-like inverter: 53 points in 4 reads", function()
  local points = growatt()
  T.eq(#points, 53)
  local reads = plan(points)
  check_plan(reads, points)
  T.eq(spans(reads), "input 0+11 | input 35+32 | input 91+20 | input 1009+55")
  local s = planner.stats(reads, points)
  T.eq(s.transactions, 4); T.eq(s.one_per_point, 53)
end)

T.test("Growatt-like inverter with other settings", function()
  local points = growatt()
  T.eq(spans(plan(points, { max_gap = 25 })), "input 0+111 | input 1009+55")
  local reads = plan(points, { max_regs = 45 })
  check_plan(reads, points, { max_regs = 45 })
  T.eq(#reads, 5)
  reads = plan(points, { max_gap = 0 })
  check_plan(reads, points, { max_gap = 0 })
  T.eq(#reads, 12)
  -- registers 100..103 answer with an exception on this firmware
  local opts = { max_gap = 25, avoid = { { kind = "input", first = 100, last = 103 } } }
  reads = plan(points, opts)
  check_plan(reads, points, opts)
  T.eq(spans(reads), "input 0+100 | input 104+7 | input 1009+55")
end)

T.test("realistic lists split back into their values", function()
  for _, points in ipairs({ sdm630(), growatt() }) do
    local reads = plan(points)
    local values, bytes = {}, {}
    for _, r in ipairs(reads) do
      planner.split(r, fake_data(r), values)
      planner.split(r, fake_bytes(r), bytes)
    end
    check_values(values, points)
    check_values(bytes, points)
  end
end)

-- }=====

-- {===== randomised =====

-- The fewest reads for points that each fit in one read, by trying every
-- partition: a group is one read if it fits the limit, passes no gap wider
-- than max_gap and no avoided address. Span and avoided addresses only grow
-- as a group grows, so they prune early; a gap can be filled by a later
-- point, so gaps are checked on complete partitions only.
local function brute_force(points, limit, max_gap, avoid)
  local function check(group, gaps_too)
    local lo, hi, wanted = math.huge, -1, {}
    for _, p in ipairs(group) do
      lo, hi = math.min(lo, p.address), math.max(hi, p.address + p.count - 1)
      for a = p.address, p.address + p.count - 1 do wanted[a] = true end
    end
    if hi - lo + 1 > limit then return false end
    local run = 0
    for a = lo, hi do
      for _, r in ipairs(avoid) do
        if a >= r.first and a <= r.last then return false end
      end
      run = wanted[a] and 0 or run + 1
      if gaps_too and run > max_gap then return false end
    end
    return true
  end
  local best, groups = math.huge, {}
  local function place(i)
    if #groups >= best then return end
    if i > #points then
      for _, g in ipairs(groups) do
        if not check(g, true) then return end
      end
      best = #groups
      return
    end
    for _, g in ipairs(groups) do
      g[#g + 1] = points[i]
      if check(g, false) then place(i + 1) end
      g[#g] = nil
    end
    groups[#groups + 1] = { points[i] }
    place(i + 1)
    groups[#groups] = nil
  end
  place(1)
  return best
end

T.test("greedy plans match the brute-force optimum", function()
  local next_int = rng(2024)
  local compared = 0
  for _ = 1, 400 do
    local limit, max_gap = next_int(3, 10), next_int(0, 3)
    local points = {}
    for i = 1, next_int(1, 6) do points[i] = pt("holding", next_int(0, 25), next_int(1, limit)) end
    local avoid = {}
    if next_int(1, 3) == 1 then
      local a = next_int(0, 30)
      avoid[1] = { kind = "holding", first = a, last = a + next_int(0, 2) }
    end
    local opts = { max_regs = limit, max_gap = max_gap, avoid = avoid }
    local reads = planner.plan(points, opts)
    if reads then
      compared = compared + 1
      check_plan(reads, points, opts)
      local best = brute_force(points, limit, max_gap, avoid)
      if #reads ~= best then
        error(string.format("plan has %d reads, optimum %d: %s", #reads, best, shape(reads, points)))
      end
    end
  end
  assert(compared > 300, "too few plans compared")
end)

T.test("random plans follow every rule and split back exactly", function()
  local next_int = rng(99)
  local kinds = { "holding", "input", "coil", "discrete" }
  for _ = 1, 150 do
    local opts = {
      max_regs = next_int(1, 3) == 1 and next_int(2, 125) or nil,
      max_bits = next_int(1, 3) == 1 and next_int(8, 2000) or nil,
      max_gap = next_int(0, 15), max_bit_gap = next_int(0, 40),
    }
    local points = {}
    for i = 1, next_int(1, 40) do
      local kind = kinds[next_int(1, 4)]
      local big = next_int(1, 10) == 1
      local count = big and next_int(1, is_bits[kind] and 4500 or 400) or next_int(1, 4)
      points[i] = pt(kind, next_int(0, 1500), count)
    end
    if next_int(1, 4) == 1 then points[#points + 1] = points[1] end          -- a duplicate
    local avoid = {}
    for _ = 1, next_int(0, 3) do
      local a = next_int(0, 2000)
      avoid[#avoid + 1] = { kind = kinds[next_int(1, 4)], first = a, last = a + next_int(0, 5) }
    end
    opts.avoid = avoid
    local reads, err = planner.plan(points, opts)
    if reads then
      check_plan(reads, points, opts)
      local values, bytes = {}, {}
      for _, r in ipairs(reads) do
        planner.split(r, fake_data(r), values)
        if not is_bits[r.kind] then planner.split(r, fake_bytes(r), bytes) end
      end
      check_values(values, points)
      local regs = {}
      for _, p in ipairs(points) do
        if not is_bits[p.kind] then regs[#regs + 1] = p end
      end
      check_values(bytes, regs)
    else
      assert(err:find("overlaps the avoided", 1, true), err)
    end
  end
end)

-- }=====
