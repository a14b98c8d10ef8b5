-- Issue 17, item 1: `moondog SCRIPT $(seq 1 60)` and `moondog modbus write URL
-- --address 0 $(seq 1 50)` died with SIGSEGV (or spun at 100 % CPU): main.c
-- pushed every argument onto a Lua stack that has room for 20, and
-- md_task_spawn copied them once more without checking the stack either.

local T = require "moondog.testing"

local q = T.quote

local function numbers(n)
  local t = {}
  for i = 1, n do t[i] = tostring(i) end
  return table.concat(t, " ")
end

T.test("a script gets 300 arguments", function()
  local dir <close> = T.tmpdir()
  local script = dir.path .. "/args.lua"
  T.write_file(script, 'print(select("#", ...), (select(select("#", ...), ...)), #arg)\n')
  local out, code = T.sh(string.format("%s %s %s 2>&1", q(md.paths.exe), q(script), numbers(300)))
  T.eq(code, 0, "exit code (output: " .. out .. ")")
  T.eq(out, "300\t300\t300\n", "output")
end)

T.test("modbus write takes 123 values (function 16's maximum)", function()
  -- port 1 on loopback refuses: the tool must get as far as connecting
  local out, code = T.sh(string.format("%s modbus write tcp://127.0.0.1:1 --address 0 %s 2>&1 </dev/null",
    q(md.paths.exe), numbers(123)))
  T.eq(code, 1, "exit code (output: " .. out .. ")")
  assert(out:find("cannot connect", 1, true), "message names the failure: " .. out)
end)

T.test("md.spawn passes 500 arguments", function()
  local args = {}
  for i = 1, 500 do args[i] = i end
  local n, last = md.spawn(function(...) return select("#", ...), (select(500, ...)) end,
    table.unpack(args)):join()
  T.eq(n, 500, "argument count")
  T.eq(last, 500, "last argument")
end)
