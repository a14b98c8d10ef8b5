-- site:serve_modbus (moondog.site.gateway): many Modbus clients share one
-- device through its site. Real peers read through the gateway in their own
-- processes (python3-pymodbus, mbpoll) alongside moondog's own client while
-- the site polls; writes allowed, refused and dropped; a device killed and
-- slowed down; identical requests merged; an RTU device on a socat pty
-- behind a TCP listener; garbage from one client.

local T = require "moondog.testing"
local md = require "moondog"
local modbus_dev = require "moondog.devices.modbus"

local format = string.format
local PYTHON = "/usr/bin/python3"

local INVERTER = {
  ac_power = 3120, pv_power = 3300, ac_voltage = 230.1, frequency = 50.02, energy_total = 1234.567,
  temperature = 41.5, status = "running", active_power_limit = 100, mode = "eco", output_enabled = true,
}

local function site_with_inverter(url, poll)
  local site = md.site.new { name = "gw" }
  local pv = assert(site:add("pv", "sim_inverter", url, { poll = poll or 0.5 }))
  T.wait_for(function() return pv.ac_power ~= nil end, 5, "the site's first poll")
  return site, pv
end

local function wait_proc(p, what)
  T.wait_for(function() return not p:alive() end, 60, what)
  local _, how, code = p:stop()
  return how, code, T.read_file(p.out), T.read_file(p.err)
end

T.test("pymodbus, mbpoll and moondog read at once through the gateway; the device sees one client", function()
  T.need("mbpoll", "mbpoll")
  local _, pycode = T.sh(PYTHON .. " -c 'import pymodbus' >/dev/null 2>&1")
  if pycode ~= 0 then T.skip("python3-pymodbus is not installed") end
  local dir <close> = T.tmpdir()
  local sim <close> = assert(modbus_dev.simulate("sim_inverter", "tcp://127.0.0.1:0", { values = INVERTER,
    device_id = { vendor_name = "ACME Solar", product_code = "INV-5K" } }))
  local site <close> = site_with_inverter(sim:url() .. "?unit=1")
  local gw <close> = assert(site:serve_modbus { listen = "tcp://127.0.0.1:0", max_age = 5 })
  do
    local c <close> = assert(md.modbus.open(gw:url()))
    local info = assert(c:read_device_info(1))
    T.eq(info.vendor_name .. " " .. info.product_code, "ACME Solar INV-5K", "43/14 from the device")
  end
  local port = gw:port()
  T.write_file(dir.path .. "/client.py", format([[
from pymodbus.client import ModbusTcpClient
c = ModbusTcpClient("127.0.0.1", port=%d)
assert c.connect()
for i in range(50):
    r = c.read_input_registers(0, 10, slave=1)
    assert not r.isError(), r
    assert r.registers[1] == 3120, r.registers
    h = c.read_holding_registers(100, 2, slave=1)
    assert not h.isError() and h.registers == [100, 1], h
print("ok")
]], port))
  local py = T.start(dir, "pymodbus", PYTHON .. " " .. dir.path .. "/client.py")
  local mb = T.start(dir, "mbpoll", format("mbpoll -1 -m tcp -a 1 -t 3 -r 1 -c 10 -p %d 127.0.0.1", port))
  local own = assert(md.modbus.open(gw:url()))
  for _ = 1, 50 do
    local regs = assert(own:read_input(1, 0, 10))
    T.eq(regs[2], 3120, "ac_power low word through the gateway")
  end
  own:close()
  local how, code, out, err = wait_proc(py, "the pymodbus client")
  T.eq(how .. code, "exit0", "pymodbus: " .. out .. err)
  T.eq(out, "ok\n", "pymodbus read every answer right")
  how, code, out, err = wait_proc(mb, "mbpoll")
  T.eq(how .. code, "exit0", "mbpoll: " .. out .. err)
  assert(out:find("%[2%]:%s+3120"), "mbpoll read ac_power: " .. out)
  local st = sim.server:stats()
  T.eq(st.accepted, 1, "the device saw one connection: the site's")
  local g = gw:stats()
  local asked = 50 + 50 * 2 + 1 -- ours, pymodbus, mbpoll
  assert(g.reads >= asked, "the gateway answered every request: " .. g.reads)
  assert(st.requests < asked, format("the device got %d requests for %d asked", st.requests, asked))
  assert(g.hits > g.forwarded, "most from the site's values")
end, { timeout = 90 })

