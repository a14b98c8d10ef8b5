-- moondog.repl: the Lua half of moondog's interactive console.
--
-- The C side (core/repl.c) owns the terminal. It reads lines with libedit on
-- the local tty, or from a client attached over the unix socket, and runs the
-- REPL inside a moondog task. For each client it makes one session and calls:
--
--   local sess = repl.session{env = env, write = send}
--   sess:prompt()          -- "> ", or ">> " while a statement continues
--   sess:eval_line(line)   -- compile, run, write the results or the error
--   sess:reset()           -- Ctrl-C: drop a pending multi-line statement
--   sess:complete(word)    -- candidates for tab completion
--
-- Lines run in the session's env: a proxy of the env given, with help(x)
-- (moondog.help) in front, so that `moondog repl` and `moondog attach`
-- both have it.
--
-- The rules follow lua.c. A line is first compiled as "return <line>" so that
-- expressions print their values, then as a statement. A statement that ends
-- too early ("... near <eof>") waits for more lines. Chunks run through
-- xpcall, which can yield in Lua 5.4, so a line may call md.sleep. Nothing
-- here calls the chunk through a C function that would break that.
--
-- M.pretty and M.format_results turn values into text. They never raise and
-- always end: cycles, depth, items per table and items in total are bounded.
-- M.complete looks at tables and metatables without calling user code, with
-- one exception: a metatable's __complete function, which exists for it.
--
-- Pure Lua, no globals. Output goes only through the session's write
-- callback (io.stdout by default). Needs the debug library.

local help = require "moondog.help"

local M = {}

local debug = debug
local getmt = debug.getmetatable -- raw: ignores __metatable
local pack, unpack, concat = table.pack, table.unpack, table.concat
local format = string.format
local printable = require("moondog.text").printable

local keywords = {}
for word in ([[and break do else elseif end false for function goto if in
  local nil not or repeat return then true until while]]):gmatch("%a+") do
  keywords[word] = true
end

local function is_ident(k)
  return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil
    and not keywords[k]
end

-- The metatable of v, or nil. A table is required: without the debug library
-- getmetatable would return a __metatable field, which can be anything.
local function metatable(v)
  local mt = getmt(v)
  if type(mt) == "table" then return mt end
  return nil
end

