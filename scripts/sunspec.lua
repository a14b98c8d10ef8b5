-- moondog sunspec: scan a SunSpec device, or serve a simulated one.
--
--   moondog sunspec scan  URL [--unit N] [--base A] [--json] [--models DIR] [--timeout S]
--   moondog sunspec serve URL --models 1,103,160:3,... [--unit N] [--base A]
--                             [--set 103.W=2500]... [--power W] [--image FILE]
--
-- scan prints every model and point with its value and unit, for a
-- person; with --json exactly one JSON object on stdout:
--   {"base": A, "models": [{"id": N, "name": "...", "address": A, "length": L,
--     "points": {"Name": value, ...}, "GROUP": [{"Name": value, ...}, ...]}]}
-- Values have their scale factors applied; not implemented is null; enums
-- are symbol names and bitfields arrays of the names of the bits set;
-- repeating groups are arrays under their group name (nested groups the
-- same way inside); a model moondog has no definition for has
-- "registers": [...] instead of points.
--
-- Exit codes: 0 done, 1 the device or the connection failed (one line on
-- stderr), 2 the command line is wrong.

local md = require "moondog"
local cli = require "moondog.cli"
local sunspec = require "moondog.sunspec"
local printable = require("moondog.text").printable

local format = string.format
local T = cli.new("moondog sunspec")
local number_text = cli.number_text

-- Failures of discovery, besides those of the Modbus client.
local hints = setmetatable({
  not_sunspec = "is this a SunSpec device? try another --unit, or --base if its manual names one",
  illegal_data_address = "the device refused the registers: check --unit and --base",
}, { __index = cli.hints })

-- {===== values as text =====

local function is_float32(p)
  return p and p.type == "float32"
end

-- A value for a person: numbers exact and short, bitfields as names.
local function value_text(v, p)
  if v == nil then return "-" end
  if type(v) == "table" then
    return #v == 0 and "(none)" or printable(table.concat(v, ", "))
  end
  if type(v) == "number" then return number_text(v, is_float32(p) and not p.sf) end
  return printable(v) -- device strings may hold escape sequences
end

local cjson = require "cjson"

-- A value as JSON: numbers exact (cjson would round to 14 digits and
-- print big integers in exponent form), strings through cjson.
local function json_value(v, p)
  if v == nil then return "null" end
  if type(v) == "table" then
    local items = {}
    for i, name in ipairs(v) do items[i] = cjson.encode(name) end
    return "[" .. table.concat(items, ",") .. "]"
  end
  if type(v) == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    return number_text(v, is_float32(p) and not p.sf)
  end
  if type(v) == "boolean" then return tostring(v) end
  return cjson.encode(v)
end

-- }=====

