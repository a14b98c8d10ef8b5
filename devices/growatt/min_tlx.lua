-- Growatt MIN/MIC TL-X: single-phase string inverters (MIN 2500-6000TL-X,
-- MIC 600-3300TL-X) over Modbus RTU on their RS-485 port (9600 baud 8N1,
-- unit 1 by default).
--
-- Register facts from Growatt's public "Growatt Inverter Modbus RTU
-- Protocol" V1.20 (2020) and V1.24: a TL-X (MIN type) answers holding
-- registers 0-124 and 3000-3124 (function 3, 6, 16) and input registers
-- 3000-3124 (function 4); 32-bit values are two registers, high word
-- first. Input: 3000 inverter status (0 waiting, 1 normal, 3 fault),
-- 3001-3002 PV input power (0.1 W), 3003/3004/3005-3006 PV1 voltage (0.1 V),
-- current (0.1 A) and power (0.1 W), 3007/3008/3009-3010 the same for PV2,
-- 3023-3024 AC output power (0.1 W), 3025 grid frequency (0.01 Hz), 3026
-- grid voltage (0.1 V), 3027 grid current (0.1 A), 3049-3050 energy today
-- and 3051-3052 energy total (0.1 kWh), 3093 inverter temperature (0.1 °C),
-- 3105 fault main code, 3106 warning main code. Holding: 9-11 firmware
-- (ASCII), 23-27 serial number (10 ASCII characters), 44 trackers (high
-- byte) and AC phases (low byte).
--
-- The three-phase TL3-X (MAX/MID/MAC) keep the same holding registers 3,
-- 122 and 123 (the control points below), but their measurements are
-- elsewhere (input 0-124), so this profile is for the single-phase TL-X
-- only. The MOD TL3-X/TL3-XH answer the TL-X's 3000 range with three
-- phases in it: profile growatt/mod_tl3x.
--
-- Writable points, with their semantics from the protocol:
--   active_power_rate  holding 3: the most active power the inverter may
--       feed, in % of its rated power, 0-100. The inverter reports 255 when
--       no limit is set; write 100 to lift a limit.
--   export_limit_mode  holding 122: whether and from which meter the
--       inverter limits what flows to the grid: disabled (0), rs485 (1, a
--       meter on the RS-485 port), rs232 (2), ct (3, its current clamp).
--   export_limit       holding 123: the power the inverter lets flow to the
--       grid while export_limit_mode is not "disabled", in 0.1 % of its
--       rated power. The protocol's range is -100.0..100.0 %; it does not
--       say what a negative value does, so moondog takes 0..100 (0: no
--       export at all).
-- Status and the fault and warning codes are read as the inverter sends
-- them: status as options, the fault/warning main codes as numbers (the
-- protocol's tables of code meanings differ per firmware; look a code up
-- in the inverter's manual).
--
-- Probe: holding 44's low byte says one AC phase, and input 3000 (only a
-- TL-X answers the 3000 input range) holds a status the protocol defines.
-- The inverter sleeps at night: it stops answering when the PV voltage is
-- gone (sleeps = true; its energy totals are held, its power reads 0).
return {
  protocol = "modbus",
  manufacturer = "Growatt",
  model = "MIN/MIC TL-X",
  sleeps = true,
  info = {
    serial = { kind = "holding", addr = 23, type = "string", count = 5 },
    sw_version = { kind = "holding", addr = 9, type = "string", count = 3 },
  },
  probe = {
    { source = { kind = "holding", addr = 44 }, mask = 0x00FF, equals = 1 },
    { source = { kind = "input", addr = 3000 }, one_of = { 0, 1, 3 } },
  },
  poll = 10,
  points = {
    { name = "status", source = { kind = "input", addr = 3000 },
      options = { "waiting", "normal", "fault" }, codes = { 0, 1, 3 }, device_class = "enum" },
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
    { name = "grid_voltage", source = { kind = "input", addr = 3026 },
      scale = 0.1, unit = "V", device_class = "voltage", state_class = "measurement" },
    { name = "grid_current", source = { kind = "input", addr = 3027 },
      scale = 0.1, unit = "A", device_class = "current", state_class = "measurement" },
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
    { name = "active_power_rate", source = { kind = "holding", addr = 3 }, poll = 60, writable = true,
      min = 0, max = 100, step = 1, unit = "%" },
    { name = "export_limit_mode", source = { kind = "holding", addr = 122 }, poll = 60, writable = true,
      options = { "disabled", "rs485", "rs232", "ct" } },
    { name = "export_limit", source = { kind = "holding", addr = 123, type = "int16" }, poll = 60,
      writable = true, scale = 0.1, min = 0, max = 100, step = 0.1, unit = "%" },
  },
}