-- {===== pretty printing =====

local escapes = {
  ["\a"] = "\\a", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
  ["\r"] = "\\r", ["\t"] = "\\t", ["\v"] = "\\v",
  ['"'] = '\\"', ["\\"] = "\\\\",
}

-- Escape one ASCII control character. Use three digits when a digit follows,
-- so that "\0" .. "1" does not read back as "\01".
local function escape_control(s, i)
  local b = s:byte(i)
  if s:find("^%d", i + 1) then return format("\\%03d", b) end
  return "\\" .. b
end

-- Escape a byte >= 0x80 at i. Valid UTF-8 stays as is, except the C1
-- controls U+0080..U+009F, which some terminals act on. Returns the text
-- and the index after it.
local function escape_high(s, i)
  local b = s:byte(i)
  if utf8.len(s, i, i) then
    local len = b >= 0xF0 and 4 or b >= 0xE0 and 3 or 2
    local cp = utf8.codepoint(s, i)
    if cp < 0xA0 then return format("\\u{%X}", cp), i + len end
    return s:sub(i, i + len - 1), i + len
  end
  return format("\\x%02X", b), i + 1
end

-- Quote a string like %q, but readable: "\n" rather than a backslash and a
-- line break, and UTF-8 text left alone.
local function quote(s)
  local out, i = { '"' }, 1
  while true do
    local j = s:find('[%c"\\\128-\255]', i)
    if not j then
      out[#out + 1] = s:sub(i)
      break
    end
    out[#out + 1] = s:sub(i, j - 1)
    local c = s:sub(j, j)
    if escapes[c] then
      out[#out + 1], i = escapes[c], j + 1
    elseif c:byte() < 0x80 then
      out[#out + 1], i = escape_control(s, j), j + 1
    else
      out[#out + 1], i = escape_high(s, j)
    end
  end
  out[#out + 1] = '"'
  return concat(out)
end

local function format_number(x)
  if math.type(x) == "integer" then return format("%d", x) end
  local s = format("%.14g", x)
  if s:match("^-?%d+$") then s = s .. ".0" end -- like Lua 5.4: 1.0, not 1
  return s
end

local function error_text(e)
  if type(e) == "string" then return e end
  if type(e) == "number" then return format_number(e) end
  return "(error object is a " .. type(e) .. " value)"
end

-- tostring that never raises, even when __tostring errors or returns a
-- non-string (tostring raises for that).
local function safe_tostring(v)
  local ok, s = pcall(tostring, v)
  if ok and type(s) == "string" then return s end
  return "<__tostring error: " .. error_text(s) .. ">"
end

-- A table with __tostring or __name describes itself; print it as tostring
-- would, like lua.c does.
local function is_opaque(t)
  local mt = metatable(t)
  return mt ~= nil and (rawget(mt, "__tostring") ~= nil
    or type(rawget(mt, "__name")) == "string")
end

local kind_rank = { number = 1, string = 2, boolean = 3 }

-- Sort keys: numbers ascending, then strings, then false before true, then
-- anything else by its tostring text.
local function key_before(a, b)
  if a.rank ~= b.rank then return a.rank < b.rank end
  if a.rank == 3 then return not a.key and b.key end
  if a.rank == 4 then return a.text < b.text end
  return a.key < b.key
end

-- Length of the array part 1..n, read raw: __index and __len are not called.
local function array_length(t)
  local n = 0
  while rawget(t, n + 1) ~= nil do n = n + 1 end
  return n
end

local function is_array_key(k, n)
  return math.type(k) == "integer" and k >= 1 and k <= n
end

-- The non-array keys of t, sorted. When the array part alone fills the
-- budget, only count them: they will be elided anyway.
local function other_keys(t, n, room)
  local keys, count = {}, 0
  for k in next, t do
    if not is_array_key(k, n) then
      count = count + 1
      if n < room then
        local rank = kind_rank[type(k)] or 4
        keys[count] = { key = k, rank = rank,
          text = rank == 4 and safe_tostring(k) or nil }
      end
    end
  end
  if n < room then table.sort(keys, key_before) end
  return keys, count
end

-- Printing is done in two steps: build() turns a value into a node, layout()
-- decides where lines break. A node is a string (one atom) or a table
-- {items = {{key = "a = ", value = node}, ...}, more = count or nil}.
local build

local function flat(node)
  if type(node) == "string" then return node end
  if not node.flat then
    local parts = {}
    for i, item in ipairs(node.items) do
      parts[i] = item.key .. flat(item.value)
    end
    if node.more then parts[#parts + 1] = "... (" .. node.more .. " more)" end
    node.flat = "{" .. concat(parts, ", ") .. "}"
  end
  return node.flat
end

local function key_text(k, ctx, depth)
  if is_ident(k) then return k .. " = " end
  return "[" .. flat(build(k, ctx, depth)) .. "] = "
end

local function build_table(t, ctx, depth)
  if next(t) == nil then return "{}" end
  if depth > ctx.max_depth then return "{...}" end
  if ctx.active[t] then return "<cycle " .. safe_tostring(t) .. ">" end
  ctx.active[t] = true
  local room = math.min(ctx.max_items, ctx.left)
  local n = array_length(t)
  local keys, others = other_keys(t, n, room)
  local node = { items = {} }
  local items = node.items
  for i = 1, math.min(n, room) do
    items[i] = { key = "", value = build(rawget(t, i), ctx, depth + 1) }
  end
  for i = 1, math.min(others, room - #items) do
    local k = keys[i].key
    items[#items + 1] = { key = key_text(k, ctx, depth + 1),
      value = build(rawget(t, k), ctx, depth + 1) }
  end
  ctx.left = ctx.left - #items
  if n + others > #items then node.more = n + others - #items end
  ctx.active[t] = nil
  return node
end

build = function(v, ctx, depth)
  local tv = type(v)
  if tv == "string" then return quote(v) end
  if tv == "number" then return format_number(v) end
  if tv == "table" and not is_opaque(v) then return build_table(v, ctx, depth) end
  return printable(safe_tostring(v)) -- a __tostring may show device strings
end

local function text_width(s)
  return utf8.len(s) or #s
end

-- Lay out node at a line that already holds `used` columns and will get
-- `tail` more after it (a comma). Fits on one line, or one item per line.
local function layout(node, indent, used, tail, width)
  local f = flat(node)
  if type(node) == "string" or #node.items == 0 and not node.more
    or not f:find("\n", 1, true) and used + text_width(f) + tail <= width then
    return f
  end
  local pad = indent .. "  "
  local lines = { "{" }
  for i, item in ipairs(node.items) do
    local comma = (i < #node.items or node.more) and "," or ""
    local used_here = #pad + text_width(item.key)
    lines[#lines + 1] = pad .. item.key
      .. layout(item.value, pad, used_here, #comma, width) .. comma
  end
  if node.more then
    lines[#lines + 1] = pad .. "... (" .. node.more .. " more)"
  end
  lines[#lines + 1] = indent .. "}"
  return concat(lines, "\n")
end

local function option(opts, name, default)
  local v = opts and opts[name]
  if math.type(v) == "integer" then return v end
  return default
end

-- Pretty-print a value. opts: max_items (per table, 100), max_depth (8),
-- width (80), max_total (items over the whole value, 10000; this bounds the
-- work for a large DAG, where a shared table is printed at each use).
function M.pretty(value, opts)
  local ctx = {
    max_items = option(opts, "max_items", 100),
    max_depth = option(opts, "max_depth", 8),
    left = option(opts, "max_total", 10000),
    active = {},
  }
  local width = option(opts, "width", 80)
  return layout(build(value, ctx, 1), "", 0, 0, width)
end

-- Results of one REPL line: joined with ", " when that fits on one line,
-- otherwise one per line. n is explicit so that trailing nils show.
function M.format_results(n, ...)
  n = math.type(n) == "integer" and n or select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = M.pretty((select(i, ...))) end
  local line = concat(parts, ", ")
  if not line:find("\n", 1, true) and text_width(line) <= 80 then
    return line
  end
  return concat(parts, "\n")
end

-- }=====

-- {===== tab completion =====

-- Follow __index while it is a table. A function __index is never called.
-- The hop limit ends __index loops.
local function lookup(v, k)
  for _ = 1, 100 do
    if type(v) == "table" then
      local found = rawget(v, k)
      if found ~= nil then return found end
    end
    local mt = metatable(v)
    local index = mt and rawget(mt, "__index")
    if type(index) ~= "table" then return nil end
    v = index
  end
  return nil
end

local function resolve(root, path)
  local v = root
  for name in (path .. "."):gmatch("(.-)%.") do
    if not is_ident(name) then return nil end
    v = lookup(v, name)
    if v == nil then return nil end
  end
  return v
end

-- Names from a metatable's __complete(value), for fields that exist only
-- once loaded (md.modbus). Errors and odd results are ignored.
local function add_lazy_names(v, mt, names)
  local fn = rawget(mt, "__complete")
  if type(fn) ~= "function" then return end
  local ok, list = pcall(fn, v)
  if not ok or type(list) ~= "table" then return end
  local i = 1
  while rawget(list, i) ~= nil do
    local name = rawget(list, i)
    if is_ident(name) then names[name] = true end
    i = i + 1
  end
end

-- Add to `names` the fields of v, of its __index table chain and from
-- __complete. With methods_only, only function-valued fields, and no
-- __complete names since their type is unknown.
local function add_fields(v, names, methods_only)
  local seen = {}
  for _ = 1, 100 do
    if type(v) == "table" then
      if seen[v] then return end
      seen[v] = true
      for k, x in next, v do
        if is_ident(k) and (not methods_only or type(x) == "function") then
          names[k] = true
        end
      end
    end
    local mt = metatable(v)
    if not mt then return end
    if not methods_only then add_lazy_names(v, mt, names) end
    v = rawget(mt, "__index")
    if type(v) ~= "table" then return end
  end
end

-- Names starting with "__" (metamethods, and the __index of a class table
-- reached through the chain) are offered only once the user types "__".
local function sorted_matches(names, partial, prefix)
  local dunder = partial:sub(1, 2) == "__"
  local out = {}
  for name in pairs(names) do
    if name:sub(1, #partial) == partial
      and (dunder or name:sub(1, 2) ~= "__") then
      out[#out + 1] = prefix .. name
    end
  end
  table.sort(out)
  return out
end

-- Candidates for the word `text`: globals and keywords, fields after ".",
-- methods after ":". Each candidate is the full word.
function M.complete(text, env)
  if type(text) ~= "string" then return {} end
  local path, sep, partial = text:match("^(.*)([.:])([%w_]*)$")
  local names = {}
  if not path then
    if not text:match("^[%w_]*$") then return {} end
    add_fields(env, names, false)
    for word in pairs(keywords) do names[word] = true end
    return sorted_matches(names, text, "")
  end
  local v = resolve(env, path)
  if v == nil then return {} end
  add_fields(v, names, sep == ":")
  return sorted_matches(names, partial, path .. sep)
end

-- }=====

-- {===== sessions =====

-- Calls the chunk from Lua, not as a tail call, so that its frame marks
-- where the user's stack ends in a traceback.
local function run(chunk)
  local results = pack(chunk())
  return results
end

-- The deepest stack level, counted as the caller counts, found by
-- bisection as luaL_traceback does: walking a stack overflow level by
-- level would be quadratic.
local function stack_depth()
  local low, high = 1, 1
  while debug.getinfo(high + 1, "") do
    low, high = high, high * 2
  end
  while low < high do
    local mid = (low + high + 1) // 2
    if debug.getinfo(mid + 1, "") then low = mid else high = mid - 1 end
  end
  return low
end

-- The name of fn in env or the tables behind it (a session's env is a
-- proxy: its own help in front, the user's env behind through __index).
local function env_name(fn, env)
  for _ = 1, 10 do
    if type(env) ~= "table" then return nil end
    for k, x in next, env do
      if rawequal(x, fn) and is_ident(k) then return k end
    end
    local mt = metatable(env)
    env = mt and rawget(mt, "__index")
  end
  return nil
end

-- The name luaL_traceback would give: a loaded module's field, as in
-- "function 'string.rep'", with "_G." dropped. The session's env comes
-- first, since the user's globals live there.
local function global_name(fn, env)
  local found = env_name(fn, env)
  if found then return found end
  local loaded = package.loaded
  for modname, mod in next, loaded do
    if type(mod) == "table" and type(modname) == "string" then
      for k, x in next, mod do
        if rawequal(x, fn) and type(k) == "string" then
          if modname == "_G" then return k end
          found = found or modname .. "." .. k
        end
      end
    end
  end
  return found
end

-- How a frame is named in a traceback, as luaL_traceback does it. The
-- user's chunk is called by run() as a local; it is shown as "main chunk".
local function frame_name(info, chunk, env)
  if info.func == chunk then return "main chunk" end
  local name = global_name(info.func, env)
  if name then return "function '" .. name .. "'" end
  if info.namewhat ~= "" then
    return info.namewhat .. " '" .. tostring(info.name) .. "'"
  end
  if info.what == "main" then return "main chunk" end
  if info.what ~= "C" then
    return "function <" .. info.short_src .. ":" .. info.linedefined .. ">"
  end
  return "?"
end

local function frame_line(info, chunk, env)
  local where = info.short_src
  if info.currentline > 0 then where = where .. ":" .. info.currentline end
  local line = "\n\t" .. where .. ": in " .. frame_name(info, chunk, env)
  if info.istailcall then line = line .. "\n\t(...tail calls...)" end
  return line
end

-- The traceback of the user's frames only: from `first` (a level relative to
-- the caller) up to the frame below run(). The frames of this file, xpcall
-- and whatever runs the REPL task are left out. Long stacks keep the first
-- 10 and last 11 frames, as in luaL_traceback.
local function user_traceback(first, env)
  first = first + 1 -- levels are now relative to this function
  local last, chunk = stack_depth(), nil
  for level = last, first, -1 do
    if debug.getinfo(level, "f").func == run then
      last = level - 1
      chunk = select(2, debug.getlocal(level, 1))
      break
    end
  end
  if last < first then return "" end
  local lines = { "\nstack traceback:" }
  local level = first
  while level <= last do
    if level == first + 10 and last - first + 1 > 22 then
      local skip = last - level + 1 - 11
      lines[#lines + 1] = "\n\t...\t(skipping " .. skip .. " levels)"
      level = level + skip
    end
    lines[#lines + 1] = frame_line(debug.getinfo(level, "Slnft"), chunk, env)
    level = level + 1
  end
  return concat(lines)
end

local function error_message(e)
  local mt = type(e) ~= "string" and metatable(e)
  if mt and rawget(mt, "__tostring") ~= nil then
    local ok, s = pcall(tostring, e)
    if ok and type(s) == "string" then return s end
  end
  return error_text(e)
end

local Session = {}
Session.__index = Session

-- A session's lines run in a proxy of the env it was given: help(x) is the
-- session's own (moondog.help, written through the session's write
-- callback), and every other name is read from and assigned to the given
-- env. A `help` global of the env is shadowed in the session.
function M.session(opts)
  opts = opts or {}
  local sess = setmetatable({
    write = opts.write or function(s)
      io.stdout:write(s)
      io.stdout:flush()
    end,
    chunkname = opts.chunkname or "=stdin",
    buffer = nil,
  }, Session)
  local env = opts.env or _G
  local help_fn = help.printer(function(text) sess.write(text) end)
  sess.env = setmetatable({ help = help_fn }, { __index = env, __newindex = env })
  return sess
end

function Session:prompt()
  return self.buffer and ">> " or "> "
end

function Session:pending()
  return self.buffer ~= nil
end

function Session:reset()
  self.buffer = nil
end

function Session:complete(text)
  return M.complete(text, self.env)
end

-- The candidates as one string, each ended by "\n": what the line editors
-- (the terminal REPL, the attach protocol) take.
function Session:complete_lines(text)
  local list = self:complete(text)
  return #list > 0 and table.concat(list, "\n") .. "\n" or ""
end

-- Compile the buffer: as an expression first, then as a statement. Returns
-- the chunk, or nil and the error, or nil and "more" when the statement
-- stops at the end of the input.
local function compile(sess, code)
  local chunk = load("return " .. code, sess.chunkname, "t", sess.env)
  if chunk then return chunk end
  local err
  chunk, err = load(code, sess.chunkname, "t", sess.env)
  if chunk then return chunk end
  if err:sub(-5) == "<eof>" then return nil, "more" end
  return nil, err
end

local function execute(sess, chunk)
  -- The message handler runs on top of the failing frame (its level 2).
  local function handler(e)
    return error_message(e) .. user_traceback(2, sess.env)
  end
  local ok, res = xpcall(run, handler, chunk)
  if not ok then
    sess.write(error_text(res) .. "\n")
  elseif res.n > 0 then
    sess.write(M.format_results(res.n, unpack(res, 1, res.n)) .. "\n")
  end
end

function Session:eval_line(line)
  line = tostring(line):gsub("\n$", "")
  if self.buffer then
    line = self.buffer .. "\n" .. line
  elseif line:sub(1, 1) == "=" then
    line = "return " .. line:sub(2) -- the Lua 5.1 habit: "=x"
  end
  local chunk, err = compile(self, line)
  if err == "more" then
    self.buffer = line
    return
  end
  self.buffer = nil
  if chunk then
    execute(self, chunk)
  else
    self.write(err .. "\n")
  end
end

-- }=====

return M
