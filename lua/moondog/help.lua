-- moondog.help: the REPL's help(), read from the library's own comments, so
-- that the documentation and the help have one source.
--
--   local help = require "moondog.help"
--   help.text(md.modbus.open)  -- a function: its doc, "defined in file:line"
--   help.text(md.modbus)       -- a module: its opening comment, its functions
--   help.text(bus)             -- an object: its methods
--   help.text()                -- where to start
--
-- In `moondog repl` and `moondog attach`, help(x) prints help.text(x).
--
-- The convention, for every module, the ones written later too:
--  - A module file opens with a block of `--` lines: what the module is for,
--    and a short example. Its first line reads "-- moondog.x: summary".
--  - A function is documented by the run of `---` lines directly above its
--    definition. The first line is the call as a caller writes it:
--      --- modbus.open(url [, opts]) -> bus, or nil, err, code
--      --- opts override the URL's parameters: unit, timeout, ...
--      function M.open(url, opts)
--  - A function written in C has no Lua source to read. It is documented by
--    a `---` block anywhere in the Lua file of the module that exports it
--    (for moondog.core and the task methods: lua/moondog/init.lua) whose
--    first line starts with its name as help finds it: `md.sleep(` for a
--    field of md, `modbus.open(` for a field of moondog.modbus, and
--    `bus:read_holding(` for a method of a userdata whose metatable is named
--    "moondog.modbus.bus" (the last part of the name).
--
-- How it works. debug.getinfo(f, "S") gives a Lua function's file and the
-- line of its definition; files are read once and kept by path (at most
-- 1 MiB each). The reads are plain io.open on the loop thread: a few small
-- local files, once each, when a person asks. A table is a module when package.loaded holds it, or else
-- its file is the one most of its functions come from. A C function is
-- named by looking for it in md, the loaded modules and the __index tables
-- of the metatables in the registry.
--
-- Nothing here calls user code: metatables are read raw, __index is
-- followed only through tables, __tostring and __complete are not called
-- (md's list of lazy modules is read from its __complete only for md
-- itself, which is the library's). help.text never raises: an internal
-- error becomes a line of its text. Its output is at most M.max_chars long,
-- and every walk over a table is bounded in entries and depth.
--
-- Pure Lua, no globals. Needs the debug library.

local M = {}

local debug = debug
local getmt = debug.getmetatable -- raw: ignores __metatable
local concat, sort = table.concat, table.sort
local format = string.format

--- help.max_chars: the longest text help.text returns (16000).
M.max_chars = 16000

local MAX_FILE = 1 << 20 -- bytes read of one source file
local MAX_FIELDS = 2000 -- entries looked at per table
local MAX_HEADER = 60 -- lines of a module's opening comment

local function metatable(v)
  local mt = getmt(v)
  if type(mt) == "table" then return mt end
  return nil
end

local function is_ident(k)
  return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil
end

-- next() over at most MAX_FIELDS entries of t, raw.
local function fields(t)
  local n, k = 0, nil
  return function()
    n = n + 1
    if n > MAX_FIELDS then return nil end
    local v
    k, v = next(t, k)
    return k, v
  end
end

local function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- {===== source files =====

local cache = {}

-- The lines of a file, or nil. Kept for the life of the process: library
-- files do not change under a running engine.
local function read_lines(path)
  local lines = cache[path]
  if lines ~= nil then return lines or nil end
  local f = io.open(path, "rb")
  local text = f and f:read(MAX_FILE)
  if f then f:close() end
  if type(text) ~= "string" then
    cache[path] = false
    return nil
  end
  lines = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    lines[#lines + 1] = line:gsub("\r$", "")
  end
  cache[path] = lines
  return lines
end

local function home()
  local ok, md = pcall(require, "moondog")
  local paths = ok and type(md) == "table" and rawget(md, "paths")
  local h = type(paths) == "table" and rawget(paths, "home")
  return type(h) == "string" and h or nil
end

-- A path as the user knows it: relative to the moondog home when inside it.
local function relative(path)
  local h = home()
  if h then
    h = h:gsub("/+$", "") .. "/"
    if path:sub(1, #h) == h then return path:sub(#h + 1) end
  end
  return path
end

local function module_file(modname)
  if type(modname) ~= "string" then return nil end
  local ok, path = pcall(package.searchpath, modname, package.path)
  return ok and path or nil
end

local function is_doc(line)
  return line ~= nil and line:match("^%s*%-%-%-") ~= nil
    and line:match("^%s*%-%-%-%-") == nil
end

local function doc_text(line)
  return (line:gsub("^%s*%-%-%- ?", ""))
end

-- The `---` lines directly above line n, as text, and the first line's number.
local function doc_above(lines, n)
  local first = n
  while first > 1 and is_doc(lines[first - 1]) do first = first - 1 end
  local out = {}
  for i = first, n - 1 do out[#out + 1] = doc_text(lines[i]) end
  return out, first
end

-- The name a doc block documents, from its first line: "md.sleep(s) ..." ->
-- "md.sleep", "task:join(...)" -> "task:join".
local function doc_key(text)
  return text:match("^([%a_][%w_]*[.:][%a_][%w_.:]*)%s*%(")
    or text:match("^([%a_][%w_]*[.:][%a_][%w_.:]*)%s*%->")
    or text:match("^([%a_][%w_]*[.:][%a_][%w_.:]*)%s*:")
end

local blocks_cache = {}

-- Every `---` block of a file: {first = line, lines = {...}, key = name or
-- nil, def = the definition line below it or nil}.
local function doc_blocks(path)
  local blocks = blocks_cache[path]
  if blocks then return blocks end
  blocks = {}
  local lines = read_lines(path) or {}
  local i = 1
  while i <= #lines do
    if is_doc(lines[i]) then
      local b = { first = i, lines = {} }
      while is_doc(lines[i]) do
        b.lines[#b.lines + 1] = doc_text(lines[i])
        i = i + 1
      end
      b.key = doc_key(b.lines[1])
      local below = lines[i]
      if below and below:match("^%s*local%s+function[%s(]")
        or below and below:match("^%s*function[%s(]")
        or below and below:match("=%s*function%s*%(") then
        b.def = i
      end
      blocks[#blocks + 1] = b
    else
      i = i + 1
    end
  end
  blocks_cache[path] = blocks
  return blocks
end

-- The block of path documenting one of the names (tried in order), or nil.
local function find_block(path, names)
  if not path then return nil end
  local blocks = doc_blocks(path)
  for _, name in ipairs(names) do
    for _, b in ipairs(blocks) do
      if b.key == name then return b end
    end
  end
  return nil
end

-- The names in a definition line: "function Bus.read_value(" -> "read_value",
-- "Bus"; the table part is nil for a plain or local function.
local function defined_name(line)
  if not line then return nil end
  local owner, name = line:match("function%s+([%w_.:]-)[.:]([%a_][%w_]*)%s*%(")
  if name then return name, owner:match("([%a_][%w_]*)$") end
  name = line:match("function%s+([%a_][%w_]*)%s*%(")
    or line:match("([%a_][%w_]*)%s*=%s*function%s*%(")
  return name, nil
end

-- Whether a doc key ("bus:read_device_info") names the function defined
-- as owner.name: the same name, and the owner the key's prefix in lower
-- case (Bus -> bus) or M, the module table, whose prefix is the module's.
local function key_names(key, name, owner)
  local prefix, last = key:match("^(.-)[.:]([%a_][%w_]*)$")
  if last ~= name then return false end
  return owner == nil or owner == "M" or owner:lower() == prefix:lower()
end

-- }=====

-- {===== naming =====

local lua_library = {
  _G = true, coroutine = true, debug = true, io = true, math = true, os = true,
  package = true, string = true, table = true, utf8 = true,
}
local MANUAL = "https://www.lua.org/manual/5.4/manual.html#6"

local function last_part(modname)
  return modname:match("([^.]+)$") or modname
end

-- How a module is written in the docs: "moondog" and "moondog.core" are md.
local function short_module(modname)
  if modname == "moondog" or modname == "moondog.core" then return "md" end
  return last_part(modname)
end

local function full_module(modname)
  if modname == "moondog" or modname == "moondog.core" then return "md" end
  if modname == "_G" then return nil end
  local rest = modname:match("^moondog%.(.+)$")
  if rest then return "md." .. rest end
  return modname
end

local function modname_of(t)
  for name, mod in fields(package.loaded) do
    if rawequal(mod, t) and type(name) == "string" then return name end
  end
  return nil
end

-- Module names, moondog's first, then sorted, so that the search is stable.
local function loaded_modules()
  local ours, others = {}, {}
  for name, mod in fields(package.loaded) do
    if type(name) == "string" and type(mod) == "table" then
      local list = (name == "moondog" or name:match("^moondog%.")) and ours or others
      list[#list + 1] = name
    end
  end
  sort(ours)
  sort(others)
  for _, name in ipairs(others) do ours[#ours + 1] = name end
  return ours
end

local function key_of(t, value)
  for k, v in fields(t) do
    if rawequal(v, value) and is_ident(k) then return k end
  end
  return nil
end

-- Where a function can be found: {name = "md.sleep", keys = {doc names to
-- try}, modname = module whose file may document it}, or nil.
local function find_function(f)
  for _, modname in ipairs(loaded_modules()) do
    local k = key_of(package.loaded[modname], f)
    if k then
      local full = full_module(modname)
      return { name = full and full .. "." .. k or k, modname = modname,
        keys = { full and full .. "." .. k or k, short_module(modname) .. "." .. k } }
    end
  end
  for rname, mt in fields(debug.getregistry()) do
    if type(rname) == "string" and type(mt) == "table" then
      local index = rawget(mt, "__index")
      local k = type(index) == "table" and key_of(index, f)
      if k then
        local tname = last_part(rname)
        return { name = tname .. ":" .. k, modname = rname, registry = true,
          keys = { tname .. ":" .. k, tname .. "." .. k } }
      end
    end
  end
  return nil
end

-- The files that may document a C function of modname: its own, each
-- parent module's ("moondog.modbus.bus" -> moondog/modbus/init.lua), and
-- lua/moondog/init.lua.
local function doc_files(modname)
  local files, seen = {}, {}
  local name = modname
  while name do
    local path = module_file(name)
    if path and not seen[path] then
      files[#files + 1] = path
      seen[path] = true
    end
    name = name:match("^(.+)%.[^.]+$")
  end
  local root = module_file("moondog")
  if root and not seen[root] then files[#files + 1] = root end
  return files
end

-- The doc block of a C function and its file, or nil.
local function c_doc(where, extra_keys)
  local keys = {}
  for _, k in ipairs(extra_keys or {}) do keys[#keys + 1] = k end
  if where then
    for _, k in ipairs(where.keys) do keys[#keys + 1] = k end
  end
  local files = doc_files(where and where.modname or "moondog")
  for _, path in ipairs(files) do
    local b = find_block(path, keys)
    if b then return b, path end
  end
  return nil
end

-- The doc of a Lua function: the `---` block above its definition, else a
-- block in the same file naming it. Returns {lines = doc lines (maybe
-- none), info = debug info, path = its file or nil, src = the file's lines,
-- first = the doc's first line number}.
local function lua_doc(f)
  local info = debug.getinfo(f, "S")
  local d = { lines = {}, info = info }
  local source = info.source or ""
  if source:sub(1, 1) ~= "@" then return d end
  d.path = source:sub(2)
  d.src = read_lines(d.path)
  if not d.src or info.linedefined < 1 then return d end
  d.lines, d.first = doc_above(d.src, info.linedefined)
  if #d.lines == 0 then
    local name, owner = defined_name(d.src[info.linedefined])
    for _, b in ipairs(name and doc_blocks(d.path) or {}) do
      if b.key and not b.def and key_names(b.key, name, owner) then
        d.lines, d.first = b.lines, b.first
        break
      end
    end
  end
  return d
end

-- The first line of a function's doc, for lists ("" when undocumented),
-- and the file and line of the doc block.
local function first_line(f, extra_keys)
  if type(f) ~= "function" then return "" end
  if debug.getinfo(f, "S").what == "C" then
    local b, path = c_doc(find_function(f), extra_keys)
    if b then return b.lines[1], path, b.first end
    return ""
  end
  local d = lua_doc(f)
  if d.lines[1] then return d.lines[1], d.path, d.first end
  return ""
end

-- }=====

-- {===== output =====

local Out = {}
Out.__index = Out

local function new_out()
  return setmetatable({ parts = {}, size = 0 }, Out)
end

function Out:line(s)
  if self.size > M.max_chars then return end
  s = tostring(s or "")
  self.parts[#self.parts + 1] = s
  self.size = self.size + #s + 1
end

function Out:text()
  local s = concat(self.parts, "\n")
  if #s > M.max_chars then
    s = s:sub(1, M.max_chars) .. "\n... (help cut at " .. M.max_chars .. " characters)"
  end
  return s
end

-- One entry of a list: "  open(url [, opts]) -> bus, ..." when the doc's
-- first line is the call, else "  name  first line".
local function entry(name, doc)
  if doc ~= "" then
    local key = doc_key(doc)
    if key and (key:match("[.:]" .. name .. "$") or key == name) then
      return "  " .. name .. doc:sub(#key + 1)
    end
    if doc:sub(1, #name) == name then return "  " .. doc end
    return format("  %-18s %s", name, doc)
  end
  return "  " .. name
end

-- }=====

-- {===== functions =====

local function function_text(f, out)
  local info = debug.getinfo(f, "S")
  if info.what == "C" then
    local where = find_function(f)
    local b, path = c_doc(where)
    local name = where and where.name or "a C function"
    if b then
      for _, l in ipairs(b.lines) do out:line(l) end
      out:line("")
      out:line(format("%s is written in C; documented in %s:%d", name, relative(path), b.first))
    elseif where and lua_library[where.modname] then
      out:line(format("%s: a function of Lua's standard library; see the Lua 5.4 manual (%s)",
        name, MANUAL))
    else
      out:line(format("%s: no documentation found for this C function; see README.md", name))
      local h = home()
      if h then out:line("(" .. h:gsub("/+$", "") .. "/README.md and docs/)") end
    end
    return
  end
  local d = lua_doc(f)
  local doc, path, lines = d.lines, d.path, d.src
  local where = path and relative(path) or info.short_src
  for _, l in ipairs(doc) do out:line(l) end
  if #doc == 0 then
    if path then
      out:line("no documentation: no `---` comment above the definition")
    else
      out:line("a function defined in " .. where .. ":" .. info.linedefined
        .. " (not in a file: no documentation to read)")
      return
    end
  end
  out:line("")
  local def = lines and lines[info.linedefined]
  if def then out:line(trim(def):sub(1, 200)) end
  out:line("defined in " .. where .. ":" .. info.linedefined)
end

-- }=====

-- {===== modules and objects =====

-- The file most of t's Lua functions come from, or nil.
local function majority_file(t)
  local count, best, best_n = {}, nil, 0
  for _, v in fields(t) do
    if type(v) == "function" then
      local src = debug.getinfo(v, "S").source or ""
      if src:sub(1, 1) == "@" then
        local p = src:sub(2)
        count[p] = (count[p] or 0) + 1
        if count[p] > best_n then best, best_n = p, count[p] end
      end
    end
  end
  return best
end

-- The opening `--` comment of a file, without the dashes.
local function header(lines)
  local out, i = {}, 1
  if lines[1] and lines[1]:sub(1, 2) == "#!" then i = 2 end
  while lines[i] and lines[i]:match("^%-%-") and not lines[i]:match("^%-%-%-") do
    if #out >= MAX_HEADER then
      out[#out + 1] = "..."
      break
    end
    out[#out + 1] = lines[i]:gsub("^%-%- ?", "")
    i = i + 1
  end
  return out
end

local function sorted_keys(set)
  local list = {}
  for k in pairs(set) do list[#list + 1] = k end
  sort(list)
  return list
end

-- Functions of v (when a table), of the __index table chain and of the
-- metatables on it (a class whose __index is a function that falls back to
-- the class table), by name: the first one found wins. Names starting with
-- "_" are private or metamethods and left out.
local function methods_of(v)
  local found, seen = {}, {}
  local function add(t)
    if type(t) ~= "table" or seen[t] then return end
    seen[t] = true
    for k, x in fields(t) do
      if is_ident(k) and k:sub(1, 1) ~= "_" and type(x) == "function"
        and found[k] == nil then
        found[k] = x
      end
    end
  end
  for _ = 1, 20 do
    if seen[v] then break end
    add(v)
    local mt = metatable(v)
    if not mt then break end
    local index = rawget(mt, "__index")
    add(mt)
    if type(index) ~= "table" then break end
    v = index
  end
  return found
end

-- The type name of an object from its metatable's __name: "bus" for
-- "moondog.modbus.bus".
local function type_name(v)
  local mt = metatable(v)
  local name = mt and rawget(mt, "__name")
  if type(name) == "string" then return last_part(name), name end
  return nil
end

-- List methods under a title. mark(path, line), when given, is told which
-- doc blocks were shown.
local function list_methods(out, title, methods, tname, mark)
  local names = sorted_keys(methods)
  if #names == 0 then return end
  out:line(title)
  for _, k in ipairs(names) do
    local extra = tname and { tname .. ":" .. k, tname .. "." .. k } or nil
    local text, path, first = first_line(methods[k], extra)
    if mark and first then mark(path, first) end
    out:line(entry(k, text))
  end
end

-- Lazy submodules md lists for completion (its __complete), read only for
-- the umbrella module itself.
local function lazy_names(t)
  local ok, md = pcall(require, "moondog")
  if not ok or not rawequal(md, t) then return {} end
  local mt = metatable(t)
  local fn = mt and rawget(mt, "__complete")
  if type(fn) ~= "function" then return {} end
  local okc, list = pcall(fn, t)
  if not okc or type(list) ~= "table" then return {} end
  local out = {}
  for i = 1, math.min(#list, 100) do
    if is_ident(rawget(list, i)) then out[#out + 1] = rawget(list, i) end
  end
  return out
end

-- The one-line summary of a module: its opening comment's first line
-- without "moondog.x:".
local function summary(modname)
  local path = module_file(modname)
  local lines = path and read_lines(path)
  local first = lines and header(lines)[1] or ""
  return (first:gsub("^[%w_.]+:%s*", ""))
end

local function module_text(t, modname, out)
  if lua_library[modname] then
    out:line(format("%s: a module of Lua's standard library; see the Lua 5.4 manual (%s)",
      modname == "_G" and "the global table" or modname, MANUAL))
    return
  end
  local path = module_file(modname) or majority_file(t)
  local title = modname and full_module(modname) or "a table of functions"
  local lines = path and read_lines(path)
  out:line(title .. (path and "  (" .. relative(path) .. ")" or ""))
  if lines then
    local head = header(lines)
    if #head > 0 then
      out:line("")
      for _, l in ipairs(head) do out:line(l) end
    end
  end

  local funcs, tables, classes = {}, {}, {}
  for k, v in fields(t) do
    if is_ident(k) and k:sub(1, 1) ~= "_" and not rawequal(v, t) then
      if type(v) == "function" then
        funcs[k] = v
      elseif type(v) == "table" or type(v) == "userdata" then
        local mt = metatable(v)
        if type(v) == "table" and rawget(v, "__index") == v then
          classes[k] = v
        elseif not (mt and type(rawget(mt, "__index")) == "table") then
          tables[k] = true
        end
      end
    end
  end
  for _, name in ipairs(lazy_names(t)) do
    if rawget(t, name) == nil then tables[name] = true end
  end
  local shown, example = {}, nil -- doc blocks of this file already listed
  local function mark(where, first)
    if where == path then shown[first] = true end
  end
  local prefix = modname and short_module(modname) or nil
  local fnames = sorted_keys(funcs)
  if #fnames > 0 then
    out:line("")
    out:line("functions:")
    for _, k in ipairs(fnames) do
      local text, where, first = first_line(funcs[k], prefix and { prefix .. "." .. k })
      if first then
        mark(where, first)
        example = example or k
      end
      out:line(entry(k, text))
    end
  end
  for _, cname in ipairs(sorted_keys(classes)) do
    out:line("")
    list_methods(out, cname .. " methods:", methods_of(classes[cname]), nil, mark)
  end
  local mt = metatable(t)
  if mt and type(rawget(mt, "__index")) == "table" then
    out:line("")
    list_methods(out, "through its metatable:", methods_of(rawget(mt, "__index")), nil, mark)
  end
  local tnames = sorted_keys(tables)
  if #tnames > 0 then
    out:line("")
    out:line("tables and modules: " .. concat(tnames, ", "))
  end
  -- Documented functions of the file that the table does not hold: the
  -- methods of a class the module keeps local (a bus, a publisher).
  if path and modname then
    local more = {}
    for _, b in ipairs(doc_blocks(path)) do
      if b.key and not shown[b.first] then
        more[#more + 1] = "  " .. b.lines[1]
      end
    end
    sort(more)
    if #more > 0 then
      out:line("")
      out:line("also documented in this file:")
      for _, l in ipairs(more) do out:line(l) end
    end
  end
  out:line("")
  example = example or fnames[1]
  if example and modname and full_module(modname) then
    out:line(format("help(%s.%s) shows one function's documentation.", full_module(modname), example))
  else
    out:line("help(f) shows the documentation of one function f.")
  end
end

local function object_text(v, out)
  local tname, full = type_name(v)
  out:line(format("a %s%s", type(v), full and " (" .. full .. ")" or ""))
  local methods = methods_of(v)
  if next(methods) == nil then
    out:line("it has no methods")
    return
  end
  out:line("")
  list_methods(out, "methods:", methods, tname)
  out:line("")
  out:line("help(x.name) shows one method's documentation.")
end

-- }=====

-- {===== orientation =====

local function orientation(out)
  out:line("help(x) shows the documentation of x, read from the library's comments:")
  out:line("  help(md.modbus)        a module: what it is for, its functions")
  out:line("  help(md.modbus.open)   a function: its documentation and where it is defined")
  out:line("  help(bus)              an object: its methods")
  out:line("")
  out:line("modules (md.<name>, loaded on first use):")
  local ok, md = pcall(require, "moondog")
  local names = ok and type(md) == "table" and lazy_names(md) or {}
  sort(names)
  for _, name in ipairs(names) do
    local text = summary("moondog." .. name)
    if text == "" then text = "(written in C) help(md." .. name .. ")" end
    out:line(format("  md.%-12s %s", name, text))
  end
  out:line("  md             spawn, sleep, every, now, time, exit, tasks, log: help(md)")
  out:line("")
  local h = home()
  local where = h and h:gsub("/+$", "") .. "/" or ""
  out:line("The guide is " .. where .. "README.md; protocol guides are in " .. where
    .. "docs/; device profiles in " .. where .. "devices/.")
  out:line("Tab completes names: md.<Tab>, bus:<Tab>.")
end

-- }=====

-- A class table (T.__index == T) is described as a module: its functions
-- and their docs, like the file that defines them.
local function is_class(t)
  return rawget(t, "__index") == t
end

local function describe(out, n, x)
  if n == 0 then return orientation(out) end
  local tx = type(x)
  if tx == "function" then return function_text(x, out) end
  if tx == "table" then
    local modname = modname_of(x)
    if modname then return module_text(x, modname, out) end
    if metatable(x) and next(methods_of(x)) ~= nil and not is_class(x) then
      return object_text(x, out)
    end
    for _, v in fields(x) do
      if type(v) == "function" then return module_text(x, nil, out) end
    end
    out:line("a table without functions: type its name to see its contents")
    return
  end
  if tx == "userdata" then return object_text(x, out) end
  if tx == "nil" then
    out:line("help(nil): the value is nil. Check the name (Tab completes); help(md) lists md.")
    return
  end
  out:line(format("a %s, no documentation. help() shows how to use help.", tx))
end

--- help.text([x]) -> the documentation of x as text: a function's `---`
--- comment and where it is defined, a module's opening comment and
--- functions, an object's methods; with no argument, where to start.
function M.text(...)
  local n, x = select("#", ...), ...
  local out = new_out()
  local ok, err = pcall(describe, out, n, x)
  if not ok then
    out:line("help: internal error: " .. (type(err) == "string" and err or type(err)))
  end
  return out:text()
end

--- help.printer(write) -> a help(x) function that sends help.text(x) and a
--- line break to write(text): the REPL's and attach's global help.
function M.printer(write)
  return function(...)
    write(M.text(...) .. "\n")
  end
end

return M
