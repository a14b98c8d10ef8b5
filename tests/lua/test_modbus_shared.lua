-- One master per line: serial lines are opened exclusively (flock), and
-- modbus.shared hands every caller in a process the one bus of an endpoint.
--
-- Serial lines are socat pty pairs; the second process is a real moondog
-- started with T.start, so the lock is tried across processes as it is in
-- the field. TCP endpoints are our own server on 127.0.0.1, port 0, whose
-- on_read hook counts requests and whose stats count connections.
local T = require "moondog.testing"
local md = require "moondog"

local modbus = md.modbus
local format, q = string.format, T.quote

-- {===== helpers =====

-- A socat pty pair in dir: server side a, client side b, and a
-- to-be-closed handle that stops socat.
local pty_pair = T.pty_pair

local function serve(url, opts)
  return assert(modbus.serve(url, opts))
end

-- nil, message, code with the expected code (and text in the message).
local function fails(want_code, want_text, v, err, code)
  T.eq(v, nil, "a failure")
  T.eq(code, want_code, "code of: " .. tostring(err))
  if want_text then
    assert(tostring(err):find(want_text, 1, true), "message: " .. tostring(err))
  end
end

local BUSY_TEXT = "is in use by another program"

-- }=====

-- {===== exclusive open =====

T.test("a serial line held by another moondog process: busy, then usable once it exits", function()
  local dir <close> = T.tmpdir()
  local a, b, _socat <close> = pty_pair(dir)
  local srv <close> = serve("rtu://" .. a)
  srv:set(nil, "holding", 0, { 42 })
  local script = dir.path .. "/holder.lua"
  T.write_file(script, format([[
    local bus = assert(md.modbus.open(%q))
    assert(bus:read_holding(1, 0, 1))
    print("ready")
    io.stdout:flush()
    md.sleep(60)
  ]], "rtu://" .. b))
  local holder <close> = T.start(dir, "holder", format("%s %s", q(md.paths.exe), q(script)))
  T.eq(holder:first_line(10), "ready")
  do
    local bus <close> = assert(modbus.open("rtu://" .. b))
    fails("busy", BUSY_TEXT, bus:read_holding(1, 0, 1))
    local _, err = bus:read_holding(1, 0, 1)
    assert(err:find(b, 1, true), "names the line: " .. err)
    assert(err:find("two masters on one RS-485 line corrupt each other's frames", 1, true), err)
  end
  holder:stop()
  local bus <close> = assert(modbus.open("rtu://" .. b))
  T.eq(assert(bus:read_holding(1, 0, 1))[1], 42, "the line is free once the holder exited")
end)

T.test("a second bus on one serial line in the same process: busy", function()
  local dir <close> = T.tmpdir()
  local a, b, _socat <close> = pty_pair(dir)
  local srv <close> = serve("rtu://" .. a)
  srv:set(nil, "holding", 0, { 7 })
  local first <close> = assert(modbus.open("rtu://" .. b))
  T.eq(assert(first:read_holding(1, 0, 1))[1], 7)
  local second <close> = assert(modbus.open("rtu://" .. b .. "?baud=19200"))
  fails("busy", BUSY_TEXT, second:read_holding(1, 0, 1))
  fails("busy", "; next attempt in ", second:read_holding(1, 0, 1)) -- backing off
  T.eq(second:stats().connect_failures, 1, "one attempt")
  T.eq(assert(first:read_holding(1, 0, 1))[1], 7, "the first bus goes on")
end)

T.test("serving on a serial line that is in use: busy", function()
  local dir <close> = T.tmpdir()
  local a, _, _socat <close> = pty_pair(dir)
  local srv <close> = serve("rtu://" .. a)
  fails("busy", BUSY_TEXT, modbus.serve("rtu://" .. a))
  srv:close()
  local again <close> = serve("rtu://" .. a)
  T.eq(again:url(), "rtu://" .. a .. "?baud=9600&parity=N&data=8&stop=1", "free after close")
end)

-- }=====

