-- moondog.rct.registry: lookups by id and name, search, the writable rule,
-- and the whole table checked fact by fact against
-- ../shared/reference/rct/registry.tsv when that folder is present.

local T = require "moondog.testing"
local registry = require "moondog.rct.registry"
local codec = require "moondog.rct.codec"

T.test("lookup by name, by id and by hex text give the same entry", function()
  local e = assert(registry.get("battery.soc"))
  T.eq(e.id, 0x959930BF, "id")
  T.eq(e.group, "battery", "group")
  T.eq(e.type, "FLOAT", "type")
  T.eq(e.response, "FLOAT", "response type")
  T.eq(e.unit, "%", "unit")
  T.eq(e.writable, false, "writable")
  T.eq(registry.get(0x959930BF), e, "by id")
  T.eq(registry.get("0x959930BF"), e, "by hex text")
  T.eq(registry.get("0x959930bf"), e, "by lower-case hex text")
  T.eq(registry.hex(e.id), "0x959930BF", "hex")
  -- unknown ids and names are not errors
  T.eq(registry.get(0x12345678), nil, "unknown id")
  T.eq(registry.get("no.such.object"), nil, "unknown name")
  T.eq(registry.parse_id("0x123456789"), nil, "more than 32 bits")
  T.eq(registry.parse_id("battery"), nil, "not hex")
  assert(not pcall(registry.get, {}), "a table is not a key")
end)

T.test("logger objects answer with a time series or an event table", function()
  local e = assert(registry.get("logger.minutes_soc_log_ts"))
  T.eq(e.type, "INT32", "request type")
  T.eq(e.response, "TIMESERIES", "response type")
  e = assert(registry.get(0x6F3876BC))
  T.eq(e.name, "logger.error_log_time_stamp", "event table object")
  T.eq(e.response, "EVENT_TABLE", "response type")
end)

T.test("enumerations carry their symbols", function()
  local e = assert(registry.get("prim_sm.state"))
  T.eq(e.type, "ENUM", "type")
  T.eq(registry.symbol(e, 13), "Feed in", "symbol")
  T.eq(registry.symbol(e, 99), nil, "no symbol")
  T.eq(registry.symbol(registry.get("battery.soc"), 1), nil, "not an enum")
  -- two objects share the same list
  T.eq(registry.get("io_board.io1_usage").enum, registry.get("io_board.io2_usage").enum, "shared list")
end)

T.test("search finds names containing the text, any case, sorted", function()
  local found = registry.search("SOC_M")
  assert(#found >= 3, "found " .. #found)
  for i, e in ipairs(found) do
    assert(e.name:lower():find("soc_m", 1, true), e.name)
    if i > 1 then assert(found[i - 1].name < e.name, "sorted") end
  end
  T.eq(#registry.search("no such text at all"), 0, "nothing")
  T.eq(#registry.search(""), registry.count(), "everything")
  T.eq(#registry.all(), registry.count(), "all")
  T.eq(#registry.search("[0]"), #registry.search("[0]"), "plain text, not a pattern")
  assert(#registry.search("[0]") > 10, "brackets are plain text")
end)

T.test("the writable list: settings only, all of writable types", function()
  local writable = {}
  for _, e in ipairs(registry.all()) do
    if e.writable then
      writable[#writable + 1] = e.name
      -- a writable object has a type the codec can encode, and is not a log
      assert(e.type == e.response, e.name .. ": request and answer types differ")
      assert(e.type ~= "UNKNOWN" and not e.type:find("^BATTERY"), e.name .. ": " .. e.type)
    end
  end
  T.eq(#writable, 22, "writable objects")
  assert(registry.get("power_mng.soc_min").writable, "soc_min")
  assert(registry.get("pas.period").writable, "pas.period")
  assert(not registry.get("battery.soc").writable, "measurements are not writable")
  assert(not registry.get("inverter_sn").writable, "identity is not writable")
end)

-- {===== against the reference =====

T.test("the registry matches ../shared/reference/rct/registry.tsv fact by fact", function()
  local rows = dofile(md.paths.home .. "/tests/lua/rct_reference.lua").rows("registry.tsv")
  T.eq(#rows, registry.count(), "objects")
  local types = {}
  for _, name in ipairs(codec.types) do types[name] = true end
  for _, row in ipairs(rows) do
    local id = math.tointeger(tonumber(row.object_id))
    local e = registry.get(id)
    assert(e, row.object_id .. " missing")
    local where = row.object_id .. " " .. row.name
    T.eq(e.name, row.name, where .. ": name")
    T.eq(registry.get(row.name), e, where .. ": by name")
    T.eq(e.group, row.group, where .. ": group")
    T.eq(e.type, row.request_type, where .. ": request type")
    T.eq(e.response, row.response_type, where .. ": response type")
    T.eq(e.unit or "", row.unit, where .. ": unit")
    assert(types[e.type] and types[e.response], where .. ": a type the codec knows")
    local symbols = {}
    for k in pairs(e.enum or {}) do symbols[#symbols + 1] = k end
    table.sort(symbols)
    local map = {}
    for i, k in ipairs(symbols) do map[i] = k .. "=" .. e.enum[k] end
    T.eq(table.concat(map, ";"), row.enum_map, where .. ": enum symbols")
  end
end)

-- }=====
