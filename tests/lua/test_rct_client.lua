-- moondog.rct client against the moondog.rct simulator, end to end over
-- loopback TCP in one engine: reads of every kind, pipelining, answers
-- matched by id, writes and refusals, logs, pushes, plant addressing, and
-- every fault the simulator injects (bad CRC, split frames, slow answers,
-- silence, noise, dropped and idle connections).

local T = require "moondog.testing"
local rct = require "moondog.rct"
local codec = require "moondog.rct.codec"
local stream = require "moondog.stream"

local format = string.format

-- A simulator and a client for it; closing the table closes both.
local function setup(sim_opts, client_opts)
  local sim = assert(rct.serve(sim_opts or {}))
  local c = rct.client("127.0.0.1", sim:port(), client_opts or { timeout = 0.5 })
  return setmetatable({ sim = sim, c = c }, {
    __close = function(s) s.c:close(); s.sim:close() end,
  })
end

local function f32(v)
  return string.unpack(">f", string.pack(">f", v))
end

T.test("reads of every kind of value", function()
  local s <close> = setup({
    values = { ["battery.soc"] = 0.5, inverter_sn = "SN-42", [0x12345678] = "\1\2" },
  })
  local c = s.c
  T.eq(c:read("battery.soc"), 0.5, "FLOAT")
  T.eq(c:read("inverter_sn"), "SN-42", "STRING")
  T.eq(c:read("prim_sm.state"), 13, "ENUM")
  T.eq(c:read("power_mng.is_grid"), true, "BOOL")
  T.eq(c:read("pas.period"), 10, "UINT32")
  T.eq(c:read(0x959930BF), 0.5, "by id")
  T.eq(c:read("0x959930BF"), 0.5, "by hex text")
  T.eq(c:read(0x12345678), "\1\2", "an id outside the registry: raw bytes")
  T.eq(c:read("battery.soc", { raw = true }), string.pack(">f", 0.5), "raw = true")
  local cells = c:read("battery.cells[0]")
  T.eq(#cells, 24, "BATTERY_MODULE_STATUS cells")
  T.eq(cells[1].mv, 3301, "cell voltage")
  T.eq(c:read("battery.cells_stat[0]").u_max.cell, 7, "BATTERY_MODULE_STATISTICS")
  assert(not pcall(c.read, c, "no.such.object"), "an unknown name raises")
  assert(not pcall(c.read, c, 0x100000000), "an id beyond 32 bits raises")
  local stats = c:stats()
  T.eq(stats.connects, 1, "one connection")
  T.eq(stats.timeouts, 0, "no timeouts")
end)

T.test("read_many: 100 objects in flight at once over one connection", function()
  local s <close> = setup()
  local names = {}
  for _, e in ipairs(rct.search("")) do
    if e.type == "FLOAT" and #names < 100 then names[#names + 1] = e.name end
  end
  for i, name in ipairs(names) do s.sim:set(name, i + 0.5) end
  local values, errors = s.c:read_many(names)
  T.eq(errors, nil, "errors")
  for i, name in ipairs(names) do T.eq(values[name], i + 0.5, name) end
  local st = s.sim:stats()
  T.eq(st.requests, 100, "requests seen by the device")
  T.eq(st.connections, 1, "connections")
  -- one write of 100 frames reaches the device in a few reads, not one per request
  assert(st.reads <= 5, "device reads: " .. st.reads)
end)

T.test("tasks reading at the same time each get their own answer", function()
  local s <close> = setup()
  local names = { "battery.soc", "battery.voltage", "g_sync.p_ac_grid_sum_lp", "inverter_sn" }
  local tasks = {}
  for round = 1, 5 do
    for i, name in ipairs(names) do
      tasks[#tasks + 1] = { name = name, task = md.spawn(function() return s.c:read(name) end) }
      if round == 1 and i == 1 then md.sleep(0) end
    end
  end
  for _, t in ipairs(tasks) do
    local want = s.sim:get(t.name)
    if type(want) == "number" then want = f32(want) end
    T.eq(t.task:join(5), want, t.name)
  end
end)

-- A device that collects `n` reads and answers them in reverse order.
local function reversing_device(n)
  local l = assert(stream.listen("127.0.0.1", 0))
  local task = md.spawn(function()
    local conn = assert(l:accept())
    local p = codec.parser()
    local oids = {}
    while #oids < n do
      p:push(assert(conn:read()))
      while true do
        local command, oid = p:next()
        if command == nil then break end
        oids[#oids + 1] = oid
      end
    end
    local out = {}
    for i = #oids, 1, -1 do
      out[#out + 1] = codec.build("response", oids[i], codec.encode("UINT32", oids[i] & 0xFFFF))
    end
    conn:write(table.concat(out))
    conn:read() -- until the client closes
    conn:close()
  end)
  return setmetatable({ port = l:port() }, {
    __close = function() task:cancel(); l:close() end,
  })
end

T.test("answers are matched by object id, in whatever order they come", function()
  local ids = { 0x10000001, 0x10000002, 0x10000003, 0x10000004 }
  local dev <close> = reversing_device(#ids)
  local c <close> = rct.client("127.0.0.1", dev.port, { timeout = 2 })
  local values, errors = c:read_many(ids)
  T.eq(errors, nil, "errors")
  for _, id in ipairs(ids) do
    T.eq(string.unpack(">I4", values[id]), id & 0xFFFF, format("0x%08X", id))
  end
end)

T.test("writes: writable objects change, others are refused and never sent", function()
  local written = {}
  local s <close> = setup({
    on_write = function(e, v) written[#written + 1] = e.name .. "=" .. tostring(v) end,
  })
  local ok, now = s.c:write("power_mng.soc_min", 0.25)
  T.eq(ok, true, "write")
  T.eq(now, 0.25, "the value the device holds")
  T.eq(s.sim:get("power_mng.soc_min"), 0.25, "simulator value")
  T.eq(s.c:read("power_mng.soc_min"), 0.25, "read back")
  T.eq(s.c:write("power_mng.soc_strategy", "Schedule"), true, "enum by symbol")
  T.eq(s.sim:get("power_mng.soc_strategy"), 5, "enum value")
  T.eq(s.c:write("power_mng.use_grid_power_enable", true), true, "BOOL")
  T.eq(s.c:write("display_struct.brightness", 43), true, "UINT8 (0x2B, escaped)")
  local schedule = string.rep("x", 260) -- more than 251 bytes: LONG_WRITE
  T.eq(s.c:write("power_mng.schedule[0]", schedule), true, "long write")
  T.eq(s.sim:get("power_mng.schedule[0]"), schedule, "long value stored")
  T.eq(#written, 5, "writes seen: " .. table.concat(written, ", "))
  local requests = s.sim:stats().requests
  local v, err, code = s.c:write("battery.soc", 1)
  T.eq(v, nil, "refused")
  T.eq(code, "not_writable", "code")
  assert(err:find("battery.soc", 1, true) and err:find("registry", 1, true), err)
  v, err, code = s.c:write(0x12345678, "\1")
  T.eq(code, "not_writable", "an id outside the registry: " .. tostring(v) .. " " .. err)
  T.eq(s.sim:stats().requests, requests, "nothing sent for refused writes")
  for _, bad in ipairs({
    function() s.c:write("power_mng.soc_min", "high") end,
    function() s.c:write("display_struct.brightness", 256) end,
    function() s.c:write("display_struct.brightness", 1.5) end,
    function() s.c:write("power_mng.soc_strategy", "Nonsense") end,
    function() s.c:write("power_mng.use_grid_power_enable", 2) end,
  }) do
    assert(not pcall(bad), "a value of the wrong type raises")
  end
end)

T.test("logs: time series and event table before a given time", function()
  local s <close> = setup()
  local series = assert(s.c:read_log("logger.minutes_soc_log_ts", 1601510400))
  T.eq(series.query, 1601510400, "query time")
  T.eq(#series, 12, "entries")
  T.eq(series[1].time, 1601510400 - 300, "first entry")
  local events = assert(s.c:read_log("logger.error_log_time_stamp", 1601510400))
  T.eq(#events, 1, "rows")
  T.eq(events[1].type, 0x31, "event type")
  assert(not pcall(s.c.read_log, s.c, "battery.soc", 1), "not a logger object")
end)

-- {===== faults =====

T.test("fault: bad CRC — the garbled answer is dropped and the read retried", function()
  local s <close> = setup(nil, { timeout = 0.2 })
  s.sim.faults.bad_crc = 1
  T.eq(s.c:read("battery.soc"), f32(0.62), "value after a retry")
  local st = s.c:stats()
  T.eq(st.bad_frames, 1, "bad frames")
  T.eq(st.retries, 1, "retries")
  T.eq(st.timeouts, 1, "the garbled attempt timed out")
end)

T.test("fault: answers split into single bytes", function()
  local s <close> = setup()
  s.sim.faults.split = true
  T.eq(s.c:read("inverter_sn"), "SIM0000000000001", "string")
  local values = s.c:read_many({ "battery.soc", "battery.voltage", "display_struct.brightness" })
  T.eq(values["display_struct.brightness"], 200, "brightness")
  T.eq(values["battery.voltage"], 412.5, "voltage")
  T.eq(s.c:stats().bad_frames, 0, "no bad frames")
end)

T.test("fault: slow answers time out; the late answer confuses nothing", function()
  local s <close> = setup(nil, { timeout = 0.1, retries = 0 })
  s.sim.faults.delay = 0.3
  local v, err, code = s.c:read("battery.soc")
  T.eq(v, nil, "slow answer")
  T.eq(code, "timeout", "code")
  assert(err:find("no answer from 127.0.0.1:" .. s.sim:port() .. " for reading battery.soc", 1, true), err)
  assert(err:find("within 0.1 s", 1, true), err)
  s.sim.faults.delay = 0
  md.sleep(0.4) -- the late answer arrives with no request waiting
  T.eq(s.c:read("battery.voltage"), 412.5, "next read")
  T.eq(s.c:stats().unexpected, 1, "the late answer was set aside")
end)

T.test("fault: silence — every try times out, the error says so", function()
  local s <close> = setup(nil, { timeout = 0.1, retries = 2 })
  s.sim.faults.silent = 3
  local v, _, code = s.c:read("battery.soc")
  T.eq(v, nil, "no answer")
  T.eq(code, "timeout", "code")
  T.eq(s.sim:stats().requests, 3, "one try and two retries")
  T.eq(s.c:read("battery.soc"), f32(0.62), "answers again")
end)

T.test("fault: noise before every answer", function()
  local s <close> = setup()
  s.sim.faults.noise = true
  local values, errors = s.c:read_many({ "battery.soc", "inverter_sn", "prim_sm.state" })
  T.eq(errors, nil, "errors")
  T.eq(values["prim_sm.state"], 13, "enum")
  local st = s.c:stats()
  T.eq(st.bad_frames, 3, "each AT+ keep-alive is one dropped frame")
  assert(st.noise >= 3, "noise bytes: " .. st.noise)
end)

T.test("fault: the device drops the connection — pending reads fail over to a new one", function()
  local s <close> = setup()
  T.eq(s.c:read("battery.soc"), f32(0.62), "first read")
  s.sim.faults.drop = true
  T.eq(s.c:read("battery.voltage"), 412.5, "read across the drop")
  local st = s.c:stats()
  T.eq(st.connects, 2, "reconnected")
  T.eq(st.disconnects, 1, "one drop")
  T.eq(s.sim:stats().dropped, 1, "simulator dropped one")
  -- without retries the loss is reported
  s.sim.faults.drop = true
  local v, _, code = s.c:read("battery.voltage", { retries = 0 })
  T.eq(v, nil, "no retry")
  T.eq(code, "connection_lost", "code")
end)

T.test("fault: idle connections are dropped; the next read reconnects", function()
  local s <close> = setup({ faults = { idle = 0.05 } })
  T.eq(s.c:read("battery.soc"), f32(0.62), "first read")
  T.wait_for(function() return not s.c:connected() end, 5, "the device to drop the idle connection")
  T.eq(s.c:read("battery.soc"), f32(0.62), "read after the drop")
  T.eq(s.c:stats().connects, 2, "connects")
end)

-- }=====

T.test("connection refused and a closed client", function()
  local l = assert(stream.listen("127.0.0.1", 0))
  local port = l:port()
  l:close()
  local c, err, code = rct.connect("127.0.0.1", port)
  T.eq(c, nil, "connect")
  T.eq(code, "refused", "code: " .. tostring(err))
  local lazy <close> = rct.client("127.0.0.1", port, { retries = 0 })
  local v
  v, err, code = lazy:read("battery.soc")
  T.eq(v, nil, "read")
  T.eq(code, "refused", "read code: " .. tostring(err))
  -- a read waiting when the client closes
  local s <close> = setup({ faults = { delay = 1 } }, { timeout = 5 })
  local reader = md.spawn(function() return s.c:read("battery.soc") end)
  md.sleep(0.05)
  s.c:close()
  v, err, code = reader:join(5)
  T.eq(v, nil, "read while closing")
  assert(err:find("closed", 1, true), err)
  T.eq(code, "closed", "code")
  assert(not pcall(s.c.read, s.c, "battery.soc"), "a closed client raises")
end)

T.test("poll and subscribe: periodic reads and device pushes", function()
  local s <close> = setup()
  local polled = {}
  local task = s.c:poll({ "battery.soc", "battery.voltage" }, 0.05, function(values, errors)
    assert(errors == nil, "poll errors")
    polled[#polled + 1] = values["battery.voltage"]
  end)
  T.wait_for(function() return #polled >= 2 end, 5, "two polls")
  task:cancel()
  T.eq(polled[2], 412.5, "polled value")
  -- pushes every pas.period (1 s): set it through the client
  assert(s.c:write("pas.period", 1))
  local pushed = {}
  T.eq(s.c:subscribe("battery.soc", function(v) pushed[#pushed + 1] = v end), f32(0.62), "first value")
  s.sim:set("battery.soc", 0.75)
  T.wait_for(function() return #pushed >= 1 end, 5, "a push")
  T.eq(pushed[1], 0.75, "pushed value")
  -- after a drop the client reconnects on its own and registers again
  s.sim.faults.drop = true
  assert(s.c:read("battery.voltage"))
  local before = #pushed
  T.wait_for(function() return #pushed > before end, 5, "a push after the reconnect")
  s.c:unsubscribe("battery.soc")
end)

T.test("plant frames: the member at the client's address answers", function()
  local s <close> = setup({ address = 0x12345678 }, { address = 0x12345678, timeout = 0.2 })
  T.eq(s.c:read("battery.soc"), f32(0.62), "plant read")
  T.eq(s.c:write("power_mng.soc_max", 0.9), true, "plant write")
  local other <close> = rct.client("127.0.0.1", s.sim:port(), { address = 0x1, timeout = 0.1, retries = 0 })
  local v, _, code = other:read("battery.soc")
  T.eq(v, nil, "another member")
  T.eq(code, "timeout", "nobody answers for it")
end)
