-- moondog.sim.scenarios: the scenarios that ship, as data: each file
-- lua/moondog/sim/scenarios/<name>.lua returns a scenario table for
-- moondog.sim.site (see its header), plus what a runner needs:
-- description, seconds (how long a run lasts), control = {limit_w},
-- poll = {device = seconds}, mqtt (publish the site), step_at (the
-- moment of the disturbance, for tests and the benchmark).
--
--   local scenarios = require "moondog.sim.scenarios"
--   scenarios.list()              --> {"load_drop", "meter_silent", ...}
--   local sc = scenarios.get("load_drop")   -- a fresh table each time
--
-- get() loads the file afresh, so a caller may change the table it gets.

local M = {}

-- The shipped scenarios, in the order a person would try them.
local NAMES = { "sunny_day", "passing_clouds", "load_drop", "meter_silent", "refuse_writes",
                "broker_gone", "rs485_9600", "battery_first", "battery_rct", "growatt_min" }

--- scenarios.list() -> the names of the shipped scenarios.
function M.list()
  return table.move(NAMES, 1, #NAMES, 1, {})
end

--- scenarios.get(name) -> scenario table, or raises naming the scenarios there are.
function M.get(name)
  local known = false
  for _, n in ipairs(NAMES) do known = known or n == name end
  local path = known and package.searchpath("moondog.sim.scenarios." .. name, package.path)
  if not path then
    error(string.format("no scenario '%s'; the scenarios are: %s", tostring(name),
      table.concat(NAMES, ", ")), 2)
  end
  local sc = dofile(path)
  sc.name = sc.name or name
  return sc
end

return M
