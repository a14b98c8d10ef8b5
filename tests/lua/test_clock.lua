-- Simulated time (md.clock, core/loop.h): the whole file runs on the virtual
-- clock, over real loopback sockets. A day of ticks, a site polling a
-- simulated meter for an hour, a Modbus timeout, the same seed giving the
-- same run, log timestamps.

local T = require "moondog.testing"
local md = require "moondog"
local modbus_dev = require "moondog.devices.modbus"

local START = 1782014400 -- 2026-06-21 04:00:00 UTC
md.clock.simulate { start = "2026-06-21 04:00", seed = 7 }

local q = T.quote

T.test("start dates parse as UTC", function()
  T.eq(md.clock.parse_start("2026-06-21 04:00"), START, "date and time")
  T.eq(md.clock.parse_start("1970-01-01"), 0, "the epoch")
  T.eq(md.clock.parse_start("2000-03-01T12:30:15Z"), 951913815, "ISO with seconds")
  T.eq(md.clock.parse_start("21.6.2026"), nil, "not a date")
  local ok, err = pcall(md.clock.simulate, { start = "tomorrow" })
  T.eq(ok, false, "a bad start raises")
  assert(tostring(err):find("YYYY-MM-DD", 1, true), err)
  T.eq(md.clock.simulated(), true, "simulated")
end)

T.test("a simulated day of one-second ticks", function()
  local t0, w0, real0 = md.now(), md.time(), os.time()
  local n = 0
  local ticker = md.every(1, function() n = n + 1 end)
  md.sleep(86400)
  ticker:cancel()
  T.eq(math.floor(md.now() - t0 + 0.5), 86400, "a day passed on md.now")
  T.eq(math.floor(md.time() - w0 + 0.5), 86400, "and on md.time")
  assert(n >= 86399 and n <= 86400, "ticks: " .. n)
  assert(os.time() - real0 < 120, "in far less real time")
end, { timeout = 90000 })

T.test("a site polls a simulated meter for an hour over real sockets", function()
  local sim <close> = assert(modbus_dev.simulate("sdm630", "tcp://127.0.0.1:0", { values = { power = 42 } }))
  local site <close> = md.site.new { name = "simhour" }
  local meter = assert(site:add("meter", "sdm630", sim:url(), { poll = 1 }))
  local t0 = md.now()
  md.sleep(3600)
  local s = meter:stats()
  assert(s.polls >= 3599 and s.polls <= 3601, "polls in an hour: " .. s.polls)
  T.eq(s.skipped, 0, "no cycle skipped: the simulated bus is instant")
  T.eq(sim.server:stats().requests, s.transactions, "every transaction reached the server")
  T.eq(meter.power, 42, "value")
  local _, age = meter:get("power")
  assert(age < 1, "fresh: " .. age)
  assert(md.now() - t0 >= 3600)
end, { timeout = 7200 })

T.test("a device that does not answer times out in simulated time", function()
  local srv <close> = assert(md.modbus.serve("tcp://127.0.0.1:0", {
    on_read = function() md.sleep(30) end, -- answers far too late
  }))
  local bus <close> = assert(md.modbus.open(srv:url() .. "?timeout=3"))
  local t0 = md.now()
  local regs, err, code = bus:read_holding(1, 0, 1)
  T.eq(regs, nil, "no answer")
  T.eq(code, "timeout", err)
  local waited = md.now() - t0
  assert(waited >= 3 and waited < 3.5, "the 3 s timeout, on the virtual clock: " .. waited)
end, { timeout = 120 })

T.test("the same seed gives the same run; log timestamps are simulated", function()
  local dir <close> = T.tmpdir()
  local script = dir.path .. "/run.lua"
  T.write_file(script, [[
    md.clock.simulate { start = "2030-01-01 00:00", seed = 99 }
    local out = {}
    for i = 1, 5 do
      md.sleep(math.random() * 100)
      out[i] = string.format("%.3f", md.now())
    end
    md.log.warn("done at %s", os.date("!%H:%M:%S", math.floor(md.time())))
    print(table.concat(out, " "))
  ]])
  local cmd = q(md.paths.exe) .. " " .. q(script) .. " 2>&1"
  local a, b = T.sh(cmd), T.sh(cmd)
  T.eq(a, b, "two runs")
  assert(a:find("^2030%-01%-01 00:0%d:%d%d%.%d+ warn  done at 00:0"), a)
  local c = T.sh(q(md.paths.exe) .. " --simulated-time -e 'md.sleep(7200); print(md.now() > 7000)' 2>&1")
  T.eq(c, "true\n", "--simulated-time")
end)

T.test("a device served by this engine that takes its time answers in simulated time", function()
  -- its request is work the loop carries (md_loop_hold_local): the clock
  -- still jumps to the server's timer instead of waiting in real time
  local srv <close> = assert(md.modbus.serve("tcp://127.0.0.1:0",
    { on_read = function() md.sleep(0.5) end }))
  local bus <close> = assert(md.modbus.open(srv:url() .. "?timeout=3"))
  local t0, r0 = md.now(), os.time()
  for _ = 1, 100 do assert(bus:read_holding(1, 0, 1)) end
  local took = md.now() - t0
  assert(took >= 50 and took < 51, "100 reads of 0.5 s each on the virtual clock: " .. took)
  assert(os.time() - r0 < 10, "not in real time")
end, { timeout = 120 })
