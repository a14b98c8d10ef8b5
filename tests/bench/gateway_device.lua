-- A Modbus device that takes DELAY_MS to answer, for tests/bench/gateway.sh:
--   moondog tests/bench/gateway_device.lua DELAY_MS PORTFILE
-- (real inverters take 10-100 ms; a gateway's cost shows against that).
local md = require "moondog"
local delay, portfile = tonumber(arg[1]), arg[2]
md.log.level("warn")
local srv = assert(md.modbus.serve("tcp://127.0.0.1:0", {
  on_read = function() md.sleep(delay / 1000) end,
}))
srv:set(1, "holding", 0, { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 })
local f = assert(io.open(portfile .. ".tmp", "w"))
f:write(srv:port(), "\n")
f:close()
assert(os.rename(portfile .. ".tmp", portfile))
md.sleep(3600)
