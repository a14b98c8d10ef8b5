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

-- Runs body (Lua source whose last value is a string to print) in a child
-- moondog whose every name lookup waits 600 ms on its resolver thread,
-- beside a task that ticks every 10 ms. Returns the ticks counted while
-- body ran and what it returned. A lookup on the loop thread would have
-- frozen the ticker: it would have ticked once at most.
local function ticks_during(body)
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
    local result = (function() ]] .. body .. [[ end)()
    done = true
    print(ticks, result)
  ]]
  local out, rc = T.sh(string.format("MOONDOG_TEST_DNS_DELAY_MS=600 %s -e %s 2>&1",
    T.quote(exe), T.quote(script)))
  T.eq(rc, 0, "exit code (" .. out .. ")")
  local ticks, result = out:match("^(%d+)%s+(%S+)")
  assert(ticks, "output: " .. out)
  assert(tonumber(ticks) >= 10, "ticks while the lookup ran: " .. ticks)
  return result
end

T.test("a task keeps ticking while a Modbus connect waits for a slow lookup", function()
  T.eq(ticks_during([[
    local bus <close> = assert(md.modbus.open("tcp://slow-name.invalid:502"))
    local _, _, code = bus:read_holding(1, 0, 1)
    return code
  ]]), "dns")
end)

-- A listener on a host name (not a literal address, not "*") looks the name
-- up the same way: the task that opens it waits, the others run.
local function listens_on_localhost(open_code)
  local port = ticks_during([[
    local l = assert(]] .. open_code .. [[)
    local port = l:port()
    l:close()
    return port
  ]])
  assert(tonumber(port) > 0, "port " .. port)
end

T.test("a task keeps ticking while stream.listen on 'localhost' waits for a slow lookup",
  function()
    listens_on_localhost('stream.listen("localhost", 0)')
  end)

T.test("a task keeps ticking while a Modbus server on 'localhost' waits for a slow lookup",
  function()
    listens_on_localhost('md.modbus.serve("tcp://localhost:0")')
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
  local client <close> = assert(stream.connect("localhost", l:port()))
  acceptor:join(5)
  assert(accepted, "nothing accepted")
  T.eq(client:peer():match(":(%d+)$"), tostring(l:port()), "the client is connected to the listener")
  accepted:close()
end)
