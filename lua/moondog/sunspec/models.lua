-- moondog.sunspec.models: SunSpec model definitions, by id or by name.
--
--   local models = require "moondog.sunspec.models"
--   local m = models.get(103)                  -- or models.get("inverter_three_phase")
--   m.group.by_name.W.offset                   --> 14 (registers from the model's ID)
--   models.load_json_dir("/path/to/sunspec/models/json")   -- every other model
--   models.ids()                               --> { 1, 101, 102, ... }
--
-- Definitions come from two places:
--   - devices/sunspec/model_<id>.lua, shipped with moondog (facts only, in our
--     own format, written by `moondog sunspec-convert`); devices/sunspec/
--     index.lua names them, so a model file is read on its first get();
--   - official SunSpec JSON model files (model_<id>.json), loaded at run time
--     with load_json_dir(); they add models, and replace shipped ones only
--     with {override = true}.
--
-- Normalized form, the same whatever the source:
--   model = { id = 103, name = "inverter_three_phase", group = G }
--   G = { name =, count = 1 | 0 | "NCrv", points = { P, ... }, groups = { G, ... },
--         size = registers of one instance of the group's own points,
--         by_name = { [point name] = P }, sync = true or nil }
--     count: an integer, 0 (derive from the model length L) or the name of
--     the point holding the count; the top-level group's count is 1.
--     sync = true marks a group that must be written in one transaction.
--   P = { name =, type =, size = registers,
--         offset = registers from the start of its group instance (top level:
--                  0 is ID, 1 is L; nested groups restart at 0 per instance),
--         sf = integer or the name of a sunssf point (own group first, then
--              the enclosing ones) or nil,
--         units = string or nil, access = "R" | "RW", mandatory = bool,
--         static = bool, value = fixed value or nil,
--         symbols = nil or { {name =, value =}, ... } (bitfields: bit numbers),
--         symbol_of = { [value] = name }, value_of = { [name] = value }
--                     (both nil when the point has no symbols) }
-- The tables are shared between callers: treat them as read-only.
--
-- Errors: a broken shipped file is a bug of moondog and raises; a JSON
-- directory is outside input, so load_json_dir returns nil, message, code
-- ("not_found", "malformed") and loads nothing from a directory with a bad
-- file in it.

local M = {}

-- Registers per value of each type, from the codec; 0: the definition gives
-- the size (strings).
local TYPE_SIZE = require("moondog.sunspec.codec").types
M.type_size = TYPE_SIZE

local defs = {}    -- id -> normalized model
local by_name = {} -- model name -> id
local shipped      -- id -> name of the files in devices/sunspec, read on first use

local function shipped_dir()
  return require("moondog").paths.devices .. "/sunspec"
end

-- {===== normalizing =====

-- A failure while normalizing one definition: error with a plain message,
-- caught by the callers that add the file name.
local function fail(fmt, ...)
  error(string.format(fmt, ...), 0)
end

local function integer(v)
  return math.type(v) == "float" and math.tointeger(v) or v
end

-- Check one point and add its derived fields; offset is where it must start.
local function finish_point(p, offset, where)
  local what = where .. "." .. tostring(p.name)
  if type(p.name) ~= "string" or p.name == "" then fail("%s: a point has no name", where) end
  local natural = TYPE_SIZE[p.type]
  if not natural then fail("%s: unknown type %s", what, tostring(p.type)) end
  if math.type(p.size) ~= "integer" or p.size < 1 then
    fail("%s: size must be a positive integer, not %s", what, tostring(p.size))
  end
  if natural > 0 and p.size ~= natural then
    fail("%s: type %s takes %d register(s), not %d", what, p.type, natural, p.size)
  end
  if p.offset ~= nil and p.offset ~= offset then
    fail("%s: offset %s, but the points before it end at %d", what, tostring(p.offset), offset)
  end
  p.offset = offset
  if p.access ~= "R" and p.access ~= "RW" then
    fail("%s: access must be R or RW, not %s", what, tostring(p.access))
  end
  if p.sf ~= nil and type(p.sf) ~= "string" and math.type(p.sf) ~= "integer" then
    fail("%s: sf must be an integer or a point name", what)
  end
  if p.units ~= nil and type(p.units) ~= "string" then fail("%s: units must be a string", what) end
  if p.symbols then
    p.symbol_of, p.value_of = {}, {}
    for _, s in ipairs(p.symbols) do
      if type(s.name) ~= "string" or math.type(s.value) ~= "integer" then
        fail("%s: a symbol needs a name and an integer value", what)
      end
      p.symbol_of[s.value] = p.symbol_of[s.value] or s.name
      p.value_of[s.name] = s.value
    end
  end
  return offset + p.size
end

-- The sunssf point called name in the group or one enclosing it, or nil.
local function find_sf(name, chain)
  for i = #chain, 1, -1 do
    local p = chain[i].by_name[name]
    if p then return p end
  end
end

-- Offsets, sizes and lookups of g and its nested groups; chain holds the
-- enclosing groups (for scale-factor and count references).
local function finish_group(g, where, chain)
  if type(g.name) ~= "string" or g.name == "" then fail("%s: a group has no name", where) end
  where = where .. "/" .. g.name
  local c = g.count
  if not (math.type(c) == "integer" and c >= 0 or type(c) == "string") then
    fail("%s: count must be an integer or a point name, not %s", where, tostring(c))
  end
  g.by_name = {}
  local offset = 0
  for _, p in ipairs(g.points) do
    offset = finish_point(p, offset, where)
    if g.by_name[p.name] then fail("%s: point %s appears twice", where, p.name) end
    g.by_name[p.name] = p
  end
  g.size = offset
  chain[#chain + 1] = g
  for _, p in ipairs(g.points) do
    local sf = p.sf
    if type(sf) == "string" and (find_sf(sf, chain) or {}).type ~= "sunssf" then
      fail("%s.%s: scale factor %s is not a sunssf point of this group or an enclosing one",
        where, p.name, sf)
    end
  end
  if type(c) == "string" and not find_sf(c, { table.unpack(chain, 1, #chain - 1) }) then
    fail("%s: count point %s is not in an enclosing group", where, c)
  end
  for _, sub in ipairs(g.groups) do
    finish_group(sub, where, chain)
  end
  chain[#chain] = nil
end

-- Check the model as a whole and fill in the derived fields; returns it.
local function finish_model(m, where)
  if math.type(m.id) ~= "integer" or m.id < 1 or m.id > 65534 then
    fail("%s: model id must be an integer 1..65534, not %s", where, tostring(m.id))
  end
  local g = m.group
  if type(g) ~= "table" or type(g.points) ~= "table" then fail("%s: no top-level group", where) end
  g.count = 1
  finish_group(g, where, {})
  local p1, p2 = g.points[1], g.points[2]
  if not (p1 and p1.name == "ID" and p2 and p2.name == "L") then
    fail("%s: the model must start with the points ID and L", where)
  end
  m.name = g.name
  return m
end

-- Our file format (see `moondog sunspec-convert`): a point is
-- { offset, name, type, size, sf =, units =, access = "RW", mandatory = true,
--   static = true, value =, symbols = { {name, value}, ... } }.
local function group_from_file(src, where)
  if type(src) ~= "table" or type(src.points) ~= "table" then fail("%s: malformed group", where) end
  local g = { name = src.name, count = src.count or 1, sync = src.sync, points = {}, groups = {} }
  for i, s in ipairs(src.points) do
    if type(s) ~= "table" then fail("%s: point %d is not a table", where, i) end
    local p = {
      offset = s[1], name = s[2], type = s[3], size = s[4], sf = s.sf, units = s.units,
      access = s.access or "R", mandatory = s.mandatory == true, static = s.static == true,
      value = s.value,
    }
    if s.symbols then
      p.symbols = {}
      for j, sym in ipairs(s.symbols) do
        p.symbols[j] = { name = sym[1], value = sym[2] }
      end
    end
    if p.offset == nil then fail("%s: point %s has no offset", where, tostring(p.name)) end
    g.points[i] = p
  end
  for i, sub in ipairs(src.groups or {}) do
    g.groups[i] = group_from_file(sub, where)
  end
  return g
end

-- The official JSON format (SunSpec models repository, json/schema.json).
local FLAGS = { mandatory = { M = true, O = false }, static = { S = true, D = false } }

local function flag(s, key, where)
  local v = s[key]
  if v == nil then return false end
  local b = FLAGS[key][v]
  if b == nil then fail("%s.%s: %s must be %s, not %s", where, tostring(s.name), key,
    key == "mandatory" and "M or O" or "S or D", tostring(v)) end
  return b
end

local function group_from_json(src, where)
  if type(src) ~= "table" or type(src.points) ~= "table" then fail("%s: malformed group", where) end
  if src.type ~= nil and src.type ~= "group" and src.type ~= "sync" then
    fail("%s: group type must be group or sync, not %s", where, tostring(src.type))
  end
  local g = { name = src.name, count = integer(src.count or 1), sync = src.type == "sync" or nil,
              points = {}, groups = {} }
  for i, s in ipairs(src.points) do
    if type(s) ~= "table" then fail("%s: point %d is not an object", where, i) end
    local p = {
      name = s.name, type = s.type, size = integer(s.size), sf = integer(s.sf), units = s.units,
      access = s.access or "R", mandatory = flag(s, "mandatory", where),
      static = flag(s, "static", where), value = integer(s.value),
    }
    if type(s.symbols) == "table" then
      p.symbols = {}
      for j, sym in ipairs(s.symbols) do
        p.symbols[j] = { name = sym.name, value = integer(sym.value) }
      end
    end
    g.points[i] = p
  end
  for i, sub in ipairs(type(src.groups) == "table" and src.groups or {}) do
    g.groups[i] = group_from_json(sub, where)
  end
  return g
end

--- models.from_json(t [, where]) -> model: normalize a decoded JSON model
--- definition (a table from cjson). Raises with a message naming `where`
--- and the offending group or point when the definition is malformed.
function M.from_json(t, where)
  where = where or "SunSpec model"
  if type(t) ~= "table" then fail("%s: not a JSON object", where) end
  return finish_model({ id = integer(t.id), group = group_from_json(t.group, where) }, where)
end

--- models.from_file_table(t [, where]) -> model: normalize a table in our
--- file format (what devices/sunspec/model_<id>.lua returns). Raises like
--- from_json.
function M.from_file_table(t, where)
  where = where or "SunSpec model"
  if type(t) ~= "table" then fail("%s: not a table", where) end
  return finish_model({ id = t.id, group = group_from_file(t.group, where) }, where)
end

-- }=====

-- {===== registry =====

-- Read a Lua data file in an empty environment (no globals, no I/O).
local function load_data(path)
  local chunk, err = loadfile(path, "t", {})
  if not chunk then return nil, err end
  local ok, t = pcall(chunk)
  if not ok then return nil, tostring(t) end
  return t
end

local function shipped_index()
  if not shipped then
    local path = shipped_dir() .. "/index.lua"
    local t, err = load_data(path)
    if type(t) ~= "table" then
      error("moondog.sunspec.models: cannot read " .. path .. ": " .. tostring(err), 0)
    end
    shipped = t
    for id, name in pairs(t) do
      by_name[name] = by_name[name] or id
    end
  end
  return shipped
end

local function add(m)
  defs[m.id] = m
  by_name[m.name] = m.id
end

local function load_shipped(id)
  local path = string.format("%s/model_%d.lua", shipped_dir(), id)
  local t, err = load_data(path)
  if not t then
    error("moondog.sunspec.models: cannot load " .. path .. ": " .. tostring(err), 0)
  end
  local ok, m = pcall(M.from_file_table, t, path)
  if not ok then
    error("moondog.sunspec.models: broken definition: " .. tostring(m), 0)
  end
  if m.id ~= id then
    error(string.format("moondog.sunspec.models: %s defines model %d", path, m.id), 0)
  end
  add(m)
  return m
end

--- models.get(id_or_name) -> model or nil. id: the model number; name: the
--- official name of the model's group ("common", "inverter_three_phase").
function M.get(key)
  local index = shipped_index()
  local id = key
  if type(key) == "string" then
    id = by_name[key]
  elseif math.type(key) ~= "integer" then
    error("models.get: expected a model id (integer) or name (string), got " .. type(key), 2)
  end
  if id == nil then return nil end
  local m = defs[id]
  if m == nil and index[id] then
    m = load_shipped(id)
  end
  return m
end

--- models.ids() -> sorted array of every known model id (shipped or loaded).
function M.ids()
  local seen, list = {}, {}
  for id in pairs(shipped_index()) do seen[id] = true end
  for id in pairs(defs) do seen[id] = true end
  for id in pairs(seen) do list[#list + 1] = id end
  table.sort(list)
  return list
end

--- models.shipped_dir() -> where the shipped definitions live.
M.shipped_dir = shipped_dir

--- models.list_files(dir, ext) -> sorted array of {name =, id =} for the
--- files model_<id>.<ext> in dir, or nil, message when dir cannot be read.
function M.list_files(dir, ext)
  local quoted = "'" .. dir:gsub("'", "'\\''") .. "'"
  local p = io.popen("ls -1 -- " .. quoted .. " 2>&1", "r")
  local out = p:read("a")
  local ok = p:close()
  if not ok then
    return nil, string.format("cannot read the directory %s: %s", dir,
      (out:gsub("^ls: ", ""):gsub("%s+$", "")))
  end
  local files = {}
  for name in out:gmatch("[^\n]+") do
    local id = name:match("^model_(%d+)%." .. ext .. "$")
    if id then files[#files + 1] = { name = name, id = math.tointeger(tonumber(id)) } end
  end
  table.sort(files, function(a, b) return a.id < b.id end)
  return files
end

--- models.read_json(path [, id]) -> model, or nil, message: read and
--- normalize one official JSON model file (without adding it to the known
--- models). With id, the file must define that model.
function M.read_json(path, id)
  local f, err = io.open(path, "rb")
  if not f then return nil, "cannot open " .. err end
  local text = f:read("a")
  f:close()
  local cjson = require "cjson"
  local ok, t = pcall(cjson.decode, text)
  if not ok then
    return nil, string.format("%s is not valid JSON (%s)", path, (tostring(t):gsub("^.-: ", "")))
  end
  local nok, m = pcall(M.from_json, t, path)
  if not nok then return nil, tostring(m) end
  if id and m.id ~= id then
    return nil, string.format("%s defines model %d; the file name says %d", path, m.id, id)
  end
  return m
end

--- models.load_json_dir(dir [, opts]) -> count, added, or nil, message, code.
--- Loads every model_<id>.json in dir (the official SunSpec format). count is
--- the number of files read; added the number of definitions that became
--- known. A model already known (shipped or loaded before) keeps its
--- definition unless opts.override. One bad file fails the whole call
--- (code "malformed", the message names the file) and nothing is added;
--- an unreadable or empty directory gives code "not_found".
function M.load_json_dir(dir, opts)
  assert(type(dir) == "string", "models.load_json_dir: expected a directory path")
  local override = opts and opts.override
  local files, err = M.list_files(dir, "json")
  if not files then return nil, err, "not_found" end
  if #files == 0 then
    return nil, string.format("no SunSpec model files (model_<id>.json) in %s", dir), "not_found"
  end
  local loaded = {}
  for i, file in ipairs(files) do
    local m, merr = M.read_json(dir .. "/" .. file.name, file.id)
    if not m then
      return nil, "cannot load SunSpec model definitions: " .. merr, "malformed"
    end
    loaded[i] = m
  end
  local index, added = shipped_index(), 0
  for _, m in ipairs(loaded) do
    if override or not (defs[m.id] or index[m.id]) then
      add(m)
      added = added + 1
    end
  end
  return #loaded, added
end

-- }=====

return M
