-- moondog sunspec-convert: turn official SunSpec JSON model files into the
-- definitions moondog ships in devices/sunspec/.
--
--   moondog sunspec-convert JSON_DIR OUT_DIR [IDS...]
--
-- JSON_DIR holds model_<id>.json files (github.com/sunspec/models, json/).
-- IDS are model numbers or ranges ("1 101-103 160"); without them every
-- model in JSON_DIR is converted. OUT_DIR receives model_<id>.lua per model
-- and index.lua (id -> name of every model_<id>.lua in OUT_DIR, rebuilt each
-- run, so converting more models later adds to the set).
--
-- Only facts are carried over (names, offsets, types, sizes, units, scale
-- factors, access, mandatory/static flags, fixed values, symbols, groups);
-- labels, descriptions and comments are not. Each written file is read back
-- and checked against its JSON source before the tool reports success.
-- Exit codes: 0 done, 1 a file could not be read, checked or written,
-- 2 the command line is wrong.

local md = require "moondog"
local models = require "moondog.sunspec.models"
local file = require "moondog.file"
local cli_mod = require "moondog.cli"

local format = string.format
local TOOL = "moondog sunspec-convert"

local help = [[
usage: moondog sunspec-convert JSON_DIR OUT_DIR [IDS...]

Converts official SunSpec model definitions (model_<id>.json, as published
in github.com/sunspec/models) into moondog's own definition files
(OUT_DIR/model_<id>.lua) and rebuilds OUT_DIR/index.lua. IDS are model
numbers or ranges such as 701-713; without them every model is converted.
moondog reads devices/sunspec/ this way; `models.load_json_dir` loads JSON
files directly at run time instead.
]]

local function die(code, fmt, ...)
  io.stderr:write(TOOL, ": ", format(fmt, ...), "\n")
  if code == 2 then io.stderr:write("Try '", TOOL, " --help'.\n") end
  io.stdout:flush()
  md.exit(code)
end

