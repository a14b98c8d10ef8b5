-- moondog.rct.registry: the RCT Power object registry (devices/rct/registry.lua)
-- as lookups.
--
--   local registry = require "moondog.rct.registry"
--   local e = registry.get("battery.soc")   -- by name, by id (0x959930BF) or "0x959930BF"
--   e.id, e.name, e.group, e.type, e.response, e.unit, e.enum, e.writable
--   registry.search("soc")                  -- entries whose name contains it, sorted by name
--   registry.symbol(e, 3)                   -- enum symbol of a value, or nil
--   registry.hex(e.id)                      --> "0x959930BF"
--
-- Entry fields: `type` is the payload type of a write (and of a read's
-- answer unless `response` says otherwise), `response` the answer's type
-- (always set), `unit` may be nil, `enum` maps values to symbols (nil for
-- non-enumerations), `writable` follows the registry file's writable list:
-- see there for the rule and why it is short.
--
-- An id that is not in the registry is not an error: get() returns nil and
-- the client hands back raw bytes for it. An unknown *name* cannot be sent
-- at all, so callers decide what to do (the client raises).
--
-- The file is loaded on first use; it is data only (no globals, no I/O).

local M = {}

local data -- the file's rows indexed; entries are made from rows on first use

-- Indexes over the rows only: a tool that looks up one object (moondog rct
-- read-value) should not pay for 895 entries, nor for sorting them.
local function load()
  local path = require("moondog").paths.devices .. "/rct/registry.lua"
  local chunk, err = loadfile(path, "t", {})
  if not chunk then
    error("moondog.rct.registry: cannot load " .. path .. ": " .. err, 0)
  end
  local file = chunk()
  local writable = {}
  for _, name in ipairs(file.writable) do
    writable[name] = true
  end
  local row_by_id, row_by_name = {}, {}
  for _, row in ipairs(file.objects) do
    row_by_id[row[1]] = row
    row_by_name[row[2]] = row
  end
  for name in pairs(writable) do
    assert(row_by_name[name], "registry: writable object not in the list: " .. name)
  end
  data = { file = file, writable = writable, row_by_id = row_by_id, row_by_name = row_by_name,
           entries = {} }
  return data
end

-- The entry of a row, made once.
local function entry(d, row)
  if not row then return nil end
  local e = d.entries[row]
  if not e then
    e = {
      id = row[1], name = row[2], group = row[3], type = row[4], unit = row[5],
      response = row.response or row[4],
      enum = row.enum and assert(d.file.enums[row.enum], row.enum),
      writable = d.writable[row[2]] == true,
    }
    d.entries[row] = e
  end
  return e
end

-- Every entry, sorted by name; made on the first search.
local function sorted(d)
  if not d.sorted then
    local list = {}
    for i, row in ipairs(d.file.objects) do
      list[i] = entry(d, row)
    end
    table.sort(list, function(a, b) return a.name < b.name end)
    d.sorted = list
  end
  return d.sorted
end

--- "0x959930BF" for an id.
function M.hex(id)
  return string.format("0x%08X", id)
end

--- The id in "0x959930BF" or "959930BF"-style text, or nil.
function M.parse_id(text)
  local hex = text:match("^0[xX](%x+)$")
  if hex and #hex <= 8 then
    return math.tointeger(tonumber(hex, 16))
  end
  return nil
end

--- Entry for a name, an integer id or an "0x..." id; nil when unknown.
function M.get(key)
  local d = data or load()
  if math.type(key) == "integer" then
    return entry(d, d.row_by_id[key])
  end
  assert(type(key) == "string", "registry.get: expected an object name or id")
  local id = M.parse_id(key)
  if id then
    return entry(d, d.row_by_id[id])
  end
  return entry(d, d.row_by_name[key])
end

--- Entries whose name contains `part` (plain text, any case; all when
--- empty or nil), sorted by name.
function M.search(part)
  local d = data or load()
  part = (part or ""):lower()
  local found = {}
  for _, e in ipairs(sorted(d)) do
    if part == "" or e.name:lower():find(part, 1, true) then
      found[#found + 1] = e
    end
  end
  return found
end

--- Every entry, sorted by name (a fresh list).
function M.all()
  return M.search("")
end

--- Number of objects in the registry.
function M.count()
  return #(data or load()).file.objects
end

--- The enum symbol of value for entry e, or nil.
function M.symbol(e, value)
  return e and e.enum and e.enum[value] or nil
end

return M
