-- moondog.growatt: Growatt dataloggers (ShineWiFi / ShineLAN) (also
-- md.growatt): the frame codec (moondog.growatt.core, in C), records to
-- values (moondog.growatt.record, layouts in devices/growatt/), the proxy
-- between dataloggers and Growatt's cloud (moondog.growatt.proxy), and a
-- fake datalogger and a fake cloud (logger_sim, cloud_sim).

local M = {}

M.core = require "moondog.growatt.core"
M.record = require "moondog.growatt.record"
M.proxy = require "moondog.growatt.proxy"
M.logger_sim = require "moondog.growatt.logger_sim"
M.cloud_sim = require "moondog.growatt.cloud_sim"

return M