-- {===== writing our format =====

local function q(s)
  return format("%q", s)
end

-- { {"OFF", 1}, {"ON", 2} } wrapped to lines of at most ~100 columns.
local function symbols_text(symbols, indent)
  local items = {}
  for i, s in ipairs(symbols) do
    items[i] = format("{ %s, %d }", q(s.name), s.value)
  end
  local lines, line = {}, ""
  for _, item in ipairs(items) do
    if #line > 0 and #indent + #line + #item > 96 then
      lines[#lines + 1] = indent .. line:gsub(" $", "")
      line = ""
    end
    line = line .. item .. ", "
  end
  lines[#lines + 1] = indent .. line:gsub(" $", "")
  return table.concat(lines, "\n")
end

local function point_line(p, indent)
  local parts = { format("%d, %s, %s, %d", p.offset, q(p.name), q(p.type), p.size) }
  local function add(s) parts[#parts + 1] = s end
  if type(p.sf) == "string" then add("sf = " .. q(p.sf)) end
  if math.type(p.sf) == "integer" then add(format("sf = %d", p.sf)) end
  if p.units then add("units = " .. q(p.units)) end
  if p.access ~= "R" then add("access = " .. q(p.access)) end
  if p.mandatory then add("mandatory = true") end
  if p.static then add("static = true") end
  if p.value ~= nil then add(format("value = %d", p.value)) end
  local head = indent .. "{ " .. table.concat(parts, ", ")
  if #head > 100 then -- keep lines short: the named facts go on a second line
    head = indent .. "{ " .. parts[1] .. ",\n" .. indent .. "    "
      .. table.concat(parts, ", ", 2)
  end
  if not p.symbols then
    return head .. " },"
  end
  return head .. ", symbols = {\n" .. symbols_text(p.symbols, indent .. "    ") .. "\n"
    .. indent .. "} },"
end

local function group_lines(g, indent, out, top)
  out[#out + 1] = indent .. "name = " .. q(g.name) .. ","
  if not top then
    local c = type(g.count) == "string" and q(g.count) or tostring(g.count)
    out[#out + 1] = indent .. "count = " .. c .. ","
  end
  if g.sync then out[#out + 1] = indent .. "sync = true," end
  out[#out + 1] = indent .. "points = {"
  for _, p in ipairs(g.points) do
    out[#out + 1] = point_line(p, indent .. "  ")
  end
  out[#out + 1] = indent .. "},"
  if #g.groups > 0 then
    out[#out + 1] = indent .. "groups = {"
    for _, sub in ipairs(g.groups) do
      out[#out + 1] = indent .. "  {"
      group_lines(sub, indent .. "    ", out, false)
      out[#out + 1] = indent .. "  },"
    end
    out[#out + 1] = indent .. "},"
  end
end

local function model_text(m)
  local out = {
    format("-- SunSpec model %d (%s): facts from the SunSpec Alliance model definitions", m.id,
      m.name),
    "-- (github.com/sunspec/models, Apache-2.0), written by `moondog sunspec-convert`.",
    "-- Point: { offset, name, type, size, ... }; see devices/sunspec/README.md.",
    "return {",
    format("  id = %d,", m.id),
    "  group = {",
  }
  group_lines(m.group, "    ", out, true)
  out[#out + 1] = "  },"
  out[#out + 1] = "}"
  return table.concat(out, "\n") .. "\n"
end

-- }=====

-- {===== checking what was written =====

-- Path of the first difference between two plain tables, or nil.
local function difference(a, b, path)
  if type(a) ~= "table" or type(b) ~= "table" then
    if a ~= b or math.type(a) ~= math.type(b) then
      return format("%s: %s vs %s", path, tostring(a), tostring(b))
    end
    return nil
  end
  for k, v in pairs(a) do
    local d = difference(v, b[k], path .. "." .. tostring(k))
    if d then return d end
  end
  for k in pairs(b) do
    if a[k] == nil then return path .. "." .. tostring(k) .. ": missing" end
  end
end

local function write_file(path, text)
  local ok, err = file.write(path, text)
  if not ok then die(1, "%s", err) end
end

local function convert(json_dir, out_dir, id)
  local src = format("%s/model_%d.json", json_dir, id)
  local m, err = models.read_json(src, id)
  if not m then die(1, "%s", err) end
  local path = format("%s/model_%d.lua", out_dir, id)
  write_file(path, model_text(m))
  local back = models.from_file_table(assert(loadfile(path, "t", {}))(), path)
  local d = difference(m, back, "model")
  if d then die(1, "%s does not read back as its source (%s)", path, d) end
  return m
end

local function write_index(out_dir)
  local files, err = models.list_files(out_dir, "lua")
  if not files then die(1, "%s", err) end
  local lines = {
    "-- The SunSpec models shipped in this directory: id -> name. Written by",
    "-- `moondog sunspec-convert`; moondog.sunspec.models loads a model file on first use.",
    "return {",
  }
  for _, f in ipairs(files) do
    local t = assert(loadfile(out_dir .. "/" .. f.name, "t", {}))()
    local m = models.from_file_table(t, f.name)
    lines[#lines + 1] = format("  [%d] = %s,", m.id, q(m.name))
  end
  lines[#lines + 1] = "}"
  write_file(out_dir .. "/index.lua", table.concat(lines, "\n") .. "\n")
  return #files
end

-- }=====

local cli = cli_mod.new(TOOL)
local o, args = cli:parse(nil, { ... }, { help = {}, short = { h = "help" } })
if o.help then cli_mod.show_help(help) end
if #args == 0 then
  io.stderr:write(help)
  md.exit(2)
end
if #args == 1 then cli:usage_error(nil, "missing OUT_DIR, the folder for the model_<id>.lua files") end
local json_dir, out_dir = args[1], args[2]

local ids = {}
for i = 3, #args do
  local lo, hi = args[i]:match("^(%d+)%-(%d+)$")
  if not lo then
    lo = args[i]:match("^%d+$")
    hi = lo
  end
  lo, hi = math.tointeger(tonumber(lo or "")), math.tointeger(tonumber(hi or ""))
  if not lo or lo > hi or hi > 65535 then
    die(2, "'%s' is not a model id or a range such as 701-713", args[i])
  end
  for id = lo, hi do ids[#ids + 1] = id end
end
if #ids == 0 then
  local files, err = models.list_files(json_dir, "json")
  if not files then die(1, "%s", err) end
  for _, f in ipairs(files) do ids[#ids + 1] = f.id end
  if #ids == 0 then die(1, "no model_<id>.json files in %s", json_dir) end
end

for _, id in ipairs(ids) do
  convert(json_dir, out_dir, id)
end
local n = write_index(out_dir)
print(format("converted %d model(s) into %s (%d in its index)", #ids, out_dir, n))
