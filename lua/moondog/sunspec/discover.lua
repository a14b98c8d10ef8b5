-- moondog.sunspec.discover: find a SunSpec map on a device and walk its
-- model list, in as few requests as possible.
--
--   local found, err, code = discover.run(read, { bases = {40000, 0, 50000}, where = "..." })
--   found.base, found.models       -- {id, addr, len, def, inst | nil, why}
--   found.blocks                   -- {addr, bytes}: what was read, cut where no value tears
--   found.warnings, found.no_cross_model
--
-- read(addr, count) -> big-endian register bytes, or nil, message, code:
-- the caller's Modbus read (holding registers, one unit).
--
-- A SunSpec map is 'SunS' at the base, then models back to back, each
-- starting with its id and its length L, and an end marker (0xFFFF, 0).
-- Walking it one header at a time (what pysunspec2 does) costs two
-- requests per model before a single value is read. Instead, read 125
-- registers at a time and walk every header that lies inside: a typical
-- inverter's whole map arrives in about five reads, and those same bytes
-- are the first full read of its values (found.blocks). Each block is cut
-- back to the last address where no point and no point-with-its-scale-
-- factor straddles the cut (moondog.sunspec.plan), and the next read
-- starts there, so no value is ever assembled from two requests.
--
-- Devices differ in what they answer, so reading adapts (per base):
--   "blocks"    read 125 registers, past the next unread header into what
--               is not known to exist yet. When such a read is refused (a
--               map that ends there, with an exception as most devices
--               answer), reads stay within what is known to exist (up to
--               and including the next header) until that reaches past the
--               refused read's end; then they read ahead again;
--   "per_model" never read across a model boundary, after a read of
--               registers known to exist was refused (some devices answer
--               reads spanning two models with an exception): header, then
--               body, per model.
-- An exception in "per_model" mode ends the walk there: the models before
-- it are kept, and a warning says where the list broke. A read that fails
-- for another reason (timeout, lost connection) fails the discovery with
-- that reason and where it happened.
--
-- Bases are tried in the order given (SunSpec's 40000, 0, 50000). A base
-- is wrong when its read is refused or the first two registers are not
-- 'SunS'; when none fits, the error names every address tried and what it
-- held.

local layout = require "moondog.sunspec.layout"
local models = require "moondog.sunspec.models"
local plan = require "moondog.sunspec.plan"
local mbcodec = require "moondog.modbus.codec"
local log = require "moondog.log"

local M = {}

local format = string.format
local END_ID = 0xFFFF

M.BASES = { 40000, 0, 50000 }

local function is_exception(code)
  return code ~= nil and mbcodec.exceptions[code] ~= nil
end

-- {===== state of one walk =====

-- A walk at one base: registers read (mem), models found, blocks kept.
local function new_walk(base, max, where)
  return {
    base = base, max = max, where = where,
    mem = {},          -- addr -> register value, everything read so far
    entries = {},      -- models in chain order
    blocks = {},       -- {addr, bytes} cut at safe places, back to back from base
    warnings = {},
    pos = base,        -- first register not yet kept in a block
    next_header = base + 2,
    end_at = nil,      -- address of the end marker once seen
    mode = "blocks",
    refused_end = nil, -- end of the last read refused past what is known
  }
end

local function warn(w, fmt, ...)
  local msg = format(fmt, ...)
  w.warnings[#w.warnings + 1] = msg
  log.warn("sunspec %s: %s", w.where, msg)
end

local function remember(w, addr, bytes)
  local mem = w.mem
  for i = 0, #bytes // 2 - 1 do
    mem[addr + i] = string.unpack(">I2", bytes, 2 * i + 1)
  end
end

-- The raw count in a count point: false when not implemented (0xFFFF).
local function counter(mem)
  return function(slot)
    local v = mem[slot.addr]
    if v == 0xFFFF then return false end
    return v
  end
end

local function model_label(e)
  return format("model %d at %d", e.id, e.addr)
end

-- Lay out a model once its header (and count points) are known. Models
-- without a definition stay raw; a definition the length contradicts
-- gives a warning and a raw model.
local function resolve(w, e)
  if e.inst or e.why then return end
  if not e.def then
    e.why = "no definition"
    return
  end
  local inst, why = layout.build(e.def, e.addr, e.len, counter(w.mem))
  if inst then
    e.inst = inst
  elseif not why:match("has not been read") then
    e.why = why
    warn(w, "%s (%s): %s; keeping its %d registers raw — check the device's firmware, or "
      .. "load a matching definition with --models / models.load_json_dir", model_label(e),
      e.def.name, why, e.len)
  end
end

-- Walk the headers that the registers read so far reach.
local function walk_headers(w)
  local mem = w.mem
  while not w.end_at do
    local at = w.next_header
    local id, len = mem[at], mem[at + 1]
    if id == nil or len == nil then return true end
    if id == END_ID then
      w.end_at = at
      if len ~= 0 then
        warn(w, "the end marker at %d has L = %d instead of 0; taking it as the end", at, len)
      end
      return true
    end
    if id == 0 or at + 2 + len > 0xFFFF then
      return nil, format("the model list breaks at %d: %s", at, id == 0
        and "model id 0 (no model has that id)"
        or format("model %d with L = %d runs past the last Modbus address", id, len))
    end
    local e = { id = id, addr = at, len = len, def = models.get(id) }
    w.entries[#w.entries + 1] = e
    w.next_header = at + 2 + len
  end
  return true
end

-- }=====

-- {===== where to cut a block =====

local function by_addr(a, b) return a.addr < b.addr end

-- The highest address <= stop where the kept block may end: never inside
-- a value or between a value and its scale factor, and never past the
-- header of a model whose layout is still unknown (its count points not
-- read yet).
local function safe_end(w, stop)
  local x = stop
  local slots = {}
  for _, e in ipairs(w.entries) do
    resolve(w, e)
    if e.addr < x and e.addr + e.len + 2 > w.pos then
      if e.inst then
        table.move(e.inst.slots, 1, #e.inst.slots, #slots + 1, slots)
      elseif not e.why and e.addr + e.len + 2 > x and e.addr + 2 > w.pos then
        x = math.min(x, e.addr + 2) -- layout still unknown: keep its header only
      end
    end
  end
  if not w.end_at and w.next_header < x and w.next_header + 2 > x then
    x = w.next_header -- half a header
  end
  table.sort(slots, by_addr)
  local cut = plan.last_cut(plan.atoms(slots, true), x)
  if cut <= w.pos then -- an atom longer than a read: keep points whole at least
    cut = plan.last_cut(plan.atoms(slots, false), x)
  end
  if cut <= w.pos then cut = stop end -- a point longer than a read: nothing better
  return cut
end

-- Keep [pos, cut) of the bytes read at addr.
local function keep(w, addr, bytes, cut)
  local from = w.pos - addr
  w.blocks[#w.blocks + 1] = { addr = w.pos, bytes = bytes:sub(2 * from + 1, 2 * (cut - addr)) }
  w.pos = cut
end

-- }=====

-- {===== choosing the next read =====

-- The model (or the marker) holding addr: its first and last+1 address.
local function region(w, addr)
  if addr < w.base + 2 then return w.base, w.base + 2 end
  for _, e in ipairs(w.entries) do
    if addr >= e.addr and addr < e.addr + e.len + 2 then return e.addr, e.addr + e.len + 2 end
  end
  return addr, addr + 2 -- an unread header
end

-- How many registers to read at w.pos in the current mode.
local function next_count(w)
  local pos, max = w.pos, w.max
  local known_end = (w.end_at or w.next_header) + 2
  local n
  if w.mode == "per_model" then
    local _, hi = region(w, pos)
    n = hi - pos
  elseif w.end_at or (w.refused_end and known_end < w.refused_end) then
    n = known_end - pos
  else
    n = 0x10000 - pos
  end
  return math.min(n, max)
end

local function span_label(w, addr, count)
  local last = addr + count - 1
  local inside = {}
  if addr < w.base + 2 then inside[#inside + 1] = "the 'SunS' marker" end
  for _, e in ipairs(w.entries) do
    if e.addr <= last and e.addr + e.len + 2 > addr then inside[#inside + 1] = model_label(e) end
  end
  if not w.end_at and w.next_header <= last then
    inside[#inside + 1] = format("the next model header at %d", w.next_header)
  end
  local what = #inside > 0 and (" (" .. table.concat(inside, ", ") .. ")") or ""
  return format("registers %d..%d%s", addr, last, what)
end

-- }=====

-- After an exception for a read of count registers at addr: true when
-- reading goes on more carefully, nil when there is nothing more careful.
local function fall_back(w, addr, count)
  if w.mode == "per_model" then return nil end
  local known_end = (w.end_at or w.next_header) + 2
  if addr + count > known_end then -- it read ahead: stay within the known
    w.refused_end = addr + count
  else -- registers known to exist were refused: one model at a time
    w.mode = "per_model"
  end
  return true
end

-- The models of a walk that ended early: those read whole are kept.
local function truncate(w, addr, count, err)
  local kept = {}
  for _, e in ipairs(w.entries) do
    if e.addr + e.len + 2 <= w.pos then
      kept[#kept + 1] = e
    else
      break
    end
  end
  local lost = #w.entries - #kept
  warn(w, "the model list is cut short: reading %s failed (%s); using the %d model(s) before "
    .. "%d%s", span_label(w, addr, count), err, #kept, w.pos,
    lost > 0 and format(" and dropping %d incomplete one(s)", lost) or "")
  w.entries = kept
  w.truncated = true
end

-- One walk at one base. Returns true (found), false, why (no SunSpec map
-- here), or nil, message, code (the device failed).
local function walk(w, read)
  while not (w.end_at and w.pos >= w.end_at + 2) do
    local addr, count = w.pos, next_count(w)
    local bytes, err, code = read(addr, count)
    if bytes and #bytes ~= 2 * count then
      bytes, err, code = nil, format("%d bytes instead of %d", #bytes, 2 * count), "malformed"
    end
    if not bytes then
      if not is_exception(code) then
        return nil, format("reading %s failed: %s", span_label(w, addr, count), err), code
      end
      local was = w.mode
      if not fall_back(w, addr, count) then
        if #w.blocks == 0 then return false, err end
        truncate(w, addr, count, err)
        return true
      end
      if w.mode ~= was then -- confirmed by the next read that succeeds
        w.cross_refused = format("reading %s was refused (%s)", span_label(w, addr, count), err)
      end
    else
      if w.mode == "per_model" then w.no_cross_model = w.cross_refused end
      if #w.blocks == 0 and (w.mem[w.base] == nil) then
        remember(w, addr, bytes)
        if w.mem[w.base] ~= 0x5375 or w.mem[w.base + 1] ~= 0x6E53 then
          return false, format("it holds 0x%04X 0x%04X, not 'SunS' (0x5375 0x6E53)",
            w.mem[w.base], w.mem[w.base + 1])
        end
      else
        remember(w, addr, bytes)
      end
      local ok, berr = walk_headers(w)
      if not ok then -- the list ends at this broken header
        warn(w, "%s; using the %d model(s) before it", berr, #w.entries)
        w.truncated = true
        w.end_at = w.next_header
      end
      local stop = addr + count
      if w.end_at then stop = math.min(stop, w.end_at + 2) end
      keep(w, addr, bytes, safe_end(w, stop))
    end
  end
  for _, e in ipairs(w.entries) do resolve(w, e) end
  return true
end

--- discover.run(read, opts) -> found, or nil, message, code.
--- opts.bases (default {40000, 0, 50000}), opts.max (registers per read,
--- default 125), opts.where (device name for messages).
function M.run(read, opts)
  opts = opts or {}
  local bases = opts.bases or M.BASES
  local where = opts.where or "device"
  local tried = {}
  for _, base in ipairs(bases) do
    local w = new_walk(base, opts.max or plan.MAX, where)
    local ok, err, code = walk(w, read)
    if ok then
      if w.no_cross_model then
        log.info("sunspec %s: %s; read one model at a time", where, w.no_cross_model)
      end
      return {
        base = base, models = w.entries, blocks = w.blocks, warnings = w.warnings,
        no_cross_model = w.no_cross_model ~= nil, truncated = w.truncated, end_at = w.end_at,
      }
    elseif ok == nil then
      return nil, err, code
    end
    tried[#tried + 1] = format("%d (%s)", base, err)
  end
  return nil, format("no SunSpec device at %s: no 'SunS' marker at %s — check the unit id, "
    .. "and the base address if the device's manual names another", where,
    table.concat(tried, ", ")), "not_sunspec"
end

return M
