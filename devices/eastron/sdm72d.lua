-- Eastron SDM72D-M (v2, "SDM72D-M-2"): three-phase DIN-rail energy meter
-- on RS-485.
--
-- Register facts from Eastron's public "SDM72D-M-v2 Modbus Protocol" and
-- the SDM72D-M user manual's Modbus part: input registers (function 4),
-- each an IEEE 754 float32 in two registers, high word first, at
-- 30001-based numbers (30001 is address 0 here): phase voltages
-- 0x00/0x02/0x04, phase currents 0x06/0x08/0x0A, phase powers
-- 0x0C/0x0E/0x10, total system power 0x34, frequency 0x46, total
-- import/export kWh 0x48/0x4A, total kWh (import + export) 0x156,
-- resettable import/export energy 0x184/0x186, total import/export
-- power 0x500/0x502. One request may ask for 30 parameters at most (60
-- registers), else the meter answers with an exception: max_regs = 60.
-- Holding register 0xFC00 is the serial number (uint32) and 0xFC02 the
-- meter code, 0x0089 for the SDM72D-M-2. A first-generation SDM72D-M
-- answers only the totals (0x34, 0x48, 0x4A, 0x156, 0x180-0x186,
-- 0x500/0x502); its other points are absent.
--
-- Probe: the meter code 0x0089 at holding 0xFC02.
return {
  protocol = "modbus",
  manufacturer = "Eastron",
  model = "SDM72D-M",
  info = {
    serial = { kind = "holding", addr = 0xFC00, type = "uint32" },
  },
  probe = {
    { source = { kind = "holding", addr = 0xFC02, type = "uint16" }, equals = 0x0089 },
  },
  poll = 5,
  max_regs = 60,
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
    { name = "power", source = { kind = "input", addr = 0x34, type = "float32" },
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "frequency", source = { kind = "input", addr = 0x46, type = "float32" },
      unit = "Hz", device_class = "frequency", state_class = "measurement" },
    { name = "import_energy", source = { kind = "input", addr = 0x48, type = "float32" }, poll = 30,
      unit = "kWh", device_class = "energy", state_class = "total_increasing" },
    { name = "export_energy", source = { kind = "input", addr = 0x4A, type = "float32" }, poll = 30,
      unit = "kWh", device_class = "energy", state_class = "total_increasing" },
    { name = "total_energy", source = { kind = "input", addr = 0x156, type = "float32" }, poll = 30,
      unit = "kWh", device_class = "energy", state_class = "total_increasing" },
    { name = "resettable_import_energy", poll = 30,
      source = { kind = "input", addr = 0x184, type = "float32" },
      unit = "kWh", device_class = "energy", state_class = "total_increasing", resets = true },
    { name = "resettable_export_energy", poll = 30,
      source = { kind = "input", addr = 0x186, type = "float32" },
      unit = "kWh", device_class = "energy", state_class = "total_increasing", resets = true },
    { name = "import_power", source = { kind = "input", addr = 0x500, type = "float32" },
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "export_power", source = { kind = "input", addr = 0x502, type = "float32" },
      unit = "W", device_class = "power", state_class = "measurement" },
  },
}
