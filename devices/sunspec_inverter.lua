-- A SunSpec inverter (models 101-103 or 111-113, with 120, 123 and 160 when
-- it has them), over Modbus TCP or RTU.
--
--   local inv = md.devices.open("sunspec_inverter", "tcp://192.168.1.50:502?unit=1")
--
-- Sources are "<model>.<point>" (see lua/moondog/devices/sunspec.lua):
-- "inverter" is whichever of 101-103/111-113 the device has. Manufacturer,
-- model, serial and firmware come from the common model. The power limit
-- is model 123's WMaxLimPct (percent of WMax, model 121); it only takes
-- effect while power_limit_enabled is ENABLED, and the inverter drops it
-- after power_limit_revert seconds unless it is written again (0: vendor
-- specific, often "never"), going back to full power. Model 704's
-- der_limit reverts to der_failsafe_limit instead, which is what keeps a
-- site under its export limit when the controller stops.

return {
  protocol = "sunspec",
  manufacturer = "SunSpec",
  model = "Inverter",
  poll = 5,
  points = {
    { name = "power", source = "inverter.W",
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "energy", source = "inverter.WH", scale = 0.001,
      unit = "kWh", device_class = "energy", state_class = "total_increasing" },
    { name = "current", source = "inverter.A",
      unit = "A", device_class = "current", state_class = "measurement" },
    { name = "voltage_l1", source = "inverter.PhVphA",
      unit = "V", device_class = "voltage", state_class = "measurement" },
    { name = "frequency", source = "inverter.Hz",
      unit = "Hz", device_class = "frequency", state_class = "measurement" },
    { name = "dc_power", source = "inverter.DCW",
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "temperature", source = "inverter.TmpCab",
      unit = "°C", device_class = "temperature", state_class = "measurement" },
    { name = "state", source = "inverter.St", type = "enum", device_class = "enum" },
    { name = "pv1_power", source = "mppt.module[1].DCW",
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "pv2_power", source = "mppt.module[2].DCW",
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "max_power", source = "settings.WMax",
      unit = "W", device_class = "power" },
    -- export limiting (model 123)
    { name = "power_limit", source = "controls.WMaxLimPct", writable = true,
      min = 0, max = 100, step = 1, unit = "%" },
    { name = "power_limit_enabled", source = "controls.WMaxLim_Ena", writable = true, type = "enum",
      options = { "DISABLED", "ENABLED" } },
    { name = "power_limit_revert", source = "controls.WMaxLimPct_RvrtTms", writable = true,
      min = 0, max = 3600, step = 1, unit = "s", device_class = "duration" },
    -- export limiting (model 704, IEEE 1547 DER controls): the limit reverts to
    -- der_failsafe_limit (when der_failsafe_enabled) after der_revert seconds
    { name = "der_limit", source = "704.WMaxLimPct", writable = true,
      min = 0, max = 100, step = 0.1, unit = "%" },
    { name = "der_limit_enabled", source = "704.WMaxLimPctEna", writable = true, type = "enum",
      options = { "DISABLED", "ENABLED" } },
    { name = "der_failsafe_limit", source = "704.WMaxLimPctRvrt", writable = true,
      min = 0, max = 100, step = 0.1, unit = "%" },
    { name = "der_failsafe_enabled", source = "704.WMaxLimPctEnaRvrt", writable = true, type = "enum",
      options = { "DISABLED", "ENABLED" } },
    { name = "der_revert", source = "704.WMaxLimPctRvrtTms", writable = true,
      min = 0, max = 86400, step = 1, unit = "s", device_class = "duration" },
  },
}
