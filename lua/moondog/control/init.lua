-- moondog.control: control logic that runs on a site. Also md.control.
--
--   md.control.export_limit{ site = site, grid = "meter.power", inverters = { "pv" }, limit_w = 0 }
--
-- Each controller acts on new samples of the site values it depends on,
-- writes through the site's devices, owns the points it drives, publishes
-- its own entities as site values, and is fail-safe (see each module).

local M = {}

--- control.export_limit(opts) -> controller (moondog.control.export_limit).
M.export_limit = require("moondog.control.export_limit").export_limit

return M
