-- Eastron SDM120-Modbus: single-phase DIN-rail energy meter on RS-485.
--
-- Register facts from Eastron's public "SDM120Modbus Smart Meter Modbus
-- Protocol Implementation" (V2.4): measurements are input registers
-- (function 4), each an IEEE 754 float32 in two registers, high word
-- first; the table's 3X numbers are 30001-based, so 30001 is address 0
-- here. Voltage 0x00, current 0x06, active power 0x0C, apparent power
-- 0x12, reactive power 0x18, power factor 0x1E, phase angle 0x24,
-- frequency 0x46, import/export active energy 0x48/0x4A, import/export
-- reactive energy 0x4C/0x4E, total active/reactive energy 0x156/0x158.
-- The serial number is the uint32 holding register 0xFC00. The meter ships
-- at 2400 baud, 8N1, unit 1.
--
-- Probe: the SDM120 has no model register in the document, so the probe
-- asks for what the single-phase map answers: a mains voltage at 0x00 and
-- a mains frequency at 0x46. It tells an Eastron-style meter from other
-- devices, not an SDM120 from an SDM230 (same map): `moondog probe` lists
-- both, and the serial number tells them apart on the site.
return {
  protocol = "modbus",
  manufacturer = "Eastron",
  model = "SDM120",
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
    { name = "phase_angle", source = { kind = "input", addr = 0x24, type = "float32" },
      unit = "°", state_class = "measurement" },
    { name = "frequency", source = { kind = "input", addr = 0x46, type = "float32" },
      unit = "Hz", device_class = "frequency", state_class = "measurement" },
    { name = "import_energy", source = { kind = "input", addr = 0x48, type = "float32" }, poll = 30,
      unit = "kWh", device_class = "energy", state_class = "total_increasing" },
    { name = "export_energy", source = { kind = "input", addr = 0x4A, type = "float32" }, poll = 30,
      unit = "kWh", device_class = "energy", state_class = "total_increasing" },
    { name = "import_reactive_energy", source = { kind = "input", addr = 0x4C, type = "float32" }, poll = 30,
      unit = "kvarh", state_class = "total_increasing" },
    { name = "export_reactive_energy", source = { kind = "input", addr = 0x4E, type = "float32" }, poll = 30,
      unit = "kvarh", state_class = "total_increasing" },
    { name = "total_energy", source = { kind = "input", addr = 0x156, type = "float32" }, poll = 30,
      unit = "kWh", device_class = "energy", state_class = "total_increasing" },
  },
}
