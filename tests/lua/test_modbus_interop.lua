-- Interoperability with Modbus implementations we did not write:
--
-- * our client against python3-pymodbus 3.0.0rc1 (tests/data/pymodbus_server.py)
--   over tcp, udp, rtu+tcp, rtu+udp and rtu on a socat pty pair: every
--   function code pymodbus serves, exceptions, timeouts, a server restart;
-- * mbpoll (libmodbus) against our server, run as `moondog modbus serve`
--   in its own process (mbpoll runs through T.sh, which blocks this engine,
--   so an in-process server could not answer), over tcp and rtu on a pty;
-- * two buses in parallel, one of them dead: the live one keeps its pace.
--
-- Every helper process is started by its test on a free port (or a fresh
-- pty pair) and stopped by PID when the test ends, also when it fails.
-- Every wait is a bounded poll. Tests skip when a peer program is missing.
--
-- The pymodbus server holds holding[i] = 1000 + i, input[i] = 2000 + i,
-- coil[i] = (i % 3 == 0), discrete[i] = (i % 2 == 0) for i in 0..199,
-- float32 230.5 (ABCD) at holding 100, -1.25 (CDAB) at input 110, and
-- answers only unit 1 unless told otherwise.

local T = require "moondog.testing"
local modbus = require "moondog.modbus"

local PYTHON = "/usr/bin/python3" -- Debian's, which has pymodbus (not a pyenv one)
local format = string.format

local q, read_file = T.quote, T.read_file

local function need_pymodbus()
  local _, code = T.sh(PYTHON .. " -c 'import pymodbus' >/dev/null 2>&1")
  if code ~= 0 then T.skip("python3-pymodbus is not installed (" .. PYTHON .. ")") end
end

local function need_server()
  if type(modbus.serve) ~= "function" then T.skip("md.modbus.serve is not there yet") end
end

-- {===== helper processes =====

local tmpdir, start = T.tmpdir, T.start
local ptys = 0 -- numbers the pty pairs within a directory

-- A pymodbus server on `where` (a port, 0 for a free one, or a device).
-- Returns the process and the port (or device).
local function pymodbus(dir, transport, where, units)
  local p = start(dir, "pymodbus", format("%s %s/tests/data/pymodbus_server.py %s %s --units %s",
    PYTHON, q(md.paths.home), transport, q(where), units or "1"))
  local at = p:first_line():match("^ready (%S+)$")
  assert(at, "pymodbus server did not say 'ready ...'")
  return p, at
end

-- A socat pty pair DIR/a <-> DIR/b; returns the process and both paths.
local function pty_pair(dir)
  ptys = ptys + 1
  local a, b = format("%s/pty%d-a", dir.path, ptys), format("%s/pty%d-b", dir.path, ptys)
  local p = start(dir, "socat", format("socat pty,raw,echo=0,link=%s pty,raw,echo=0,link=%s", q(a), q(b)))
  T.wait_for(function()
    if not p:alive() then error("socat exited: " .. (read_file(p.err) or ""), 0) end
    return io.open(a) ~= nil and io.open(b) ~= nil
  end, 5, "socat's pty links")
  return p, a, b
end

-- `moondog modbus serve ARGS` in its own process; returns it and its URL.
local function moondog_serve(dir, args)
  local p = start(dir, "serve", format("%s modbus serve %s", q(md.paths.exe), args))
  local url = p:first_line()
  assert(url:match("^%a[%w+]*://"), "serve printed '" .. url .. "', expected its URL")
  return p, url
end

-- }=====