-- {===== modbus.shared and modbus.endpoint =====

T.test("endpoint: scheme, host and port, or the serial device; never the unit", function()
  T.eq(modbus.endpoint("tcp://127.0.0.1:1502?unit=3&timeout=1"), "tcp://127.0.0.1:1502")
  T.eq(modbus.endpoint("TCP://LocalHost"), "tcp://localhost:502")
  T.eq(modbus.endpoint("udp://10.0.0.1?unit=2"), "udp://10.0.0.1:502")
  T.eq(modbus.endpoint("rtu+tcp://gw:8899?unit=4"), "rtu+tcp://gw:8899")
  T.eq(modbus.endpoint("tcp://[FE80::1]:502"), "tcp://[fe80::1]:502")
  T.eq(modbus.endpoint("rtu:///dev/ttyUSB0?baud=19200&unit=2"), "rtu:///dev/ttyUSB0")
  local key, err = modbus.endpoint("tcp://")
  T.eq(key, nil)
  assert(err:find("missing host", 1, true), err)
  assert(not pcall(modbus.endpoint, 42), "a non-string raises")
end)

T.test("two units on one TCP server share one bus and one connection", function()
  local srv <close> = serve("tcp://127.0.0.1:0", { units = { 1, 2 } })
  srv:set(1, "holding", 0, { 11 })
  srv:set(2, "holding", 0, { 22 })
  local base = "tcp://127.0.0.1:" .. srv:port()
  local a = assert(modbus.shared(base .. "?unit=1"))
  local b = assert(modbus.shared(base .. "?unit=2&timeout=2"))
  T.eq(a, b, "one bus")
  T.eq(assert(a:read_holding(1, 0, 1))[1], 11)
  T.eq(assert(b:read_holding(2, 0, 1))[1], 22)
  T.eq(srv:stats().accepted, 1, "the server saw one connection")
  T.eq(a:stats().connects, 1)
  a:close()
end)

T.test("a bus the script opened itself is the one shared", function()
  local srv <close> = serve("tcp://127.0.0.1:0")
  local url = "tcp://127.0.0.1:" .. srv:port()
  local own <close> = assert(modbus.open(url .. "?unit=5"))
  T.eq(modbus.shared(url), own)
  local other <close> = assert(modbus.open(url))
  assert(other ~= own)
  T.eq(modbus.shared(url), own, "the first open bus stays the shared one")
end)

T.test("a closed bus is never returned: the next shared() opens a new one", function()
  local srv <close> = serve("tcp://127.0.0.1:0")
  srv:set(nil, "holding", 0, { 5 })
  local url = "tcp://127.0.0.1:" .. srv:port()
  local first = assert(modbus.shared(url))
  assert(first:read_holding(1, 0, 1))
  first:close()
  local second <close> = assert(modbus.shared(url))
  assert(second ~= first, "a new bus")
  T.eq(second:closed(), false)
  T.eq(assert(second:read_holding(1, 0, 1))[1], 5)
  T.eq(modbus.shared(url), second)
end)

T.test("two URLs naming one pty share one bus; other line settings conflict", function()
  local dir <close> = T.tmpdir()
  local a, b, _socat <close> = pty_pair(dir)
  local srv <close> = serve("rtu://" .. a, { units = { 1, 2 } })
  srv:set(1, "holding", 0, { 1 })
  srv:set(2, "holding", 0, { 2 })
  local meter <close> = assert(modbus.shared("rtu://" .. b .. "?unit=1"))
  local pv = assert(modbus.shared("rtu://" .. b .. "?baud=9600&parity=n&unit=2"))
  T.eq(pv, meter, "one line, one bus")
  T.eq(assert(meter:read_holding(1, 0, 1))[1], 1)
  T.eq(assert(pv:read_holding(2, 0, 1))[1], 2)
  local bus, err, code = modbus.shared("rtu://" .. b .. "?baud=19200&parity=E&unit=3")
  T.eq(bus, nil)
  T.eq(code, "conflict", err)
  assert(err:find("baud=9600&parity=N&data=8&stop=1", 1, true), "the settings in use: " .. err)
  assert(err:find("baud=19200&parity=E&data=8&stop=1", 1, true), "the settings asked for: " .. err)
  assert(err:find(b, 1, true), "the line: " .. err)
end)

-- }=====

