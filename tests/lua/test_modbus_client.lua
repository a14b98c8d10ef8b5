-- The Modbus client against a fake device (tests/data/fake_modbus.py) that
-- injects faults at magic addresses: every error the client tells apart,
-- over every socket transport, plus queueing, priorities and statistics.
local T = require "moondog.testing"
local md = require "moondog"
local modbus = md.modbus

local python = "/usr/bin/python3"
local fake_script = md.paths.home .. "/tests/data/fake_modbus.py"

local function have_python()
  local f = io.open(python, "r")
  if f then f:close() end
  return f ~= nil
end

-- Start the fake; returns {port=, pid=, stop=function}. opts.log: request log path.
local function start_fake(transport, framing, log)
  if not have_python() then
    T.skip("no /usr/bin/python3")
  end
  -- exec: no shell stays around to report the kill at the end
  local cmd = string.format("exec sh -c 'echo $$; exec %s %s %s %s %s'", python, fake_script,
    transport, framing, log and ("--log " .. log) or "")
  local p = assert(io.popen(cmd, "r"))
  local pid = tonumber(p:read("l"))
  local port = tonumber((p:read("l") or ""):match("^PORT (%d+)"))
  assert(pid and port, "the fake did not start")
  return {
    port = port,
    stop = function()
      os.execute("kill " .. pid .. " 2>/dev/null")
      p:close()
    end,
  }
end

local function with_fake(scheme, fn)
  local transport = scheme:match("udp") and "udp" or "tcp"
  local framing = scheme:match("^rtu") and "rtu" or "mbap"
  local fake = start_fake(transport, framing)
  local bus = assert(modbus.open(string.format("%s://127.0.0.1:%d?timeout=0.4", scheme, fake.port)))
  local ok, err = pcall(fn, bus, fake)
  bus:close()
  fake.stop()
  assert(ok, err)
end

for _, scheme in ipairs({ "tcp", "udp", "rtu+tcp", "rtu+udp" }) do
  T.test(scheme .. ": reads, writes and exceptions", function()
    with_fake(scheme, function(bus)
      T.eq(table.concat(bus:read_holding(1, 100, 5), ","), "100,101,102,103,104")
      T.eq(bus:write_register(1, 7, 42), true)
      local v, err, code = bus:read_holding(1, 9008, 1)
      T.eq(v, nil); T.eq(code, "illegal_data_address")
      assert(err:find("illegal data address (Modbus exception 2)", 1, true)
        and err:find(scheme, 1, true), err)
      v, _, code = bus:read_input(1, 0, 1) -- the fake knows only FC 3 and 6
      T.eq(v, nil); T.eq(code, "illegal_function")
    end)
  end)

  T.test(scheme .. ": a silent device times out and the bus goes on", function()
    with_fake(scheme, function(bus)
      local v, err, code = bus:read_holding(1, 9001, 1)
      T.eq(v, nil); T.eq(code, "timeout")
      assert(err:find("no response within 0.4 s"), err)
      T.eq(bus:read_holding(1, 5, 1)[1], 5)
    end)
  end)

  T.test(scheme .. ": a response from another unit is reported as such", function()
    with_fake(scheme, function(bus)
      local v, _, code = bus:read_holding(1, 9005, 1)
      T.eq(v, nil); T.eq(code, "wrong_unit")
    end)
  end)

  T.test(scheme .. ": a truncated response is malformed, and the bus recovers", function()
    with_fake(scheme, function(bus)
      local v, _, code = bus:read_holding(1, 9004, 2)
      T.eq(v, nil)
      assert(code == "malformed" or code == "timeout", code) -- a stream may wait for the rest
      T.eq(bus:read_holding(1, 3, 1)[1], 3)
    end)
  end)
end

for _, scheme in ipairs({ "rtu+tcp", "rtu+udp" }) do
  T.test(scheme .. ": a bad CRC is reported as crc", function()
    with_fake(scheme, function(bus)
      local v, _, code = bus:read_holding(1, 9003, 1)
      T.eq(v, nil); T.eq(code, "crc")
      T.eq(bus:read_holding(1, 4, 1)[1], 4)
    end)
  end)
end

for _, scheme in ipairs({ "tcp", "udp" }) do
  T.test(scheme .. ": a late answer to an old transaction is skipped", function()
    with_fake(scheme, function(bus)
      T.eq(bus:read_holding(1, 9002, 1)[1], 9002)
    end)
  end)

  T.test(scheme .. ": only answers to other transactions: wrong_transaction", function()
    with_fake(scheme, function(bus)
      local v, _, code = bus:read_holding(1, 9009, 1)
      T.eq(v, nil); T.eq(code, "wrong_transaction")
    end)
  end)
end

T.test("tcp: a dropped connection fails the call, the next one reconnects", function()
  with_fake("tcp", function(bus)
    local v, _, code = bus:read_holding(1, 9007, 1)
    T.eq(v, nil); T.eq(code, "connection_lost")
    T.eq(bus:read_holding(1, 8, 1)[1], 8)
  end)
end)

T.test("a refused connection fails fast for every waiting call, never hangs", function()
  -- a port nobody listens on: bind, read the port, close
  local fake = start_fake("tcp", "mbap")
  fake.stop()
  local bus = assert(modbus.open("tcp://127.0.0.1:" .. fake.port .. "?timeout=0.5"))
  local tasks = {}
  for i = 1, 5 do
    tasks[i] = md.spawn(function() return bus:read_holding(1, i, 1) end)
  end
  for i, t in ipairs(tasks) do
    local v, err, code = t:join(5)
    T.eq(v, nil); T.eq(code, "refused")
    -- the first call tried; the others fail at once during the backoff
    assert(err:find(i == 1 and "cannot connect" or "not connected; next connect attempt in"), err)
  end
  bus:close()
end)

