-- Issue 17, item 8: device strings (`sunspec scan`, `rct read-value`) were
-- printed raw, escape sequences included (a title change, a screen clear,
-- fake lines). Human-readable output now escapes non-printable characters
-- (moondog.text.printable): the tools, the REPL pretty-printer and the log.
-- The tools run as child processes against simulators in this engine
-- (moondog.process does not block the engine meanwhile).

local T = require "moondog.testing"
local text = require "moondog.text"

local q, format = T.quote, string.format
local EVIL = "Evil\27]0;owned\7\27[2J\rfake line\194\155"

-- Run `moondog ARGS`, wait for it, return stdout, stderr.
local function tool(dir, name, args)
  local p <close> = T.start(dir, name, format("%s %s", q(md.paths.exe), args))
  T.wait_for(function() return not p:alive() end, 20, name .. " to finish")
  return T.read_file(p.out) or "", T.read_file(p.err) or ""
end

local function no_controls(s, what)
  local bad = s:find("[\0-\9\11-\31\127]") or s:find("\194[\128-\159]")
  assert(not bad, format("%s holds a control character at %s: %q", what, tostring(bad), s))
end

T.test("text.printable escapes controls, C1 and bad UTF-8 and keeps UTF-8", function()
  T.eq(text.printable(EVIL), "Evil\\x1B]0;owned\\x07\\x1B[2J\\x0Dfake line\\u{9B}", "escaped")
  T.eq(text.printable("Wechselrichter Süd ☀"), "Wechselrichter Süd ☀", "UTF-8 kept")
  T.eq(text.printable("\255ok"), "\\xFFok", "a byte that is not UTF-8")
end)

T.test("sunspec scan prints a hostile manufacturer string escaped", function()
  local dir <close> = T.tmpdir()
  local srv <close> = assert(md.sunspec.serve("tcp://127.0.0.1:0", {
    models = { 1 }, values = { [1] = { Mn = EVIL:sub(1, 32), Md = "M", SN = "S" } },
  }))
  local out = tool(dir, "scan", "sunspec scan " .. q(srv:url()))
  assert(out:find("Evil\\x1B]0;owned", 1, true), "escaped in the output: " .. out)
  no_controls(out:gsub("\n", ""), "scan output")
end)

T.test("rct read-value prints a hostile string escaped", function()
  local dir <close> = T.tmpdir()
  local sim <close> = assert(md.rct.serve { values = { android_description = EVIL } })
  local out = tool(dir, "rct", format("rct read-value --host 127.0.0.1 --port %d --name android_description",
    sim:port()))
  T.eq(out, text.printable(EVIL) .. "\n", "read-value output")
end)

T.test("modbus read --type string prints a hostile string escaped", function()
  local dir <close> = T.tmpdir()
  local srv <close> = assert(md.modbus.serve("tcp://127.0.0.1:0"))
  local bytes = "A\27[2J\n\"B" -- 8 bytes: 4 registers
  local regs = {}
  for i = 1, #bytes, 2 do regs[#regs + 1] = string.unpack(">I2", bytes, i) end
  srv:set(nil, "holding", 0, regs)
  local out = tool(dir, "modbus", format("modbus read %s -a 0 -c 4 --type string", q(srv:url())))
  T.eq(out, '0  "A\\x1B[2J\\x0A\\"B"\n', "read output")
end)

T.test("the REPL pretty-printer escapes a __tostring", function()
  local shown = require("moondog.repl").pretty(setmetatable({}, { __tostring = function() return EVIL end }))
  no_controls(shown, "pretty-printed value")
end)

T.test("log lines carry no control characters", function()
  local dir <close> = T.tmpdir()
  local _, err = tool(dir, "log", "-e " .. q(format("md.log.warn(%q)", EVIL)))
  assert(err:find("Evil", 1, true), "the line is logged: " .. err)
  no_controls(err:gsub("\n", ""), "log line")
end)
