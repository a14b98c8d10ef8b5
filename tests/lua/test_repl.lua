-- Tests for moondog.repl: the pretty printer, result formatting, sessions
-- (eval_line, continuation, errors and tracebacks) and tab completion.

local T = require "moondog.testing"
local repl = require "moondog.repl"

local pretty = repl.pretty

-- A session on a fresh proxy env, and eval(line) returning what it wrote.
local function session(opts)
  opts = opts or {}
  local buf = {}
  local env = opts.env or setmetatable({}, { __index = _G })
  local sess = repl.session{
    env = env,
    chunkname = opts.chunkname,
    write = function(s) buf[#buf + 1] = s end,
  }
  local function eval(line)
    buf = {}
    sess:eval_line(line)
    return table.concat(buf)
  end
  return sess, eval, env
end

local function same(list, expected)
  if #list ~= #expected then return false end
  for i = 1, #list do
    if list[i] ~= expected[i] then return false end
  end
  return true
end

local function show(list)
  return "{" .. table.concat(list, ", ") .. "}"
end

local function check_complete(text, env, expected)
  local got = repl.complete(text, env)
  assert(same(got, expected), text .. ": got " .. show(got))
end

local function count(s, plain)
  local n, i = 0, 1
  while true do
    local j = s:find(plain, i, true)
    if not j then return n end
    n, i = n + 1, j + #plain
  end
end

-- {===== pretty =====

T.test("pretty prints nested tables with sorted keys", function()
  assert(pretty({b = 1, a = {1, 2}}) == '{a = {1, 2}, b = 1}')
end)

T.test("pretty prints scalars", function()
  assert(pretty(nil) == "nil")
  assert(pretty(true) == "true")
  assert(pretty(false) == "false")
  assert(pretty({}) == "{}")
end)

T.test("pretty keeps integers and floats apart", function()
  assert(pretty(3) == "3")
  assert(pretty(-7) == "-7")
  assert(pretty(math.maxinteger) == "9223372036854775807")
  assert(pretty(math.mininteger) == "-9223372036854775808")
  assert(pretty(1.0) == "1.0")
  assert(pretty(-0.0) == "-0.0")
  assert(pretty(2^53) == "9.007199254741e+15")
  assert(pretty(0.1) == "0.1")
  assert(pretty(1 / 3) == "0.33333333333333")
  assert(pretty(1e100) == "1e+100")
  assert(pretty(1e15) == "1e+15")
  assert(pretty(1 / 0) == "inf")
  assert(pretty(-1 / 0) == "-inf")
  assert(pretty({1, 2.0, 2.5}) == "{1, 2.0, 2.5}")
end)

T.test("pretty quotes strings and escapes control characters", function()
  assert(pretty("timeout") == '"timeout"')
  assert(pretty('a"b\\c') == [["a\"b\\c"]])
  assert(pretty("l1\nl2\t\r\a\b\f\v") == [["l1\nl2\t\r\a\b\f\v"]])
  assert(pretty("\0" .. "1") == [["\0001"]])
  assert(pretty("\0x") == [["\0x"]])
  assert(pretty("\27[0m") == [["\27[0m"]])
  assert(pretty("\127") == [["\127"]])
end)

T.test("pretty keeps valid UTF-8 and escapes invalid bytes", function()
  assert(pretty("héllo ☀ 😀") == '"héllo ☀ 😀"')
  assert(pretty("\xff\xc3") == [["\xFF\xC3"]])
  assert(pretty("a\x80b") == [["a\x80b"]])
  assert(pretty("\xed\xa0\x80") == [["\xED\xA0\x80"]]) -- a surrogate
  assert(pretty("\xc0\xaf") == [["\xC0\xAF"]]) -- overlong "/"
  assert(pretty("\u{85}") == [["\u{85}"]]) -- C1 control
end)

T.test("pretty orders keys: array, numbers, strings, booleans, others", function()
  local f = function() end
  local t = {10, 20, [5] = "five", [1.5] = "x", [-1] = "neg",
    b = 2, a = 1, [true] = "t", [false] = "f", [f] = "fn"}
  local expected = '{10, 20, [-1] = "neg", [1.5] = "x", [5] = "five", '
    .. 'a = 1, b = 2, [false] = "f", [true] = "t", ['
    .. tostring(f) .. '] = "fn"}'
  assert(pretty(t, {width = 1000}) == expected, pretty(t, {width = 1000}))
end)

T.test("pretty stops the array part at the first hole", function()
  assert(pretty({1, 2, nil, 4}) == "{1, 2, [4] = 4}")
end)

T.test("pretty writes identifier keys bare and others in brackets", function()
  local t = {a = 1, ["b c"] = 2, ["end"] = 3, _x9 = 4, ["9x"] = 5, [""] = 6}
  assert(pretty(t) ==
    '{[""] = 6, ["9x"] = 5, _x9 = 4, a = 1, ["b c"] = 2, ["end"] = 3}',
    pretty(t))
  assert(pretty({[{1}] = true}) == "{[{1}] = true}")
end)

T.test("pretty marks cycles", function()
  local t = {}
  t.self = t
  assert(pretty(t) == "{self = <cycle " .. tostring(t) .. ">}", pretty(t))
  local a, b = {name = "a"}, {name = "b"}
  a.child, b.parent = b, a
  local s = pretty(a)
  assert(s == '{child = {name = "b", parent = <cycle ' .. tostring(a)
    .. '>}, name = "a"}', s)
  local k = {}
  k[k] = 1
  assert(pretty(k) == "{[<cycle " .. tostring(k) .. ">] = 1}", pretty(k))
end)

T.test("pretty prints a shared table each time it is seen", function()
  local s = {1}
  assert(pretty({s, s, x = s}) == "{{1}, {1}, x = {1}}")
end)

T.test("pretty elides long tables", function()
  local t = {}
  for i = 1, 150 do t[i] = i end
  local s = pretty(t, {width = 10000})
  assert(s:find("^{1, 2, 3, "))
  assert(s:find(", 100, %.%.%. %(50 more%)}$"), s)
  assert(not s:find("101", 1, true))
  local h = {1, 2, a = 1, b = 2, c = 3}
  assert(pretty(h, {max_items = 3}) == "{1, 2, a = 1, ... (2 more)}")
  assert(pretty({x = 1, y = 2}, {max_items = 0}) == "{... (2 more)}")
end)

T.test("pretty elides long tables one entry per line", function()
  local s = pretty({1, 2, 3, 4}, {max_items = 2, width = 5})
  assert(s == "{\n  1,\n  2,\n  ... (2 more)\n}", s)
end)

T.test("pretty limits depth", function()
  local t = {"leaf"}
  for _ = 1, 9 do t = {t} end -- ten levels
  local expected = ("{"):rep(8) .. "{...}" .. ("}"):rep(8)
  assert(pretty(t) == expected, pretty(t))
  local u = {a = {b = {c = {}}, n = 1}}
  assert(pretty(u, {max_depth = 2}) == "{a = {b = {...}, n = 1}}")
  assert(pretty(u, {max_depth = 3}) == "{a = {b = {c = {}}, n = 1}}")
end)

T.test("pretty breaks lines to fit the width", function()
  local t = {name = "inverter", regs = {1, 2, 3},
    status = {online = true, power = 1234.5}}
  assert(pretty(t) == '{name = "inverter", regs = {1, 2, 3}, '
    .. 'status = {online = true, power = 1234.5}}')
  local s = pretty(t, {width = 40})
  assert(s == table.concat({
    "{",
    '  name = "inverter",',
    "  regs = {1, 2, 3},",
    "  status = {",
    "    online = true,",
    "    power = 1234.5",
    "  }",
    "}",
  }, "\n"), "\n" .. s)
  for line in s:gmatch("[^\n]+") do assert(#line <= 40) end
end)

T.test("pretty uses one line when the table fits exactly", function()
  local t = {"abc", "def"} -- {"abc", "def"} is 14 columns
  assert(pretty(t, {width = 14}) == '{"abc", "def"}')
  assert(pretty(t, {width = 13}) == '{\n  "abc",\n  "def"\n}')
end)

T.test("pretty counts the comma after a nested table", function()
  -- "  a = {1, 2}," is 13 columns with the comma
  local s = pretty({a = {1, 2}, b = 1}, {width = 13})
  assert(s == "{\n  a = {1, 2},\n  b = 1\n}", s)
  s = pretty({a = {1, 2}, b = 1}, {width = 12})
  assert(s == "{\n  a = {\n    1,\n    2\n  },\n  b = 1\n}", s)
end)

T.test("pretty uses __tostring and __name", function()
  local obj = setmetatable({}, {__tostring = function() return "<bus 1>" end})
  assert(pretty(obj) == "<bus 1>")
  assert(pretty({bus = obj}) == "{bus = <bus 1>}")
  local named = setmetatable({}, {__name = "moondog.test.thing"})
  assert(pretty(named):find("^moondog%.test%.thing: "))
end)

T.test("pretty prints a failing __tostring without raising", function()
  local bad = setmetatable({}, {__tostring = function() error("nope", 0) end})
  assert(pretty(bad) == "<__tostring error: nope>", pretty(bad))
  assert(pretty({x = bad}) == "{x = <__tostring error: nope>}")
  local odd = setmetatable({}, {__tostring = function() return {} end})
  assert(pretty(odd):find("^<__tostring error: "))
  local obj = setmetatable({}, {__tostring = function() error({}) end})
  assert(pretty(obj) == "<__tostring error: (error object is a table value)>")
end)

T.test("pretty prints functions, threads and userdata with tostring", function()
  local f = function() end
  local co = coroutine.create(f)
  assert(pretty(f) == tostring(f))
  assert(pretty(co) == tostring(co))
  assert(pretty(io.stdout) == tostring(io.stdout))
  assert(pretty({f}) == "{" .. tostring(f) .. "}")
end)

T.test("pretty reads tables raw, without calling metamethods", function()
  local called = false
  local mt = {
    __index = function() called = true; error("index") end,
    __pairs = function() called = true; error("pairs") end,
    __len = function() called = true; error("len") end,
  }
  local t = setmetatable({1, x = 2}, mt)
  assert(pretty(t) == "{1, x = 2}")
  assert(not called)
end)

T.test("pretty bounds the work on a large shared structure", function()
  local d = {1}
  for _ = 1, 8 do
    local n = {}
    for j = 1, 50 do n[j] = d end
    d = n
  end -- 50^8 leaves if printed in full
  local s = pretty(d)
  assert(#s < 1000000)
  assert(s:find("more)", 1, true))
end)

-- }=====

-- {===== format_results =====

T.test("format_results keeps trailing nils", function()
  assert(repl.format_results(3, nil, "timeout", "timeout")
    == 'nil, "timeout", "timeout"')
  assert(repl.format_results(2, 1) == "1, nil")
  assert(repl.format_results(1) == "nil")
  assert(repl.format_results(2, {a = 1}, true) == "{a = 1}, true")
end)

T.test("format_results is empty for no results", function()
  assert(repl.format_results(0) == "")
end)

T.test("format_results uses lines when results do not fit", function()
  local a, b = ("a"):rep(50), ("b"):rep(50)
  assert(repl.format_results(2, a, b) == '"' .. a .. '"\n"' .. b .. '"')
  local long = {}
  for i = 1, 30 do long[i] = i end
  local s = repl.format_results(2, long, 1)
  assert(s:find("^{\n  1,\n"), s)
  assert(s:find("\n}\n1$"), s)
end)

-- }=====

-- {===== sessions =====

T.test("session prints an expression without =", function()
  local _, eval = session()
  assert(eval("1 + 1") == "2\n")
  assert(eval("'a' .. 'b'") == '"ab"\n')
  assert(eval("{1, x = 2}") == "{1, x = 2}\n")
  assert(eval("nil, 'timeout', 'timeout'") == 'nil, "timeout", "timeout"\n')
  assert(eval("return nil") == "nil\n")
end)

T.test("session accepts a leading =", function()
  local _, eval = session()
  assert(eval("=1 + 1") == "2\n")
  assert(eval("= 'x'") == '"x"\n')
end)

T.test("session runs statements and prints nothing for them", function()
  local _, eval = session()
  assert(eval("local x = 1") == "")
  assert(eval("do end") == "")
  assert(eval("") == "")
end)

T.test("session keeps globals in its env across lines", function()
  local _, eval, env = session()
  assert(eval("answer = 42") == "")
  assert(rawget(env, "answer") == 42)
  assert(rawget(_G, "answer") == nil)
  assert(eval("answer") == "42\n")
  assert(eval("answer = answer + 1; return answer") == "43\n")
  assert(eval("string.rep('x', 3)") == '"xxx"\n') -- _G through __index
end)

T.test("session continues a multi-line statement", function()
  local sess, eval = session()
  assert(sess:prompt() == "> ")
  assert(not sess:pending())
  assert(eval("function f()") == "")
  assert(sess:pending())
  assert(sess:prompt() == ">> ")
  assert(eval("return 1") == "")
  assert(sess:prompt() == ">> ")
  assert(eval("end") == "")
  assert(not sess:pending())
  assert(sess:prompt() == "> ")
  assert(eval("f()") == "1\n")
end)

T.test("session continues multi-line expressions and long strings", function()
  local sess, eval = session()
  assert(eval("math.max(1,") == "")
  assert(sess:pending())
  assert(eval("5)") == "5\n")
  assert(eval("[[one") == "")
  assert(eval("two]]") == '"one\\ntwo"\n')
  assert(not sess:pending())
end)

T.test("session reports a syntax error and recovers", function()
  local sess, eval = session()
  local out = eval("x = = 1")
  assert(out == "stdin:1: unexpected symbol near '='\n", out)
  assert(not sess:pending())
  assert(sess:prompt() == "> ")
  assert(eval("1 + 2") == "3\n")
end)

T.test("session reports a syntax error inside a continued statement", function()
  local sess, eval = session()
  assert(eval("if true then") == "")
  local out = eval("x = = 1")
  assert(out == "stdin:2: unexpected symbol near '='\n", out)
  assert(not sess:pending())
  assert(eval("2") == "2\n")
end)

T.test("session uses its chunkname", function()
  local _, eval = session{chunkname = "=console"}
  assert(eval("x = = 1") == "console:1: unexpected symbol near '='\n")
end)

T.test("session reset drops the pending statement", function()
  local sess, eval = session()
  assert(eval("for i = 1, 3 do") == "")
  assert(sess:pending())
  sess:reset()
  assert(not sess:pending())
  assert(sess:prompt() == "> ")
  assert(eval("1") == "1\n")
end)

T.test("session traceback shows the user's frames only", function()
  local _, eval = session()
  local out = eval("local function inner() error('bad thing') end inner()")
  assert(out:find("^stdin:1: bad thing\nstack traceback:\n"), out)
  assert(out:find("\tstdin:1: in local 'inner'\n", 1, true), out)
  assert(out:find("\n\tstdin:1: in main chunk\n$"), out)
  assert(not out:find("repl.lua", 1, true), out)
  assert(not out:find("xpcall", 1, true), out)
  assert(not out:find("in ?", 1, true), out)
end)

T.test("session traceback for a runtime error in the chunk", function()
  local _, eval = session()
  local out = eval("local t = nil; t.y = 1")
  assert(out == "stdin:1: attempt to index a nil value (local 't')\n"
    .. "stack traceback:\n\tstdin:1: in main chunk\n", out)
end)

T.test("session traceback names the user's globals", function()
  local _, eval = session()
  assert(eval("function explode() local n = nil; return n + 1 end") == "")
  local out = eval("local v = explode()")
  assert(out:find("\tstdin:1: in function 'explode'\n", 1, true), out)
  assert(not out:find("repl.lua", 1, true), out)
end)

T.test("session traceback of a deep stack skips the middle", function()
  local _, eval = session()
  eval("function down(n) if n == 0 then error('bottom') end "
    .. "return 1 + down(n - 1) end")
  local out = eval("local v = down(50)")
  assert(out:find("^stdin:1: bottom\n"), out)
  assert(out:find("\n\t...\t(skipping 32 levels)\n", 1, true), out)
  -- error, 51 frames of down, the chunk: 10 shown, 32 skipped, 11 shown
  assert(count(out, "\n\t") == 22, out)
  assert(out:find("\n\tstdin:1: in main chunk\n$"), out)
end)

T.test("session survives a stack overflow", function()
  local _, eval = session()
  eval("function forever() return 1 + forever() end")
  local out = eval("forever()")
  assert(out:find("stack overflow", 1, true), out)
  assert(out:find("skipping", 1, true), out)
  assert(not out:find("repl.lua", 1, true), out)
  assert(eval("1") == "1\n")
end)

T.test("session reports error objects that are not strings", function()
  local _, eval = session()
  local out = eval("error({})")
  assert(out:find("^%(error object is a table value%)\nstack traceback:"), out)
  out = eval("error(nil)")
  assert(out:find("^%(error object is a nil value%)\n"), out)
  out = eval("error(setmetatable({}, {__tostring = function() "
    .. "return 'custom error' end}))")
  assert(out:find("^custom error\n"), out)
  out = eval("error(setmetatable({}, {__tostring = function() error('x') end}))")
  assert(out:find("^%(error object is a table value%)\n"), out)
  out = eval("error(42)")
  assert(out:find("^42\n"), out)
end)

T.test("session chunks may yield", function()
  local sess, eval = session()
  local out
  local co = coroutine.create(function()
    out = eval("local v = coroutine.yield('paused'); return v + 1, nil")
  end)
  local ok, what = coroutine.resume(co)
  assert(ok and what == "paused")
  assert(sess:prompt() == "> ")
  ok = coroutine.resume(co, 41)
  assert(ok and coroutine.status(co) == "dead")
  assert(out == "42, nil\n", out)
end)

T.test("session has working defaults", function()
  local sess = repl.session()
  assert(sess:prompt() == "> ")
  assert(not sess:pending())
  assert(same(sess:complete("coroutine.wr"), {"coroutine.wrap"}))
end)

-- }=====

-- {===== completion =====

local function sample_env()
  local md = setmetatable({
    sleep = function() end,
    spawn = function() end,
    log = {info = function() end, warn = function() end, level = 3},
  }, {
    __index = function(_, k) error("lazy load of " .. k) end,
    __complete = function() return {"modbus", "mqtt"} end,
  })
  return setmetatable({md = md, s = "text"}, {__index = _G})
end

T.test("complete globals and keywords", function()
  check_complete("pri", sample_env(), {"print"})
  check_complete("wh", {}, {"while"})
  check_complete("f", {foo = 1}, {"false", "foo", "for", "function"})
  check_complete("m", sample_env(), {"math", "md"})
  check_complete("zzz", sample_env(), {})
end)

T.test("complete fields after a dot", function()
  check_complete("md.sl", sample_env(), {"md.sleep"})
  check_complete("md.s", sample_env(), {"md.sleep", "md.spawn"})
  check_complete("string.fo", sample_env(), {"string.format"})
  check_complete("md.sleep", sample_env(), {"md.sleep"})
end)

T.test("complete nested paths", function()
  check_complete("md.log.", sample_env(),
    {"md.log.info", "md.log.level", "md.log.warn"})
  check_complete("md.log.w", sample_env(), {"md.log.warn"})
  check_complete("a.b.c.d", {a = {b = {c = {dd = 1, e = 2}}}}, {"a.b.c.dd"})
end)

T.test("complete offers only identifier keys", function()
  local env = {t = {good = 1, ["not ok"] = 2, [1] = 3, ["end"] = 4}}
  check_complete("t.", env, {"t.good"})
end)

T.test("complete methods after a colon", function()
  local Bus = {}
  Bus.__index = Bus
  Bus.read = function() end
  Bus.close = function() end
  Bus.timeout = 5
  local env = {bus = setmetatable({id = 1, poll = function() end}, Bus)}
  check_complete("bus:", env, {"bus:close", "bus:poll", "bus:read"})
  check_complete("bus:r", env, {"bus:read"})
  check_complete("bus.", env,
    {"bus.close", "bus.id", "bus.poll", "bus.read", "bus.timeout"})
end)

T.test("complete string methods", function()
  check_complete("s:up", {s = "x", string = string}, {"s:upper"})
  check_complete("s:re", sample_env(), {"s:rep", "s:reverse"})
end)

T.test("complete follows the __index chain", function()
  local Base = {}
  Base.__index = Base
  Base.hello = function() end
  Base.kind = "base"
  local Derived = setmetatable({}, Base)
  Derived.__index = Derived
  Derived.bye = function() end
  local env = {o = setmetatable({field = 1}, Derived)}
  check_complete("o.", env, {"o.bye", "o.field", "o.hello", "o.kind"})
  check_complete("o:", env, {"o:bye", "o:hello"})
  check_complete("o.__", env, {"o.__index"})
  check_complete("o.kind:up", {o = env.o, string = string}, {"o.kind:upper"})
end)

T.test("complete globals through a proxy env", function()
  local inner = {only_inner = 1}
  local env = setmetatable({mine = 1}, {__index = inner})
  check_complete("only", env, {"only_inner"})
  check_complete("mi", env, {"mine"})
end)

T.test("complete uses __complete for lazy fields", function()
  check_complete("md.m", sample_env(), {"md.modbus", "md.mqtt"})
  check_complete("md.", sample_env(), {"md.log", "md.modbus", "md.mqtt",
    "md.sleep", "md.spawn"})
  local got
  local obj = setmetatable({}, {__complete = function(v)
    got = v
    return {"a", 7, "not ok", "b", "a"}
  end})
  check_complete("o.", {o = obj}, {"o.a", "o.b"})
  assert(got == obj)
end)

T.test("complete returns nothing for unresolvable paths", function()
  local env = sample_env()
  check_complete("nope.x", env, {})
  check_complete("md.modbus.", env, {}) -- not loaded: __index not called
  check_complete("md.log.level.", env, {})
  check_complete("1.5", env, {})
  check_complete(".x", env, {})
  check_complete("a..b", {a = {b = 1}}, {})
  check_complete("a:b:c", {a = {b = {c = 1}}}, {})
  check_complete("a:b.c", {a = {b = {c = 1}}}, {})
end)

T.test("complete never raises on odd values", function()
  local calls = 0
  local trap = function() calls = calls + 1; error("must not be called") end
  local env = {
    u = io.stdout,
    f = setmetatable({}, {__index = trap}),
    fn = function() end,
    n = 5,
    hidden = setmetatable({}, {__metatable = "locked", __index = {x = 1}}),
    badc = setmetatable({}, {__complete = trap}),
    oddc = setmetatable({}, {__complete = function() return 5 end}),
  }
  local loop = {}
  loop.__index = loop
  setmetatable(loop, loop)
  env.loop = setmetatable({}, loop)
  for _, text in ipairs{"u.", "u:", "f.", "f.x.", "f:", "fn.", "fn:", "n.",
      "n:", "hidden.", "badc.", "oddc.", "loop.", "loop:", "loop.a.b", "",
      ":", ".", "u.x.y"} do
    assert(type(repl.complete(text, env)) == "table", text)
  end
  for _, odd in ipairs{42, "str", io.stdout, print} do
    assert(type(repl.complete("x", odd)) == "table")
    assert(type(repl.complete("x.y", odd)) == "table")
  end
  assert(same(repl.complete(nil, env), {}))
  assert(type(repl.complete("pr", nil)) == "table")
  assert(calls == 1) -- only badc's __complete, through pcall
  check_complete("u:wr", env, {"u:write"})
  check_complete("hidden.", env, {"hidden.x"})
end)

T.test("session complete uses the session env", function()
  local sess, eval = session()
  eval("my_value = 1")
  assert(same(sess:complete("my_v"), {"my_value"}))
  eval("tbl = {alpha = 1, beta = 2}")
  assert(same(sess:complete("tbl.a"), {"tbl.alpha"}))
end)

-- }=====
