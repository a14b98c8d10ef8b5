-- moondog.growatt.record: a Growatt datalogger frame (from the parser of
-- moondog.growatt.core) to values. Pure Lua, no I/O: the proxy calls it on
-- a copy of the bytes, after they were forwarded.
--
--   local record = require "moondog.growatt.record"
--   local r = record.decode(frame [, { dtc = 5100, tp = 0x0203 }])
--   r.kind        -- "data", "buffered", "announce", "meter", "ping", "ack", "command",
--                 -- "other"
--   r.logger, r.inverter   -- serials (data records and pings; commands: logger)
--   r.time        -- "2020-07-25T16:10:39" (the record's own clock) or nil
--   r.time_raw    -- the 6 timestamp bytes when they are no valid time
--   r.buffered    -- true for 0x50: recorded earlier, never a current value
--   r.layout      -- "classic", "tlx", "mod", "tl3", "sph", "spa", "meter",
--                 -- "meter_chint", "meter_sdm630", or nil when none fits
--   r.values      -- {pv_power = 217.4, ...} by the layout's point names
--   r.registers   -- {[0] = 1, [1] = 0, ...}: every register the record carries
--                    (announce records, and records without a layout)
--   r.dtc, r.tp   -- announce: device type code (holding register 43) and
--                 -- trackers/phases (holding register 44); give them back
--                 -- as opts.dtc, opts.tp for the data records that follow
--
-- Record layout (after the 8-byte header, unscrambled; protocol 6 has a
-- 20-byte pad after each serial): logger serial (10), inverter serial
-- (10), timestamp (6: year-2000, month, day, hour, minute, second), the
-- number of register groups (1), then per group start, end (u16 each)
-- and end-start+1 registers. Walking the groups, not fixed offsets, is
-- what lets one decoder serve every model: a layout only names registers.
--
-- Nothing is dropped for not being understood: a record without a layout
-- still gives its registers, and the caller publishes them raw (the first
-- time a layout key is unknown, one log line says so).

local layouts do
  local path = require("moondog").paths.devices .. "/growatt/layouts.lua"
  local chunk, err = loadfile(path, "t", {})
  if not chunk then error("moondog.growatt.record: cannot load " .. path .. ": " .. err, 0) end
  layouts = chunk()
end

local M = {}

local unpack, format = string.unpack, string.format

M.layouts = layouts

local DATA = { [0x03] = "announce", [0x04] = "data", [0x50] = "buffered", [0x1b] = "meter",
               [0x20] = "meter" }

local function serial(s)
  if s:byte(-1) ~= 0 then return s end -- the usual full 10 characters: no new string
  return (s:gsub("%z+$", ""))
end

local D2 = {} -- 0..99 as two digits
for i = 0, 99 do D2[i] = format("%02d", i) end

-- The 6 timestamp bytes at body[at] (bytes past the end read as 0).
local function timestamp(body, at)
  local y, mo, d, h, mi, s = body:byte(at, at + 5)
  y, mo, d, h, mi, s = y or 0, mo or 0, d or 0, h or 0, mi or 0, s or 0
  if y == 0 and mo == 0 and d == 0 and h == 0 and mi == 0 and s == 0 then return nil end
  if mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 or s > 59 then
    return nil, format("%02x%02x%02x%02x%02x%02x", y, mo, d, h, mi, s)
  end
  -- one concatenation of cached two-digit texts, not six printf
  -- conversions (a string.format per record)
  return (y < 100 and "20" .. D2[y] or tostring(2000 + y)) .. "-" .. D2[mo] .. "-" .. D2[d] .. "T" .. D2[h]
    .. ":" .. D2[mi] .. ":" .. D2[s]
end

--- record.groups(body, pos) -> {{first, last, pos = where its registers
--- start}, ...}: the register groups of a data record from byte pos
--- (1-based) of the unscrambled body. A group cut short is kept; its
--- missing registers read as nil.
function M.groups(body, pos)
  local count = body:byte(pos)
  local groups = {}
  if not count then return groups end
  pos = pos + 1
  for _ = 1, count do
    if pos + 3 > #body then break end
    local first, last = unpack(">I2I2", body, pos)
    pos = pos + 4
    if last < first then break end
    groups[#groups + 1] = { first, last, pos = pos }
    pos = pos + 2 * (last - first + 1)
  end
  return groups
end

--- record.registers(body, groups) -> {[reg] = value} for every register
--- the groups carry.
function M.registers(body, groups)
  local regs = {}
  for _, g in ipairs(groups) do
    for r = g[1], g[2] do
      local pos = g.pos + 2 * (r - g[1])
      if pos + 1 > #body then break end
      regs[r] = unpack(">I2", body, pos)
    end
  end
  return regs
end

-- Register r of a record: found through the group that holds it, read
-- straight from the body (no table of every register per record).
local function reg_at(body, groups, r)
  for _, g in ipairs(groups) do
    if r >= g[1] and r <= g[2] then
      local pos = g.pos + 2 * (r - g[1])
      if pos + 1 > #body then return nil end
      return unpack(">I2", body, pos)
    end
  end
  return nil
end

local function scaled(pt, v)
  local scale = pt.scale
  if scale and scale ~= 1 then
    v = v * scale
    -- decimal scales give decimal values: 2174 * 0.1 is 217.4, not 217.40000000000001
    local p10 = pt._p10
    if p10 == nil then
      local digits = scale < 1 and math.floor(-math.log(scale, 10) + 0.5) or 0
      p10 = (digits > 0 and digits <= 4) and 10 ^ digits or false
      pt._p10 = p10
    end
    if p10 then v = math.floor(v * p10 + 0.5) / p10 end
  end
  return v
end

local function value(body, groups, pt)
  local hi = reg_at(body, groups, pt.reg)
  if hi == nil then return nil end
  local v
  if pt.type == "u16" then
    v = hi
  elseif pt.type == "s16" then
    v = hi >= 0x8000 and hi - 0x10000 or hi
  else
    local lo = reg_at(body, groups, pt.reg + 1)
    if lo == nil then return nil end
    v = hi * 65536 + lo
    if pt.type == "s32" and v >= 0x80000000 then v = v - 0x100000000 end
  end
  return scaled(pt, v)
end

local NOINFO = {}

--- record.layout_for(groups [, info]) -> the layout table, or nil. info:
--- {dtc =, tp =} from the logger's announce (holding registers 43, 44).
function M.layout_for(groups, info)
  local g1, g2 = groups[1], groups[2]
  if not g1 then return nil end
  info = info or NOINFO
  for _, l in ipairs(layouts) do
    if l.first and l.first[1] == g1[1] and l.first[2] == g1[2]
        and (l.second == nil or (g2 and g2[1] == l.second))
        and (l.when == nil or l.when(info)) then
      return l
    end
  end
  return nil
end

local meter_layouts = {} -- record type -> the layouts of that type, in order
for _, l in ipairs(layouts) do
  if l.record_type then
    meter_layouts[l.record_type] = meter_layouts[l.record_type] or {}
    table.insert(meter_layouts[l.record_type], l)
  end
end

-- The comma-separated fields of a 0x1b record from body[at].
local function text_fields(body, at)
  local fields, i = {}, 0
  for f in (body:sub(at):gsub("%z.*$", "") .. ","):gmatch("([^,]*),") do
    i = i + 1
    fields[i] = f
  end
  return fields
end

-- A smart-meter record: 0x20 holds 32-bit values at fixed byte offsets
-- from the timestamp; 0x1b holds comma-separated ASCII numbers (fields).
local function meter_values(layout, body, t_at, fields)
  local out = {}
  if fields then
    for _, pt in ipairs(layout.points) do out[pt.name] = tonumber(fields[pt.pos]) end
    return out
  end
  for _, pt in ipairs(layout.points) do
    local at = t_at + pt.at
    if at + 3 <= #body then
      local v = unpack(">I4", body, at)
      if pt.type == "s32" and v >= 0x80000000 then v = v - 0x100000000 end
      out[pt.name] = scaled(pt, v)
    end
  end
  return out
end

-- A plan for one layout and one placement of its groups in the body (the
-- same for every record of a logger): where each point's bytes are, as
-- one string.unpack format over the whole span ("x" skips a byte), and
-- how each raw value is scaled. Decimal scales divide by a power of ten:
-- 2174 / 10 is the double nearest 217.4, as a person expects.
local plans = setmetatable({}, { __mode = "k" })

local FMT = { u16 = "I2", s16 = "i2", u32 = "I4", s32 = "i4" }

-- The plan as one function fill(body [, out]): a single string.unpack
-- into locals, then the values as a table constructor (sized at once, no
-- growing) or, with out, an assignment per point into out. No other table
-- is made. The format and the names come from the layout files; the names
-- are quoted. nil for a plan too long for locals.
local function compile(plan)
  local n = #plan.items
  if n == 0 or n > 180 then return nil end
  local vars, lines, fields = {}, {}, {}
  for i, it in ipairs(plan.items) do
    vars[i] = "v" .. i
    local expr = vars[i]
    if it.div then
      expr = format("%s / %d", expr, it.div)
    elseif it.mul then
      expr = format("%s * %.17g", expr, it.mul)
    end
    lines[i] = format("out[%q] = %s", it.name, expr)
    fields[i] = format("[%q] = %s", it.name, expr)
  end
  local src = format("local unpack = ...\nreturn function(body, out)\nlocal %s = unpack(%q, body, %d)\n"
    .. "if not out then return { %s } end\n%s\nreturn out\nend",
    table.concat(vars, ", "), plan.fmt, plan.start, table.concat(fields, ", "), table.concat(lines, "\n"))
  return assert(load(src, "=growatt layout plan", "t", {}))(unpack)
end

local function make_plan(layout, groups)
  local items = {}
  for _, pt in ipairs(layout.points) do
    local pos
    for _, g in ipairs(groups) do
      local last = pt.type:sub(2) == "32" and pt.reg + 1 or pt.reg
      if pt.reg >= g[1] and last <= g[2] then pos = g.pos + 2 * (pt.reg - g[1]) end
    end
    if not pos then return false end -- a point outside the groups (or across two): the slow way
    local scale, div, mul = pt.scale or 1, nil, nil
    if scale ~= 1 then
      local digits = scale < 1 and math.floor(-math.log(scale, 10) + 0.5) or 0
      if digits > 0 and digits <= 4 and math.abs(10 ^ -digits - scale) < 1e-12 then
        div = math.tointeger(10 ^ digits)
      else
        mul = scale
      end
    end
    items[#items + 1] = { name = pt.name, pos = pos, fmt = FMT[pt.type], div = div, mul = mul,
                          size = pt.type:sub(2) == "32" and 4 or 2 }
  end
  table.sort(items, function(a, b) return a.pos < b.pos end)
  local parts, at = { ">" }, items[1] and items[1].pos or 1
  local start = at
  for _, it in ipairs(items) do
    if it.pos < at then return false end -- overlapping points: the slow way
    parts[#parts + 1] = string.rep("x", it.pos - at) .. it.fmt
    at = it.pos + it.size
  end
  local plan = { items = items, fmt = table.concat(parts), start = start, stop = at - 1 }
  plan.fill = compile(plan)
  return plan
end

-- The plan of the last record of this layout, if its groups sit where
-- they sat then (the usual case: a logger sends the same blocks every
-- time), found without building the key.
local last_plan = setmetatable({}, { __mode = "k" })

local function same_groups(a, b)
  if #a ~= #b then return false end
  for i, g in ipairs(a) do
    local h = b[i]
    if g[1] ~= h[1] or g[2] ~= h[2] or g.pos ~= h.pos then return false end
  end
  return true
end

local function plan_for(layout, groups)
  local last = last_plan[layout]
  if last and same_groups(last.groups, groups) then return last.plan end
  local by_layout = plans[layout]
  if not by_layout then
    by_layout = {}
    plans[layout] = by_layout
  end
  local parts = {}
  for i, g in ipairs(groups) do parts[i] = g[1] .. "-" .. g[2] .. "@" .. g.pos end
  local key = table.concat(parts, ",")
  local plan = by_layout[key]
  if plan == nil then
    plan = make_plan(layout, groups)
    by_layout[key] = plan
  end
  last_plan[layout] = { groups = groups, plan = plan }
  return plan
end

--- record.values(layout, body, groups [, out]) -> {name = value}; out: a
--- table to fill instead of a new one (every point of the layout is set).
function M.values(layout, body, groups, out)
  local plan = plan_for(layout, groups)
  if plan and plan.stop <= #body and plan.fill then return plan.fill(body, out) end
  out = out or {}
  if plan and plan.stop <= #body then
    local raw = { unpack(plan.fmt, body, plan.start) }
    for i, it in ipairs(plan.items) do
      local v = raw[i]
      if it.div then
        v = v / it.div
      elseif it.mul then
        v = v * it.mul
      end
      out[it.name] = v
    end
    return out
  end
  for _, pt in ipairs(layout.points) do out[pt.name] = value(body, groups, pt) end
  return out
end

local function key_of(groups)
  local parts = {}
  for _, g in ipairs(groups) do parts[#parts + 1] = g[1] .. "-" .. g[2] end
  return table.concat(parts, ",")
end

M._unknown = {} -- layout keys already logged

--- record.decode(frame [, opts]) -> record table (see the top of the file).
--- frame: {protocol, unit, type, seq, body (unscrambled)}. opts.log(fmt,
--- ...) takes the once-per-key line about a record without a layout.
--- opts.reuse (a table): the values of a data record go into a table kept
--- there per layout, the same from record to record (less garbage), so a
--- record's values are good only until the next decode with that reuse.
function M.decode(frame, opts)
  local body, typ = frame.body, frame.type
  local pad = frame.protocol == 6 and 20 or 0
  -- every field a data record gets, so that the table is sized once
  local r = { type = typ, seq = frame.seq, unit = frame.unit, protocol = frame.protocol, kind = nil,
              logger = nil, inverter = nil, buffered = nil, time = nil, time_raw = nil, groups = nil,
              layout = nil, values = nil }
  local kind = DATA[typ]
  if #body == 1 then
    r.kind = "ack"
    return r
  end
  if #body >= 10 then r.logger = serial(body:sub(1, 10)) end
  if not kind then
    if typ == 0x16 then
      r.kind = "ping"
    elseif typ == 0x05 or typ == 0x06 or typ == 0x10 or typ == 0x18 or typ == 0x19 then
      r.kind = "command"
      r.args = body:sub(11 + pad)
    else
      r.kind = "other"
      r.registers = nil
    end
    return r
  end
  r.kind = kind
  r.buffered = typ == 0x50
  local inv_at = 11 + pad
  r.inverter = serial(body:sub(inv_at, inv_at + 9))
  local t_at = inv_at + 10 + pad
  if kind == "meter" then
    local list, fields = meter_layouts[typ], nil
    local layout = list[#list]
    if typ == 0x1b then
      -- no inverter serial: 2 bytes, the meter's clock, a length, the text
      r.inverter = nil
      r.time, r.time_raw = timestamp(body, inv_at + 2)
      fields = text_fields(body, inv_at + 10)
      for _, l in ipairs(list) do
        if not l.fields or #fields <= l.fields then
          layout = l
          break
        end
      end
    else
      r.time, r.time_raw = timestamp(body, t_at)
    end
    r.layout = layout.name
    r.values = meter_values(layout, body, t_at, fields)
    return r
  end
  r.time, r.time_raw = timestamp(body, t_at)
  local groups = M.groups(body, t_at + 6)
  r.groups = groups
  if kind == "announce" then
    r.registers = M.registers(body, groups)
    r.dtc, r.tp = r.registers[43], r.registers[44]
    return r
  end
  local layout = M.layout_for(groups, opts)
  if layout then
    r.layout = layout.name
    local reuse = opts and opts.reuse
    if reuse then
      local out = reuse[layout]
      if not out then
        out = {}
        reuse[layout] = out
      end
      r.values = M.values(layout, body, groups, out)
    else
      r.values = M.values(layout, body, groups)
    end
  else
    r.registers = M.registers(body, groups)
    local key = format("protocol %d type 0x%02x groups %s", frame.protocol, typ, key_of(groups))
    if not M._unknown[key] and opts and opts.log then
      M._unknown[key] = true
      opts.log("growatt: no layout for records with %s (logger %s); publishing their raw registers. "
        .. "Please report this with a capture so that a layout can be added.", key, tostring(r.logger))
    end
  end
  return r
end

return M
