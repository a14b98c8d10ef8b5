-- moondog.rct: RCT Power inverters and batteries (also md.rct).
--
--   local rct = require "moondog.rct"
--   local c = assert(rct.connect("192.168.1.60"))        -- or "host:port", or host, port
--   print(c:read("battery.soc"))
--   rct.lookup("battery.soc")     --> registry entry {id =, name =, type =, unit =, ...}
--   rct.search("soc")             --> entries whose name contains "soc"
--   local sim = rct.serve{ port = 0, values = { ["battery.soc"] = 0.5 } }   -- a simulator
--
-- Pieces: moondog.rct.codec (frames and values, in C), moondog.rct.registry
-- (the object list in devices/rct/registry.lua), moondog.rct.client (the
-- client) and moondog.rct.simulator (a device served by moondog). See
-- docs/rct.md.

local M = {}

M.codec = require "moondog.rct.codec"
M.registry = require "moondog.rct.registry"
M.lookup = M.registry.get
M.search = M.registry.search

local client = require "moondog.rct.client"
M.defaults = client.defaults

--- "host", "host:port", "[v6]:port" -> host, port (default 8899); nil, err
--- for text that is neither.
function M.parse_target(target)
  if type(target) ~= "string" or target == "" then
    return nil, "expected host or host:port"
  end
  local host, port = target:match("^%[([^%]]+)%]:?(%d*)$")
  if not host then
    host, port = target:match("^([^:]+):(%d+)$")
  end
  if not host then
    local colons = select(2, target:gsub(":", ""))
    if colons == 1 or (colons > 1 and not target:find("^[%x:.]+$")) then
      return nil, "expected host or host:port, got '" .. target .. "'"
    end
    host, port = target, ""
  end
  port = port == "" and client.defaults.port or math.tointeger(tonumber(port))
  if not port or port < 1 or port > 65535 then
    return nil, "port must be 1..65535 in '" .. target .. "'"
  end
  return host, port
end

-- host, port, opts from (target [, opts]) or (host, port [, opts]).
local function target_of(a, b, c)
  if math.type(b) == "integer" then
    return a, b, c
  end
  local host, port = M.parse_target(a)
  if not host then
    error("rct: " .. port, 3)
  end
  return host, port, b
end

--- rct.client(target | host, port [, opts]) -> client that connects on first use.
function M.client(a, b, c)
  return client.new(target_of(a, b, c))
end

--- rct.connect(target | host, port [, opts]) -> client, connected now;
--- or nil, err, code. opts: timeout, retries, connect_timeout, address.
function M.connect(a, b, c)
  local cl = client.new(target_of(a, b, c))
  local ok, err, code = cl:_connect()
  if not ok then
    cl:close()
    return nil, err, code
  end
  return cl
end

--- rct.tidy(v) -> the shortest decimal that is the same float32 as v
--- (FLOAT objects arrive as float32: 0.62 comes back as 0.62000000476837;
--- tidy gives 0.62). Other values pass unchanged.
function M.tidy(v)
  if math.type(v) ~= "float" or v ~= v or v == math.huge or v == -math.huge then
    return v
  end
  for digits = 1, 9 do
    local x = tonumber(string.format("%." .. digits .. "g", v))
    if string.unpack("<f", string.pack("<f", x)) == v then
      return x
    end
  end
  return v
end

--- rct.serve{port =, host =, values =, faults =} -> a simulated device;
--- see moondog.rct.simulator.
function M.serve(opts)
  return require("moondog.rct.simulator").serve(opts)
end

return M
