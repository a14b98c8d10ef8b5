-- moondog.sunspec.models: the shipped definitions (devices/sunspec/) against
-- the official SunSpec JSON models and the flat index points.tsv in
-- ../shared/reference/sunspec, fact by fact; loading JSON model directories
-- at run time, and the errors for broken ones.
--
-- The JSON side is walked here directly (not through models.from_json), and
-- offsets come from points.tsv, which was produced independently, so a bug
-- in the normalizer cannot hide itself.
local T = require "moondog.testing"
local cjson = require "cjson"
local models = require "moondog.sunspec.models"

local REQUIRED = { 1, 101, 102, 103, 111, 112, 113, 120, 121, 122, 123, 124, 160, 201, 202, 203, 204,
                   211, 212, 213, 214 }
for id = 701, 713 do REQUIRED[#REQUIRED + 1] = id end

local function reference_dir()
  local shared = T.shared_dir()
  if not shared then T.skip("../shared is absent") end
  return shared .. "/reference/sunspec"
end

-- The shipped ids, from the index file (models.ids() also lists loaded JSON).
local function shipped_ids()
  local index = assert(loadfile(models.shipped_dir() .. "/index.lua", "t", {}))()
  local ids = {}
  for id in pairs(index) do ids[#ids + 1] = id end
  table.sort(ids)
  return ids, index
end

local function read_json(path)
  return cjson.decode((assert(T.read_file(path), "cannot read " .. path)))
end

local function int(v)
  return type(v) == "number" and math.tointeger(v) or v
end

-- {===== fact by fact against the JSON =====

local function compare_point(jp, p, where, diff)
  local function check(fact, want, got)
    if want ~= got or math.type(want) ~= math.type(got) then
      diff(string.format("%s.%s %s: JSON %s, shipped %s", where, tostring(jp.name), fact,
        tostring(want), tostring(got)))
    end
  end
  check("name", jp.name, p.name)
  check("type", jp.type, p.type)
  check("size", int(jp.size), p.size)
  check("units", jp.units, p.units)
  check("sf", int(jp.sf), p.sf)
  check("access", jp.access or "R", p.access)
  check("mandatory", jp.mandatory == "M", p.mandatory)
  check("static", jp.static == "S", p.static)
  check("value", int(jp.value), p.value)
  local js, ps = jp.symbols or {}, p.symbols or {}
  check("symbol count", #js, #ps)
  check("has symbols", jp.symbols ~= nil, p.symbols ~= nil)
  for i = 1, math.max(#js, #ps) do
    local a, b = js[i] or {}, ps[i] or {}
    check("symbol " .. i .. " name", a.name, b.name)
    check("symbol " .. i .. " value", int(a.value), b.value)
    if b.name then
      check("symbol_of[" .. tostring(b.value) .. "]", p.symbol_of[b.value] ~= nil, true)
      check("value_of[" .. b.name .. "]", p.value_of[b.name], b.value)
    end
  end
end

local function compare_group(jg, g, where, diff)
  where = where .. "/" .. tostring(jg.name)
  local function check(fact, want, got)
    if want ~= got then
      diff(string.format("%s %s: JSON %s, shipped %s", where, fact, tostring(want), tostring(got)))
    end
  end
  check("name", jg.name, g.name)
  check("count", int(jg.count or 1), g.count)
  check("sync", jg.type == "sync", g.sync == true)
  check("point count", #jg.points, #g.points)
  local size = 0
  for i, jp in ipairs(jg.points) do
    if g.points[i] then
      compare_point(jp, g.points[i], where, diff)
      check("by_name." .. jp.name, g.points[i], g.by_name[jp.name])
    end
    size = size + int(jp.size)
  end
  check("size", size, g.size)
  local jsubs = jg.groups or {}
  check("group count", #jsubs, #g.groups)
  for i, jsub in ipairs(jsubs) do
    if g.groups[i] then compare_group(jsub, g.groups[i], where, diff) end
  end
end

-- A collector of differences that fails with the first few of them.
local function differences()
  local list = {}
  return function(d) list[#list + 1] = d end, function(what)
    if #list > 0 then
      error(string.format("%d difference(s) in %s:\n%s", #list, what,
        table.concat(list, "\n", 1, math.min(#list, 20))), 2)
    end
  end
end

T.test("every required model is shipped", function()
  local _, index = shipped_ids()
  for _, id in ipairs(REQUIRED) do
    assert(index[id], "model " .. id .. " is not in devices/sunspec/index.lua")
    local m = models.get(id)
    T.eq(m.id, id, "id of model " .. id)
    T.eq(m.name, index[id], "name of model " .. id)
    T.eq(models.get(m.name), m, "the same definition by name")
  end
end)

T.test("shipped definitions match the official JSON models, fact by fact", function()
  local dir = reference_dir()
  local diff, done = differences()
  for _, id in ipairs(shipped_ids()) do
    local j = read_json(string.format("%s/models/model_%d.json", dir, id))
    local m = models.get(id)
    if int(j.id) ~= m.id then diff(string.format("model %d: JSON id %s", id, tostring(j.id))) end
    if j.group.name ~= m.name then diff(string.format("model %d: name %s", id, m.name)) end
    compare_group(j.group, m.group, "model " .. id, diff)
  end
  done("the shipped models")
end)

-- points.tsv row: model_id, model_name, group_path, group_count, offset,
-- point, type, regs, sf, units, access, mandatory, static, value, symbols.
T.test("shipped offsets and group counts match points.tsv", function()
  local dir = reference_dir()
  local rows = {}
  for line in assert(T.read_file(dir .. "/points.tsv")):gmatch("[^\n]+") do
    local f = {}
    for field in (line .. "\t"):gmatch("([^\t]*)\t") do f[#f + 1] = field end
    if f[1] ~= "model_id" then
      rows[f[1] .. " " .. f[3] .. " " .. f[6]] = f
    end
  end
  local diff, done = differences()
  local seen = 0
  local function walk(id, g, path)
    for _, p in ipairs(g.points) do
      local key = id .. " " .. path .. " " .. p.name
      local f = rows[key]
      if not f then
        diff(key .. ": not in points.tsv")
      else
        seen = seen + 1
        rows[key] = nil
        if tonumber(f[5]) ~= p.offset then diff(key .. ": offset " .. f[5] .. " vs " .. p.offset) end
        if f[4] ~= tostring(g.count) then diff(key .. ": group count " .. f[4] .. " vs " .. g.count) end
        if f[7] ~= p.type or tonumber(f[8]) ~= p.size then diff(key .. ": type or size") end
        if f[9] ~= tostring(p.sf or "") or f[10] ~= (p.units or "") then diff(key .. ": sf or units") end
        if f[11] ~= p.access then diff(key .. ": access") end
        if (f[12] == "M") ~= p.mandatory or (f[13] == "S") ~= p.static then diff(key .. ": flags") end
        local syms = {}
        for _, s in ipairs(p.symbols or {}) do syms[#syms + 1] = s.name .. "=" .. s.value end
        if f[15] ~= table.concat(syms, ";") then diff(key .. ": symbols") end
      end
    end
    for _, sub in ipairs(g.groups) do walk(id, sub, path .. "." .. sub.name) end
  end
  local shipped = {}
  for _, id in ipairs(shipped_ids()) do
    shipped[tostring(id)] = true
    local m = models.get(id)
    walk(id, m.group, m.name)
  end
  for key in pairs(rows) do
    if shipped[key:match("^%d+")] then diff(key .. ": in points.tsv but not shipped") end
  end
  assert(seen > 1000, "only " .. seen .. " points compared")
  done("the shipped offsets")
end)

-- }=====

T.test("shipped files hold facts only, in the documented layout", function()
  local allowed = { sf = true, units = true, access = true, mandatory = true, static = true,
                    value = true, symbols = true }
  local group_keys = { name = true, count = true, sync = true, points = true, groups = true }
  local function check_group(g, where)
    for k in pairs(g) do assert(group_keys[k], where .. ": unexpected group field " .. tostring(k)) end
    for _, p in ipairs(g.points) do
      for k in pairs(p) do
        assert(math.type(k) == "integer" and k >= 1 and k <= 4 or allowed[k],
          where .. "." .. tostring(p[2]) .. ": unexpected field " .. tostring(k))
      end
    end
    for _, sub in ipairs(g.groups or {}) do check_group(sub, where .. "/" .. sub.name) end
  end
  for _, id in ipairs(shipped_ids()) do
    local path = string.format("%s/model_%d.lua", models.shipped_dir(), id)
    local t = assert(loadfile(path, "t", {}))()
    for k in pairs(t) do assert(k == "id" or k == "group", path .. ": unexpected field " .. k) end
    check_group(t.group, path)
  end
end)

T.test("lookups: by id, by name, unknown, wrong key type", function()
  local m = models.get(103)
  T.eq(models.get("inverter_three_phase"), m)
  T.eq(m.group.by_name.W.offset, 14, "103 W offset")
  T.eq(m.group.by_name.W.sf, "W_SF")
  T.eq(m.group.by_name.WH.type, "acc32")
  T.eq(m.group.by_name.St.symbol_of[4], "MPPT")
  T.eq(m.group.by_name.St.value_of.FAULT, 7)
  T.eq(m.group.by_name.A.symbols, nil, "no symbols on a plain point")
  T.eq(m.group.by_name.A.symbol_of, nil, "no symbol_of on a plain point")
  T.eq(m.group.size, 52, "ID + L + 50 registers")
  local mppt = models.get("mppt").group
  T.eq(mppt.groups[1].name, "module")
  T.eq(mppt.groups[1].count, 0, "160 modules: count from L")
  T.eq(mppt.groups[1].size, 20)
  T.eq(mppt.groups[1].by_name.DCV.offset, 10, "offsets restart in each instance")
  T.eq(mppt.groups[1].by_name.DCV.sf, "DCV_SF", "sf names a top-level point")
  local c123 = models.get(123).group.by_name
  T.eq(c123.WMaxLimPct.access, "RW")
  T.eq(c123.WMaxLimPct.offset, 5)
  T.eq(models.get(705).group.groups[1].count, "NCrv", "count from a point")
  T.eq(models.get(705).group.groups[1].groups[1].count, "NPt", "nested count")
  T.eq(models.get(704).group.groups[1].sync, true, "704 PF groups are sync")
  T.eq(models.get(64999), nil, "unknown id")
  T.eq(models.get("no_such_model"), nil, "unknown name")
  assert(not pcall(models.get, 1.5), "a float id raises")
  assert(not pcall(models.get, {}), "a table raises")
  local ids = models.ids()
  for i = 2, #ids do assert(ids[i - 1] < ids[i], "ids are sorted") end
end)

-- Deep equality of two normalized definitions; the path of the first difference.
local function same(a, b, path)
  if type(a) ~= "table" or type(b) ~= "table" then
    if a ~= b or math.type(a) ~= math.type(b) then return path end
    return nil
  end
  for k, v in pairs(a) do
    local d = same(v, b[k], path .. "." .. tostring(k))
    if d then return d end
  end
  for k in pairs(b) do
    if a[k] == nil then return path .. "." .. tostring(k) end
  end
end

T.test("load_json_dir: all 112 models, identical to the shipped ones", function()
  local dir = reference_dir() .. "/models"
  local ids = shipped_ids()
  for _, id in ipairs(ids) do
    local j = assert(models.read_json(string.format("%s/model_%d.json", dir, id), id))
    local d = same(j, models.get(id), "model " .. id)
    assert(d == nil, "JSON and shipped definitions differ at " .. tostring(d))
  end
  local before = models.get(103)
  local count, added = models.load_json_dir(dir)
  T.eq(count, 112, "files read")
  T.eq(added, 112 - #ids, "definitions added")
  T.eq(models.get(103), before, "shipped definitions are kept")
  T.eq(#models.ids(), 112, "shipped and loaded ids")
  T.eq(models.get(129).group.groups[1].count, 0, "a model only the JSON has")
  T.eq(models.get("lvrt"), models.get(129), "and by its name")
  count, added = models.load_json_dir(dir, { override = true })
  T.eq(count, 112)
  T.eq(added, 112, "override replaces")
  assert(models.get(103) ~= before, "override gives a new table")
  T.eq(same(models.get(103), before, "model 103"), nil, "with the same facts")
end)

T.test("load_json_dir: broken files are named, nothing is added", function()
  local dir <close> = T.tmpdir()
  local good = '{"id": 64901, "group": {"name": "t_good", "points": ['
    .. '{"name": "ID", "type": "uint16", "size": 1, "value": 64901},'
    .. '{"name": "L", "type": "uint16", "size": 1},'
    .. '{"name": "X", "type": "int16", "size": 1, "sf": "X_SF"},'
    .. '{"name": "X_SF", "type": "sunssf", "size": 1}]}}'
  T.write_file(dir.path .. "/model_64901.json", good)
  T.write_file(dir.path .. "/model_64902.json", '{"id": 64902, "group": ')
  local ok, err, code = models.load_json_dir(dir.path)
  T.eq(ok, nil)
  T.eq(code, "malformed")
  assert(err:find("model_64902.json", 1, true), err)
  assert(err:find("not valid JSON", 1, true), err)
  T.eq(models.get(64901), nil, "nothing added from a directory with a broken file")

  local cases = {
    { '"type": "int17"', "unknown type int17" },
    { '"type": "uint32", "size": 1, "x": 0', "takes 2 register(s)" },
    { '"type": "int16", "size": 1, "sf": "NO_SF"', "scale factor NO_SF" },
    { '"type": "int16", "size": 1, "access": "W"', "access must be R or RW" },
    { '"type": "int16", "size": 1, "mandatory": true', "mandatory must be M or O" },
  }
  for _, c in ipairs(cases) do
    local text = good:gsub('"type": "int16", "size": 1, "sf": "X_SF"', c[1]):gsub("64901", "64902")
    T.write_file(dir.path .. "/model_64902.json", text)
    ok, err, code = models.load_json_dir(dir.path)
    T.eq(ok, nil, c[2])
    T.eq(code, "malformed")
    assert(err:find("model_64902.json", 1, true) and err:find(c[2], 1, true), err)
  end
  T.write_file(dir.path .. "/model_64902.json", good:gsub("t_good", "t_other"))
  local _, err2 = models.load_json_dir(dir.path)
  assert(err2:find("defines model 64901", 1, true), err2)

  os.remove(dir.path .. "/model_64902.json")
  T.eq(models.load_json_dir(dir.path), 1, "the good file alone loads")
  T.eq(models.get("t_good").group.by_name.X.sf, "X_SF")

  local empty <close> = T.tmpdir()
  _, err, code = models.load_json_dir(empty.path)
  T.eq(code, "not_found")
  assert(err:find(empty.path, 1, true), err)
  _, err, code = models.load_json_dir(empty.path .. "/missing")
  T.eq(code, "not_found")
  assert(err:find("cannot read the directory", 1, true), err)
end)
