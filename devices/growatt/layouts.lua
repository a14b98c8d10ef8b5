-- Growatt datalogger records: which inverter input registers a live data
-- record (0x04, and buffered 0x50) carries, and what they mean. Facts only:
-- a data record carries register groups (start, end, values), and a layout
-- is chosen by its groups and by what the announce record (0x03: holding
-- registers) said about the inverter: the device type code (holding
-- register 43) and the tracker/phase word (holding register 44, e.g.
-- 0x0203 = two MPPT, three-phase output), where two families share groups.
--
-- Sources: the register offsets of grott's tables (johanmeijer/grott
-- grottconf.py: T06NNNN, T06NNNNX, T06NNNNXTL3, T06NNNNXSPH, T06NNNNXSPA,
-- T060120, T06501b; examples/Record Layout/T06NNNNXMOD.json,
-- t060104max3.json, T06221b.json, tchntthree.json), mapped to input registers through the group markers;
-- the register ranges per family of Growatt's "Inverter Modbus RTU
-- Protocol" v1.20/v1.24 (TL-X/MIN 3000-3124 + 3125-3249; TL3-X/MAX/MID/MAC
-- 0-124 + 125-249; SPH and MIX 0-124 + 1000-1124; SPA 1000-1124 +
-- 2000-2124). `verified = true`: checked against real captured records,
-- those of ../shared/reference/growatt (classic, TL-X) and of
-- tests/data/growatt_captures.tsv (MOD TL3-X/XH by night and by day, SPH
-- TL3 in the evening and the morning, the 0x20 meter, the SDM630 and
-- CHINT 0x1b meters). TL3-X and SPA were checked register by register
-- against grott's byte offsets and v1.24 only: docs/growatt.md says what
-- is open.
--
-- Temperatures are read signed (as the Modbus profile growatt/min_tlx
-- reads 3093 and grott's MOD layout reads all), so that a winter night is
-- not 6553 °C. For SPA, grott's T06NNNNXSPA reads uwsysworkmode at 1125
-- (its SPH offset, copied: 59 in grott issue 627); v1.24 and the SPH
-- records put the system work mode at 1000, which grott's SPA calls
-- pvstatus.
--
-- Point fields: reg (input register; meter records: `at`, a byte offset,
-- or `pos`, a field of a text record), type (u16, s16, u32, s32; 32-bit
-- values high word first; text), scale, and the site/Home Assistant fields of a
-- profile point. `grott` is grott's name for the value, for users who switch.

local function p(name, reg, typ, scale, unit, class, grott)
  local t = { name = name, reg = reg, type = typ, scale = scale, unit = unit, grott = grott }
  if class == "power" or class == "voltage" or class == "current" or class == "frequency"
      or class == "temperature" or class == "battery" or class == "apparent_power"
      or class == "reactive_power" then
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
  p("temperature", 32, "s16", 0.1, "°C", "temperature", "pvtemperature"),
  p("fault_code", 40, "u16", 1, nil, nil, "faultcode"),
  p("ipm_temperature", 41, "s16", 0.1, "°C", "temperature", "pvipmtemperature"),
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
  p("temperature", 3093, "s16", 0.1, "°C", "temperature", "pvtemperature"),
  -- v1.24: 3094 IPM, 3097 communication board; grott's T06NNNNX publishes
  -- 3097 as pvipmtemperature (its MOD layout names both as v1.24 does).
  -- In the captures 3094 is 0 or a copy of 3093, and 3097 is the one
  -- still reported while the inverter sleeps.
  p("ipm_temperature", 3094, "s16", 0.1, "°C", "temperature"),
  p("board_temperature", 3097, "s16", 0.1, "°C", "temperature", "pvipmtemperature"),
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
  p("pv3_voltage", 11, "u16", 0.1, "V", "voltage", "pv3voltage"),
  p("pv3_current", 12, "u16", 0.1, "A", "current", "pv3current"),
  p("pv3_power", 13, "u32", 0.1, "W", "power", "pv3watt"),
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
  p("line_voltage_12", 50, "u16", 0.1, "V", "voltage", "Vac_RS"),
  p("line_voltage_23", 51, "u16", 0.1, "V", "voltage", "Vac_ST"),
  p("line_voltage_31", 52, "u16", 0.1, "V", "voltage", "Vac_TR"),
  p("energy_today", 53, "u32", 0.1, "kWh", "energy_today", "pvenergytoday"),
  p("energy_total", 55, "u32", 0.1, "kWh", "energy", "pvenergytotal"),
  p("work_time", 57, "u32", 1 / 7200, "h", nil, "totworktime"),
  p("pv1_energy_today", 59, "u32", 0.1, "kWh", "energy_today", "epv1today"),
  p("pv1_energy_total", 61, "u32", 0.1, "kWh", "energy", "epv1total"),
  p("pv2_energy_today", 63, "u32", 0.1, "kWh", "energy_today", "epv2today"),
  p("pv2_energy_total", 65, "u32", 0.1, "kWh", "energy", "epv2total"),
  p("pv_energy_total", 91, "u32", 0.1, "kWh", "energy", "epvtotal"),
  p("temperature", 93, "s16", 0.1, "°C", "temperature", "pvtemperature"),
  p("ipm_temperature", 94, "s16", 0.1, "°C", "temperature", "pvipmtemperature"),
}

