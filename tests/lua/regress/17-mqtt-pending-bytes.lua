-- Issue 17, item 11: the MQTT client's incoming queue was bounded by count
-- only: 400 messages of 1 MB to a slow handler added 399 MB. It is now
-- bounded in bytes too (max_pending_bytes, over all subscriptions).

local T = require "moondog.testing"
local mqtt = require "moondog.mqtt"
local broker = require "moondog.mqtt.broker"

T.test("a slow handler's queue stops at max_pending_bytes", function()
  T.need("mosquitto", "mosquitto")
  local b <close> = assert(broker.start {})
  local slow <close> = assert(mqtt.connect { host = b.host, port = b.port, max_pending_bytes = 3 << 20 })
  local release, handled = false, 0
  assert(slow:subscribe("big/#", function()
    handled = handled + 1
    T.wait_for(function() return release end, 30, "the test to release the handler")
  end, { qos = 1 }))
  local sender <close> = assert(mqtt.connect { host = b.host, port = b.port })
  local payload = string.rep("x", 1 << 20)
  for i = 1, 20 do
    assert(sender:publish("big/" .. i, payload, { qos = 1, wait = true }))
  end
  -- stats().received counts every message that arrived, dropped ones too
  -- (adding received_dropped made the wait end early under load).
  T.wait_for(function() return slow:stats().received >= 20 end, 20,
    "all 20 messages to arrive (queued or dropped)")
  local s = slow:stats()
  T.eq(s.received_dropped, 17, "dropped: 1 in the handler, 2 fit in 3 MiB, the rest dropped")
  release = true
  T.wait_for(function() return handled == 3 end, 10, "the handler to take the queued ones")
end)
