-- moondog.modbus.planner: the fewest Modbus reads that fetch a set of points.
--
-- A device profile lists points: {kind = "holding"|"input"|"coil"|"discrete",
-- address = 0..65535, count = n (default 1), ...any other fields}. On a bus
-- every transaction costs a request, a turnaround and silent gaps, while a few
-- extra registers in a response cost little, so the planner merges nearby
-- points into as few reads as the protocol allows:
--
--   local reads, err = planner.plan(points, {max_gap = 10})
--   for _, r in ipairs(reads) do                 -- r.kind, r.address, r.count
--     local data = bus:read(r.kind, r.address, r.count)
--     for point, slice in pairs(planner.split(r, data, values)) do ... end
--   end
--
-- Options of plan (all optional):
--   max_regs     registers per read, default 125 (FC3/FC4 limit). Lower it for
--                devices that refuse long reads.
--   max_bits     coils/discrete inputs per read, default 2000 (FC1/FC2 limit).
--   max_gap      registers nobody asked for that a read may pass over to join
--                two points, default 10. 10 registers are 20 bytes, about 23 ms
--                at 9600 baud: roughly the cost of the 8-byte request, 5-byte
--                response header and two 3.5-character silences a separate
--                read needs even from an instant device. Real devices take
--                10-100 ms to answer, so 10 is on the safe side; 0 reads only
--                requested registers (for devices that reject unmapped ones,
--                though `avoid` is the precise tool for that).
--   max_bit_gap  the same for coils and discrete inputs, default 32 (4 bytes).
--   avoid        {{kind =, first =, last =}, ...}: addresses never to read,
--                e.g. a block a device answers with exception 02. A read never
--                spans one; a point that overlaps one is an error.
--   keep_with    true: a point's `with` field (a point table, or an array of
--                them) names points that must come from the same read as it
--                when they are planned too: a value and its scale factor (a
--                device may change the factor between two reads, and the
--                value read with the old one is off by a power of ten). Such
--                a group, and groups whose spans overlap, form an atom that a
--                read holds whole; the greedy below then places atoms as it
--                places points, and stays optimal for cuts between atoms
--                (moondog.sunspec.plan uses this). An atom longer than the
--                limit falls back to its points; the caller re-reads what
--                that tore apart (moondog.sunspec.plan does).
--   breaks       {address, ...}: no read spans across one of these addresses
--                (a read may start at one): for devices that refuse reads
--                across model boundaries.
--   unit         ignored: plan each unit separately.
--
-- Result: an array of reads {kind, address, count, points}, sorted by kind in
-- function-code order (coil, discrete, holding, input), then address. The
-- point tables are the caller's own, by reference, in address order; a point
-- listed twice in the input is planned once. Reads never mix kinds, never
-- exceed the limit, never pass over more than max_gap unrequested addresses or
-- over an avoided address. A point lies wholly inside one read, so that a
-- multi-register value is decoded from one response, unless it alone exceeds
-- the limit: then it is cut into consecutive reads (full-size except the last,
-- which later points may join), and it is listed in each of them.
--
-- Algorithm: points sorted by (kind, address, longest first). A read starts
-- at the first point not yet covered and takes following points while the
-- span, the gap and the avoid rules allow. For points that each fit in one
-- read this greedy is optimal: any plan has a read containing the first
-- point, and one starting exactly there covers at least as much of the rest.
-- An oversized point joins the open read only when that does not cost more
-- reads (see join_oversized). Points nested in an oversized point's earlier
-- chunks attach to the chunk that holds them; a small one straddling two
-- chunks gets a read of its own.
--
-- plan returns nil, message for an impossible plan (a point on an avoided
-- address). Malformed points or options are programmer errors and raise.
--
-- split(read, data[, into]) cuts one response into per-point slices, keyed
-- by point table; data is an array (registers as integers, bits as booleans)
-- or, for registers, the raw big-endian byte string (2 bytes per register).
-- Slices have the same form. A read holding only part of an oversized point
-- gives that part; with `into`, parts of the point are joined in `into[p]`:
-- pass the point's reads in plan order (the first part starts a fresh value).
--
-- stats(reads, points[, opts]) counts transactions, registers and bits read,
-- `extra` addresses read that no point asked for, and `one_per_point`, the
-- transactions needed without merging (an oversized point still needs
-- several), for benchmarks.
--
-- Pure Lua, no I/O, no globals.

