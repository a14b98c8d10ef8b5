-- Eastron SDM630 (Modbus v2): three-phase energy meter on RS-485.
-- Register facts from Eastron's public protocol document: measurements are
-- input registers (function 4), IEEE 754 float32, high word first, starting
-- at 30001 (address 0 here); the serial number is the uint32 holding
-- register at 0xFC00. The planner reads these points in two transactions
-- (0x00..0x11 and 0x34..0x4B).
return {
  protocol = "modbus",
  manufacturer = "Eastron",
  model = "SDM630",
  info = {
    serial = { kind = "holding", addr = 0xFC00, type = "uint32" },
  },
  poll = 5,
  points = {
    { name = "l1_voltage", label = "L1 voltage", source = { kind = "input", addr = 0x00, type = "float32" },
      unit = "V", device_class = "voltage", state_class = "measurement" },
    { name = "l2_voltage", label = "L2 voltage", source = { kind = "input", addr = 0x02, type = "float32" },
      unit = "V", device_class = "voltage", state_class = "measurement" },
    { name = "l3_voltage", label = "L3 voltage", source = { kind = "input", addr = 0x04, type = "float32" },
      unit = "V", device_class = "voltage", state_class = "measurement" },
    { name = "l1_current", label = "L1 current", source = { kind = "input", addr = 0x06, type = "float32" },
      unit = "A", device_class = "current", state_class = "measurement" },
    { name = "l2_current", label = "L2 current", source = { kind = "input", addr = 0x08, type = "float32" },
      unit = "A", device_class = "current", state_class = "measurement" },
    { name = "l3_current", label = "L3 current", source = { kind = "input", addr = 0x0A, type = "float32" },
      unit = "A", device_class = "current", state_class = "measurement" },
    { name = "l1_power", label = "L1 power", source = { kind = "input", addr = 0x0C, type = "float32" },
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "l2_power", label = "L2 power", source = { kind = "input", addr = 0x0E, type = "float32" },
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "l3_power", label = "L3 power", source = { kind = "input", addr = 0x10, type = "float32" },
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "power", label = "Power", source = { kind = "input", addr = 0x34, type = "float32" },
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "power_factor", label = "Power factor",
      source = { kind = "input", addr = 0x3E, type = "float32" },
      device_class = "power_factor", state_class = "measurement" },
    { name = "frequency", label = "Frequency", source = { kind = "input", addr = 0x46, type = "float32" },
      unit = "Hz", device_class = "frequency", state_class = "measurement" },
    { name = "import_energy", label = "Import energy",
      source = { kind = "input", addr = 0x48, type = "float32" },
      unit = "kWh", device_class = "energy", state_class = "total_increasing" },
    { name = "export_energy", label = "Export energy",
      source = { kind = "input", addr = 0x4A, type = "float32" },
      unit = "kWh", device_class = "energy", state_class = "total_increasing" },
  },
}
