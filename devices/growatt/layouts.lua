-- Growatt datalogger records: which inverter input registers a live data
-- record (0x04, and buffered 0x50) carries, and what they mean. Facts only:
-- a data record carries register groups (start, end, values), and a layout
-- is chosen by the first group's range (and the device type code, holding
-- register 43 of the announce record, where two families share a range).
--
-- Sources: the register offsets of grott's classic and TL-X tables, mapped
-- to input registers and checked against 26 captured records
-- (../shared/reference/growatt); Growatt's "Inverter Modbus RTU Protocol"
-- v1.24 for the TL3-X/MAX/MID group 0-124, which no capture here covers
-- (verified = false). SPH/SPA hybrids (groups 0-124 + 1000-1124) and the
-- smart-meter records (0x1b, 0x20) have no layout yet: they are published as
-- raw registers.
--
-- Point fields: reg (input register), type (u16, s16, u32, s32; 32-bit
-- values high word first), scale, and the site/Home Assistant fields of a
-- profile point. `grott` is grott's name for the value, for users who switch.

local function p(name, reg, typ, scale, unit, class, grott)
  local t = { name = name, reg = reg, type = typ, scale = scale, unit = unit, grott = grott }
  if class == "power" or class == "voltage" or class == "current" or class == "frequency"
      or class == "temperature" then
    t.device_class, t.state_class = class, "measurement"
  elseif class == "energy" then
    t.device_class, t.state_class = "energy", "total_increasing"
  elseif class == "energy_today" then
    t.device_class, t.state_class, t.resets = "energy", "total_increasing", true
  end
  return t
end

-- Classic single-phase -S inverters: groups 0-44, 45-89.
local classic = {
  p("status", 0, "u16", 1, nil, nil, "pvstatus"),
  p("pv_power", 1, "u32", 0.1, "W", "power", "pvpowerin"),
  p("pv1_voltage", 3, "u16", 0.1, "V", "voltage", "pv1voltage"),
  p("pv1_current", 4, "u16", 0.1, "A", "current", "pv1current"),
  p("pv1_power", 5, "u32", 0.1, "W", "power", "pv1watt"),
  p("pv2_voltage", 7, "u16", 0.1, "V", "voltage", "pv2voltage"),
  p("pv2_current", 8, "u16", 0.1, "A", "current", "pv2current"),
  p("pv2_power", 9, "u32", 0.1, "W", "power", "pv2watt"),
  p("ac_power", 11, "s32", 0.1, "W", "power", "pvpowerout"),
  p("grid_frequency", 13, "u16", 0.01, "Hz", "frequency", "pvfrequentie"),
  p("grid_voltage", 14, "u16", 0.1, "V", "voltage", "pvgridvoltage"),
  p("grid_current", 15, "u16", 0.1, "A", "current", "pvgridcurrent"),
  p("grid_power", 16, "u32", 0.1, "W", "power", "pvgridpower"),
  p("grid_voltage2", 18, "u16", 0.1, "V", "voltage", "pvgridvoltage2"),
  p("grid_current2", 19, "u16", 0.1, "A", "current", "pvgridcurrent2"),
  p("grid_power2", 20, "u32", 0.1, "W", "power", "pvgridpower2"),
  p("grid_voltage3", 22, "u16", 0.1, "V", "voltage", "pvgridvoltage3"),
  p("grid_current3", 23, "u16", 0.1, "A", "current", "pvgridcurrent3"),
  p("grid_power3", 24, "u32", 0.1, "W", "power", "pvgridpower3"),
  p("energy_today", 26, "u32", 0.1, "kWh", "energy_today", "pvenergytoday"),
  p("energy_total", 28, "u32", 0.1, "kWh", "energy", "pvenergytotal"),
  p("work_time", 30, "u32", 1 / 7200, "h", nil, "totworktime"),
  p("temperature", 32, "u16", 0.1, "°C", "temperature", "pvtemperature"),
  p("fault_code", 40, "u16", 1, nil, nil, "faultcode"),
  p("ipm_temperature", 41, "u16", 0.1, "°C", "temperature", "pvipmtemperature"),
  p("pv1_energy_today", 48, "u32", 0.1, "kWh", "energy_today", "epv1today"),
  p("pv1_energy_total", 50, "u32", 0.1, "kWh", "energy", "epv1total"),
  p("pv2_energy_today", 52, "u32", 0.1, "kWh", "energy_today", "epv2today"),
  p("pv2_energy_total", 54, "u32", 0.1, "kWh", "energy", "epv2total"),
  p("pv_energy_total", 56, "u32", 0.1, "kWh", "energy", "epvtotal"),
}

