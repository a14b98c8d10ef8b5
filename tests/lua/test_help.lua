-- Tests for moondog.help: help.text of Lua functions (the `---` block above
-- the definition, file:line), of modules (opening comment, function list),
-- of objects (methods), of C functions (docs by name in lua/moondog/init.lua),
-- odd inputs that must neither raise nor run user code, and help() in a
-- REPL session. Fixture files are written to a temporary directory and
-- loaded with loadfile, so that the tests do not depend on the wording of
-- the library's own comments except where that is the point.

local T = require "moondog.testing"
local md = require "moondog"
local help = require "moondog.help"
local repl = require "moondog.repl"

local function has(text, plain)
  assert(text:find(plain, 1, true), "expected " .. plain .. " in:\n" .. text)
end

local function lacks(text, plain)
  assert(not text:find(plain, 1, true), "did not expect " .. plain .. " in:\n" .. text)
end

-- Write `source` to a fresh file and load it: returns what the chunk
-- returns, the file's path and the directory handle (close it).
local function fixture(source)
  local dir = T.tmpdir()
  local path = dir.path .. "/fixture.lua"
  T.write_file(path, source)
  local chunk = assert(loadfile(path))
  return chunk(), path, dir
end

local FIXTURE = [[
-- fixture: a module for the help tests.
-- Second line of the opening comment.

local M = {}

-- An ordinary comment, not documentation.
--- fixture.add(a, b) -> a + b
--- Adds two numbers.
function M.add(a, b)
  return a + b
end

--- This belongs to nothing: a blank line follows.

function M.bare() end

--- fixture.later(x): documented away from its definition.

local spacer = {}
function M.later(x) return x, spacer end

local Thing = {}
Thing.__index = Thing
M.Thing = Thing

  --- thing:poke() -> "poked"
function Thing:poke() return "poked" end

function M.new() return setmetatable({}, Thing) end

--- other:later(): documents a method of another table.

function Thing:later() end

return M
]]

-- {===== functions =====

T.test("a library function: its doc line and file:line", function()
  local text = help.text(md.modbus.open)
  has(text, "modbus.open(url [, opts]) -> bus, or nil, err, code")
  local line = debug.getinfo(md.modbus.open, "S").linedefined
  has(text, "defined in lua/moondog/modbus/init.lua:" .. line)
  has(text, "function M.open(url, opts)")
end)

T.test("a function: exactly the --- run above the definition", function()
  local M, path, _dir <close> = fixture(FIXTURE)
  local text = help.text(M.add)
  has(text, "fixture.add(a, b) -> a + b\nAdds two numbers.\n")
  lacks(text, "ordinary comment")
  lacks(text, "---")
  has(text, path .. ":9") -- outside the moondog home: the full path
end)

T.test("a function without a doc says so", function()
  local M, _, _dir <close> = fixture(FIXTURE)
  local text = help.text(M.bare)
  has(text, "no documentation")
  lacks(text, "belongs to nothing")
  has(text, "function M.bare() end")
end)

T.test("a doc block naming the function may stand apart from it", function()
  local M, _, _dir <close> = fixture(FIXTURE)
  has(help.text(M.later), "fixture.later(x): documented away from its definition.")
  -- the same name on another table is not this function's doc
  local text = help.text(M.Thing.later)
  has(text, "no documentation")
  lacks(text, "another table")
end)

T.test("a function defined outside a file", function()
  local f = load("return function() end", "=typed")()
  local text = help.text(f)
  has(text, "typed:1")
  has(text, "not in a file")
end)

-- }=====

-- {===== C functions =====

T.test("md.sleep and the other C functions of moondog.core", function()
  local text = help.text(md.sleep)
  has(text, "md.sleep(s):")
  has(text, "written in C; documented in lua/moondog/init.lua:")
  for _, name in ipairs{ "spawn", "now", "time", "exit", "current", "tasks", "stats", "watchdog" } do
    has(help.text(md[name]), "md." .. name .. "(")
  end
  has(help.text(md.attach.listen), "md.attach.listen([path]) -> listener")
  -- md.every is Lua; its C half is documented by the same block
  has(help.text(require("moondog.core").every), "md.every(s) -> iterator")
end)

T.test("task methods are found through the task's metatable", function()
  local t = md.spawn(function() end)
  for _, name in ipairs{ "join", "cancel", "status", "name" } do
    has(help.text(t[name]), "task:" .. name .. "(")
  end
  local text = help.text(t)
  has(text, "moondog.task")
  has(text, "  join([timeout]) -> ")
  t:join()
end)

T.test("C methods of a userdata: documented in their module's file", function()
  local bus <close> = assert(md.modbus.open("tcp://127.0.0.1:1")) -- connects on first use
  local text = help.text(bus.write_coil)
  has(text, "bus:write_coil(unit, addr, bool [, opts]) -> true")
  has(text, "written in C; documented in lua/moondog/modbus/init.lua:")
  text = help.text(bus)
  has(text, "moondog.modbus.bus")
  has(text, "\n  write_coil(unit, addr, bool [, opts]) -> true")  -- C
  has(text, "\n  read_holding(unit, addr, count [, opts]) -> ") -- Lua, on the same table
end)

T.test("an undocumented C function says where to look", function()
  local anonymous = coroutine.wrap(function() end) -- a C closure held nowhere
  has(help.text(anonymous), "no documentation found for this C function; see README.md")
  has(help.text(string.format), "string.format: a function of Lua's standard library")
end)

-- }=====

