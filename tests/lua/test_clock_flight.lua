-- Simulated time and data in flight (core/loop.c, "data in flight"): the
-- clock must not jump while a message this process wrote is still on its
-- way over loopback to one of its own sockets. On a loaded machine the
-- kernel delivers loopback traffic late now and then; these tests make it
-- late every time: a child moondog runs in its own network namespace whose
-- loopback has a token bucket (tc tbf, 100 kbit/s) that a burst of UDP
-- filler has just emptied, so the next segments wait ~0.1 s of real time in
-- the queue. Without the check the clock jumps to the request's timeout at
-- once; with it, the reply arrives at the same simulated instant, and a
-- silent device still times out on the virtual clock.
local T = require "moondog.testing"
local md = require "moondog"

local q = T.quote

-- Client and server in one simulated-time process, as a site and its
-- simulated devices are. arg: mode ("reply" | "silent" | "connect": the
-- handshake and first request wait too), filler command.
-- Prints one line per request ("reply ELAPSED" or "CODE ELAPSED", simulated
-- seconds) and then the loop's in-flight counters.
local CHILD = [[
md.clock.simulate { start = "2026-06-21 12:00" }
local mode, fill = arg[1], arg[2]
local silent = false
local srv <close> = assert(md.modbus.serve("tcp://127.0.0.1:0", {
  on_read = function() if silent then md.sleep(3600) end end,
}))
-- empties the token bucket: what follows waits in it
if mode == "connect" then assert(os.execute(fill)) end
local t0 = md.now()
local bus <close> = assert(md.modbus.open(srv:url() .. "?timeout=" .. (mode == "silent" and 5 or 30)))
if mode ~= "connect" then
  assert(bus:read_holding(1, 0, 1)) -- connected: here the handshake is not what is delayed
  silent = mode == "silent"
  assert(os.execute(fill))
  t0 = md.now()
end
local regs, _, code = bus:read_holding(1, 0, 1)
print(string.format("%s %.3f", regs and "reply" or code, md.now() - t0))
local s = md.stats()
print(string.format("waits %d giveups %d", s.sim_flight_waits or -1, s.sim_flight_giveups or -1))
]]

local TBF = "ip link set lo up && ip link set lo mtu 1500 && "
  .. "tc qdisc add dev lo root tbf rate 100kbit burst 1600 limit 100000"
-- two datagrams of 1400 bytes: the first takes the bucket's 1600 bytes, the
-- second (and everything behind it) waits ~0.1 s for tokens
local FILL = [[bash -c 'for i in 1 2; do printf %1400s x >/dev/udp/127.0.0.1/9; done']]

-- Skip unless this machine lets us make a namespace with a slow loopback.
local function need_slow_loopback()
  T.need("bash", "bash")
  T.need("tc", "iproute2")
  local out, code = T.sh("timeout 20 unshare -n sh -c " .. q(TBF) .. " 2>&1")
  if code ~= 0 then
    T.skip("cannot make a network namespace with a rate-limited loopback (needs root, "
      .. "unshare -n and the kernel's sch_tbf): " .. out:gsub("%s+$", ""))
  end
end

-- Run the child in a fresh namespace; returns its output lines.
local function run_child(mode)
  local dir <close> = T.tmpdir()
  local script = dir.path .. "/child.lua"
  T.write_file(script, CHILD)
  local cmd = string.format("timeout 60 unshare -n sh -c %s 2>&1",
    q(TBF .. " && exec " .. q(md.paths.exe) .. " " .. q(script) .. " " .. q(mode) .. " " .. q(FILL)))
  local out, code = T.sh(cmd)
  T.eq(code, 0, "the child's exit: " .. out)
  local result, elapsed = out:match("(%S+) ([%d.]+)\n")
  local waits, giveups = out:match("waits (%-?%d+) giveups (%-?%d+)")
  assert(result and waits, "child output: " .. out)
  return result, tonumber(elapsed), tonumber(waits), tonumber(giveups)
end

T.test("a reply held up on loopback arrives before the clock jumps to the timeout", function()
  need_slow_loopback()
  local result, elapsed, waits, giveups = run_child("reply")
  T.eq(result, "reply", "the request's answer, not its 30 s timeout")
  T.eq(elapsed, 0, "answered at the instant it was asked (simulated seconds)")
  assert(waits >= 1, "the loop waited for the data in flight: " .. waits)
  T.eq(giveups, 0, "and it came within the bound")
end, { timeout = 120 })

T.test("a device that stays silent still times out on the virtual clock", function()
  need_slow_loopback()
  local result, elapsed, waits, giveups = run_child("silent")
  T.eq(result, "timeout", "no answer")
  assert(elapsed >= 5 and elapsed < 5.5, "the 5 s timeout, simulated: " .. elapsed)
  assert(waits >= 1, "the request itself was waited for: " .. waits)
  T.eq(giveups, 0, "delivered, the request holds the clock no longer")
end, { timeout = 120 })

T.test("a connection opened while loopback lags: handshake, accept and reply in no simulated time", function()
  need_slow_loopback()
  local result, elapsed, waits, giveups = run_child("connect")
  T.eq(result, "reply", "connected and answered, no timeout")
  T.eq(elapsed, 0, "simulated seconds from open to the answer")
  assert(waits >= 1, "the loop waited for the handshake: " .. waits)
  T.eq(giveups, 0, "and it came within the bound")
end, { timeout = 120 })

-- A site polling a simulated meter once a second for a simulated hour, on a
-- loopback held to 1 Mbit/s: nearly every segment waits for tokens, so
-- every jump follows data in flight or just arrived. Each poll must be
-- answered (a jump past one is a 1 s timeout and a skipped cycle).
local HOUR = [[
md.clock.simulate { start = "2026-06-21 04:00", seed = 7 }
local modbus_dev = require "moondog.devices.modbus"
local sim <close> = assert(modbus_dev.simulate("sdm630", "tcp://127.0.0.1:0", { values = { power = 42 } }))
local site <close> = md.site.new { name = "simhour" }
local meter = assert(site:add("meter", "sdm630", sim:url(), { poll = 1 }))
md.sleep(3600)
local s, st = meter:stats(), md.stats()
print(string.format("polls %d failed %d skipped %d giveups %d", s.polls, s.failed, s.skipped,
  st.sim_flight_giveups or -1))
]]

T.test("an hour of polls over a loopback held to 1 Mbit/s: every poll answered", function()
  need_slow_loopback()
  local dir <close> = T.tmpdir()
  local script = dir.path .. "/hour.lua"
  T.write_file(script, HOUR)
  local slow = "ip link set lo up && ip link set lo mtu 1500 && "
    .. "tc qdisc add dev lo root tbf rate 1mbit burst 1600 limit 1000000"
  local out, code = T.sh(string.format("timeout 120 unshare -n sh -c %s 2>&1",
    q(slow .. " && exec " .. q(md.paths.exe) .. " " .. q(script))))
  T.eq(code, 0, "the child's exit: " .. out)
  local polls, failed, skipped, giveups = out:match("polls (%d+) failed (%d+) skipped (%d+) giveups (%-?%d+)")
  assert(polls, "child output: " .. out)
  assert(tonumber(polls) >= 3599, "polls in an hour: " .. polls)
  T.eq(tonumber(failed), 0, "failed polls (timeouts)")
  T.eq(tonumber(skipped), 0, "skipped cycles")
  T.eq(tonumber(giveups), 0, "waits cut at the bound")
end, { timeout = 180 })