-- TL-X / MIN: groups 3000-3124, 3125-3249.
local tlx = {
  p("status", 3000, "u16", 1, nil, nil, "pvstatus"),
  p("pv_power", 3001, "u32", 0.1, "W", "power", "pvpowerin"),
  p("pv1_voltage", 3003, "u16", 0.1, "V", "voltage", "pv1voltage"),
  p("pv1_current", 3004, "u16", 0.1, "A", "current", "pv1current"),
  p("pv1_power", 3005, "u32", 0.1, "W", "power", "pv1watt"),
  p("pv2_voltage", 3007, "u16", 0.1, "V", "voltage", "pv2voltage"),
  p("pv2_current", 3008, "u16", 0.1, "A", "current", "pv2current"),
  p("pv2_power", 3009, "u32", 0.1, "W", "power", "pv2watt"),
  p("ac_power", 3023, "s32", 0.1, "W", "power", "pvpowerout"),
  p("grid_frequency", 3025, "u16", 0.01, "Hz", "frequency", "pvfrequentie"),
  p("grid_voltage", 3026, "u16", 0.1, "V", "voltage", "pvgridvoltage"),
  p("grid_current", 3027, "u16", 0.1, "A", "current", "pvgridcurrent"),
  p("grid_power", 3028, "u32", 0.1, "W", "power", "pvgridpower"),
  p("grid_voltage2", 3030, "u16", 0.1, "V", "voltage", "pvgridvoltage2"),
  p("grid_current2", 3031, "u16", 0.1, "A", "current", "pvgridcurrent2"),
  p("grid_power2", 3032, "u32", 0.1, "W", "power", "pvgridpower2"),
  p("grid_voltage3", 3034, "u16", 0.1, "V", "voltage", "pvgridvoltage3"),
  p("grid_current3", 3035, "u16", 0.1, "A", "current", "pvgridcurrent3"),
  p("grid_power3", 3036, "u32", 0.1, "W", "power", "pvgridpower3"),
  p("work_time", 3047, "u32", 1 / 7200, "h", nil, "totworktime"),
  p("energy_today", 3049, "u32", 0.1, "kWh", "energy_today", "pvenergytoday"),
  p("energy_total", 3051, "u32", 0.1, "kWh", "energy", "pvenergytotal"),
  p("pv_energy_total", 3053, "u32", 0.1, "kWh", "energy", "epvtotal"),
  p("pv1_energy_today", 3055, "u32", 0.1, "kWh", "energy_today", "epv1today"),
  p("pv1_energy_total", 3057, "u32", 0.1, "kWh", "energy", "epv1total"),
  p("pv2_energy_today", 3059, "u32", 0.1, "kWh", "energy_today", "epv2today"),
  p("pv2_energy_total", 3061, "u32", 0.1, "kWh", "energy", "epv2total"),
  p("temperature", 3093, "u16", 0.1, "°C", "temperature", "pvtemperature"),
  p("ipm_temperature", 3097, "u16", 0.1, "°C", "temperature", "pvipmtemperature"),
}

-- TL3-X / MAX / MID (three-phase): groups 0-124, 125-249 (Growatt v1.24).
local tl3 = {
  p("status", 0, "u16", 1, nil, nil, "pvstatus"),
  p("pv_power", 1, "u32", 0.1, "W", "power", "pvpowerin"),
  p("pv1_voltage", 3, "u16", 0.1, "V", "voltage", "pv1voltage"),
  p("pv1_current", 4, "u16", 0.1, "A", "current", "pv1current"),
  p("pv1_power", 5, "u32", 0.1, "W", "power", "pv1watt"),
  p("pv2_voltage", 7, "u16", 0.1, "V", "voltage", "pv2voltage"),
  p("pv2_current", 8, "u16", 0.1, "A", "current", "pv2current"),
  p("pv2_power", 9, "u32", 0.1, "W", "power", "pv2watt"),
  p("ac_power", 35, "s32", 0.1, "W", "power", "pvpowerout"),
  p("grid_frequency", 37, "u16", 0.01, "Hz", "frequency", "pvfrequentie"),
  p("grid_voltage", 38, "u16", 0.1, "V", "voltage", "pvgridvoltage"),
  p("grid_current", 39, "u16", 0.1, "A", "current", "pvgridcurrent"),
  p("grid_power", 40, "u32", 0.1, "W", "power", "pvgridpower"),
  p("grid_voltage2", 42, "u16", 0.1, "V", "voltage", "pvgridvoltage2"),
  p("grid_current2", 43, "u16", 0.1, "A", "current", "pvgridcurrent2"),
  p("grid_power2", 44, "u32", 0.1, "W", "power", "pvgridpower2"),
  p("grid_voltage3", 46, "u16", 0.1, "V", "voltage", "pvgridvoltage3"),
  p("grid_current3", 47, "u16", 0.1, "A", "current", "pvgridcurrent3"),
  p("grid_power3", 48, "u32", 0.1, "W", "power", "pvgridpower3"),
  p("energy_today", 53, "u32", 0.1, "kWh", "energy_today", "pvenergytoday"),
  p("energy_total", 55, "u32", 0.1, "kWh", "energy", "pvenergytotal"),
  p("work_time", 57, "u32", 1 / 7200, "h", nil, "totworktime"),
  p("pv1_energy_today", 59, "u32", 0.1, "kWh", "energy_today", "epv1today"),
  p("pv1_energy_total", 61, "u32", 0.1, "kWh", "energy", "epv1total"),
  p("pv2_energy_today", 63, "u32", 0.1, "kWh", "energy_today", "epv2today"),
  p("pv2_energy_total", 65, "u32", 0.1, "kWh", "energy", "epv2total"),
  p("pv_energy_total", 91, "u32", 0.1, "kWh", "energy", "epvtotal"),
  p("temperature", 93, "u16", 0.1, "°C", "temperature", "pvtemperature"),
  p("ipm_temperature", 94, "u16", 0.1, "°C", "temperature", "pvipmtemperature"),
}

return {
  -- In order: the first whose `first` group (start, end) and, when given,
  -- `second` group start match the record is used.
  { name = "classic", model = "Growatt -S (classic)", first = { 0, 44 }, verified = true,
    points = classic },
  { name = "tlx", model = "Growatt TL-X / MIN", first = { 3000, 3124 }, verified = true,
    points = tlx },
  { name = "tl3", model = "Growatt TL3-X / MAX / MID", first = { 0, 124 }, second = 125,
    verified = false, points = tl3 },
}