T.test("writes: allowed ones reach the device, others are refused or dropped, all logged", function()
  local sim <close> = assert(modbus_dev.simulate("sim_inverter", "tcp://127.0.0.1:0", { values = INVERTER }))
  local site <close> = site_with_inverter(sim:url() .. "?unit=1")
  local gw <close> = assert(site:serve_modbus { listen = "tcp://127.0.0.1:0",
    allow_write = { "active_power_limit" } })
  local c <close> = assert(md.modbus.open(gw:url()))
  assert(c:write_register(1, 100, 40))
  T.eq(sim:get("active_power_limit"), 40, "allowed: written")
  T.eq(assert(c:read_holding(1, 100, 1))[1], 40, "and read back at once, not from a stale cache")
  -- function 23: the write goes through the allow-list, the read is answered after it
  local rr = assert(c:write_read(1, 100, { 45 }, 100, 1))
  T.eq(rr[1], 45, "write and read in one request")
  T.eq(sim:get("active_power_limit"), 45, "written")
  local ok, err, code = c:write_register(1, 101, 2)
  T.eq(ok, nil, "refused")
  T.eq(code, "illegal_data_address", err)
  T.eq(sim:get("mode"), "eco", "never reached the device")
  local drop <close> = assert(site:serve_modbus { listen = "tcp://127.0.0.1:0", refuse = "ignore" })
  local d <close> = assert(md.modbus.open(drop:url()))
  assert(d:write_register(1, 101, 2), "acknowledged")
  T.eq(sim:get("mode"), "eco", "but not written")
  local fn <close> = assert(site:serve_modbus { listen = "tcp://127.0.0.1:0", refuse = "illegal_function" })
  local f <close> = assert(md.modbus.open(fn:url()))
  local _, _, fcode = f:write_register(1, 101, 2)
  T.eq(fcode, "illegal_function", "exception 01 by configuration")
  T.eq(gw:stats().refused, 1, "counted")
  local text = tostring(site:status())
  assert(text:find("gateway%s+clients%s+reads"), text)
  assert(text:find(gw:url(), 1, true), text)
  local per = gw:stats().per_client
  T.eq(#per, 1, "one client so far")
  assert(per[1].client:match("^127%.0%.0%.1:%d+$"), per[1].client)
  T.eq(per[1].writes .. "/" .. per[1].refused, "3/1", "its writes and refusals")
  assert(text:find("client%s+reads%s+hits"), "a row per client: " .. text)
end)

T.test("a device killed mid-run: 0x0B at once, recovery after; a slow one never hangs a client", function()
  local port
  do
    local probe = assert(md.modbus.serve("tcp://127.0.0.1:0"))
    port = probe:port()
    probe:close()
  end
  local url = format("tcp://127.0.0.1:%d", port)
  local sim = assert(modbus_dev.simulate("sim_inverter", url, { values = INVERTER }))
  local site <close> = md.site.new { name = "gwk" }
  local pv = assert(site:add("pv", "sim_inverter", url .. "?unit=1&backoff=0.1&backoff_max=0.2",
    { poll = 0.2, offline_after = 2, retry = { 0.2, 0.5 } }))
  T.wait_for(function() return pv.ac_power ~= nil end, 5, "first poll")
  local gw <close> = assert(site:serve_modbus { listen = "tcp://127.0.0.1:0", max_age = 0.1, timeout = 1 })
  local c <close> = assert(md.modbus.open(gw:url() .. "?timeout=3"))
  sim:close()
  T.wait_for(function() return pv:stats().state == "offline" end, 10, "the site sees it offline")
  local t0 = md.now()
  local regs, err, code = c:read_input(1, 0, 2)
  T.eq(regs, nil, "no answer from a dead device")
  T.eq(code, "gateway_target_failed", err)
  assert(md.now() - t0 < 0.5, "promptly")
  sim = assert(modbus_dev.simulate("sim_inverter", url, { values = INVERTER }))
  T.wait_for(function() return pv:stats().state == "ok" end, 10, "back")
  T.eq(assert(c:read_input(1, 0, 2))[2], 3120, "answers again")
  sim:close()
  -- slow: answers after 5 s; the gateway gives up after its 1 s timeout
  local _slow <close> = assert(md.modbus.serve(url, { on_read = function() md.sleep(5) end }))
  T.wait_for(function() return pv:stats().state ~= "ok" end, 20, "the site notices the slow device")
  t0 = md.now()
  regs, err, code = c:read_holding(1, 500, 2)
  T.eq(regs, nil, "no answer")
  T.eq(code, "gateway_target_failed", tostring(err))
  assert(md.now() - t0 < 2.5, "well within the client's 3 s timeout: " .. (md.now() - t0))
end, { timeout = 60 })

T.test("identical requests in flight are sent to the device once", function()
  local reads = 0
  local srv <close> = assert(md.modbus.serve("tcp://127.0.0.1:0", {
    on_read = function() reads = reads + 1; md.sleep(0.2) end,
  }))
  srv:set(1, "holding", 500, { 7, 8 })
  local gw <close> = assert(require("moondog.site.gateway").proxy(srv:url() .. "?unit=1",
    { listen = "tcp://127.0.0.1:0", max_age = 0 }))
  local done = 0
  for _ = 1, 5 do
    md.spawn(function()
      local c <close> = assert(md.modbus.open(gw:url()))
      T.eq(assert(c:read_holding(1, 500, 2))[2], 8, "value")
      done = done + 1
    end)
  end
  T.wait_for(function() return done == 5 end, 10, "five clients")
  T.eq(reads, 1, "one read reached the device")
  T.eq(gw:stats().merged, 4, "four merged")
end)

T.test("an RTU device on a socat pty behind a TCP listener", function()
  local dir <close> = T.tmpdir()
  local a, b, _socat <close> = T.pty_pair(dir)
  local srv <close> = assert(md.modbus.serve("rtu://" .. a .. "?baud=19200"))
  srv:set(3, "input", 0, { 0, 777 })
  local site <close> = md.site.new { name = "rtu" }
  local pv = assert(site:add("pv", "sim_inverter", "rtu://" .. b .. "?baud=19200&unit=3", { poll = 0.5 }))
  T.wait_for(function() return pv.ac_power == 777 end, 10, "polled over RTU")
  local gw <close> = assert(site:serve_modbus { listen = "tcp://127.0.0.1:0" })
  local c <close> = assert(md.modbus.open(gw:url()))
  T.eq(assert(c:read_input(3, 0, 2))[2], 777, "unit 3 over TCP, from the RTU device")
  T.eq(assert(c:read_holding(3, 300, 1))[1], 0, "an uncovered range forwarded over the line")
end)

T.test("garbage from one client does not disturb the others", function()
  local sim <close> = assert(modbus_dev.simulate("sim_inverter", "tcp://127.0.0.1:0", { values = INVERTER }))
  local site <close> = site_with_inverter(sim:url() .. "?unit=1")
  local gw <close> = assert(site:serve_modbus { listen = "tcp://127.0.0.1:0" })
  local good <close> = assert(md.modbus.open(gw:url()))
  local bad = assert(require("moondog.stream").connect("127.0.0.1", gw:port()))
  assert(bad:write(string.rep("\xff", 300)))
  for _ = 1, 20 do
    T.eq(assert(good:read_input(1, 0, 2))[2], 3120, "served")
  end
  local data, err, code = bad:read(10, 2)
  T.eq(data, nil, "the garbage client got nothing")
  assert(code ~= "timeout", "and was closed, not left hanging: " .. tostring(err))
  bad:close()
end)

T.test("the other listener transports: UDP and RTU over TCP", function()
  local sim <close> = assert(modbus_dev.simulate("sim_inverter", "tcp://127.0.0.1:0", { values = INVERTER }))
  local site <close> = site_with_inverter(sim:url() .. "?unit=1")
  for _, scheme in ipairs({ "udp", "rtu+tcp" }) do
    local gw <close> = assert(site:serve_modbus { listen = scheme .. "://127.0.0.1:0" })
    local c <close> = assert(md.modbus.open(gw:url()))
    T.eq(assert(c:read_input(1, 0, 2))[2], 3120, scheme)
  end
  T.eq(sim.server:stats().accepted, 1, "still one connection to the device")
end)

T.test("moondog modbus proxy: one device, no site, no profile; bad arguments exit 2", function()
  local dir <close> = T.tmpdir()
  local srv <close> = assert(md.modbus.serve("tcp://127.0.0.1:0"))
  srv:set(1, "holding", 40000, { 11, 22, 33 })
  local exe = md.paths.exe
  local p <close> = T.start(dir, "proxy", format("%s modbus proxy '%s?unit=1' --listen tcp://127.0.0.1:0 "
    .. "--allow-write 40002 --max-age 5", exe, srv:url()))
  local url = p:first_line(10)
  assert(url and url:match("^tcp://127%.0%.0%.1:%d+$"), tostring(url))
  local c <close> = assert(md.modbus.open(url))
  T.eq(table.concat(assert(c:read_holding(1, 40000, 3)), ","), "11,22,33", "read through the proxy")
  assert(c:write_register(1, 40002, 99))
  T.eq(srv:get(1, "holding", 40002, 1)[1], 99, "an allowed write reached the device")
  local _, _, code = c:write_register(1, 40000, 1)
  T.eq(code, "illegal_data_address", "a write off the allow-list")
  T.eq(srv:stats().accepted, 1, "one connection to the device")
  for _, case in ipairs({
    { "modbus proxy tcp://127.0.0.1:1", "missing --listen" },
    { "modbus proxy --listen tcp://127.0.0.1:0", "missing the UPSTREAM" },
    { "modbus proxy tcp://127.0.0.1:1 --listen tcp://127.0.0.1:0 --allow-write abc", "not a register" },
    { "modbus proxy tcp://127.0.0.1:1 --listen tcp://127.0.0.1:0 --max-age -1", "--max-age" },
  }) do
    local out, rc = T.sh(exe .. " " .. case[1] .. " 2>&1")
    T.eq(rc, 2, case[1] .. ": " .. out)
    assert(out:find(case[2], 1, true), out)
  end
end)