-- (loaded with an empty environment: no ipairs here)
local function concat(a, b)
  local out = {}
  for i = 1, #a do out[#out + 1] = a[i] end
  for i = 1, #b do out[#out + 1] = b[i] end
  return out
end

-- a's points, with those of b that share a name in their place and the
-- others of b appended.
local function merge(a, b)
  local by_name, out = {}, {}
  for i = 1, #b do by_name[b[i].name] = b[i] end
  for i = 1, #a do
    out[i] = by_name[a[i].name] or a[i]
    by_name[a[i].name] = nil
  end
  for i = 1, #b do
    if by_name[b[i].name] then out[#out + 1] = b[i] end
  end
  return out
end

-- MOD TL3-X(H) (three-phase, 3000-range like TL-X/MIN; grott's
-- T06NNNNXMOD): the TL-X points plus strings 3 and 4, line voltages and the
-- power/energy flows of its meter. v1.24 and grott's MOD layout: 3019-3020
-- system output power (Psys), 3021-3022 reactive power, 3023-3024 output
-- power (Pac), phase outputs 3028, 3032, 3036 in 0.1 VA; grott reads every
-- MOD value signed. On a TL3-XH with a battery, Psys is what goes to grid
-- and load while Pac stays near 0 (grott's MOD values posted in
-- muppet3000/homeassistant-grott issue 110: pvpowerout 271.7 W =
-- ptogridtotal 252.0 + ptoloadtotal 19.7, pac -3.3 W).
local mod = merge(tlx, {
  p("system_power", 3019, "s32", 0.1, "W", "power", "pvpowerout"),
  p("reactive_power", 3021, "s32", 0.1, "var", "reactive_power", "qac"),
  p("ac_power", 3023, "s32", 0.1, "W", "power", "pac"),
  p("grid_frequency", 3025, "u16", 0.01, "Hz", "frequency", "pvfrequency"),
  p("grid_power", 3028, "u32", 0.1, "VA", "apparent_power", "pvgridpower"),
  p("grid_power2", 3032, "u32", 0.1, "VA", "apparent_power", "pvgridpower2"),
  p("grid_power3", 3036, "u32", 0.1, "VA", "apparent_power", "pvgridpower3"),
  p("ipm_temperature", 3094, "s16", 0.1, "°C", "temperature", "pvimptemperature"),
  p("board_temperature", 3097, "s16", 0.1, "°C", "temperature", "comboardtemperature"),
  p("pv3_voltage", 3011, "u16", 0.1, "V", "voltage", "pv3voltage"),
  p("pv3_current", 3012, "u16", 0.1, "A", "current", "pv3current"),
  p("pv3_power", 3013, "u32", 0.1, "W", "power", "pv3watt"),
  p("pv4_voltage", 3015, "u16", 0.1, "V", "voltage", "pv4voltage"),
  p("pv4_current", 3016, "u16", 0.1, "A", "current", "pv4current"),
  p("pv4_power", 3017, "u32", 0.1, "W", "power", "pv4watt"),
  p("line_voltage_12", 3038, "u16", 0.1, "V", "voltage", "vacrs"),
  p("line_voltage_23", 3039, "u16", 0.1, "V", "voltage", "vacst"),
  p("line_voltage_31", 3040, "u16", 0.1, "V", "voltage", "vactr"),
  p("grid_import_power", 3041, "u32", 0.1, "W", "power", "ptousertotal"),
  p("grid_export_power", 3043, "u32", 0.1, "W", "power", "ptogridtotal"),
  p("load_power", 3045, "u32", 0.1, "W", "power", "ptoloadtotal"),
  p("grid_import_energy_today", 3067, "u32", 0.1, "kWh", "energy_today", "etousertoday"),
  p("grid_import_energy_total", 3069, "u32", 0.1, "kWh", "energy", "etousertotal"),
  p("grid_export_energy_today", 3071, "u32", 0.1, "kWh", "energy_today", "etogridtoday"),
  p("grid_export_energy_total", 3073, "u32", 0.1, "kWh", "energy", "etogridtotal"),
  p("load_energy_today", 3075, "u32", 0.1, "kWh", "energy_today", "eloadtoday"),
  p("load_energy_total", 3077, "u32", 0.1, "kWh", "energy", "eloadtotal"),
})

-- The storage group 1000-1124 of SPH, MIX and SPA (same registers in all
-- three): battery, grid and load flows and their energy counters.
local storage = {
  p("system_work_mode", 1000, "u16", 1, nil, nil, "uwsysworkmode"),
  p("battery_discharge_power", 1009, "u32", 0.1, "W", "power", "pdischarge1"),
  p("battery_charge_power", 1011, "u32", 0.1, "W", "power", "p1charge1"),
  p("battery_voltage", 1013, "u16", 0.1, "V", "voltage", "vbat"),
  p("battery_soc", 1014, "u16", 1, "%", "battery", "SOC"),
  p("grid_import_power", 1021, "u32", 0.1, "W", "power", "pactousertot"),
  p("grid_export_power", 1029, "u32", 0.1, "W", "power", "pactogridtot"),
  p("load_power", 1037, "u32", 0.1, "W", "power", "plocaloadtot"),
  p("battery_temperature", 1040, "s16", 0.1, "°C", "temperature", "battemp"),
  p("grid_import_energy_today", 1044, "u32", 0.1, "kWh", "energy_today", "etouser_tod"),
  p("grid_import_energy_total", 1046, "u32", 0.1, "kWh", "energy", "etouser_tot"),
  p("grid_export_energy_today", 1048, "u32", 0.1, "kWh", "energy_today", "etogrid_tod"),
  p("grid_export_energy_total", 1050, "u32", 0.1, "kWh", "energy", "etogrid_tot"),
  p("battery_discharge_energy_today", 1052, "u32", 0.1, "kWh", "energy_today", "edischarge1_tod"),
  p("battery_discharge_energy_total", 1054, "u32", 0.1, "kWh", "energy", "edischarge1_tot"),
  p("battery_charge_energy_today", 1056, "u32", 0.1, "kWh", "energy_today", "eharge1_tod"),
  p("battery_charge_energy_total", 1058, "u32", 0.1, "kWh", "energy", "eharge1_tot"),
  p("load_energy_today", 1060, "u32", 0.1, "kWh", "energy_today", "elocalload_tod"),
  p("load_energy_total", 1062, "u32", 0.1, "kWh", "energy", "elocalload_tot"),
}

-- SPH / MIX hybrids: groups 0-124 (the TL3 register map, grott's
-- T06NNNNXSPH) + 1000-1124.
local sph = concat({
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
  -- the three-phase SPH TL3 (its captures: about 400 V on each; 44-45 and
  -- 48-49, phase powers on a TL3-X, stay 0 there)
  p("grid_voltage2", 42, "u16", 0.1, "V", "voltage", "pvgridvoltage2"),
  p("grid_current2", 43, "u16", 0.1, "A", "current", "pvgridcurrent2"),
  p("grid_voltage3", 46, "u16", 0.1, "V", "voltage", "pvgridvoltage3"),
  p("grid_current3", 47, "u16", 0.1, "A", "current", "pvgridcurrent3"),
  p("energy_today", 53, "u32", 0.1, "kWh", "energy_today", "eactoday"),
  p("energy_total", 55, "u32", 0.1, "kWh", "energy", "eactotal"),
  p("work_time", 57, "u32", 1 / 7200, "h", nil, "totworktime"),
  p("pv1_energy_today", 59, "u32", 0.1, "kWh", "energy_today", "epv1today"),
  p("pv1_energy_total", 61, "u32", 0.1, "kWh", "energy", "epv1total"),
  p("pv2_energy_today", 63, "u32", 0.1, "kWh", "energy_today", "epv2today"),
  p("pv2_energy_total", 65, "u32", 0.1, "kWh", "energy", "epv2total"),
  p("pv_energy_total", 91, "u32", 0.1, "kWh", "energy", "epvtotal"),
  p("temperature", 93, "s16", 0.1, "°C", "temperature", "pvtemperature"),
  p("ipm_temperature", 94, "s16", 0.1, "°C", "temperature", "pvipmtemperature"),
  p("ac_charge_energy_today", 112, "u32", 0.1, "kWh", "energy_today", "eacharge_today"),
  p("ac_charge_energy_total", 114, "u32", 0.1, "kWh", "energy", "eacharge_total"),
  p("battery_type", 119, "u16", 1, nil, nil, "batterytype"),
}, storage)

-- SPA (AC-coupled storage, no PV): groups 1000-1124 (+ 1125-1249) and
-- 2000-2124, the inverter side (grott's T06NNNNXSPA).
local spa = concat(storage, {
  p("bms_soc", 1086, "u16", 1, "%", "battery", "bmssoc"),
  p("status", 2000, "u16", 1, nil, nil, "inverterstatus"),
  p("ac_power", 2035, "s32", 0.1, "W", "power", "pacs"),
  p("grid_frequency", 2037, "u16", 0.01, "Hz", "frequency", "fac"),
  p("grid_voltage", 2038, "u16", 0.1, "V", "voltage", "vac1"),
  p("grid_current", 2039, "u16", 0.1, "A", "current", "iac1"),
  p("grid_power", 2040, "u32", 0.1, "W", "power", "pac1"),
  p("energy_today", 2053, "u32", 0.1, "kWh", "energy_today", "eactoday"),
  p("energy_total", 2055, "u32", 0.1, "kWh", "energy", "eactot"),
  p("work_time", 2057, "u32", 1 / 7200, "h", nil, "timetotal"),
  p("temperature", 2093, "s16", 0.1, "°C", "temperature", "Temp1"),
  p("ac_charge_energy_today", 2112, "u32", 0.1, "kWh", "energy_today", "eacchargetoday"),
  p("ac_charge_energy_total", 2114, "u32", 0.1, "kWh", "energy", "eacchargetotal"),
  p("ac_charge_power", 2116, "u32", 0.1, "W", "power", "acchargepower"),
  p("priority", 2118, "u16", 1, nil, nil, "priority"),
  p("battery_type", 2119, "u16", 1, nil, nil, "batterytype"),
})

-- Smart-meter records. 0x20 (grott's T060120): 32-bit big-endian values at
-- fixed places, the first 12 bytes after the record's timestamp (`at`:
-- byte offset from there; protocol 6 puts the timestamp at byte 68, so
-- voltage L1 is at byte 80). Voltages, currents, powers and energies in
-- tenths, power factors in thousandths, as grott divides them. Checked on a
-- capture (tests/data/growatt_captures.tsv): the phase powers and the phase
-- reactive powers add up to the totals, the line voltages are 1.732 times
-- the phase voltages. That meter left the apparent powers at 0.
local function m(name, at, typ, scale, unit, class, grott)
  local t = p(name, nil, typ, scale, unit, class, grott)
  t.reg, t.at = nil, at
  return t
end
local meter20 = {
  m("voltage_l1", 12, "u32", 0.1, "V", "voltage", "voltage_l1"),
  m("voltage_l2", 16, "u32", 0.1, "V", "voltage", "voltage_l2"),
  m("voltage_l3", 20, "u32", 0.1, "V", "voltage", "voltage_l3"),
  m("current_l1", 24, "u32", 0.1, "A", "current", "Current_l1"),
  m("current_l2", 28, "u32", 0.1, "A", "current", "Current_l2"),
  m("current_l3", 32, "u32", 0.1, "A", "current", "Current_l3"),
  m("power_l1", 36, "s32", 0.1, "W", "power", "act_power_l1"),
  m("power_l2", 40, "s32", 0.1, "W", "power", "act_power_l2"),
  m("power_l3", 44, "s32", 0.1, "W", "power", "act_power_l3"),
  m("reactive_power_l1", 60, "s32", 0.1, "var", "reactive_power", "react_power_l1"),
  m("reactive_power_l2", 64, "s32", 0.1, "var", "reactive_power", "react_power_l2"),
  m("reactive_power_l3", 68, "s32", 0.1, "var", "reactive_power", "react_power_l3"),
  m("power_factor_l1", 72, "s32", 0.001, nil, nil, "powerfactor_l1"),
  m("power_factor_l2", 76, "s32", 0.001, nil, nil, "powerfactor_l2"),
  m("power_factor_l3", 80, "s32", 0.001, nil, nil, "powerfactor_l3"),
  m("power", 84, "s32", 0.1, "W", "power", "pos_rev_act_power"),
  m("apparent_power", 88, "s32", 0.1, "VA", "apparent_power", "app_power"),
  m("reactive_power", 92, "s32", 0.1, "var", "reactive_power", "react_power"),
  m("power_factor", 96, "s32", 0.001, nil, nil, "powerfactor"),
  m("frequency", 100, "u32", 0.1, "Hz", "frequency", "frequency"),
  m("line_voltage_12", 104, "u32", 0.1, "V", "voltage", "L1-2_voltage"),
  m("line_voltage_23", 108, "u32", 0.1, "V", "voltage", "L2-3_voltage"),
  m("line_voltage_31", 112, "u32", 0.1, "V", "voltage", "L3-1_voltage"),
  m("import_energy", 116, "s32", 0.1, "kWh", "energy", "pos_act_energy"),
  m("export_energy", 120, "s32", 0.1, "kWh", "energy", "rev_act_energy"),
}

-- 0x1b (a meter on the datalogger's meter port; grott's T06221b,
-- T06501b): after the datalogger serial and its pad, 2 bytes, the meter's
-- clock (6 bytes, as a data record's timestamp, at byte 40 in protocol 6),
-- a 2-byte length and the values as ASCII decimal numbers separated by
-- commas, up to the CRC (byte 48 on: grott's logstart); `pos` is the
-- 1-based field. Two meters send different fields; the number of fields
-- tells them apart (`fields`: the most the layout takes): an Eastron SDM630
-- sends 40 to 66, a CHINT DTSU666 24 (both seen in captures,
-- tests/data/growatt_captures.tsv). Units from the captures: the phase
-- powers add up to the total, V x A matches the apparent power, and the
-- energy counters add up as described below.
local function c(name, pos, grott, unit, class)
  local t = p(name, nil, "text", 1, unit, class, grott)
  t.reg, t.pos = nil, pos
  return t
end
-- SDM630: field 1 is import + export energy and field 37 fields 1 + 2 in
-- the capture (grott's active_energy, total_energy), no quantity a person
-- reads: total_energy is kept for grott's users, without a unit.
local meter1b = {
  c("power_l1", 3, "activePowerL1", "W", "power"), c("power_l2", 4, "activePowerL2", "W", "power"),
  c("power_l3", 5, "activePowerL3", "W", "power"),
  c("power_factor_l1", 12, "powerFactorL1"), c("power_factor_l2", 13, "powerFactorL2"),
  c("power_factor_l3", 14, "powerFactorL3"),
  c("voltage_l1", 15, "voltageL1", "V", "voltage"), c("voltage_l2", 16, "voltageL2", "V", "voltage"),
  c("voltage_l3", 17, "voltageL3", "V", "voltage"),
  c("current_l1", 18, "currentL1", "A", "current"), c("current_l2", 19, "currentL2", "A", "current"),
  c("current_l3", 20, "currentL3", "A", "current"),
  c("power", 21, "power", "W", "power"), c("apparent_power", 22, "apparent_power", "VA", "apparent_power"),
  c("reactive_power", 23, "reactive_power", "var", "reactive_power"),
  c("power_factor", 24, "power_factor"), c("frequency", 25, "frequency", "Hz", "frequency"),
  c("import_energy", 26, "posiActivePower", "kWh", "energy"),
  c("export_energy", 27, "reverActivePower", "kWh", "energy"),
  c("total_energy", 37, "total_energy"),
}
-- CHINT DTSU666 (grott's examples/Record Layout/tchntthree.json): grott
-- names field 10 ReverseActiveEnergy, but in the capture it is the sum of
-- the phase powers 11-13, and field 14 the sum of 15-17.
local meter_chint = {
  c("line_voltage_12", 1, "I1Voltage2", "V", "voltage"),
  c("line_voltage_23", 2, "I2Voltage3", "V", "voltage"),
  c("line_voltage_31", 3, "I3Voltage1", "V", "voltage"),
  c("voltage_l1", 4, "voltageL1", "V", "voltage"), c("voltage_l2", 5, "voltageL2", "V", "voltage"),
  c("voltage_l3", 6, "voltageL3", "V", "voltage"),
  c("current_l1", 7, "currentL1", "A", "current"), c("current_l2", 8, "currentL2", "A", "current"),
  c("current_l3", 9, "currentL3", "A", "current"),
  c("power", 10, "ReverseActiveEnergy", "W", "power"),
  c("power_l1", 11, "activePowerL1", "W", "power"), c("power_l2", 12, "activePowerL2", "W", "power"),
  c("power_l3", 13, "activePowerL3", "W", "power"),
  c("reactive_power", 14, nil, "var", "reactive_power"),
  c("reactive_power_l1", 15, "reactive_powerL1", "var", "reactive_power"),
  c("reactive_power_l2", 16, "reactive_powerL2", "var", "reactive_power"),
  c("reactive_power_l3", 17, "reactive_powerL3", "var", "reactive_power"),
  c("power_factor", 18, "power_factor"), c("power_factor_l1", 19, "power_factorL1"),
  c("power_factor_l2", 20, "power_factorL2"), c("power_factor_l3", 21, "power_factorL3"),
  c("frequency", 22, "frequency", "Hz", "frequency"),
  c("import_energy", 23, "posiActivePower", "kWh", "energy"),
  c("export_energy", 24, "reverActivePower", "kWh", "energy"),
}

-- Three-phase output in the announce's tracker/phase word (holding 44).
local function three_phase(info)
  return info.tp ~= nil and info.tp & 0xFF == 3
end

return {
  -- Data records (0x04, 0x50), in order: the first whose `first` group
  -- (start, end), `second` group start (when given) and `when(info)` (when
  -- given; info = {dtc = holding 43, tp = holding 44} from the announce)
  -- match the record is used.
  { name = "classic", model = "Growatt -S (classic)", first = { 0, 44 }, verified = true,
    points = classic },
  { name = "mod", model = "Growatt MOD TL3-X", first = { 3000, 3124 }, when = three_phase,
    verified = true, points = mod },
  { name = "tlx", model = "Growatt TL-X / MIN", first = { 3000, 3124 }, verified = true,
    points = tlx },
  { name = "tl3", model = "Growatt TL3-X / MAX / MID", first = { 0, 124 }, second = 125,
    verified = false, points = tl3 },
  { name = "sph", model = "Growatt SPH / MIX", first = { 0, 124 }, second = 1000, verified = true,
    points = sph },
  { name = "spa", model = "Growatt SPA", first = { 1000, 1124 }, verified = false, points = spa },
  -- Smart-meter records, by record type; for 0x1b the first whose
  -- `fields` (when given) is at least the record's number of fields.
  { name = "meter", model = "Growatt smart meter", record_type = 0x20, verified = true,
    points = meter20 },
  { name = "meter_chint", model = "CHINT DTSU666 (through the datalogger)", record_type = 0x1b,
    fields = 30, verified = true, points = meter_chint },
  { name = "meter_sdm630", model = "Eastron SDM630 (through the datalogger)", record_type = 0x1b,
    verified = true, points = meter1b },
}