-- {===== stray frames =====

-- A far side in Python on pty a: it answers function 3 (register n holds
-- 100 + n) and, after its first answers for registers 0 and 20, puts a
-- stray frame on the line (first one with a bad CRC, then a well-formed
-- one from unit 9) and touches a marker file for it. With a third
-- argument it also puts a stray frame on the line before anything else.
local FAR_SIDE = [[
import os, struct, sys, time, tty
fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY)
tty.setraw(fd)
def crc(b):
    c = 0xFFFF
    for x in b:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
    return struct.pack("<H", c)
if len(sys.argv) > 3:  # a stray frame on the line before the client opens it
    os.write(fd, bytes([1, 3, 2, 0xAB, 0xCD, 0, 0]))
    open(sys.argv[2] + "early", "w").close()
buf, n, done = b"", 0, set()
while n < 40:
    buf += os.read(fd, 256)
    while len(buf) >= 8:
        req, buf = buf[:8], buf[8:]
        unit, fc, addr, count = struct.unpack(">BBHH", req[:6])
        pdu = struct.pack(">BBB", unit, fc, 2 * count)
        pdu += b"".join(struct.pack(">H", 100 + addr + i) for i in range(count))
        os.write(fd, pdu + crc(pdu))
        n += 1
        stray = None
        if addr == 0 and addr not in done:
            stray = bytes([unit, 3, 2, 0xAB, 0xCD, 0, 0])
        elif addr == 20 and addr not in done:
            stray = bytes([9, 3, 2, 0x12, 0x34])
            stray += crc(stray)
        if stray:
            done.add(addr)
            time.sleep(0.05)
            os.write(fd, stray)
            open(sys.argv[2] + str(addr), "w").close()
]]

T.test("RTU: a stray frame fails at most the request it meets; the line is flushed after it", function()
  T.need("python3")
  local dir <close> = T.tmpdir()
  local a, b, _socat <close> = pty_pair(dir)
  local script, marker = dir.path .. "/far.py", dir.path .. "/stray"
  T.write_file(script, FAR_SIDE)
  local _far <close> = T.start(dir, "far", format("python3 %s %s %s", q(script), q(a), q(marker)))
  local bus <close> = assert(modbus.open("rtu://" .. b .. "?timeout=1"))
  local first
  T.wait_for(function()
    first = bus:read_holding(1, 0, 1)
    return first ~= nil
  end, 10, "the far side to answer")
  T.eq(first[1], 100, "first read")
  for _, case in ipairs({ { after = 0, code = "crc" }, { after = 20, code = "wrong_unit" } }) do
    T.wait_for(function()
      return os.execute("test -e " .. q(marker .. case.after)) == true
    end, 10, "the stray frame")
    md.sleep(0.1) -- through socat into the client's side
    local v, err, code = bus:read_holding(1, 5, 1)
    T.eq(v, nil, "the request that meets the stray frame fails")
    T.eq(code, case.code, err)
    -- the answer to that request came after the stray frame and was dropped
    local regs = assert(bus:read_holding(1, 10, 2))
    T.eq(regs[1], 110, "the next read is its own")
    T.eq(regs[2], 111, "the next read is its own")
    T.eq(assert(bus:read_holding(1, 20, 1))[1], 120, "and the one after")
  end
end)

T.test("RTU: what was on the line before the client opened it is flushed", function()
  T.need("python3")
  local dir <close> = T.tmpdir()
  local a, b, _socat <close> = pty_pair(dir)
  local script, marker = dir.path .. "/far.py", dir.path .. "/stray"
  T.write_file(script, FAR_SIDE)
  local _far <close> = T.start(dir, "far", format("python3 %s %s %s early", q(script), q(a), q(marker)))
  T.wait_for(function()
    return os.execute("test -e " .. q(marker .. "early")) == true
  end, 10, "the stray frame")
  md.sleep(0.1) -- through socat into the client's side, which keeps it until read
  local bus <close> = assert(modbus.open("rtu://" .. b .. "?timeout=1"))
  T.eq(assert(bus:read_holding(1, 3, 1))[1], 103, "the first read is its own")
end)

-- }=====
