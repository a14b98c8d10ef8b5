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
local tlx = (...)("growatt/tlx") -- the points the MOD TL3-X shares (devices/growatt/tlx.lua)

return {
  protocol = "modbus",
  manufacturer = "Growatt",
  model = "MIN/MIC TL-X",
  sleeps = true,
  info = tlx.info,
  probe = {
    { source = { kind = "holding", addr = 44 }, mask = 0x00FF, equals = 1 },
    { source = { kind = "input", addr = 3000 }, one_of = { 0, 1, 3 } },
  },
  poll = 10,
  points = tlx.join({
    { name = "status", source = { kind = "input", addr = 3000 },
      options = { "waiting", "normal", "fault" }, codes = { 0, 1, 3 }, device_class = "enum" },
  }, tlx.pv, {
    { name = "grid_voltage", source = { kind = "input", addr = 3026 },
      scale = 0.1, unit = "V", device_class = "voltage", state_class = "measurement" },
    { name = "grid_current", source = { kind = "input", addr = 3027 },
      scale = 0.1, unit = "A", device_class = "current", state_class = "measurement" },
  }, tlx.totals, tlx.control),
}