local M = {}

local format = string.format

M.MAX_REGS = 125
M.MAX_BITS = 2000
M.DEFAULT_GAP = 10
M.DEFAULT_BIT_GAP = 32

-- Function-code order: FC1 coils, FC2 discrete inputs, FC3, FC4.
local kind_order = { coil = 1, discrete = 2, holding = 3, input = 4 }
local is_bits = { coil = true, discrete = true }
local kind_list = "holding, input, coil or discrete"

-- The integer value of a number (2.0 counts as 2), or nil.
local function int(v)
  if type(v) ~= "number" then return nil end
  return math.tointeger(v)
end

local function show(v)
  if type(v) == "string" then return format("%q", v) end
  return tostring(v)
end

-- "point #3 'l1_voltage' (input 48..49)", for messages.
local function describe(e)
  local name = type(e.p.name) == "string" and format(" '%s'", e.p.name) or ""
  return format("point #%d%s (%s %d..%d)", e.index, name, e.kind, e.first, e.last)
end

-- {===== checking arguments =====

-- Internal entries {p, index, kind, first, last, count} for the distinct
-- point tables. Raises on a malformed point: the profile is wrong.
local function check_points(points)
  if type(points) ~= "table" then
    error(format("planner.plan: points must be an array of point tables, got %s", type(points)), 3)
  end
  local entries, seen = {}, {}
  for i, p in ipairs(points) do
    if type(p) ~= "table" then
      error(format("planner.plan: point #%d must be a table, got %s", i, type(p)), 3)
    end
    if not seen[p] then
      seen[p] = true
      if not kind_order[p.kind] then
        error(format("planner.plan: point #%d has kind %s (expected %s)", i, show(p.kind), kind_list), 3)
      end
      local address = int(p.address)
      if not address or address < 0 or address > 65535 then
        error(format("planner.plan: point #%d needs an integer address 0..65535, got %s",
          i, show(p.address)), 3)
      end
      local count = p.count == nil and 1 or int(p.count)
      if not count or count < 1 then
        error(format("planner.plan: point #%d needs a positive integer count, got %s", i, show(p.count)), 3)
      end
      if address + count - 1 > 65535 then
        error(format("planner.plan: point #%d ends past address 65535 (address %d, count %d)",
          i, address, count), 3)
      end
      entries[#entries + 1] = { p = p, index = i, kind = p.kind, first = address,
                                last = address + count - 1, count = count, members = { p } }
    end
  end
  return entries
end

local function int_opt(opts, name, default, lo, hi)
  local v = opts[name]
  if v == nil then return default end
  local n = int(v)
  if not n or n < lo or (hi and n > hi) then
    error(format("planner.plan: opts.%s must be an integer %d..%s, got %s",
      name, lo, hi and tostring(hi) or "", show(v)), 4)
  end
  return n
end

-- opts.avoid as {kind = {{first, last}, ...}}, each list sorted.
local function check_avoid(avoid)
  local by_kind = { coil = {}, discrete = {}, holding = {}, input = {} }
  if avoid == nil then return by_kind end
  if type(avoid) ~= "table" then
    error(format("planner.plan: opts.avoid must be an array of {kind=, first=, last=}, got %s",
      type(avoid)), 4)
  end
  for i, a in ipairs(avoid) do
    local ok = type(a) == "table" and kind_order[a.kind]
    local first = ok and int(a.first)
    local last = ok and (a.last == nil and first or int(a.last))
    if not (first and last and first >= 0 and first <= last and last <= 65535) then
      error(format("planner.plan: opts.avoid[%d] must be {kind = %s, first = 0..65535, last = first..65535}",
        i, kind_list), 4)
    end
    local list = by_kind[a.kind]
    list[#list + 1] = { first = first, last = last }
  end
  for _, list in pairs(by_kind) do
    table.sort(list, function(x, y) return x.first < y.first end)
  end
  return by_kind
end

local function check_breaks(breaks)
  if breaks == nil then return {} end
  if type(breaks) ~= "table" then
    error(format("planner.plan: opts.breaks must be an array of addresses, got %s", type(breaks)), 4)
  end
  local list = {}
  for i, b in ipairs(breaks) do
    local n = int(b)
    if not n or n < 0 or n > 65536 then
      error(format("planner.plan: opts.breaks[%d] must be an address 0..65536, got %s", i, show(b)), 4)
    end
    list[i] = n
  end
  table.sort(list)
  return list
end

local function check_opts(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    error(format("planner.plan: opts must be a table or nil, got %s", type(opts)), 3)
  end
  local regs = int_opt(opts, "max_regs", M.MAX_REGS, 1, M.MAX_REGS)
  local bits = int_opt(opts, "max_bits", M.MAX_BITS, 1, M.MAX_BITS)
  local gap = int_opt(opts, "max_gap", M.DEFAULT_GAP, 0)
  local bit_gap = int_opt(opts, "max_bit_gap", M.DEFAULT_BIT_GAP, 0)
  return {
    limit = { coil = bits, discrete = bits, holding = regs, input = regs },
    gap = { coil = bit_gap, discrete = bit_gap, holding = gap, input = gap },
    avoid = check_avoid(opts.avoid),
    keep_with = opts.keep_with and true or false,
    breaks = check_breaks(opts.breaks),
  }
end

-- The points a point's `with` names: one point table or an array of them.
local function with_list(p)
  local w = p.with
  if w == nil then return {} end
  if type(w) ~= "table" then
    error(format("planner.plan: a point's with must be a point table or an array of them, got %s",
      type(w)), 4)
  end
  if w.kind ~= nil then return { w } end
  return w
end

-- opts.keep_with: replace the entries of each kind by atoms, the merged
-- spans of every point and the planned points its `with` names (see the
-- top). An atom longer than the kind's limit gives back its points.
local function group_with(entries, limit)
  local entry_of = {}
  for _, e in ipairs(entries) do entry_of[e.p] = e end
  local spans = {}
  for _, e in ipairs(entries) do
    local span = { kind = e.kind, first = e.first, last = e.last, members = { e }, index = e.index }
    for _, q in ipairs(with_list(e.p)) do
      local other = entry_of[q]
      if other and other.kind == e.kind and other ~= e then
        span.first = math.min(span.first, other.first)
        span.last = math.max(span.last, other.last)
        span.members[#span.members + 1] = other
      end
    end
    spans[#spans + 1] = span
  end
  table.sort(spans, function(x, y)
    if x.kind ~= y.kind then return kind_order[x.kind] < kind_order[y.kind] end
    return x.first < y.first
  end)
  local atoms = {}
  for _, sp in ipairs(spans) do
    local last = atoms[#atoms]
    if last and last.kind == sp.kind and sp.first <= last.last then
      last.last = math.max(last.last, sp.last)
      for _, m in ipairs(sp.members) do last.set[m] = true end
      last.index = math.min(last.index, sp.index)
    else
      local atom = { kind = sp.kind, first = sp.first, last = sp.last, index = sp.index, set = {} }
      for _, m in ipairs(sp.members) do atom.set[m] = true end
      atoms[#atoms + 1] = atom
    end
  end
  local out = {}
  for _, a in ipairs(atoms) do
    local list = {}
    for m in pairs(a.set) do list[#list + 1] = m end
    table.sort(list, function(x, y)
      if x.first ~= y.first then return x.first < y.first end
      return x.index < y.index
    end)
    if #list == 1 or a.last - a.first + 1 > limit[a.kind] then
      table.move(list, 1, #list, #out + 1, out)
    else
      local members = {}
      for i, m in ipairs(list) do members[i] = m.p end
      out[#out + 1] = { p = list[1].p, index = a.index, kind = a.kind, first = a.first, last = a.last,
                        count = a.last - a.first + 1, members = members }
    end
  end
  return out
end

-- }=====

-- {===== planning one kind =====

-- The first avoided range that meets first..last, or nil.
local function avoided(list, first, last)
  for _, a in ipairs(list) do
    if a.first > last then return nil end
    if a.last >= first then return a end
  end
  return nil
end

local function ceil_div(a, b)
  return (a + b - 1) // b
end

-- Whether an oversized point e should share the open read `cur`: only when
-- that needs fewer reads, or as many with a last chunk that starts no earlier
-- (a later start leaves the last chunk more room for the points after e).
local function join_oversized(cur, e, limit)
  local n_join = ceil_div(e.last - cur.address + 1, limit)
  local tail_join = cur.address + (n_join - 1) * limit
  local chunks = ceil_div(e.count, limit)
  local n_alone = 1 + chunks
  local tail_alone = e.first + (chunks - 1) * limit
  return n_join < n_alone or (n_join == n_alone and tail_join >= tail_alone)
end

-- Whether a read from `from` to `to` would span one of the sorted breaks.
local function crosses(breaks, from, to)
  for _, b in ipairs(breaks) do
    if b > to then return false end
    if b > from then return true end
  end
  return false
end

-- Add the points of entry e to read r, each once.
local function add_members(r, e)
  local points = r.points
  for _, p in ipairs(e.members) do
    if points[#points] ~= p then points[#points + 1] = p end
  end
end

-- Plan the entries of one kind (sorted) into `out`. Returns true, or nil and
-- a message when a point sits on an avoided address.
local function plan_kind(kind, entries, limit, max_gap, avoid, breaks, out)
  local cur     -- the open read: later points may still join it
  local chain   -- consecutive reads cut from oversized points, ending at cur

  local function new_read(address, count, e)
    local r = { kind = kind, address = address, count = count, points = {} }
    add_members(r, e)
    out[#out + 1] = r
    return r
  end

  -- Put e (whose part from cur.address on is not yet covered) into cur, and
  -- if it does not fit, cut the rest into further reads of at most `limit`.
  local function fill(e)
    add_members(cur, e)
    if e.last <= cur.address + limit - 1 then
      cur.count = math.max(cur.count, e.last - cur.address + 1)
      return
    end
    cur.count = limit
    local next_address = cur.address + limit
    while next_address <= e.last do
      cur = new_read(next_address, math.min(limit, e.last - next_address + 1), e)
      chain[#chain + 1] = cur
      next_address = next_address + limit
    end
  end

  local function start(e)
    cur = new_read(e.first, 0, e)
    chain = { cur }
    fill(e)
  end

  -- e starts before cur: cur is a later chunk of an oversized point, and e
  -- begins inside the chain of chunks (sorting guarantees that).
  local function behind(e)
    for _, r in ipairs(chain) do
      if r.address <= e.first and e.last <= r.address + r.count - 1 then
        add_members(r, e)
        return
      end
    end
    if e.count <= limit then
      -- It straddles two chunks and must not be split: a read of its own.
      new_read(e.first, e.count, e)
      return
    end
    for _, r in ipairs(chain) do
      if r ~= cur and r.address <= e.last and e.first <= r.address + r.count - 1 then
        add_members(r, e)
      end
    end
    if e.last >= cur.address then fill(e) end
  end

  for _, e in ipairs(entries) do
    local a = avoided(avoid, e.first, e.last)
    if a then
      return nil, format("%s overlaps the avoided %s range %d..%d; drop the point or narrow opts.avoid",
        describe(e), kind, a.first, a.last)
    end
    if not cur then
      start(e)
    elseif e.first < cur.address then
      behind(e)
    else
      local cur_last = cur.address + cur.count - 1
      local gap = e.first - cur_last - 1
      local bridgeable = gap <= max_gap and (gap <= 0 or not avoided(avoid, cur_last + 1, e.first - 1))
        and not crosses(breaks, cur.address, e.last)
      if bridgeable and (e.last <= cur.address + limit - 1
                         or (e.count > limit and join_oversized(cur, e, limit))) then
        fill(e)
      else
        start(e)
      end
    end
  end
  return true
end

-- }=====

--- Plan the reads for `points`; see the top of the file. Returns the reads,
--- or nil and a message.
function M.plan(points, opts)
  local entries = check_points(points)
  local o = check_opts(opts)
  if o.keep_with then entries = group_with(entries, o.limit) end
  table.sort(entries, function(x, y)
    if x.kind ~= y.kind then return kind_order[x.kind] < kind_order[y.kind] end
    if x.first ~= y.first then return x.first < y.first end
    if x.count ~= y.count then return x.count > y.count end -- longest first: it covers the rest
    return x.index < y.index
  end)
  local reads = {}
  local i = 1
  while i <= #entries do
    local kind = entries[i].kind
    local j = i
    while j + 1 <= #entries and entries[j + 1].kind == kind do j = j + 1 end
    local ok, err = plan_kind(kind, table.move(entries, i, j, 1, {}), o.limit[kind], o.gap[kind],
      o.avoid[kind], o.breaks, reads)
    if not ok then return nil, err end
    i = j + 1
  end
  -- Reads of a kind are created in address order except a straddling point's
  -- own read; a stable sort on (kind, address, count) restores the order.
  local seq = {}
  for n, r in ipairs(reads) do seq[r] = n end
  table.sort(reads, function(x, y)
    if x.kind ~= y.kind then return kind_order[x.kind] < kind_order[y.kind] end
    if x.address ~= y.address then return x.address < y.address end
    if x.count ~= y.count then return x.count > y.count end
    return seq[x] < seq[y]
  end)
  return reads
end

-- Join a part of an oversized point onto what earlier reads gave, or start
-- afresh with the first part. Strings and arrays alike.
local function accumulate(into, p, slice, offset, width, is_string)
  if offset == 0 then
    into[p] = slice
    return
  end
  local have = into[p]
  local have_len = have ~= nil and #have or -1
  if type(have) ~= (is_string and "string" or "table") or have_len ~= offset * width then
    error(format("planner.split: the reads of the point at address %d must be split in plan order",
      p.address), 3)
  end
  if is_string then
    into[p] = have .. slice
  else
    table.move(slice, 1, #slice, #have + 1, have)
  end
end

--- Cut the data of one read into slices per point; see the top of the file.
function M.split(read, data, into)
  if type(read) ~= "table" or type(read.points) ~= "table"
     or not int(read.address) or not int(read.count) then
    error("planner.split: expected a read returned by planner.plan", 2)
  end
  local is_string = type(data) == "string"
  local width = is_string and 2 or 1
  if is_string and is_bits[read.kind] then
    error(format("planner.split: data of a %s read must be an array of booleans, not a string", read.kind), 2)
  elseif not is_string and type(data) ~= "table" then
    error(format("planner.split: data must be an array or a byte string, got %s", type(data)), 2)
  end
  if #data ~= read.count * width then
    error(format("planner.split: got %d %s for a read of %d", #data, is_string and "bytes" or "values",
      read.count), 2)
  end
  if into ~= nil and type(into) ~= "table" then
    error(format("planner.split: into must be a table or nil, got %s", type(into)), 2)
  end
  local out = into or {}
  local read_last = read.address + read.count - 1
  for _, p in ipairs(read.points) do
    local p_last = p.address + (p.count or 1) - 1
    local first, last = math.max(p.address, read.address), math.min(p_last, read_last)
    if first > last then
      error(format("planner.split: point at %d..%d is outside the read %d..%d",
        p.address, p_last, read.address, read_last), 2)
    end
    local i, j = first - read.address, last - read.address
    local slice
    if is_string then
      slice = data:sub(i * 2 + 1, j * 2 + 2)
    else
      slice = table.move(data, i + 1, j + 1, 1, {})
    end
    if into == nil or (first == p.address and last == p_last) then
      out[p] = slice
    else
      accumulate(out, p, slice, first - p.address, width, is_string)
    end
  end
  return out
end

--- Figures for benchmarks: transactions, registers, bits, extra (addresses
--- read that no point asked for) and one_per_point.
function M.stats(reads, points, opts)
  if type(reads) ~= "table" or type(points) ~= "table" then
    error("planner.stats: expected the reads from planner.plan and the points", 2)
  end
  local o = check_opts(opts)
  local s = { transactions = #reads, registers = 0, bits = 0, extra = 0, one_per_point = 0 }
  local wanted = { coil = {}, discrete = {}, holding = {}, input = {} }
  local seen = {}
  for _, p in ipairs(points) do
    if not seen[p] then
      seen[p] = true
      local count = p.count or 1
      s.one_per_point = s.one_per_point + ceil_div(count, o.limit[p.kind])
      for a = p.address, p.address + count - 1 do wanted[p.kind][a] = true end
    end
  end
  for _, r in ipairs(reads) do
    if is_bits[r.kind] then s.bits = s.bits + r.count else s.registers = s.registers + r.count end
    for a = r.address, r.address + r.count - 1 do
      if not wanted[r.kind][a] then s.extra = s.extra + 1 end
    end
  end
  return s
end

return M
