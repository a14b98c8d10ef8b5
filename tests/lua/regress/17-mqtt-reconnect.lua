-- Issue 17, item 12: after a broker came back the client took 25.5 s and
-- 96 s to reconnect (its backoff had grown to 60 s). The backoff is now
-- capped at 5 s by default, and losing a connection that was stable is
-- retried at once, as is the backoff when the network changes (a link, an
-- address or a route added). The tests read what the client schedules and
-- logs rather than timing anything.

local T = require "moondog.testing"
local broker = require "moondog.mqtt.broker"

local format = string.format

local function delays(text)
  local list = {}
  for ms in text:gmatch("next connection attempt in (%d+) ms") do list[#list + 1] = tonumber(ms) end
  return list
end

T.test("a lost stable connection is retried at once, then every 5 s at most", function()
  T.need("mosquitto", "mosquitto")
  local dir <close> = T.tmpdir()
  local b <close> = assert(broker.start {})
  local script = dir.path .. "/client.lua"
  T.write_file(script, format([[
    local c = assert(md.mqtt.connect { host = %q, port = %d })
    print("connected")
    io.stdout:flush()
    md.sleep(60)
    c:close()
  ]], b.host, b.port))
  local p <close> = T.start(dir, "client", format("%s --log-level debug %s", T.quote(md.paths.exe),
    T.quote(script)))
  T.eq(p:first_line(), "connected", "first line")
  md.sleep(10.5) -- a connection of 10 s counts as stable
  b:stop()
  T.wait_for(function() return #delays(T.read_file(p.err) or "") >= 5 end, 30, "five scheduled attempts")
  local d = delays(T.read_file(p.err))
  T.eq(d[1], 0, "the first attempt after losing a stable connection")
  for i = 2, 5 do
    assert(d[i] <= 5000, format("attempt %d waits %d ms: more than the 5 s cap", i, d[i]))
  end
  assert(d[5] >= 3750, "the delay grew to the cap (with jitter): " .. d[5])
end, { timeout = 60 })

T.test("a network event during the backoff starts the next attempt at once", function()
  if T.sh("id -u") ~= "0\n" then T.skip("needs root to add an address to lo") end
  T.need("ip", "iproute2")
  local dir <close> = T.tmpdir()
  local script = dir.path .. "/client.lua"
  -- port 1 on loopback refuses; the next attempt would be 22..30 s away
  T.write_file(script, [[
    local c = md.mqtt.connect { host = "127.0.0.1", port = 1, wait = false,
      reconnect = { min = 30, max = 30 } }
    md.sleep(60)
    c:close()
  ]])
  local p <close> = T.start(dir, "client", format("%s --log-level debug %s", T.quote(md.paths.exe),
    T.quote(script)))
  T.wait_for(function() return #delays(T.read_file(p.err) or "") >= 1 end, 10, "the first failed attempt")
  assert(delays(T.read_file(p.err))[1] >= 20000, "a long backoff")
  -- 127.0.0.77/32 on lo: a fresh address that no test uses, removed at once
  os.execute("ip addr add 127.0.0.77/32 dev lo && ip addr del 127.0.0.77/32 dev lo")
  T.wait_for(function() return #delays(T.read_file(p.err) or "") >= 2 end, 10,
    "the attempt the network event started")
  assert((T.read_file(p.err) or ""):find("the network changed; connecting now", 1, true), "logged")
end, { timeout = 30 })
