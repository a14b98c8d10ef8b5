-- moondog.stream (TCP on the loop) and moondog.event (one-shot events, cleared to reuse), the
-- primitives under moondog.rct. Every peer is a listener of this engine on
-- 127.0.0.1, port 0.

local T = require "moondog.testing"
local stream = require "moondog.stream"
local event = require "moondog.event"

-- A listener l and a connected pair: c (client side), s (server side).
-- Closing the table closes all three.
local function pair()
  local l = assert(stream.listen("127.0.0.1", 0))
  local accepted
  local acceptor = md.spawn(function() accepted = assert(l:accept(5)) end)
  local c = assert(stream.connect("127.0.0.1", l:port()))
  acceptor:join(5)
  return setmetatable({ l = l, c = c, s = accepted }, {
    __close = function(p) p.c:close(); p.s:close(); p.l:close() end,
  })
end

T.test("connect, write, read, peer, close", function()
  local p <close> = pair()
  local l, c, s = p.l, p.c, p.s
  T.eq(c:peer(), "127.0.0.1:" .. l:port(), "peer")
  assert(s:peer():match("^127%.0%.0%.1:%d+$"), s:peer())
  assert(c:write("hello"))
  T.eq(s:read(), "hello", "server got")
  assert(s:write("world"))
  T.eq(c:read(3), "wor", "at most max bytes")
  T.eq(c:read(), "ld", "the rest")
  assert(tostring(c):find("stream connection", 1, true))
  c:close()
  assert(c:closed(), "closed")
  assert(not pcall(c.read, c), "a closed connection raises")
  c:close() -- twice is fine
end)

T.test("a read times out and the connection stays usable", function()
  local p <close> = pair()
  local c, s = p.c, p.s
  local v, err, code = c:read(100, 0.05)
  T.eq(v, nil, "no data")
  T.eq(code, "timeout", "code")
  assert(err:find("timed out", 1, true), err)
  assert(s:write("late"))
  T.eq(c:read(100, 1), "late", "read after a timeout")
end)

T.test("the peer closing the connection: connection_lost for reads and writes", function()
  local p <close> = pair()
  local c, s = p.c, p.s
  local reader = md.spawn(function() return c:read() end)
  md.sleep(0.01)
  s:close()
  local v, err, code = reader:join(5)
  T.eq(v, nil, "read")
  T.eq(code, "connection_lost", "code: " .. tostring(err))
  assert(err:find("closed the connection", 1, true), err)
  local ok
  ok, err, code = c:write("x")
  T.eq(ok, nil, "write after loss")
  T.eq(code, "connection_lost", "write code: " .. tostring(err))
end)

T.test("closing while another task reads or writes wakes it with closed", function()
  local p <close> = pair()
  local c = p.c
  local reader = md.spawn(function() return c:read() end)
  md.sleep(0.01)
  assert(not pcall(c.read, c), "a second reader raises")
  c:close()
  local v, _, code = reader:join(5)
  T.eq(v, nil, "read")
  T.eq(code, "closed", "code")
end)

