-- moondog.sunspec: SunSpec devices over Modbus, as a client and as a
-- simulator. Also md.sunspec.
--
--   local dev = assert(md.sunspec.open("tcp://192.168.1.50:502?unit=1"))
--   print(dev.inverter.W, dev.inverter:units("W"))      -- 2970.0  W
--   assert(dev:read())                                  -- refresh everything
--   assert(dev.controls:write{ WMaxLimPct = 50, WMaxLim_Ena = "ENABLED" })
--
--   local srv = assert(md.sunspec.serve("tcp://127.0.0.1:0", {
--     models = { 1, 103, 120, 121, 123, { id = 160, count = 3 } },
--     values = { [103] = { W = 2500, Hz = 50 } },
--   }))
--   srv:set(103, "W", 1234.5)
--
-- The pieces: models (definitions: moondog.sunspec.models), layout (where
-- each point of a model instance sits), codec (C: bytes <-> values),
-- plan (fewest reads that never tear a value), discover (finding the model
-- list), client (the device object), server (the simulator).
-- docs/sunspec.md is the user's guide.

local M = {}

M.models = require "moondog.sunspec.models"

--- sunspec.open(target [, opts]) -> device, or nil, message, code.
--- See moondog.sunspec.client.
function M.open(target, opts)
  return require("moondog.sunspec.client").open(target, opts)
end

--- sunspec.serve(url, opts) -> server, or nil, message, code.
--- See moondog.sunspec.server.
function M.serve(url, opts)
  return require("moondog.sunspec.server").serve(url, opts)
end

return M
