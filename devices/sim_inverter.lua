-- A simple simulated PV inverter on Modbus, for tests and the demo (not a
-- real product: moondog's own register map). Measurements are input
-- registers, settings holding registers and a coil:
--   input 0-1  AC power, int32 W          input 2-3  PV power, uint32 W
--   input 4    AC voltage, uint16 0.1 V   input 5    frequency, uint16 0.01 Hz
--   input 6-7  energy total, uint32 Wh    input 8    temperature, int16 0.1 °C
--   input 9    status code 0..3
--   holding 100  active power limit, %    holding 101  operating mode code 0..2
--   coil 0       output enabled
--   holding 200-207  serial number, 16 ASCII characters
--   holding 208-211  firmware version, 8 ASCII characters
return {
  protocol = "modbus",
  manufacturer = "moondog",
  model = "Simulated inverter 5 kW",
  info = {
    serial = { kind = "holding", addr = 200, type = "string", count = 8 },
    sw_version = { kind = "holding", addr = 208, type = "string", count = 4 },
  },
  poll = 5,
  points = {
    { name = "ac_power", label = "AC power", source = { kind = "input", addr = 0, type = "int32" },
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "pv_power", label = "PV power", source = { kind = "input", addr = 2, type = "uint32" },
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "ac_voltage", label = "AC voltage", source = { kind = "input", addr = 4, type = "uint16" },
      scale = 0.1, unit = "V", device_class = "voltage", state_class = "measurement" },
    { name = "frequency", label = "Frequency", source = { kind = "input", addr = 5, type = "uint16" },
      scale = 0.01, unit = "Hz", device_class = "frequency", state_class = "measurement" },
    { name = "energy_total", label = "Energy produced",
      source = { kind = "input", addr = 6, type = "uint32" },
      scale = 0.001, unit = "kWh", device_class = "energy", state_class = "total_increasing" },
    { name = "temperature", label = "Temperature", source = { kind = "input", addr = 8, type = "int16" },
      scale = 0.1, unit = "°C", device_class = "temperature", state_class = "measurement" },
    { name = "status", label = "Status", source = { kind = "input", addr = 9 },
      options = { "off", "starting", "running", "fault" } },
    { name = "active_power_limit", label = "Active power limit", source = { kind = "holding", addr = 100 },
      type = "integer", writable = true, min = 0, max = 100, step = 1, unit = "%" },
    { name = "mode", label = "Operating mode", source = { kind = "holding", addr = 101 },
      writable = true, options = { "auto", "eco", "backup" } },
    { name = "output_enabled", label = "Output enabled", source = { kind = "coil", addr = 0 },
      type = "bool", writable = true },
  },
}
