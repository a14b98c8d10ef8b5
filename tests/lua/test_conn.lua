-- The connection layer (core/conn.c) seen from Lua: a host name is looked
-- up off the loop thread, so a slow or failing lookup never freezes other
-- tasks, and a name that does not resolve fails with the code "dns".
-- The slow lookup runs in a child moondog with MOONDOG_TEST_DNS_DELAY_MS
-- (each name lookup then waits on its resolver thread first).
local T = require "moondog.testing"
local md = require "moondog"

local exe = md.paths.exe

T.test("a name that does not resolve fails a Modbus read with 'dns'", function()
  local bus <close> = assert(md.modbus.open("tcp://no-such-host.invalid:502"))
  local v, err, code = bus:read_holding(1, 0, 1)
  T.eq(v, nil)
  T.eq(code, "dns", "code (" .. tostring(err) .. ")")
  assert(err:find("does not resolve", 1, true), err)
end)

T.test("a task keeps ticking while a Modbus connect waits for a slow lookup", function()
  local script = [[
    local md = require "moondog"
    local ticks, done = 0, false
    md.spawn(function()
      for _ = 1, 300 do
        if done then return end
        ticks = ticks + 1
        md.sleep(0.01)
      end
    end)
    local bus <close> = assert(md.modbus.open("tcp://slow-name.invalid:502"))
    local _, _, code = bus:read_holding(1, 0, 1)
    done = true
    print(ticks, code)
  ]]
  local out, rc = T.sh(string.format("MOONDOG_TEST_DNS_DELAY_MS=600 %s -e %s 2>&1",
    T.quote(exe), T.quote(script)))
  T.eq(rc, 0, "exit code (" .. out .. ")")
  local ticks, code = out:match("^(%d+)%s+(%S+)")
  assert(ticks, "output: " .. out)
  T.eq(code, "dns")
  -- A lookup on the loop thread would have frozen the ticker for 600 ms:
  -- it would have ticked once at most before the read returned.
  assert(tonumber(ticks) >= 10, "ticks while the lookup ran: " .. ticks)
end)

-- A listener on a host name (not a literal address, not "*") looks the name
-- up the same way: the task that opens it waits, the others run.
local function ticks_during(open_code)
  local script = [[
    local md = require "moondog"
    local stream = require "moondog.stream"
    local ticks, done = 0, false
    md.spawn(function()
      for _ = 1, 300 do
        if done then return end
        ticks = ticks + 1
        md.sleep(0.01)
      end
    end)
    local l, err = ]] .. open_code .. [[
    assert(l, err)
    local port = l:port()
    done = true
    l:close()
    print(ticks, port)
  ]]
  local out, rc = T.sh(string.format("MOONDOG_TEST_DNS_DELAY_MS=600 %s -e %s 2>&1",
    T.quote(exe), T.quote(script)))
  T.eq(rc, 0, "exit code (" .. out .. ")")
  local ticks, port = out:match("^(%d+)%s+(%d+)")
  assert(ticks, "output: " .. out)
  assert(tonumber(port) > 0, "port " .. port)
  -- A lookup on the loop thread would have frozen the ticker for 600 ms.
  assert(tonumber(ticks) >= 10, "ticks while the lookup ran: " .. ticks)
end

T.test("a task keeps ticking while stream.listen on 'localhost' waits for a slow lookup",
  function()
    ticks_during('stream.listen("localhost", 0)')
  end)

T.test("a task keeps ticking while a Modbus server on 'localhost' waits for a slow lookup",
  function()
    ticks_during('md.modbus.serve("tcp://localhost:0")')
  end)

T.test("stream.listen and the Modbus server on a name that does not resolve fail with 'dns'",
  function()
    local stream = require "moondog.stream"
    local l, err, code = stream.listen("no-such-host.invalid", 0)
    T.eq(l, nil)
    T.eq(code, "dns", "code (" .. tostring(err) .. ")")
    local srv, err2, code2 = md.modbus.serve("udp://no-such-host.invalid:0")
    T.eq(srv, nil)
    T.eq(code2, "dns", "code (" .. tostring(err2) .. ")")
  end)

T.test("stream.listen on 'localhost' from a task gives a listener that accepts", function()
  local stream = require "moondog.stream"
  local l <close> = assert(stream.listen("localhost", 0))
  local accepted
  local acceptor = md.spawn(function() accepted = assert(l:accept(5)) end)
  -- "localhost" may be ::1 or 127.0.0.1: connect tries each address.
  local c <close> = assert(stream.connect("localhost", l:port()))
  acceptor:join(5)
  assert(accepted, "nothing accepted")
  accepted:close()
end)