T.test("writes go ahead of reads already queued on the bus", function()
  local log = os.tmpname()
  local fake = start_fake("tcp", "mbap", log)
  local bus = assert(modbus.open("tcp://127.0.0.1:" .. fake.port))
  -- occupy the bus with a slow read, queue reads, then a write
  local tasks = { md.spawn(function() return bus:read_holding(1, 9006, 1) end) }
  md.sleep(0.05)
  for i = 1, 3 do
    tasks[#tasks + 1] = md.spawn(function() return bus:read_holding(1, 20 + i, 1) end)
  end
  md.sleep(0)
  tasks[#tasks + 1] = md.spawn(function() return bus:write_register(1, 50, 1) end)
  for _, t in ipairs(tasks) do assert(t:join(5)) end
  bus:close()
  fake.stop()
  local order = {}
  for line in io.lines(log) do
    order[#order + 1] = line:sub(15, 16) -- function code after the 7-byte MBAP header
  end
  os.remove(log)
  T.eq(table.concat(order, " "), "03 06 03 03 03", "function codes in the order sent")
end)

T.test("stats per bus and per unit", function()
  with_fake("tcp", function(bus)
    bus:read_holding(1, 0, 1)
    bus:read_holding(1, 9008, 1)
    bus:read_holding(2, 0, 1)
    local s = bus:stats()
    T.eq(s.requests, 3); T.eq(s.ok, 2); T.eq(s.errors.exception, 1); T.eq(s.failed, 1)
    assert(s.latency_mean_ms > 0 and s.latency_max_ms >= s.latency_mean_ms)
    T.eq(bus:stats(1).requests, 2)
    T.eq(bus:unit(2):stats().requests, 1)
    T.eq(bus:stats(3), nil)
  end)
end)

T.test("retries repeat transient failures only", function()
  local fake = start_fake("tcp", "mbap")
  local bus = assert(modbus.open("tcp://127.0.0.1:" .. fake.port .. "?timeout=0.2&retries=2"))
  local _, _, code = bus:read_holding(1, 9001, 1)
  T.eq(code, "timeout")
  T.eq(bus:stats().requests, 3, "one try and two retries")
  _, _, code = bus:read_holding(1, 9008, 1)
  T.eq(code, "illegal_data_address")
  T.eq(bus:stats().requests, 4, "exceptions are not retried")
  bus:close()
  fake.stop()
end)

T.test("typed values and unit handles", function()
  with_fake("tcp", function(bus)
    local dev = bus:unit(1)
    T.eq(dev:read_value(0x3F59, "uint16"), 0x3F59)
    -- registers 16729, 16730 (0x4159, 0x415A) as float32 ABCD
    local v = dev:read_value(0x4159, "float32")
    T.eq(string.format("%.4f", v), string.format("%.4f", string.unpack(">f", "\x41\x59\x41\x5A")))
    assert(tostring(dev):find("modbus unit 1 on tcp://127.0.0.1"), tostring(dev))
  end)
end)

T.test("misuse raises with a message that says what to fix", function()
  with_fake("tcp", function(bus)
    local cases = {
      { function() bus:read_holding(1, 70000, 1) end, "address" },
      { function() bus:read_holding(1, 0, 126) end, "outside 1..125" },
      { function() bus:read_coils(1, 0, 2001) end, "outside 1..2000" },
      { function() bus:read_holding(1, 65530, 10) end, "past register 65535" },
      { function() bus:read_holding(300, 0, 1) end, "unit id" },
      { function() bus:write_registers(1, 0, {}) end, "expected 1..123" },
      { function() bus:write_registers(1, 0, { 1, "x" }) end, "item 2" },
      { function() bus:write_coil(1, 0, 1) end, "boolean expected" },
      { function() bus:read(1, "holdings", 0, 1) end, "unknown kind 'holdings'" },
      { function() bus:read_holding(1, 0, 1, { timeout = -1 }) end, "timeout" },
    }
    for i, c in ipairs(cases) do
      local ok, err = pcall(c[1])
      assert(not ok and err:find(c[2], 1, true), "case " .. i .. ": " .. tostring(err))
    end
    bus:close()
    local ok, err = pcall(bus.read_holding, bus, 1, 0, 1)
    assert(not ok and err:find("closed Modbus bus"), err)
  end)
end)

T.test("a bad address string is an error value, not a raise", function()
  local bus, err, code = modbus.open("tpc://host")
  T.eq(bus, nil); T.eq(code, "bad_address")
  assert(err:find("tpc"), err)
end)

T.test("closing a bus fails its queued calls with 'closed'", function()
  local fake = start_fake("tcp", "mbap")
  local bus = assert(modbus.open("tcp://127.0.0.1:" .. fake.port))
  local slow = md.spawn(function() return bus:read_holding(1, 9006, 1) end)
  md.sleep(0.05)
  local queued = md.spawn(function() return bus:read_holding(1, 1, 1) end)
  md.sleep(0)
  bus:close()
  local v, _, code = queued:join(5)
  T.eq(v, nil); T.eq(code, "closed")
  slow:join(5)
  fake.stop()
end)

T.test("raw bytes on request: the response data as it came off the wire", function()
  with_fake("tcp", function(bus)
    local raw = assert(bus:read_holding(1, 0x4142, 2, { raw = true }))
    T.eq(raw, "\x41\x42\x41\x43", "two registers, big-endian")
    T.eq(modbus.decode(raw, "uint16"), 0x4142, "the codec reads the raw string")
  end)
end)
