-- Reconnect backoff of client buses: the per-bus backoff and backoff_max
-- (URL parameters or open() options), what a request says while the bus
-- backs off, and the connect counters in bus:stats().
--
-- The "closed port" is one our own server had on 127.0.0.1 and gave back,
-- so connects are refused at once; the server then comes back on that
-- port. Waits are bounded loops; the only time bounds are generous ones
-- (a few seconds against a backoff of at most 0.4 s).
local T = require "moondog.testing"
local md = require "moondog"

local modbus = md.modbus

-- A TCP port on 127.0.0.1 that nobody listens on (any more).
local function closed_port()
  local srv = assert(modbus.serve("tcp://127.0.0.1:0"))
  local port = srv:port()
  srv:close()
  return port
end

-- Read until it works or `seconds` pass; returns the last result.
local function read_until_ok(bus, seconds)
  local deadline = md.now() + seconds
  local regs, err, code
  repeat
    regs, err, code = bus:read_holding(1, 0, 1)
    if regs then break end
    md.sleep(0.02)
  until md.now() > deadline
  return regs, err, code
end

T.test("backing off: the error says when the next attempt is due and what the last one got", function()
  local port = closed_port()
  local url = "tcp://127.0.0.1:" .. port .. "?backoff=0.2&backoff_max=0.4"
  local bus <close> = assert(modbus.open(url))
  local regs, err, code = bus:read_holding(1, 0, 1)
  T.eq(regs, nil)
  T.eq(code, "refused", err)
  assert(err:find("cannot connect", 1, true), err)
  regs, err, code = bus:read_holding(1, 0, 1)
  T.eq(regs, nil)
  T.eq(code, "refused", "the last attempt's code: " .. err)
  assert(err:find("not connected; next connect attempt in 0.%d s %(last attempt: Connection refused%)"),
    err)
  assert(err:find("tcp://127.0.0.1:" .. port, 1, true), "names the bus: " .. err)
  local s = bus:stats()
  T.eq(s.connects, 0, "connects")
  T.eq(s.connect_failures, 1, "connect_failures")
  assert(s.reconnect_in and s.reconnect_in > 0 and s.reconnect_in <= 0.4, tostring(s.reconnect_in))
end)

T.test("backoff_max bounds the wait: eight attempts in a few seconds, reconnect_in never above it", function()
  local port = closed_port()
  local bus <close> = assert(modbus.open("tcp://127.0.0.1:" .. port .. "?backoff=0.2&backoff_max=0.4"))
  local deadline = md.now() + 10 -- the defaults (0.5 s doubling to 5 s) need 22 s for eight
  local s
  repeat
    bus:read_holding(1, 0, 1)
    s = bus:stats()
    assert(s.reconnect_in == nil or s.reconnect_in <= 0.4, "reconnect_in " .. tostring(s.reconnect_in))
    md.sleep(0.05)
  until s.connect_failures >= 8 or md.now() > deadline
  assert(s.connect_failures >= 8, "only " .. s.connect_failures .. " attempts in 10 s")
end)

T.test("a server that comes back is read within backoff_max (open() options)", function()
  local port = closed_port()
  local bus <close> = assert(modbus.open("tcp://127.0.0.1:" .. port, { backoff = 0.2, backoff_max = 0.4 }))
  for _ = 1, 3 do
    T.eq(select(3, bus:read_holding(1, 0, 1)), "refused")
    md.sleep(0.3)
  end
  assert(bus:stats().connect_failures >= 2, "it kept trying")
  local srv <close> = assert(modbus.serve("tcp://127.0.0.1:" .. port))
  srv:set(nil, "holding", 0, { 1234 })
  local regs, err = read_until_ok(bus, 5)
  assert(regs, err)
  T.eq(regs[1], 1234)
  local s = bus:stats()
  T.eq(s.connects, 1, "one connect")
  T.eq(s.reconnect_in, nil, "no backoff once connected")
end)

T.test("a failed connect after a good one starts the backoff over", function()
  local port = closed_port()
  local bus <close> = assert(modbus.open("tcp://127.0.0.1:" .. port .. "?backoff=0.2&backoff_max=0.4"))
  T.wait_for(function()
    bus:read_holding(1, 0, 1)
    local left = bus:stats().reconnect_in
    return left ~= nil and left > 0.2
  end, 5, "the backoff grown past its first step")
  local srv = assert(modbus.serve("tcp://127.0.0.1:" .. port))
  assert(read_until_ok(bus, 5))
  srv:close()
  T.wait_for(function()
    return select(3, bus:read_holding(1, 0, 1)) == "refused"
  end, 5, "the server gone")
  local s = bus:stats()
  T.eq(s.connects, 1)
  assert(s.reconnect_in and s.reconnect_in <= 0.2, "first backoff again: " .. tostring(s.reconnect_in))
end)
