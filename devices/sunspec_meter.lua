-- A SunSpec meter (models 201-204 or 211-214), e.g. the grid meter at the
-- connection point, over Modbus TCP or RTU.
--
--   local meter = md.devices.open("sunspec_meter", "tcp://192.168.1.51:502?unit=240")
--
-- "meter" is whichever of 203, 213, 204, 214, 202, 212, 201, 211 the
-- device has. Power follows SunSpec: positive W is power drawn from the
-- grid (import), negative is export.

return {
  protocol = "sunspec",
  manufacturer = "SunSpec",
  model = "Meter",
  poll = 2,
  points = {
    { name = "power", source = "meter.W",
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "power_l1", source = "meter.WphA",
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "power_l2", source = "meter.WphB",
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "power_l3", source = "meter.WphC",
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "voltage_l1", source = "meter.PhVphA",
      unit = "V", device_class = "voltage", state_class = "measurement" },
    { name = "current", source = "meter.A",
      unit = "A", device_class = "current", state_class = "measurement" },
    { name = "frequency", source = "meter.Hz",
      unit = "Hz", device_class = "frequency", state_class = "measurement" },
    { name = "import_energy", source = "meter.TotWhImp", scale = 0.001,
      unit = "kWh", device_class = "energy", state_class = "total_increasing" },
    { name = "export_energy", source = "meter.TotWhExp", scale = 0.001,
      unit = "kWh", device_class = "energy", state_class = "total_increasing" },
  },
}