-- {===== scan =====

local scan_help = [=[
usage: moondog sunspec scan URL [--unit N] [--base A] [--json] [--models DIR] [--timeout S]

Finds the SunSpec map of a device (base address 40000, 0 or 50000, or
--base), reads every model and prints each point with its value and unit.
"-" marks a point the device does not implement.
  --unit N      unit (slave) id 0..255 (default: the URL's unit=, else 1)
  --base A      try only this base address (the address of 'SunS', 0-based)
  --json        print one JSON object instead:
                {"base": A, "models": [{"id": N, "name": "...", "points":
                {"Name": value}, "GROUP": [{"Name": value}, ...]}, ...]}
  --models DIR  also load official SunSpec JSON model files (model_<id>.json)
                from DIR, for models moondog does not ship
  --timeout S   response timeout in seconds (default: adapts, from 3 s)
URL is tcp://HOST[:PORT], udp://HOST[:PORT], rtu+tcp://HOST:PORT,
rtu+udp://HOST:PORT or rtu:///dev/ttyUSB0?baud=9600&parity=N.
]=]

local scan_spec = {
  unit = { arg = "N" }, base = { arg = "A" }, json = {}, models = { arg = "DIR" },
  timeout = { arg = "S" }, help = {},
  short = { u = "unit", b = "base", j = "json", h = "help" },
}

local function print_points(out, tree, indent)
  local width = 0
  for _, pt in ipairs(tree.points) do width = math.max(width, #pt.name) end
  for _, pt in ipairs(tree.points) do
    local text = value_text(pt.value, pt.point)
    local units = pt.value ~= nil and pt.units and type(pt.value) == "number" and (" " .. pt.units) or ""
    out[#out + 1] = format("%s%-" .. width .. "s  %s%s", indent, pt.name, text, units)
  end
  for _, g in ipairs(tree.groups) do
    for i, inst in ipairs(g.instances) do
      out[#out + 1] = format("%s%s[%d]", indent, g.name, i)
      print_points(out, inst, indent .. "  ")
    end
  end
end

local function print_text(dev)
  local out = { format("SunSpec device at %s, base %d, %d model(s)", dev.where, dev.base,
    #dev.models) }
  for _, m in ipairs(dev.models) do
    out[#out + 1] = ""
    if m.raw then
      out[#out + 1] = format("model %d at %d, L = %d: %s; raw registers:", m.id, m.address,
        m.length, m.why == "no definition" and "no definition (try --models DIR)" or m.why)
      for i = 1, #m.registers, 8 do
        local words = {}
        for j = i, math.min(i + 7, #m.registers) do words[#words + 1] = format("%04X", m.registers[j]) end
        out[#out + 1] = format("  %5d  %s", m.address + 1 + i, table.concat(words, " "))
      end
    else
      out[#out + 1] = format("model %d %s at %d, L = %d", m.id, m.name, m.address, m.length)
      print_points(out, m:tree(), "  ")
    end
  end
  io.stdout:write(table.concat(out, "\n"), "\n")
end

-- "Name":value of each point of a group instance.
local function points_json(tree)
  local members = {}
  for _, pt in ipairs(tree.points) do
    members[#members + 1] = cjson.encode(pt.name) .. ":" .. json_value(pt.value, pt.point)
  end
  return members
end

-- "group":[{...}, ...] of each repeating group; instances are objects of
-- their points and their own groups. Appended to `into`.
local function groups_json(tree, into)
  for _, g in ipairs(tree.groups) do
    local list = {}
    for i, inst in ipairs(g.instances) do
      list[i] = "{" .. table.concat(groups_json(inst, points_json(inst)), ",") .. "}"
    end
    into[#into + 1] = cjson.encode(g.name) .. ":[" .. table.concat(list, ",") .. "]"
  end
  return into
end

local function model_json(m)
  local head = format('"id":%d,"name":%s,"address":%d,"length":%d', m.id, cjson.encode(m.name),
    m.address, m.length)
  if m.raw then
    return format('{%s,"points":{},"registers":[%s]}', head, table.concat(m.registers, ","))
  end
  local tree = m:tree()
  local parts = groups_json(tree, { head, '"points":{' .. table.concat(points_json(tree), ",") .. "}" })
  return "{" .. table.concat(parts, ",") .. "}"
end

local function print_json(dev)
  local list = {}
  for i, m in ipairs(dev.models) do list[i] = model_json(m) end
  io.stdout:write(format('{"base":%d,"models":[%s]}\n', dev.base, table.concat(list, ",")))
end

-- The URL positional, checked with the address parser.
local function url_arg(cmd, pos, what)
  if #pos > 1 then T:usage_error(cmd, "unexpected argument '%s' (%s takes one URL)", pos[2], cmd) end
  local url = pos[1]
  if not url then T:usage_error(cmd, "missing the %s", what) end
  return url
end

local function load_models(cmd, dir)
  if not dir then return end
  local n, err = sunspec.models.load_json_dir(dir)
  if not n then T:usage_error(cmd, "--models %s: %s", dir, err) end
end

local function cmd_scan(args)
  local o, pos = T:parse("scan", args, scan_spec)
  if o.help then cli.show_help(scan_help) end
  local url = url_arg("scan", pos, "device URL (e.g. tcp://192.168.1.50:502)")
  local parsed, perr = md.modbus.address.parse(url)
  if not parsed then T:usage_error("scan", "%s", perr) end
  local unit = T:int("scan", "unit", o.unit, 0, 255) or parsed.unit or 1
  local base = T:int("scan", "base", o.base, 0, 65533)
  local timeout = T:seconds("scan", o.timeout)
  load_models("scan", o.models)
  local dev, err, code = sunspec.open(url, { unit = unit, base = base, timeout = timeout })
  if not dev then T:io_error(parsed.url, err, code, hints) end
  if o.json then print_json(dev) else print_text(dev) end
  dev:close()
end

-- }=====

-- {===== serve =====

local serve_help = [=[
usage: moondog sunspec serve URL --models LIST [--unit N] [--base A]
                             [--set MODEL.POINT=VALUE]... [--power W]
       moondog sunspec serve URL --image FILE [--unit N]

Serves a simulated SunSpec device until Ctrl-C or SIGTERM, and prints its
URL (with the real port when the URL says port 0) as the first line.
  --models LIST  model ids or names, in map order, e.g. 1,103,120,121,123,160:3
                 (ID:N gives a model with a repeating group N instances)
  --set M.P=V    a starting value, e.g. --set 103.W=2500 --set 1.SN=INV-7
                 (scaled as a client reads it; repeat for more)
  --power W      an inverter (model 101-103/111-113/701) produces W watts,
                 less when a client sets a power limit in model 123 or 704
                 (default 5000)
  --image FILE   serve a raw register image instead: lines "ADDRESS COUNT
                 WORDS..." (hex words), as in SunSpec device dumps (*.regs.tsv)
  --unit N       answer only this unit id (default: every id)
  --base A       base address of the map: 40000 (default), 0 or 50000
  --verbose      log every point clients write
]=]

local serve_spec = {
  models = { arg = "LIST" }, unit = { arg = "N" }, base = { arg = "A" }, set = { arg = "M.P=V", list = true },
  power = { arg = "W" }, image = { arg = "FILE" }, verbose = {}, help = {},
  short = { u = "unit", b = "base", m = "models", v = "verbose", h = "help" },
}

local function model_list(list)
  local out = {}
  for item in list:gmatch("[^,]+") do
    local key, count = item:match("^%s*([%w_]+)%s*:%s*(%d+)%s*$")
    key = key or item:match("^%s*([%w_]+)%s*$")
    if not key then T:usage_error("serve", "--models: '%s' is not a model id or name (ID or ID:N)", item) end
    local id = math.tointeger(tonumber(key)) or key
    if not sunspec.models.get(id) then
      T:usage_error("serve", "--models: moondog has no definition of model %s", key)
    end
    out[#out + 1] = count and { id = id, count = math.tointeger(tonumber(count)) } or id
  end
  if #out == 0 then T:usage_error("serve", "--models needs at least one model, e.g. 1,103") end
  return out
end

-- "103.W=2500" -> model 103, path "W", value 2500 (a number when it reads as one).
local function set_values(texts)
  local list = {}
  for _, text in ipairs(texts or {}) do
    local key, path, value = text:match("^([%w_]+)%.([^=]+)=(.*)$")
    if not key then
      T:usage_error("serve", "--set '%s': expected MODEL.POINT=VALUE, e.g. 103.W=2500", text)
    end
    list[#list + 1] = { model = math.tointeger(tonumber(key)) or key, path = path,
                        value = tonumber(value) or value }
  end
  return list
end

-- A *.regs.tsv image: {address, registers} from lines "ADDR COUNT WORDS".
local function read_image(path)
  local f = io.open(path, "r")
  if not f then T:usage_error("serve", "cannot read --image file '%s'", path) end
  local first, regs, n = nil, {}, 0
  for line in f:lines() do
    n = n + 1
    local addr, count, words = line:match("^%s*(%d+)%s+(%d+)%s+(.-)%s*$")
    if addr then
      addr = math.tointeger(tonumber(addr))
      first = first or addr
      local i = addr - first
      for w in words:gmatch("%S+") do
        local v = w:match("^%x%x?%x?%x?$") and tonumber(w, 16)
        if not v then T:usage_error("serve", "%s:%d: '%s' is not a 16-bit hex word", path, n, w) end
        i = i + 1
        regs[i] = v
      end
      if i - (addr - first) ~= math.tointeger(tonumber(count)) then
        T:usage_error("serve", "%s:%d: the line says %s words but has %d", path, n, count, i - (addr - first))
      end
    elseif not line:match("^%s*$") and not line:match("^%s*#") and not line:match("^address") then
      T:usage_error("serve", "%s:%d: expected 'ADDRESS COUNT WORDS...'", path, n)
    end
  end
  f:close()
  if not first then T:usage_error("serve", "--image %s holds no registers", path) end
  return { address = first, registers = regs }
end

local inverter_ids = { [101] = true, [102] = true, [103] = true, [111] = true, [112] = true,
                       [113] = true, [701] = true }

local function cmd_serve(args)
  local o, pos = T:parse("serve", args, serve_spec)
  if o.help then cli.show_help(serve_help) end
  local url = url_arg("serve", pos, "URL to listen on (e.g. tcp://127.0.0.1:1502)")
  if not o.models and not o.image then
    T:usage_error("serve", "missing --models (e.g. --models 1,103,120,121,123) or --image FILE")
  end
  if o.models and o.image then T:usage_error("serve", "give --models or --image, not both") end
  local unit = T:int("serve", "unit", o.unit, 1, 255)
  local base = T:int("serve", "base", o.base, 0, 65000)
  local power = o.power and tonumber(o.power)
  if o.power and not power then T:usage_error("serve", "--power must be watts, got '%s'", o.power) end
  local opts = { unit = unit, base = base }
  if o.image then
    opts.image = read_image(o.image)
  else
    opts.models = model_list(o.models)
  end
  local sets = set_values(o.set)
  local ok, srv, err, code = pcall(sunspec.serve, url, opts)
  if not ok then T:usage_error("serve", "%s", (tostring(srv):gsub("^.-sunspec%.serve: ", ""))) end
  if not srv and code == "bad_address" then T:usage_error("serve", "%s", tostring(err)) end
  if not srv then
    local hint = code == "in_use" and " — another program listens there; pick another port or 0"
      or code == "permission" and " — ports below 1024 need root; use e.g. 1502" or ""
    cli.say("moondog sunspec serve: cannot serve %s: %s%s", url, tostring(err), hint)
    md.exit(1)
  end
  if not o.image then
    local inverter, limits
    for _, m in ipairs(srv.models) do
      if inverter_ids[m.id] then inverter = true end
      if m.id == 123 or m.id == 704 then limits = true end
    end
    for _, s in ipairs(sets) do
      if inverter_ids[s.model] and s.path == "W" then power = power or s.value end
    end
    if inverter and limits then srv:simulate_inverter{ power = power or 5000 } end
  end
  for _, s in ipairs(sets) do
    local sok, serr = pcall(srv.set, srv, s.model, s.path, s.value)
    if not sok then
      srv:close()
      T:usage_error("serve", "--set %s.%s: %s", s.model, s.path, (tostring(serr):gsub("^.-: ", "")))
    end
  end
  srv:on_write(function(id, path, value)
    local level = o.verbose and "info" or "debug"
    md.log[level]("client wrote model %d %s = %s", id, path, value_text(value))
  end)
  io.stdout:write(srv:url(), "\n")
  io.stdout:flush()
  md.log.info("serving SunSpec %s on %s; Ctrl-C stops", o.image and ("image " .. o.image)
    or o.models, srv:url())
end

-- }=====

local help = [=[
usage: moondog sunspec COMMAND URL [options]

  scan    find a SunSpec device's models and print every point
  serve   run a simulated SunSpec device

"moondog sunspec COMMAND --help" explains each command. Exit codes: 0 done,
1 the device or the connection failed, 2 the command line is wrong.
]=]

local commands = { scan = cmd_scan, serve = cmd_serve }

T:dispatch(commands, { ... }, help)
