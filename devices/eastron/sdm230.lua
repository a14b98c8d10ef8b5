-- Eastron SDM230-Modbus: single-phase DIN-rail energy meter (MID) on RS-485.
--
-- Register facts from Eastron's public "SDM230Modbus Smart Meter Modbus
-- Protocol Implementation" (V1.4): input registers (function 4), each an
-- IEEE 754 float32 in two registers, high word first, at 30001-based
-- numbers (30001 is address 0 here). The map is the SDM120's for voltage
-- 0x00, current 0x06, active/apparent/reactive power 0x0C/0x12/0x18,
-- power factor 0x1E, phase angle 0x24, frequency 0x46, import/export
-- active energy 0x48/0x4A and reactive 0x4C/0x4E; the SDM230 adds the
-- total system power demand 0x54 and its maximum 0x56, current demand
-- 0x102 and its maximum 0x108, and total active energy 0x156. The serial
-- number is the uint32 holding register 0xFC00.
--
-- Probe: as for the SDM120 (same map, no model register in the document):
-- a mains voltage at 0x00 and frequency at 0x46. It does not tell the two
-- apart; the serial number does, on the site.
return {
  protocol = "modbus",
  manufacturer = "Eastron",
  model = "SDM230",
  info = {
    serial = { kind = "holding", addr = 0xFC00, type = "uint32" },
  },
  probe = {
    { source = { kind = "input", addr = 0x00, type = "float32" }, min = 80, max = 300 },
    { source = { kind = "input", addr = 0x46, type = "float32" }, min = 45, max = 65 },
  },
  poll = 5,
  points = {
    { name = "voltage", source = { kind = "input", addr = 0x00, type = "float32" },
      unit = "V", device_class = "voltage", state_class = "measurement" },
    { name = "current", source = { kind = "input", addr = 0x06, type = "float32" },
      unit = "A", device_class = "current", state_class = "measurement" },
    { name = "power", source = { kind = "input", addr = 0x0C, type = "float32" },
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "apparent_power", source = { kind = "input", addr = 0x12, type = "float32" },
      unit = "VA", device_class = "apparent_power", state_class = "measurement" },
    { name = "reactive_power", source = { kind = "input", addr = 0x18, type = "float32" },
      unit = "var", device_class = "reactive_power", state_class = "measurement" },
    { name = "power_factor", source = { kind = "input", addr = 0x1E, type = "float32" },
      device_class = "power_factor", state_class = "measurement" },
    { name = "frequency", source = { kind = "input", addr = 0x46, type = "float32" },
      unit = "Hz", device_class = "frequency", state_class = "measurement" },
    { name = "import_energy", source = { kind = "input", addr = 0x48, type = "float32" }, poll = 30,
      unit = "kWh", device_class = "energy", state_class = "total_increasing" },
    { name = "export_energy", source = { kind = "input", addr = 0x4A, type = "float32" }, poll = 30,
      unit = "kWh", device_class = "energy", state_class = "total_increasing" },
    { name = "power_demand", source = { kind = "input", addr = 0x54, type = "float32" }, poll = 30,
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "max_power_demand", source = { kind = "input", addr = 0x56, type = "float32" }, poll = 30,
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "current_demand", source = { kind = "input", addr = 0x102, type = "float32" }, poll = 30,
      unit = "A", device_class = "current", state_class = "measurement" },
    { name = "max_current_demand", source = { kind = "input", addr = 0x108, type = "float32" }, poll = 30,
      unit = "A", device_class = "current", state_class = "measurement" },
    { name = "total_energy", source = { kind = "input", addr = 0x156, type = "float32" }, poll = 30,
      unit = "kWh", device_class = "energy", state_class = "total_increasing" },
  },
}
