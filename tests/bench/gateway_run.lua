-- A Modbus gateway in its own process, for tests/bench/gateway.sh:
--
--   moondog tests/bench/gateway_run.lua UPSTREAM MAX_AGE PORTFILE
--
-- Serves UPSTREAM (a Modbus URL) through moondog.site.gateway's proxy on a
-- free loopback port, writes the port to PORTFILE, runs until killed, and
-- on SIGTERM prints the gateway's counters (reads, hits, forwarded, merged).
local md = require "moondog"
local upstream, max_age, portfile = arg[1], tonumber(arg[2]), arg[3]
assert(upstream and max_age and portfile, "usage: gateway_run.lua UPSTREAM MAX_AGE PORTFILE")
local gw = assert(require("moondog.site.gateway").proxy(upstream,
  { listen = "tcp://127.0.0.1:0", max_age = max_age }))
local f = assert(io.open(portfile .. ".tmp", "w"))
f:write(gw:port(), "\n")
f:close()
assert(os.rename(portfile .. ".tmp", portfile))
md.log.level("warn")
local _closer <close> = setmetatable({}, { __close = function()
  local s = gw:stats()
  io.stderr:write(string.format("gateway reads %d hits %d forwarded %d merged %d\n", s.reads, s.hits,
    s.forwarded, s.merged))
end })
md.sleep(3600)
