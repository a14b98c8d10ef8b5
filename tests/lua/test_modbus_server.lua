-- moondog.modbus.server: our client (md.modbus.open) against our server on
-- every transport, hooks, exceptions, many clients, strict maps, files.
--
-- Raw byte exchanges (pipelining, malformed frames, a client that hangs
-- up mid-request) go through socat started in the background by the shell
-- (a blocking io.popen would stall the engine that has to answer), with
-- its output in files that the tests poll with T.wait_for. RTU on a serial
-- line uses a socat pty pair. Every server and bus is closed at the end of
-- its test; the harness checks that no watch, timer or task is left.
local T = require "moondog.testing"
local md = require "moondog"

local modbus = md.modbus
local codec = modbus.codec

-- {===== helpers =====

local read_file, write_file = T.read_file, T.write_file

-- A fresh directory: its path, and a handle that removes it when closed.
local function tmpdir()
  local d = T.tmpdir()
  return d.path, d
end

local function serve(url, opts)
  local srv, err, code = modbus.serve(url, opts)
  assert(srv, tostring(err) .. " (" .. tostring(code) .. ")")
  return srv
end

local function open(url, opts)
  return assert(modbus.open(url, opts))
end

local function join(t) return table.concat(t, ",") end

-- Check a failed call: nil, message, code with the expected code.
local function fails(want, what, v, err, code)
  T.eq(v, nil, what)
  T.eq(code, want, what .. " (" .. tostring(err) .. ")")
end

local function bools(t)
  local out = {}
  for i, v in ipairs(t) do out[i] = v and "1" or "0" end
  return table.concat(out)
end

-- MBAP request ADU: tid, unit, PDU.
local function mbap(tid, unit, pdu)
  return string.pack(">I2I2I2B", tid, 0, #pdu + 1, unit) .. pdu
end

-- RTU frame: unit, PDU, CRC low byte first.
local function rtu(unit, pdu)
  local body = string.char(unit) .. pdu
  return body .. string.pack("<I2", codec.crc16(body))
end

-- Send bytes to a TCP port with socat in the background and return what
-- came back once socat exits (the server closes after answering a peer
-- that finished sending). linger: seconds socat waits after its input ends.
local seq = 0
local function exchange(dir, port, bytes, linger)
  seq = seq + 1
  local base = string.format("%s/x%d", dir, seq)
  write_file(base .. ".in", bytes)
  assert(os.execute(string.format(
    "(socat -t %s - TCP:127.0.0.1:%d < %s.in > %s.out 2>/dev/null; touch %s.done) >/dev/null 2>&1 &",
    linger or 2, port, base, base, base)))
  T.wait_for(function() return read_file(base .. ".done") ~= nil end, 10, "socat to finish")
  return read_file(base .. ".out")
end

-- A socat pty pair: server side a, client side b. Returns a, b and a
-- to-be-closed handle that kills socat.
local function pty_pair(dir)
  local a, b, pidfile = dir .. "/pty_a", dir .. "/pty_b", dir .. "/socat.pid"
  assert(os.execute(string.format(
    "socat pty,raw,echo=0,link=%s pty,raw,echo=0,link=%s >/dev/null 2>&1 & echo $! > %s",
    a, b, pidfile)))
  T.wait_for(function()
    return os.execute("test -e " .. a .. " -a -e " .. b) == true
  end, 5, "socat to create the pty pair")
  local pid = assert(tonumber(read_file(pidfile):match("%d+")))
  return a, b, setmetatable({}, {
    __close = function() os.execute("kill " .. pid .. " 2>/dev/null") end,
  })
end

-- Every function code once: set on the server, check through the client,
-- and the other way round.
local function exercise(srv, bus, unit)
  local su = unit
  srv:set(su, "holding", 40000, { 1, 2, 65535, -32768 })
  T.eq(join(assert(bus:read_holding(unit, 40000, 4))), "1,2,65535,32768", "FC 3")
  srv:set(su, "input", 30000, { 7, 8 })
  T.eq(join(assert(bus:read_input(unit, 30000, 2))), "7,8", "FC 4")
  srv:set(su, "coil", 10, { true, false, true })
  T.eq(bools(assert(bus:read_coils(unit, 10, 3))), "101", "FC 1")
  srv:set(su, "discrete", 20, { 1, 1, 0, 1 })
  T.eq(bools(assert(bus:read_discrete(unit, 20, 4))), "1101", "FC 2")
  assert(bus:write_coil(unit, 11, true))
  T.eq(bools(srv:get(su, "coil", 10, 3)), "111", "FC 5")
  assert(bus:write_register(unit, 100, -2))
  T.eq(srv:get(su, "holding", 100)[1], 65534, "FC 6")
  assert(bus:write_coils(unit, 200, { true, true, false, true, false, false, false, false, true }))
  T.eq(bools(srv:get(su, "coil", 200, 9)), "110100001", "FC 15")
  assert(bus:write_registers(unit, 300, { 10, 20, 30 }))
  T.eq(join(srv:get(su, "holding", 300, 3)), "10,20,30", "FC 16")
  srv:set(su, "holding", 400, { 0x12 })
  assert(bus:mask_write(unit, 400, 0xF2, 0x25))
  T.eq(srv:get(su, "holding", 400)[1], 0x17, "FC 22 (the spec's example)")
  T.eq(join(assert(bus:write_read(unit, 500, { 5, 6 }, 499, 4))), "0,5,6,0", "FC 23")
  T.eq(assert(bus:report_server_id(unit)), "moondog\xff", "FC 17")
  local info = assert(bus:read_device_info(unit, 2))
  T.eq(info.vendor_name, "ACME", "FC 43 vendor")
  T.eq(info.product_code, "M-1", "FC 43 product code")
  T.eq(info.model_name, "meter", "FC 43 model (regular)")
  local one = assert(bus:read_device_id(unit, 4, 5))
  T.eq(one.objects[5], "meter", "FC 43 individual access")
  fails("illegal_data_address", "absent object", bus:read_device_id(unit, 4, 0x42))
end

local device_id = { vendor_name = "ACME", product_code = "M-1", revision = "2.1", model_name = "meter" }

-- }=====

-- {===== transports =====

T.test("tcp: every function code", function()
  local srv <close> = serve("tcp://127.0.0.1:0", { device_id = device_id })
  assert(srv:port() > 0)
  T.eq(srv:url(), "tcp://127.0.0.1:" .. srv:port())
  local bus <close> = open(srv:url())
  exercise(srv, bus, 1)
  exercise(srv, bus, 255) -- the shared map answers every id on tcp
  local s = srv:stats()
  T.eq(s.requests, 28, "requests counted")
  T.eq(s.clients, 1, "one connection")
end)

T.test("udp: every function code", function()
  local srv <close> = serve("udp://127.0.0.1:0", { device_id = device_id })
  T.eq(srv:url(), "udp://127.0.0.1:" .. srv:port())
  local bus <close> = open(srv:url())
  exercise(srv, bus, 1)
end)

T.test("rtu+tcp: every function code", function()
  local srv <close> = serve("rtu+tcp://127.0.0.1:0", { device_id = device_id })
  local bus <close> = open(srv:url())
  exercise(srv, bus, 1)
  exercise(srv, bus, 247)
end)

T.test("rtu+udp: every function code", function()
  local srv <close> = serve("rtu+udp://127.0.0.1:0", { device_id = device_id })
  local bus <close> = open(srv:url())
  exercise(srv, bus, 1)
end)

T.test("rtu on a pty: every function code, unit filtering, broadcast", function()
  local dir, _d <close> = tmpdir()
  local a, b, _s <close> = pty_pair(dir)
  local srv <close> = serve("rtu://" .. a .. "?baud=19200&parity=E",
    { units = { 1, 2 }, device_id = device_id })
  T.eq(srv:port(), nil, "no port on a serial line")
  T.eq(srv:url(), "rtu://" .. a .. "?baud=19200&parity=E&data=8&stop=1")
  local bus <close> = open("rtu://" .. b .. "?baud=19200&parity=E")
  exercise(srv, bus, 1)
  exercise(srv, bus, 2)
  -- unit 3 is another device on the bus: no answer at all
  fails("timeout", "unserved unit", bus:read_holding(3, 0, 1, { timeout = 0.3 }))
  -- broadcast: every unit applies it, nobody answers, the client does not wait
  T.eq(bus:write_register(0, 700, 4242), true, "broadcast write")
  local ok, err = pcall(bus.read_holding, bus, 0, 700, 1)
  assert(not ok and err:find("broadcast address"), err)
  T.wait_for(function()
    return srv:get(1, "holding", 700)[1] == 4242 and srv:get(2, "holding", 700)[1] == 4242
  end, 2, "the broadcast write")
  T.eq(join(assert(bus:read_holding(1, 700, 1))), "4242", "still in sync after the broadcast")
end)

T.test("rtu on a pty: garbage on the line is skipped, the next frame answered", function()
  local dir, _d <close> = tmpdir()
  local a, b, _s <close> = pty_pair(dir)
  local srv <close> = serve("rtu://" .. a)
  srv:set(nil, "holding", 0, { 99 })
  local bus <close> = open("rtu://" .. b)
  T.eq(join(assert(bus:read_holding(1, 0, 1))), "99")
  -- a frame with a bad CRC and stray bytes, written to the client side
  assert(os.execute("printf '\\001\\003\\000\\000\\000\\001\\000\\000\\377\\376' > " .. b))
  T.wait_for(function() return srv:stats().bad_frames > 0 end, 2, "bad frame counted")
  T.eq(join(assert(bus:read_holding(1, 0, 1))), "99", "resynchronised")
end)

-- }=====

-- {===== raw frames =====

T.test("tcp: pipelined requests are answered in order", function()
  local dir, _d <close> = tmpdir()
  local srv <close> = serve("tcp://127.0.0.1:0")
  srv:set(nil, "holding", 10, { 111 })
  local req = mbap(1, 1, "\3\0\10\0\1") .. mbap(2, 1, "\6\0\10\0\222") .. mbap(3, 1, "\3\0\10\0\1")
  local out = exchange(dir, srv:port(), req)
  T.eq(out, mbap(1, 1, "\3\2\0\111") .. mbap(2, 1, "\6\0\10\0\222") .. mbap(3, 1, "\3\2\0\222"),
    "three responses in request order")
end)

T.test("exceptions: illegal function, bad values and quantities, unknown unit", function()
  local dir, _d <close> = tmpdir()
  local srv <close> = serve("tcp://127.0.0.1:0", { units = { 1 } })
  local cases = {
    { "\7", "\135\1", "FC 7: illegal function" },
    { "\5\0\1\18\52", "\133\3", "coil value not FF00/0000" },
    { "\3\0\0\0\0", "\131\3", "read count 0" },
    { "\3\0\0\0\126", "\131\3", "read count 126" },
    { "\1\0\0\7\209", "\129\3", "2001 coils" },
    { "\3\255\255\0\2", "\131\2", "range past 65535" },
    { "\16\0\0\0\2\3\0\1\0", "\144\3", "byte count does not match" },
    { "\43\13\1\0", "\171\1", "MEI type 13" },
    { "\43\14\5\0", "\171\3", "read device id code 5" },
    { "\3\0\0\0\1\0", "\131\3", "trailing byte" },
  }
  local req, want = {}, {}
  for i, c in ipairs(cases) do
    req[#req + 1] = mbap(i, 1, c[1])
    want[#want + 1] = mbap(i, 1, c[2])
  end
  req[#req + 1] = mbap(99, 9, "\3\0\0\0\1") -- no such unit: gateway-style 0x0B
  want[#want + 1] = mbap(99, 9, "\131\11")
  local out = exchange(dir, srv:port(), table.concat(req))
  for i = 1, #want do
    local got = out:sub(1, #want[i])
    T.eq(got, want[i], cases[i] and cases[i][3] or "unknown unit")
    out = out:sub(#want[i] + 1)
  end
  T.eq(out, "", "nothing more")
  T.eq(srv:stats().exceptions, #want, "exceptions counted")
end)

T.test("a malformed MBAP header closes only that connection", function()
  local dir, _d <close> = tmpdir()
  local srv <close> = serve("tcp://127.0.0.1:0")
  local bus <close> = open(srv:url())
  assert(bus:read_holding(1, 0, 1))
  local out = exchange(dir, srv:port(), "\0\1\0\9\0\6\1\3\0\0\0\1", 5) -- protocol id 9
  T.eq(out, "", "closed without an answer")
  local s = srv:stats()
  T.eq(s.bad_frames, 1, "counted")
  T.eq(s.dropped, 1, "dropped")
  assert(bus:read_holding(1, 0, 1), "the other client goes on")
end)

T.test("rtu+tcp: garbage before a frame is skipped, unknown function codes answered", function()
  local dir, _d <close> = tmpdir()
  local srv <close> = serve("rtu+tcp://127.0.0.1:0", { units = { 1 } })
  srv:set(1, "holding", 5, { 0x1234 })
  local req = "\0\255\1" .. rtu(1, "\3\0\5\0\1") .. rtu(2, "\3\0\5\0\1") .. rtu(1, "\8\0\0\18\52")
  local out = exchange(dir, srv:port(), req)
  T.eq(out, rtu(1, "\3\2\18\52") .. rtu(1, "\136\1"), "unit 2 ignored, FC 8 illegal")
  assert(srv:stats().bad_frames >= 1)
end)

T.test("a client that hangs up mid-request does not disturb the server", function()
  local dir, _d <close> = tmpdir()
  local srv <close> = serve("tcp://127.0.0.1:0", {
    on_read = function(_, _, addr) if addr == 1 then md.sleep(0.2) end end,
  })
  local bus <close> = open(srv:url())
  -- half a header, then gone; a whole request, gone before the (slow) answer
  exchange(dir, srv:port(), "\0\1\0", 0)
  exchange(dir, srv:port(), mbap(1, 1, "\3\0\1\0\1"), 0)
  T.wait_for(function() return srv:stats().clients == 1 end, 3, "both hang-ups noticed")
  md.sleep(0.3) -- the slow answer goes nowhere
  T.eq(join(assert(bus:read_holding(1, 0, 2))), "0,0", "the other client is served")
  T.eq(srv:stats().clients, 1)
end)

T.test("a client that sends but never reads is dropped, the others go on", function()
  local dir, _d <close> = tmpdir()
  local srv <close> = serve("tcp://127.0.0.1:0")
  local bus <close> = open(srv:url())
  -- 100000 reads of 125 registers: 26 MB of answers, more than the socket
  -- buffers and the server's 64 KiB queue hold; socat -u never reads, and
  -- its input stays open so that it does not hang up first
  write_file(dir .. "/flood", string.rep(mbap(1, 1, "\3\0\0\0\125"), 100000))
  assert(os.execute(string.format(
    "(cat %s/flood; sleep 5) | socat -u - TCP:127.0.0.1:%d >/dev/null 2>&1 & echo $! > %s/pid",
    dir, srv:port(), dir)))
  local pid = assert(tonumber(read_file(dir .. "/pid"):match("%d+")))
  local _k <close> = setmetatable({}, {
    __close = function() os.execute("kill " .. pid .. " 2>/dev/null") end,
  })
  T.wait_for(function() return srv:stats().dropped == 1 end, 10, "the flooding client dropped")
  assert(bus:read_holding(1, 0, 1), "the other client goes on")
  T.wait_for(function() return srv:stats().clients == 1 end, 5, "only the good client left")
end)

-- }=====

-- {===== hooks =====

T.test("on_read computes values before the reply", function()
  local n = 0
  local srv
  srv = serve("tcp://127.0.0.1:0", {
    on_read = function(unit, kind, addr, count, s)
      assert(s == srv)
      T.eq(kind, "input")
      n = n + 1
      srv:set(unit, kind, addr, { n * 100, count })
    end,
  })
  local _c <close> = srv
  local bus <close> = open(srv:url())
  T.eq(join(assert(bus:read_input(1, 50, 2))), "100,2")
  T.eq(join(assert(bus:read_input(7, 50, 2))), "200,2")
  T.eq(n, 2)
end)

T.test("on_write refuses with an exception or accepts", function()
  local seen = {}
  local srv <close> = serve("tcp://127.0.0.1:0", {
    on_write = function(unit, kind, addr, values)
      local text = {}
      for i, x in ipairs(values) do text[i] = tostring(x) end
      seen[#seen + 1] = string.format("%d %s %d %s", unit, kind, addr, join(text))
      if addr == 10 then return "illegal_data_value" end
      if addr == 11 then return 6 end
    end,
  })
  local bus <close> = open(srv:url())
  fails("illegal_data_value", "refused by name", bus:write_register(1, 10, 5))
  fails("server_device_busy", "refused by number", bus:write_registers(1, 11, { 1, 2 }))
  T.eq(srv:get(nil, "holding", 10)[1], 0, "refused write not applied")
  assert(bus:write_registers(1, 20, { 3, 4 }))
  T.eq(join(srv:get(nil, "holding", 20, 2)), "3,4", "accepted")
  assert(bus:write_coil(2, 3, true))
  srv:set(nil, "holding", 30, { 0x12 })
  assert(bus:mask_write(1, 30, 0xF2, 0x25))
  T.eq(table.concat(seen, "; "),
    "1 holding 10 5; 1 holding 11 1,2; 1 holding 20 3,4; 2 coil 3 true; 1 holding 30 23")
  local rv = bus:read_holding(1, 20, 2)
  T.eq(join(rv), "3,4", "reads need no hook")
end)

T.test("a hook that raises answers exception 4 and the server goes on", function()
  local srv <close> = serve("udp://127.0.0.1:0", {
    on_read = function(_, _, addr)
      if addr == 13 then error("simulated failure") end
      if addr == 14 then return "no such exception" end
    end,
  })
  local bus <close> = open(srv:url())
  fails("server_device_failure", "the hook raised", bus:read_holding(1, 13, 1))
  fails("server_device_failure", "a bad return value is a hook failure too",
    bus:read_holding(1, 14, 1))
  assert(bus:read_holding(1, 15, 1))
end)

T.test("a slow hook times the client out while other connections are served", function()
  local srv <close> = serve("tcp://127.0.0.1:0", {
    on_read = function(_, _, addr) if addr == 999 then md.sleep(1) end end,
  })
  local slow <close> = open(srv:url())
  local fast <close> = open(srv:url())
  local t = md.spawn(function() return slow:read_holding(1, 999, 1, { timeout = 0.3 }) end)
  md.sleep(0.05)
  local t0 = md.now()
  for _ = 1, 10 do assert(fast:read_holding(1, 1, 1)) end
  assert(md.now() - t0 < 0.3, "the fast connection waited for the slow hook")
  fails("timeout", "the slow client", t:join())
end)

T.test("hooks on rtu keep the line in order; close ends the hook tasks", function()
  local order = {}
  local srv = serve("rtu+tcp://127.0.0.1:0", {
    on_read = function(_, _, addr) md.sleep(0.01 * (5 - addr)); order[#order + 1] = addr end,
  })
  local bus <close> = open(srv:url())
  for addr = 1, 4 do assert(bus:read_holding(1, addr, 1)) end
  T.eq(join(order), "1,2,3,4")
  -- a request stuck in its hook when the server closes
  local never = serve("tcp://127.0.0.1:0", { on_read = function() md.sleep(10) end })
  local nbus <close> = open(never:url())
  local t = md.spawn(function() return nbus:read_holding(1, 0, 1, { timeout = 0.5 }) end)
  md.sleep(0.1)
  never:close()
  never:close() -- idempotent
  srv:close()
  local v = t:join()
  T.eq(v, nil, "no answer from a closed server")
end)

-- }=====

-- {===== many clients, restart =====

T.test("20 clients doing 50 reads each at once", function()
  local srv <close> = serve("tcp://127.0.0.1:0")
  for i = 0, 99 do srv:set(nil, "holding", i, { i * 3 }) end
  local buses, tasks = {}, {}
  for c = 1, 20 do
    buses[c] = open(srv:url())
    tasks[c] = md.spawn(function()
      for i = 1, 50 do
        local addr = (c * 7 + i) % 98
        local regs = assert(buses[c]:read_holding(1, addr, 2))
        T.eq(join(regs), (addr * 3) .. "," .. ((addr + 1) * 3))
      end
      return true
    end)
  end
  for c = 1, 20 do assert(tasks[c]:join(), "client " .. c) end
  T.eq(srv:stats().clients, 20)
  T.eq(srv:stats().requests, 1000)
  for c = 1, 20 do buses[c]:close() end
  T.wait_for(function() return srv:stats().clients == 0 end, 5, "clients to go")
end)

T.test("many clients with a hook stay in order per connection", function()
  local srv <close> = serve("tcp://127.0.0.1:0", {
    on_write = function() if math.random() < 0.5 then md.sleep(0.001) end end,
  })
  local tasks = {}
  for c = 1, 10 do
    tasks[c] = md.spawn(function()
      local bus <close> = open(srv:url())
      for i = 1, 20 do
        assert(bus:write_register(1, c, i))
        T.eq(bus:read_holding(1, c, 1)[1], i)
      end
      return true
    end)
  end
  for c = 1, 10 do assert(tasks[c]:join()) end
end)

T.test("server restart: the same bus reconnects", function()
  local srv = serve("tcp://127.0.0.1:0")
  local port = srv:port()
  srv:set(nil, "holding", 0, { 1 })
  local bus <close> = open(srv:url(), { timeout = 0.5 })
  T.eq(bus:read_holding(1, 0, 1)[1], 1)
  srv:close()
  local v, _, code = bus:read_holding(1, 0, 1)
  T.eq(v, nil, "server gone")
  assert(code == "connection_lost" or code == "refused", code)
  local again <close> = serve("tcp://127.0.0.1:" .. port)
  again:set(nil, "holding", 0, { 2 })
  local regs
  T.wait_for(function()
    regs = bus:read_holding(1, 0, 1)
    return regs ~= nil
  end, 5, "the bus to reconnect")
  T.eq(regs[1], 2)
end)

-- }=====

-- {===== maps, files, errors =====

T.test("strict maps: only addresses that were set exist", function()
  local srv <close> = serve("tcp://127.0.0.1:0", { strict = true, units = { 1, 2 } })
  srv:set(1, "holding", 40000, { 1, 2, 3 })
  srv:set(1, "coil", 5, { true })
  local bus <close> = open(srv:url())
  T.eq(join(assert(bus:read_holding(1, 40000, 3))), "1,2,3")
  fails("illegal_data_address", "one address too many", bus:read_holding(1, 40000, 4))
  fails("illegal_data_address", "unit 2 has its own map", bus:read_holding(2, 40000, 1))
  fails("illegal_data_address", "write outside", bus:write_register(1, 39999, 1))
  assert(bus:write_register(1, 40002, 9))
  fails("illegal_data_address", "FC 23 with its read outside",
    bus:write_read(1, 40000, { 1 }, 50000, 1))
  T.eq(srv:get(1, "holding", 40000)[1], 1, "and its write not applied")
  assert(bus:write_coil(1, 5, false))
  fails("illegal_data_address", "coil outside", bus:write_coil(1, 6, false))
end)

T.test("strict maps with on_read: the hook may create addresses", function()
  local srv <close> = serve("tcp://127.0.0.1:0", {
    strict = true,
    on_read = function(unit, kind, addr, count, s)
      if addr == 100 then s:set(unit, kind, addr, { 7, 8, 9 }) end
      T.eq(count, count)
    end,
    on_write = function() error("never called for missing addresses") end,
  })
  local bus <close> = open(srv:url())
  fails("illegal_data_address", "not created by the hook", bus:read_holding(1, 99, 1))
  T.eq(join(assert(bus:read_holding(1, 100, 3))), "7,8,9")
  fails("illegal_data_address", "refused before on_write", bus:write_register(1, 5, 1))
end)

T.test("device identification larger than one response: more follows", function()
  local long = string.rep("x", 100)
  local srv <close> = serve("tcp://127.0.0.1:0", {
    device_id = { vendor_name = long .. "V", product_code = long .. "P", revision = long .. "R",
                  [0x80] = "extended" },
    server_id = "SIM\0",
  })
  local bus <close> = open(srv:url())
  local first = assert(bus:read_device_id(1, 1, 0))
  T.eq(first.more, true, "more follows")
  T.eq(first.next_object, 2)
  T.eq(first.conformity, 0x83, "extended + individual")
  local info = assert(bus:read_device_info(1, 1))
  T.eq(info.vendor_name, long .. "V")
  T.eq(info.revision, long .. "R")
  local ext = assert(bus:read_device_info(1, 3))
  T.eq(ext.objects[0x80], "extended")
  local restart = assert(bus:read_device_id(1, 1, 9))
  assert(restart.objects[0], "an unknown start object restarts at 0")
  T.eq(assert(bus:report_server_id(1)), "SIM\0")
end)

T.test("typed values and load()", function()
  local dir, _d <close> = tmpdir()
  local srv <close> = serve("tcp://127.0.0.1:0", { units = { 3 } })
  srv:set_value(3, "holding", 100, 230.5, "float32")
  srv:set_value(3, "input", 200, -5, "int32", "CDAB")
  srv:set_value(3, "holding", 300, "SN-42", "string", nil, 4)
  T.eq(srv:get_value(3, "holding", 100, "float32"), 230.5)
  T.eq(srv:get_value(3, "input", 200, "int32", "CDAB"), -5)
  T.eq(srv:get_value(3, "holding", 300, "string", "ABCD", 4), "SN-42")
  local bus <close> = open(srv:url())
  T.eq(assert(bus:read_value(3, 100, "float32")), 230.5)
  T.eq(assert(bus:read_value(3, 200, "int32", { kind = "input", order = "CDAB" })), -5)

  local good = dir .. "/good.regs"
  write_file(good, "# meter\n40001 123\nh40002 0x10 -1   # two values\n\ni5 7\nC3 1\nd9 true\n")
  assert(srv:load(3, good))
  T.eq(join(srv:get(3, "holding", 40001, 2)), "123,16")
  T.eq(srv:get(3, "holding", 40003)[1], 65535)
  T.eq(srv:get(3, "input", 5)[1], 7)
  T.eq(srv:get(3, "coil", 3)[1], true)
  T.eq(srv:get(3, "discrete", 9)[1], true)
  local bad = dir .. "/bad.regs"
  write_file(bad, "h10 1\n\nh11 one\n")
  local ok, err, code = srv:load(3, bad)
  T.eq(ok, nil)
  T.eq(code, "syntax")
  assert(err:find("bad.regs:3:", 1, true), err)
  T.eq(srv:get(3, "holding", 10)[1], 0, "nothing of a bad file applies")
  ok, err, code = srv:load(3, dir .. "/missing")
  T.eq(ok, nil, err)
  T.eq(code, "io")
  write_file(bad, "c1 2\n")
  ok, err = srv:load(3, bad)
  assert(not ok and err:find(":1:", 1, true), err)
  write_file(bad, "70000 1\n")
  ok, err = srv:load(3, bad)
  assert(not ok and err:find("outside", 1, true), err)
end)

T.test("errors: bad URLs, ports in use, missing devices, misuse", function()
  fails("bad_address", "port out of range", modbus.serve("tcp://127.0.0.1:99999"))
  fails("bad_address", "unknown scheme", modbus.serve("tpc://127.0.0.1:0"))
  local srv <close> = serve("tcp://127.0.0.1:0")
  fails("in_use", "tcp port taken", modbus.serve("tcp://127.0.0.1:" .. srv:port()))
  local u <close> = serve("udp://127.0.0.1:0")
  fails("in_use", "udp port taken", modbus.serve("udp://127.0.0.1:" .. u:port()))
  fails("no_device", "no such device", modbus.serve("rtu:///dev/does-not-exist"))
  fails("no_device", "not a tty", modbus.serve("rtu:///dev/null"))
  fails("bad_address", "odd baud rate", modbus.serve("rtu:///dev/null?baud=12345"))
  local function raises(fn, pattern)
    local ok, e = pcall(fn)
    assert(not ok, "expected an error matching " .. pattern)
    assert(tostring(e):find(pattern, 1, true), e)
  end
  raises(function() modbus.serve(502) end, "address string")
  raises(function() modbus.serve("tcp://127.0.0.1:0", { units = { 0 } }) end, "broadcast")
  raises(function() modbus.serve("tcp://127.0.0.1:0", { on_read = 1 }) end, "on_read")
  raises(function() modbus.serve("tcp://127.0.0.1:0", { device_id = { vendor = "x" } }) end,
    "unknown device_id field 'vendor'")
  raises(function() srv:set(nil, "registers", 0, { 1 }) end, "unknown kind 'registers'")
  raises(function() srv:set(nil, "holding", 65536, { 1 }) end, "outside 0..65535")
  raises(function() srv:set(nil, "holding", 65535, { 1, 2 }) end, "go past 65535")
  raises(function() srv:set(nil, "holding", 0, { 70000 }) end, "-32768..65535")
  raises(function() srv:set(nil, "coil", 0, { 2 }) end, "boolean")
  raises(function() srv:set_value(nil, "coil", 0, 1, "int16") end, "holding")
  local units <close> = serve("tcp://127.0.0.1:0", { units = { 1, 5 } })
  raises(function() units:set(4, "holding", 0, { 1 }) end, "unit 4 is not served here (units: 1, 5)")
  raises(function() units:get(nil, "holding", 0) end, "unit id expected")
  units:close()
  raises(function() units:set(1, "holding", 0, { 1 }) end, "closed")
  T.eq(units:stats().clients, 0, "stats after close")
end)

-- }=====
