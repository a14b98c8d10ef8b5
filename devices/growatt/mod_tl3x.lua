-- Growatt MOD TL3-X / TL3-XH: three-phase string (and hybrid) inverters
-- (MOD 3000-15000TL3-X, MOD 6000-15000TL3-XH) that answer the same 3000
-- register range as the single-phase MIN/MIC TL-X (growatt/min_tlx), over
-- Modbus RTU on their RS-485 port (9600 baud 8N1, unit 1 by default).
--
-- Register facts from Growatt's "Growatt Inverter Modbus RTU Protocol II"
-- V1.24 (2022): its register-range table gives MOD TL3-XH holding 0-124 and
-- 3000-3124 and input 3000-3124 and 3125-3249, the TL-X ranges; the input
-- table "use for TL-X and TL-XH" (3000-3124) carries three phases. 32-bit
-- values are two registers, high word first. Input: 3000 status (low byte:
-- 0 standby, 1 normal, 3 fault, 4 flash; the high byte is the hybrid's
-- mode), 3001-3002 PV input power (0.1 W), 3003/3004/3005-3006 PV1 voltage
-- (0.1 V), current (0.1 A), power (0.1 W), 3007-3010 the same for PV2,
-- 3023-3024 AC output power (0.1 W), 3025 grid frequency (0.01 Hz),
-- 3026/3027/3028-3029 phase 1 voltage (0.1 V), current (0.1 A) and output
-- (0.1 VA), 3030-3033 phase 2, 3034-3037 phase 3, 3049-3050 energy today
-- and 3051-3052 energy total (0.1 kWh), 3093 inverter temperature
-- (0.1 °C), 3105 fault main code, 3106 warning main code. Holding: 9-11
-- firmware (ASCII), 23-27 serial number (10 ASCII characters), 44 trackers
-- (high byte) and AC phases (low byte).
--
-- Not for the MAX/MID/MAC TL3-X: the protocol gives those input 0-124 and
-- 125-249 with other addresses, so they answer no 3000 input range.
--
-- Writable points, the common holding registers the TL-X has too (see
-- growatt/min_tlx for their full semantics):
--   active_power_rate  holding 3: the most active power, % of rated, 0-100
--       (the inverter reports 255 when no limit is set).
--   export_limit_mode  holding 122: disabled (0), rs485 (1), rs232 (2), ct (3).
--   export_limit       holding 123: the export limit in 0.1 % of rated
--       power; the protocol's range is -100.0..100.0 %, moondog takes 0..100.
--
-- Status is read as the whole register: a hybrid whose high byte holds a
-- mode reads as a status the options do not name (left out of a read).
--
-- Probe: holding 44's low byte says three AC phases, and input 3000 (only
-- the TL-X register range has it) holds a status the protocol defines in
-- its low byte. It cannot tell a MOD TL3-X from a TL3-XH.
-- The inverter sleeps at night (sleeps = true).
local tlx = (...)("growatt/tlx") -- the points the MIN TL-X shares (devices/growatt/tlx.lua)

-- Phase n's voltage, current and output at input addr, addr + 1 and
-- addr + 2..3.
local function phase(n, addr)
  local l = "l" .. n
  return {
    { name = l .. "_voltage", label = "L" .. n .. " voltage", source = { kind = "input", addr = addr },
      scale = 0.1, unit = "V", device_class = "voltage", state_class = "measurement" },
    { name = l .. "_current", label = "L" .. n .. " current", source = { kind = "input", addr = addr + 1 },
      scale = 0.1, unit = "A", device_class = "current", state_class = "measurement" },
    { name = l .. "_power", label = "L" .. n .. " output",
      source = { kind = "input", addr = addr + 2, type = "uint32" },
      scale = 0.1, unit = "VA", device_class = "apparent_power", state_class = "measurement" },
  }
end

return {
  protocol = "modbus",
  manufacturer = "Growatt",
  model = "MOD TL3-X",
  sleeps = true,
  info = tlx.info,
  probe = {
    { source = { kind = "holding", addr = 44 }, mask = 0x00FF, equals = 3 },
    { source = { kind = "input", addr = 3000 }, mask = 0x00FF, one_of = { 0, 1, 3, 4 } },
  },
  poll = 10,
  points = tlx.join({
    { name = "status", source = { kind = "input", addr = 3000 },
      options = { "standby", "normal", "fault", "flash" }, codes = { 0, 1, 3, 4 }, device_class = "enum" },
  }, tlx.pv, phase(1, 3026), phase(2, 3030), phase(3, 3034), tlx.totals, tlx.control),
}