-- A listener with a backlog of 0 takes one connection; the kernel drops the
-- next SYNs, so the next connect times out: connect_timeout, as from a
-- Modbus bus or the MQTT client (docs/errors.md), not the plain "timeout"
-- of a request.
T.test("a connect that times out: connect_timeout", function()
  local l = assert(stream.listen("127.0.0.1", 0, { backlog = 0 }))
  local held = {}
  local c, err, code
  for _ = 1, 8 do
    c, err, code = stream.connect("127.0.0.1", l:port(), { timeout = 0.2 })
    if not c then break end
    held[#held + 1] = c
  end
  for _, h in ipairs(held) do h:close() end
  l:close()
  T.eq(c, nil, "a connect failed")
  T.eq(code, "connect_timeout", "code: " .. tostring(err))
end)

T.test("connect failures: refused, a name that does not resolve", function()
  local l = assert(stream.listen("127.0.0.1", 0))
  local port = l:port()
  l:close()
  local c, err, code = stream.connect("127.0.0.1", port)
  T.eq(c, nil, "refused")
  T.eq(code, "refused", "code: " .. tostring(err))
  assert(err:find("127.0.0.1:" .. port, 1, true), err)
  c, err, code = stream.connect("host.invalid", 80)
  T.eq(c, nil, "no such host")
  T.eq(code, "dns", "code: " .. tostring(err))
  assert(not pcall(stream.connect, "127.0.0.1", 0), "port 0 raises")
  assert(not pcall(stream.connect, "127.0.0.1", 80, { timeout = -1 }), "bad timeout raises")
end)

T.test("listen: a port in use; accept: timeout and closed", function()
  local l <close> = assert(stream.listen("127.0.0.1", 0))
  local l2, err, code = stream.listen("127.0.0.1", l:port())
  T.eq(l2, nil, "second listener")
  T.eq(code, "in_use", "code: " .. tostring(err))
  local c
  c, err, code = l:accept(0.05)
  T.eq(c, nil, "nobody connects")
  T.eq(code, "timeout", "code: " .. tostring(err))
  local waiter = md.spawn(function() return l:accept() end)
  md.sleep(0.01)
  assert(not pcall(l.accept, l), "a second acceptor raises")
  l:close()
  local _, _, wcode = waiter:join(5)
  T.eq(wcode, "closed", "accept after close")
end)

T.test("big writes go out whole and in order; writers never interleave", function()
  local p <close> = pair()
  local c, s = p.c, p.s
  local block = 300 * 1024
  local writers = {}
  for i = 1, 4 do
    writers[i] = md.spawn(function() return c:write(string.rep(string.char(64 + i), block), 10) end)
  end
  local got = {}
  local total = 0
  while total < 4 * block do
    local data = assert(s:read(65536, 10))
    got[#got + 1] = data
    total = total + #data
  end
  for i = 1, 4 do
    T.eq(writers[i]:join(10), true, "writer " .. i)
  end
  local all = table.concat(got)
  T.eq(#all, 4 * block, "bytes")
  -- each writer's block arrives in one piece, in the order they wrote
  local pos = 1
  for i = 1, 4 do
    local ch = string.char(64 + i)
    local stop = all:find("[^" .. ch .. "]", pos) or #all + 1
    T.eq(stop - pos, block, "unbroken run of " .. ch)
    pos = stop
  end
end)

T.test("a peer that does not read: the write times out, then busy with 4 MB queued", function()
  local p <close> = pair()
  local c = p.c
  -- more than the kernel's socket buffers take: the rest waits in the queue
  local ok, err, code = c:write(string.rep("x", 16 * 1024 * 1024), 0.2)
  T.eq(ok, nil, "write to a peer that does not read")
  T.eq(code, "timeout", "code: " .. tostring(err))
  ok, err, code = c:write("y", 0.2)
  T.eq(ok, nil, "more queued")
  T.eq(code, "busy", "code: " .. tostring(err))
end)

T.test("keepalive(false): a background reader does not keep the engine running", function()
  local code = [[
    local stream = require "moondog.stream"
    local l = assert(stream.listen("127.0.0.1", 0))
    md.spawn(function() l:accept() end)
    local c = assert(stream.connect("127.0.0.1", l:port()))
    c:keepalive(false)
    md.spawn(function() c:read() end)
    md.sleep(0.05)
    l:close()
    print("main done")
  ]]
  local out, status = T.sh(string.format("timeout 10 %s -e %s 2>&1", T.quote(md.paths.exe), T.quote(code)))
  T.eq(status, 0, "exit status: " .. out)
  T.eq(out, "main done\n", "output")
end)

T.test("events: wait and set, several waiters, set before wait, timeout", function()
  local ev = event.new()
  T.eq(ev:is_set(), false, "not set")
  local a = md.spawn(function() return ev:wait() end)
  local b = md.spawn(function() return ev:wait(5) end)
  md.sleep(0.01)
  T.eq(ev:set(1, nil, "three"), true, "first set")
  T.eq(ev:set(2), false, "second set")
  local x, y, z = a:join(1)
  T.eq(x, 1, "a got 1")
  T.eq(y, nil, "a got nil")
  T.eq(z, "three", "a got three")
  T.eq(b:join(1), 1, "b")
  T.eq(ev:wait(), 1, "wait after set returns at once")
  local v, err, code = event.new():wait(0.02, "the answer")
  T.eq(v, nil, "timed out")
  T.eq(code, "timeout", "code")
  assert(err:find("the answer timed out", 1, true), err)
  -- a cancelled waiter leaves nothing behind, and set still works
  local ev2 = event.new()
  local c = md.spawn(function() return ev2:wait() end)
  md.sleep(0.01)
  c:cancel()
  T.eq(c:status(), "cancelled", "cancelled waiter")
  T.eq(ev2:set("x"), true, "set after a cancelled waiter")
end)

T.test("events: set without values, clear and wait again", function()
  local ev = event.new()
  local a = md.spawn(function() return select("#", ev:wait(5)) end)
  md.sleep(0.01)
  T.eq(ev:set(), true, "set without values")
  T.eq(a:join(1), 0, "the waiter got no values")
  T.eq(select("#", ev:wait()), 0, "a wait after it: none either")
  ev:clear()
  T.eq(ev:is_set(), false, "cleared")
  local v, _, code = ev:wait(0.02)
  T.eq(v, nil, "a cleared event is waited for again")
  T.eq(code, "timeout", "code")
  local b = md.spawn(function() return ev:wait(5) end)
  md.sleep(0.01)
  ev:clear() -- not set: the waiter stays
  T.eq(ev:set("again", 2), true, "set after clear")
  local x, y = b:join(1)
  T.eq(x, "again", "the new values")
  T.eq(y, 2, "both")
  ev:clear()
  T.eq(ev:set(), true, "set without values after values")
  T.eq(select("#", ev:wait()), 0, "the old values are gone")
end)
