-- Growatt TL-X register range (holding 0-124, input 3000-3124): the points
-- that the single-phase MIN/MIC TL-X (growatt/min_tlx) and the three-phase
-- MOD TL3-X (growatt/mod_tl3x) read at the same addresses, with the same
-- scale and meaning; min_tlx.lua says where each register is documented.
-- A data file, not a profile (it has no points list): a profile gets it
-- with `local tlx = (...)("growatt/tlx")` (devices/README.md, "Sharing points").
--
-- Each profile keeps what differs as its own data: its status codes, its
-- AC side (one grid phase, or L1-L3) and its probe. M.join puts the lists
-- together in order; a profile's points come out as a fresh table.

local M = {}

--- The serial number and firmware every TL-X has in holding 23-27 and 9-11.
M.info = {
  serial = { kind = "holding", addr = 23, type = "string", count = 5 },
  sw_version = { kind = "holding", addr = 9, type = "string", count = 3 },
}

-- PV side, AC power and the grid frequency: input 3001-3025.
M.pv = {
  { name = "pv_power", label = "PV power", source = { kind = "input", addr = 3001, type = "uint32" },
    scale = 0.1, unit = "W", device_class = "power", state_class = "measurement" },
  { name = "pv1_voltage", label = "PV1 voltage", source = { kind = "input", addr = 3003 },
    scale = 0.1, unit = "V", device_class = "voltage", state_class = "measurement" },
  { name = "pv1_current", label = "PV1 current", source = { kind = "input", addr = 3004 },
    scale = 0.1, unit = "A", device_class = "current", state_class = "measurement" },
  { name = "pv1_power", label = "PV1 power", source = { kind = "input", addr = 3005, type = "uint32" },
    scale = 0.1, unit = "W", device_class = "power", state_class = "measurement" },
  { name = "pv2_voltage", label = "PV2 voltage", source = { kind = "input", addr = 3007 },
    scale = 0.1, unit = "V", device_class = "voltage", state_class = "measurement" },
  { name = "pv2_current", label = "PV2 current", source = { kind = "input", addr = 3008 },
    scale = 0.1, unit = "A", device_class = "current", state_class = "measurement" },
  { name = "pv2_power", label = "PV2 power", source = { kind = "input", addr = 3009, type = "uint32" },
    scale = 0.1, unit = "W", device_class = "power", state_class = "measurement" },
  { name = "power", label = "AC power", source = { kind = "input", addr = 3023, type = "uint32" },
    scale = 0.1, unit = "W", device_class = "power", state_class = "measurement" },
  { name = "grid_frequency", source = { kind = "input", addr = 3025 },
    scale = 0.01, unit = "Hz", device_class = "frequency", state_class = "measurement" },
}

-- Energy totals, temperature, fault and warning main codes: input 3049-3106.
M.totals = {
  { name = "energy_today", source = { kind = "input", addr = 3049, type = "uint32" }, poll = 60,
    scale = 0.1, unit = "kWh", device_class = "energy", state_class = "total_increasing", resets = true },
  { name = "energy_total", source = { kind = "input", addr = 3051, type = "uint32" }, poll = 60,
    scale = 0.1, unit = "kWh", device_class = "energy", state_class = "total_increasing" },
  { name = "temperature", source = { kind = "input", addr = 3093, type = "int16" }, poll = 60,
    scale = 0.1, unit = "°C", device_class = "temperature", state_class = "measurement" },
  { name = "fault_code", source = { kind = "input", addr = 3105 }, type = "integer",
    entity_category = "diagnostic" },
  { name = "warning_code", source = { kind = "input", addr = 3106 }, type = "integer",
    entity_category = "diagnostic" },
}

-- The writable points in holding 3, 122 and 123 (min_tlx.lua: semantics).
M.control = {
  { name = "active_power_rate", source = { kind = "holding", addr = 3 }, poll = 60, writable = true,
    min = 0, max = 100, step = 1, unit = "%" },
  { name = "export_limit_mode", source = { kind = "holding", addr = 122 }, poll = 60, writable = true,
    options = { "disabled", "rs485", "rs232", "ct" } },
  { name = "export_limit", source = { kind = "holding", addr = 123, type = "int16" }, poll = 60,
    writable = true, scale = 0.1, min = 0, max = 100, step = 0.1, unit = "%" },
}

--- tlx.join(list, ...) -> one new list of the lists' items, in order.
function M.join(...)
  local lists, out = { ... }, {}
  for i = 1, #lists do
    for j = 1, #lists[i] do out[#out + 1] = lists[i][j] end
  end
  return out
end

return M