-- {===== modules and objects =====

T.test("a module: opening comment and sorted functions with first doc lines", function()
  local text = help.text(md.modbus)
  has(text, "md.modbus  (lua/moondog/modbus/init.lua)")
  has(text, "moondog.modbus: Modbus clients for scripts")
  has(text, "\nfunctions:\n")
  has(text, "\n  open(url [, opts]) -> bus, or nil, err, code\n")
  assert(text:find("  device(", 1, true) < text:find("  open(", 1, true), "sorted")
  has(text, "tables and modules: address, codec, planner")
  -- methods of the bus, documented in the module's file
  has(text, "bus:read_value(unit, addr, type")
end)

T.test("md lists its C functions, lazy modules and task methods", function()
  local text = help.text(md)
  has(text, "  sleep(s): lets other tasks run")
  has(text, "  every(s) -> iterator")
  has(text, "modbus")
  has(text, "task:join([timeout])")
end)

T.test("a module table found from its functions' file, with its class", function()
  local M, path, _dir <close> = fixture(FIXTURE)
  local text = help.text(M)
  has(text, "(" .. path .. ")")
  has(text, "fixture: a module for the help tests.\nSecond line of the opening comment.")
  has(text, "  add(a, b) -> a + b")
  has(text, "  later(x): documented away")
  has(text, "Thing methods:\n  later\n  poke() -> \"poked\"")
  -- an object of the class: its methods
  has(help.text(M.new()), "methods:\n  later\n  poke() -> \"poked\"")
end)

T.test("every library module has an opening comment that help shows", function()
  local files = T.sh("cd " .. T.quote(md.paths.lua) .. " && find moondog -name '*.lua' | sort")
  local n = 0
  for file in files:gmatch("[^\n]+") do
    local modname = file:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
    local mod = require(modname)
    if type(mod) == "table" then
      local first = T.read_file(md.paths.lua .. "/" .. file):match("^%-%- ([^\n]*)")
      assert(first, file .. " does not open with a comment")
      has(help.text(mod), first)
      n = n + 1
    end
  end
  assert(n >= 20, "only " .. n .. " modules found")
end)

-- }=====

-- {===== odd inputs =====

T.test("odd inputs give text, never an error", function()
  for _, v in ipairs{ 0, 1.5, math.huge, "md.sleep", "", true, false } do
    has(help.text(v), "no documentation")
  end
  has(help.text(nil), "nil")
  has(help.text(coroutine.create(print)), "thread")
  has(help.text({}), "without functions")
  has(help.text(io.stdout), "FILE*")
end)

T.test("user code is never called", function()
  local calls = 0
  local function trap() calls = calls + 1; error("called") end
  local mt = { __index = trap, __tostring = trap, __name = "trap", __pairs = trap,
    __len = trap, __eq = trap, __metatable = "locked" }
  local obj = setmetatable({ f = function() end }, mt)
  local text = help.text(obj)
  assert(type(text) == "string", text)
  -- a cycle of __index tables, and a table that holds itself
  local a, b = {}, {}
  setmetatable(a, { __index = b })
  setmetatable(b, { __index = a })
  a.m = function() end
  a.self = a
  has(help.text(a), "m")
  assert(calls == 0, "user code was called " .. calls .. " times")
end)

T.test("output is bounded", function()
  local big = {}
  -- names long enough that any 2000 of them (help reads that many fields, in
  -- the table's own order) overflow the limit whatever the order
  local long = string.rep("a_function_with_a_long_name_", 8)
  for i = 1, 5000 do big[long .. i] = function() end end
  local text = help.text(big)
  assert(#text <= help.max_chars + 100, #text)
  has(text, "help cut at")
end)

T.test("help() with no argument shows where to start", function()
  local text = help.text()
  has(text, "help(md.modbus.open)")
  has(text, "md.modbus")
  has(text, "md.sunspec")
  has(text, "md.rct")
  has(text, "md.devices")
  has(text, "md.mqtt")
  has(text, "README.md")
  has(text, "docs/")
end)

-- }=====

-- {===== the REPL =====

T.test("typing help(md.modbus.open) in a session prints its doc", function()
  local buf = {}
  local env = setmetatable({}, { __index = _G })
  local sess = repl.session{ env = env, write = function(s) buf[#buf + 1] = s end }
  sess:eval_line("help(md.modbus.open)")
  local out = table.concat(buf)
  has(out, "modbus.open(url [, opts]) -> bus, or nil, err, code\n")
  has(out, "defined in lua/moondog/modbus/init.lua:")
  lacks(out, "function: ") -- help returns nothing, so no value is printed
  buf = {}
  sess:eval_line("help()")
  has(table.concat(buf), "md.modbus")
  -- the session's help is its own: the env is not touched, and Tab finds it
  assert(rawget(env, "help") == nil and rawget(_G, "help") == nil)
  assert(sess:complete("hel")[1] == "help")
  buf = {}
  sess:eval_line("x_from_help_test = 1")
  assert(rawget(env, "x_from_help_test") == 1, "assignments reach the env")
end)

-- }=====