-- {===== our client against pymodbus =====

local function join(t)
  local out = {}
  for i, v in ipairs(t) do out[i] = tostring(v) end
  return table.concat(out, ",")
end

-- Every function code pymodbus serves, plus an exception and a timeout.
local function exercise(bus, url)
  local ok, err, code
  local regs = assert(bus:read_holding(1, 0, 3))
  T.eq(join(regs), "1000,1001,1002", "FC 3 at " .. url)
  regs = assert(bus:read_holding(1, 75, 125))
  T.eq(#regs, 125, "FC 3, 125 registers")
  T.eq(regs[125], 1199, "FC 3, last of 125")
  T.eq(join(assert(bus:read_input(1, 198, 2))), "2198,2199", "FC 4")
  T.eq(join(assert(bus:read_coils(1, 0, 7))), "true,false,false,true,false,false,true", "FC 1")
  local bits = assert(bus:read_discrete(1, 0, 200))
  T.eq(#bits, 200, "FC 2, 200 bits")
  T.eq(join({ bits[1], bits[2], bits[199], bits[200] }), "true,false,true,false", "FC 2 values")
  T.eq(bus:read_value(1, 100, "float32"), 230.5, "float32 ABCD")
  T.eq(bus:read_value(1, 110, "float32", { kind = "input", order = "CDAB" }), -1.25, "float32 CDAB")

  assert(bus:write_register(1, 5, 0xBEEF))
  T.eq(join(assert(bus:read_holding(1, 5, 1))), tostring(0xBEEF), "FC 6")
  assert(bus:write_registers(1, 6, { 1, 2, 3, 65535 }))
  T.eq(join(assert(bus:read_holding(1, 6, 4))), "1,2,3,65535", "FC 16")
  assert(bus:write_coil(1, 1, true))
  T.eq(join(assert(bus:read_coils(1, 0, 3))), "true,true,false", "FC 5")
  assert(bus:write_coils(1, 10, { true, true, false, true, false, false, false, false, true }))
  T.eq(join(assert(bus:read_coils(1, 10, 9))), "true,true,false,true,false,false,false,false,true", "FC 15")
  -- FC 22: (1020 AND 0xFF00) OR (0x0011 AND NOT 0xFF00) = 0x0311
  assert(bus:mask_write(1, 20, 0xFF00, 0x0011))
  T.eq(join(assert(bus:read_holding(1, 20, 1))), tostring(0x0311), "FC 22")
  -- FC 23: the write happens before the read
  T.eq(join(assert(bus:write_read(1, 30, { 9, 8 }, 29, 4))), "1029,9,8,1032", "FC 23")
  assert(bus:write_value(1, 40, -0.15625, "float32", { order = "CDAB" }))
  T.eq(bus:read_value(1, 40, "float32", { order = "CDAB" }), -0.15625, "float32 write CDAB")

  ok, err, code = bus:read_holding(1, 500, 2)
  T.eq(ok, nil, "read past the map")
  T.eq(code, "illegal_data_address", "exception code (" .. tostring(err) .. ")")
  ok, err, code = bus:write_registers(1, 199, { 1, 2 })
  T.eq(ok, nil, "write past the map")
  T.eq(code, "illegal_data_address", "write exception (" .. tostring(err) .. ")")
  ok, err, code = bus:read_holding(9, 0, 1, { timeout = 0.3 })
  T.eq(ok, nil, "absent unit")
  T.eq(code, "timeout", "absent unit times out (" .. tostring(err) .. ")")
  -- the link is in step again after a timeout
  T.eq(join(assert(bus:read_holding(1, 0, 2))), "1000,1001", "read after the timeout")

  local sid = assert(bus:report_server_id(1))
  assert(sid:find("^pymodbus%-test%-PMT%-3%.0%.0"), "FC 17: " .. sid)
  local info = assert(bus:read_device_info(1))
  T.eq(info.vendor_name, "pymodbus-test", "FC 43 vendor")
  T.eq(info.product_code, "PMT", "FC 43 product code")
  T.eq(info.revision, "3.0.0", "FC 43 revision")
end

for _, transport in ipairs({ "tcp", "udp", "rtu+tcp", "rtu+udp" }) do
  T.test("client against pymodbus over " .. transport .. ": every function code", function()
    need_pymodbus()
    local dir <close> = tmpdir()
    local _srv <close>, port = pymodbus(dir, transport, 0)
    local url = format("%s://127.0.0.1:%s", transport, port)
    local bus <close> = assert(modbus.open(url, { timeout = 1 }))
    exercise(bus, url)
  end, { timeout = 60 })
end

T.test("client against pymodbus over rtu on a pty: every function code", function()
  need_pymodbus()
  T.need("socat", "socat")
  local dir <close> = tmpdir()
  local _pty <close>, a, b = pty_pair(dir)
  local _srv <close> = pymodbus(dir, "rtu", a)
  local url = "rtu://" .. b .. "?baud=9600"
  local bus <close> = assert(modbus.open(url, { timeout = 1 }))
  exercise(bus, url)
end, { timeout = 60 })

for _, transport in ipairs({ "tcp", "rtu+tcp" }) do
  T.test("client reconnects after a pymodbus restart over " .. transport, function()
    need_pymodbus()
    local dir <close> = tmpdir()
    local srv, port = pymodbus(dir, transport, 0)
    local bus <close> = assert(modbus.open(format("%s://127.0.0.1:%s", transport, port), { timeout = 1 }))
    T.eq(join(assert(bus:read_holding(1, 0, 1))), "1000", "before the restart")
    srv:stop()
    local ok, err, code = bus:read_holding(1, 0, 1)
    T.eq(ok, nil, "read while the server is down")
    assert(code == "connection_lost" or code == "refused" or code == "connect",
      "a connection failure, got " .. tostring(code) .. ": " .. tostring(err))
    local _again <close> = pymodbus(dir, transport, port)
    local regs
    T.wait_for(function()
      regs = bus:read_holding(1, 0, 1)
      if not regs then md.sleep(0.1) end
      return regs ~= nil
    end, 15, "the bus to reconnect")
    T.eq(join(regs), "1000", "after the restart")
  end, { timeout = 60 })
end

-- }=====

-- {===== mbpoll against our server =====

local regs_file = table.concat({
  "# holding 0..4, float32 230.5 at holding 100 (ABCD), inputs, coils, discrete inputs",
  "0 11 22 33 44 65535",
  "100 17254 32768",
  "i0 7 8 9",
  "c0 1 0 1 1",
  "d0 0 1 0",
  "",
}, "\n")

-- Run mbpoll once; returns {[reference] = value text} and the raw output.
local function mbpoll(args)
  local out, code = T.sh("mbpoll -1 -0 -o 1 " .. args .. " 2>&1")
  if code ~= 0 then
    error(format("mbpoll %s failed (%d):\n%s", args, code, out), 2)
  end
  local values = {}
  for ref, v in out:gmatch("\n%[(%d+)%]:%s+(%S+)") do
    values[tonumber(ref)] = v
  end
  return values, out
end

local function values_text(values, first, n)
  local out = {}
  for i = first, first + n - 1 do out[#out + 1] = values[i] or "?" end
  return table.concat(out, ",")
end

-- Reads every table, writes registers and coils, reads them back with
-- mbpoll and with our client.
local function mbpoll_session(link, client_url)
  local v = mbpoll(link .. " -a 1 -t 4 -r 0 -c 5")
  T.eq(values_text(v, 0, 5), "11,22,33,44,65535", "holding registers")
  v = mbpoll(link .. " -a 1 -t 4:float -B -r 100 -c 1")
  T.eq(v[100], "230.5", "float32 (big-endian words)")
  v = mbpoll(link .. " -a 1 -t 3 -r 0 -c 3")
  T.eq(values_text(v, 0, 3), "7,8,9", "input registers")
  v = mbpoll(link .. " -a 1 -t 0 -r 0 -c 4")
  T.eq(values_text(v, 0, 4), "1,0,1,1", "coils")
  v = mbpoll(link .. " -a 1 -t 1 -r 0 -c 3")
  T.eq(values_text(v, 0, 3), "0,1,0", "discrete inputs")

  local _, out = mbpoll(link .. " -a 1 -t 4 -r 10 -- 101 202 303")
  assert(out:find("Written 3 references"), out)
  mbpoll(link .. " -a 1 -t 4 -r 20 -- 4242")
  mbpoll(link .. " -a 1 -t 0 -r 30 -- 1 0 1 1 0 1")
  mbpoll(link .. " -a 1 -t 0 -r 40 -- 1")
  v = mbpoll(link .. " -a 1 -t 4 -r 10 -c 3")
  T.eq(values_text(v, 10, 3), "101,202,303", "registers written, read back by mbpoll")

  local bus <close> = assert(modbus.open(client_url, { timeout = 1 }))
  T.eq(join(assert(bus:read_holding(1, 10, 3))), "101,202,303", "registers written by mbpoll")
  T.eq(join(assert(bus:read_holding(1, 20, 1))), "4242", "single register written by mbpoll")
  T.eq(join(assert(bus:read_coils(1, 30, 6))), "true,false,true,true,false,true", "coils written")
  T.eq(join(assert(bus:read_coils(1, 40, 1))), "true", "single coil written")
end

T.test("mbpoll against moondog modbus serve over tcp", function()
  need_server()
  T.need("mbpoll", "mbpoll")
  local dir <close> = tmpdir()
  local regs = dir.path .. "/regs.txt"
  local f = assert(io.open(regs, "w"))
  f:write(regs_file)
  f:close()
  local _srv <close>, url = moondog_serve(dir, "tcp://127.0.0.1:0 --regs " .. q(regs))
  local port = assert(url:match(":(%d+)$"))
  mbpoll_session("-m tcp -p " .. port .. " 127.0.0.1", url)
end, { timeout = 60 })

T.test("mbpoll against moondog modbus serve over rtu on a pty", function()
  need_server()
  T.need("mbpoll", "mbpoll")
  T.need("socat", "socat")
  local dir <close> = tmpdir()
  local regs = dir.path .. "/regs.txt"
  local f = assert(io.open(regs, "w"))
  f:write(regs_file)
  f:close()
  local _pty <close>, a, b = pty_pair(dir)
  local _srv <close> = moondog_serve(dir, format("'rtu://%s?baud=9600' --unit 1 --regs %s", a, q(regs)))
  local link = format("-m rtu -b 9600 -P none %s", q(b))
  mbpoll_session(link, "rtu://" .. b .. "?baud=9600")
  -- another unit id on the line: our server keeps quiet, mbpoll times out
  local out, code = T.sh(format("mbpoll -1 -0 -o 0.3 %s -a 2 -t 4 -r 0 -c 1 2>&1", link))
  assert(code ~= 0 or out:find("timed out"), "unit 2 must not answer:\n" .. out)
end, { timeout = 60 })

-- }=====

-- {===== a dead bus does not slow a live one =====

-- A TCP server that accepts connections and never answers.
local dead_server = [[
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(16)
print("ready", s.getsockname()[1], flush=True)
held = []
while True:
    held.append(s.accept()[0])
]]

T.test("two buses in parallel: a dead one does not slow the live one", function()
  need_pymodbus()
  local dir <close> = tmpdir()
  local script = dir.path .. "/dead.py"
  local f = assert(io.open(script, "w"))
  f:write(dead_server)
  f:close()
  local _dead_srv <close> = start(dir, "dead", PYTHON .. " " .. q(script))
  local dead_port = assert(_dead_srv:first_line():match("^ready (%d+)$"))
  local _live_srv <close>, live_port = pymodbus(dir, "tcp", 0)
  local live <close> = assert(modbus.open("tcp://127.0.0.1:" .. live_port, { timeout = 1 }))
  local dead <close> = assert(modbus.open("tcp://127.0.0.1:" .. dead_port, { timeout = 1 }))
  assert(live:read_holding(1, 0, 10)) -- connected and warm

  -- Reads the live bus completes while `busy` is true (bounded count).
  local function live_reads(busy)
    local n = 0
    while busy() and n < 1000000 do
      assert(live:read_holding(1, 0, 10))
      n = n + 1
    end
    return n
  end

  -- Baseline: the live bus alone during one 1 s sleep.
  local sleeping = true
  local sleeper = md.spawn(function() md.sleep(1); sleeping = false end)
  local alone = live_reads(function() return sleeping end)
  sleeper:join()

  -- The same while the dead bus waits out its 1 s timeout, three times over.
  local dead_codes, dead_done = {}, false
  local waiter = md.spawn(function()
    for i = 1, 3 do
      local _, _, code = dead:read_holding(1, 0, 10)
      dead_codes[i] = code
    end
    dead_done = true
  end)
  local beside = live_reads(function() return not dead_done end)
  waiter:join()
  T.eq(table.concat(dead_codes, ","), "timeout,timeout,timeout", "the dead bus's reads")
  assert(alone >= 20, format("the live bus completed only %d reads alone in 1 s", alone))
  -- Three timeouts last about 3 s: at the same pace, about 3 * alone reads.
  -- Half that pace still passes, for noisy machines; a live bus held up
  -- behind the dead one would manage about none.
  assert(beside >= 1.5 * alone, format("the live bus completed %d reads during the dead bus's "
    .. "three 1 s timeouts; alone it completes %d in 1 s", beside, alone))
  T.eq(live:stats().failed, 0, "failures on the live bus")
end, { timeout = 60 })

-- }=====
