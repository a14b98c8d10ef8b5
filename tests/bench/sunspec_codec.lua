-- SunSpec points decoded per second: moondog.sunspec.codec (one C call per
-- register block) against the same blocks decoded point by point in Lua
-- with md.modbus.decode (not-implemented checks and scale factors in Lua),
-- measured in the same run.
--
--   moondog tests/bench/sunspec_codec.lua [BLOCKS]
--
-- The blocks are an inverter's model 103 (52 registers) and model 160 with
-- three MPPT modules (70 registers), built from the shipped definitions and
-- filled with encoded values (scale factors -1 and -2, a few points left
-- not implemented). Both decoders must agree on every value before timing.
-- BLOCKS (default 20000) pairs of blocks are decoded by each; CPU time is
-- os.clock(). Every loop is bounded by its count.

local models = require "moondog.sunspec.models"
local codec = require "moondog.sunspec.codec"
local mbcodec = require "moondog.modbus.codec"

local blocks = math.tointeger(tonumber((...) or "20000")) or 20000

-- Every point of one model instance of length L: {type, size, offset, sf}
-- with offsets from the ID register and scale factors as {index = i}
-- (looked up in the point's group first, then the model's top level).
local function flatten(model, L)
  local points = {}
  local function add(g, base, scope_top)
    local own = {}
    scope_top = scope_top or own
    for _, p in ipairs(g.points) do
      points[#points + 1] = { type = p.type, size = p.size, offset = base + p.offset, sf = p.sf }
      own[p.name] = #points
    end
    for i = #points - #g.points + 1, #points do
      if type(points[i].sf) == "string" then
        points[i].sf = { index = own[points[i].sf] or scope_top[points[i].sf] }
      end
    end
    local at = base + g.size
    for _, sub in ipairs(g.groups) do
      local count = sub.count == 0 and (L + 2 - g.size) // sub.size or sub.count
      for _ = 1, count do at = add(sub, at, scope_top) end
    end
    return at
  end
  add(model.group, 0, nil)
  for _, p in ipairs(points) do
    if type(p.sf) == "table" and p.sf.index == nil then error("unresolved scale factor") end
  end
  return points
end

-- A register block for the points (in register order, back to back):
-- values encoded by the codec itself.
local function fill(points, id, L)
  local regs = {}
  for i, p in ipairs(points) do
    local v
    if i == 1 then v = id
    elseif i == 2 then v = L
    elseif p.type == "sunssf" then v = -1 - i % 2
    elseif p.type == "string" then v = "bench-" .. i
    elseif i % 11 == 0 then v = nil -- not implemented
    else v = 1 + i * 37 % 1000
    end
    regs[i] = v == nil and codec.sentinel(p.type, p.size)
      or assert(codec.encode(p.type, p.size, v))
  end
  return table.concat(regs)
end

-- {===== the reference: point by point with md.modbus.decode =====

local MB_TYPE = {
  int16 = "int16", sunssf = "int16", uint16 = "uint16", count = "uint16", acc16 = "uint16",
  enum16 = "uint16", bitfield16 = "uint16", pad = "uint16", raw16 = "uint16", int32 = "int32",
  uint32 = "uint32", acc32 = "uint32", enum32 = "uint32", bitfield32 = "uint32", ipaddr = "uint32",
  float32 = "float32", int64 = "int64", uint64 = "uint64", acc64 = "uint64", bitfield64 = "uint64",
  float64 = "float64", string = "string",
}
local NONE = {
  int16 = -32768, sunssf = -32768, uint16 = 0xFFFF, count = 0xFFFF, acc16 = 0, enum16 = 0xFFFF,
  bitfield16 = 0xFFFF, int32 = -0x80000000, uint32 = 0xFFFFFFFF, acc32 = 0, enum32 = 0xFFFFFFFF,
  bitfield32 = 0xFFFFFFFF, ipaddr = 0, int64 = math.mininteger, uint64 = 2.0 ^ 64, acc64 = 0,
  bitfield64 = 2.0 ^ 64,
}

local function reference_decoder(points)
  local decode = mbcodec.decode
  local plan = {}
  for i, p in ipairs(points) do
    plan[i] = { mtype = MB_TYPE[p.type], at = p.offset + 1, n = p.type == "string" and p.size or nil,
                none = NONE[p.type], float = p.type:match("^float") ~= nil,
                text = p.type == "string", sf = type(p.sf) == "table" and p.sf.index or nil,
                sf_const = math.type(p.sf) == "integer" and p.sf or nil }
  end
  local function raw(regs, q)
    local v = decode(regs, q.mtype, "ABCD", q.at, q.n)
    if q.float then
      if v ~= v then return nil end
    elseif q.text then
      if v == "" then return nil end
    elseif v == q.none then
      return nil
    end
    return v
  end
  return function(regs)
    local out = {}
    for i = 1, #plan do
      local q = plan[i]
      local v = raw(regs, q)
      local sf = q.sf_const
      if q.sf and v ~= nil then
        sf = raw(regs, plan[q.sf])
        if sf == nil or sf < -10 or sf > 10 then v = nil end
      end
      if v ~= nil and sf and sf ~= 0 then
        v = sf < 0 and v / 10.0 ^ -sf or v * 10.0 ^ sf
      end
      out[i] = v
    end
    return out
  end
end

-- }=====

local cases = {}
for _, spec in ipairs({ { id = 103, L = 50 }, { id = 160, L = 68 } }) do
  local points = flatten(assert(models.get(spec.id)), spec.L)
  local regs = fill(points, spec.id, spec.L)
  assert(#regs == 2 * (spec.L + 2), "block size of model " .. spec.id)
  cases[#cases + 1] = { points = points, regs = regs, layout = codec.compile(points),
                        reference = reference_decoder(points) }
end

-- Both decoders agree on every point before anything is timed.
local npoints = 0
for _, c in ipairs(cases) do
  local got = codec.decode(c.layout, c.regs)
  local want = c.reference(c.regs)
  for i = 1, #c.points do
    if got[i] ~= want[i] then
      error(string.format("point %d: codec %s, reference %s", i, tostring(got[i]), tostring(want[i])))
    end
  end
  npoints = npoints + #c.points
end

local function rate(fn)
  local t0 = os.clock()
  for _ = 1, blocks do
    for _, c in ipairs(cases) do fn(c) end
  end
  return blocks * npoints / (os.clock() - t0)
end

local decode = codec.decode
local fast = rate(function(c) decode(c.layout, c.regs) end)
local slow = rate(function(c) c.reference(c.regs) end)
print(string.format("sunspec codec.decode: %.0f points/s (models 103 + 160 with 3 modules, "
  .. "%d points per pair); point by point with md.modbus.decode: %.0f points/s; ratio %.1f",
  fast, npoints, slow, fast / slow))
