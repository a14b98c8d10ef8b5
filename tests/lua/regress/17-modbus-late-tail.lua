-- Issue 17, item 7: a Modbus TCP answer that trickled in slower than the
-- timeout timed out correctly, but its late tail made the next, unrelated
-- request fail as "malformed". The fake (tests/data/fake_modbus.py, magic
-- address 9010) sends 3 bytes of the answer, and the rest only just before
-- the answer to the next request on the same connection. RTU framing has
-- no transaction id, so a whole late answer (magic address 9006: 300 ms)
-- passed for the next request's there.

local T = require "moondog.testing"

local PYTHON = "/usr/bin/python3"

for _, scheme in ipairs({ "tcp", "rtu+tcp" }) do
  T.test(scheme .. ": the tail of a timed-out answer does not break the next request", function()
    T.need(PYTHON, "python3")
    local dir <close> = T.tmpdir()
    local fake <close> = T.start(dir, "fake", string.format("%s %s tcp %s", PYTHON,
      T.quote(md.paths.home .. "/tests/data/fake_modbus.py"), scheme == "tcp" and "mbap" or "rtu"))
    local port = assert(fake:first_line():match("^PORT (%d+)$"))
    local bus <close> = assert(md.modbus.open(string.format("%s://127.0.0.1:%s?timeout=0.3", scheme, port)))
    local v, _, code = bus:read_holding(1, 9010, 1)
    T.eq(v, nil, "the trickling answer")
    T.eq(code, "timeout", "code of the trickling answer")
    for i = 1, 3 do
      local regs, err = bus:read_holding(1, 100 + i, 1)
      assert(regs, "request " .. i .. " after the timeout: " .. tostring(err))
      T.eq(regs[1], 100 + i, "register")
    end
  end)
end

T.test("rtu+tcp: a whole late answer does not pass for the next request's", function()
  T.need(PYTHON, "python3")
  local dir <close> = T.tmpdir()
  local fake <close> = T.start(dir, "fake", string.format("%s %s tcp rtu", PYTHON,
    T.quote(md.paths.home .. "/tests/data/fake_modbus.py")))
  local port = assert(fake:first_line():match("^PORT (%d+)$"))
  local bus <close> = assert(md.modbus.open(string.format("rtu+tcp://127.0.0.1:%s?timeout=0.15", port)))
  local v, _, code = bus:read_holding(1, 9006, 1)
  T.eq(v, nil, "the late answer")
  T.eq(code, "timeout", "code of the late answer")
  local regs, err = bus:read_holding(1, 101, 1)
  assert(regs, "the next request: " .. tostring(err))
  T.eq(regs[1], 101, "the next request's own value, not the late 9006")
end)
