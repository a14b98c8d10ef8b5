-- RCT Power inverters and storage systems (Power Storage DC/AC, Power
-- Inverter), over their TCP interface on port 8899.
--
--   local dev = md.devices.open("rct_power", "192.168.1.60:8899")
--
-- Sources are RCT object names (devices/rct/registry.lua). The device
-- sends fractions for states of charge (0.62) and Wh for energy totals;
-- `scale` turns them into % and kWh. Power signs are the device's own:
-- grid_power > 0 draws from the grid, battery_power > 0 discharges the
-- battery. battery_charge_energy and battery_discharge_energy are the
-- battery's lifetime totals in and out (battery.stored_energy and
-- battery.used_energy), for the Energy dashboard's battery section.
-- Enumerations (inverter_state, battery_strategy) read as their
-- registry symbols; their options come from the registry too.
--
-- External battery control: with battery_strategy = "External" (2) the
-- battery charges at battery_charge_setpoint W (power_mng.battery_power_extern
-- negated, so that > 0 charges as the name says; < 0 discharges);
-- "Internal" (4) gives control back to the device. RCT has NO revert
-- timer: a setpoint holds until written again, also when the program that
-- wrote it stops. The -15000..15000 W range is a sanity bound, not the
-- device's rating: the device limits the power to its battery's own
-- (battery_max_charge_current x battery_voltage). Facts: the community's
-- RCT write support (do-gooder/rctpower_writesupport, evcc's RCT battery
-- control); lua/moondog/sim/site.lua lists them.

return {
  protocol = "rct",
  manufacturer = "RCT Power",
  model = "Power Storage",
  info = { serial = "inverter_sn", sw_version = "svnversion", model = "android_description" },
  poll = 10,
  points = {
    -- battery
    { name = "battery_soc", source = "battery.soc", scale = 100,
      unit = "%", device_class = "battery", state_class = "measurement" },
    { name = "battery_power", source = "g_sync.p_acc_lp",
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "battery_voltage", source = "battery.voltage",
      unit = "V", device_class = "voltage", state_class = "measurement" },
    { name = "battery_charge_energy", source = "battery.stored_energy", scale = 0.001, poll = 60,
      unit = "kWh", device_class = "energy", state_class = "total_increasing" },
    { name = "battery_discharge_energy", source = "battery.used_energy", scale = 0.001, poll = 60,
      unit = "kWh", device_class = "energy", state_class = "total_increasing" },
    { name = "battery_temperature", source = "battery.temperature",
      unit = "°C", device_class = "temperature", state_class = "measurement" },
    -- grid
    { name = "grid_power", source = "g_sync.p_ac_grid_sum_lp",
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "grid_import_energy", source = "energy.e_grid_load_total", scale = 0.001,
      unit = "kWh", device_class = "energy", state_class = "total_increasing" },
    { name = "grid_export_energy", source = "energy.e_grid_feed_total", scale = 0.001,
      unit = "kWh", device_class = "energy", state_class = "total_increasing" },
    { name = "grid_connected", source = "power_mng.is_grid", type = "bool" },
    -- solar
    { name = "pv_a_power", source = "dc_conv.dc_conv_struct[0].p_dc_lp",
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "pv_b_power", source = "dc_conv.dc_conv_struct[1].p_dc_lp",
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "pv_a_energy", source = "energy.e_dc_total[0]", scale = 0.001,
      unit = "kWh", device_class = "energy", state_class = "total_increasing" },
    { name = "pv_b_energy", source = "energy.e_dc_total[1]", scale = 0.001,
      unit = "kWh", device_class = "energy", state_class = "total_increasing" },
    -- house and inverter
    { name = "house_power", source = "g_sync.p_ac_load_sum_lp",
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "house_energy", source = "energy.e_load_total", scale = 0.001,
      unit = "kWh", device_class = "energy", state_class = "total_increasing" },
    { name = "inverter_power", source = "g_sync.p_ac_sum_lp",
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "inverter_energy", source = "energy.e_ac_total", scale = 0.001,
      unit = "kWh", device_class = "energy", state_class = "total_increasing" },
    { name = "inverter_state", source = "prim_sm.state", type = "enum", device_class = "enum" },
    -- settings
    { name = "battery_soc_min", source = "power_mng.soc_min", scale = 100, writable = true,
      min = 0, max = 100, step = 1, unit = "%" },
    { name = "battery_soc_max", source = "power_mng.soc_max", scale = 100, writable = true,
      min = 0, max = 100, step = 1, unit = "%" },
    { name = "battery_strategy", source = "power_mng.soc_strategy", type = "enum", writable = true },
    -- external battery power: taken only while battery_strategy is "External"
    { name = "battery_charge_setpoint", label = "Battery charge setpoint",
      source = "power_mng.battery_power_extern", scale = -1, writable = true,
      min = -15000, max = 15000, step = 1, unit = "W", device_class = "power", state_class = "measurement" },
    { name = "battery_max_charge_current", source = "battery.maximum_charge_current",
      unit = "A", device_class = "current", state_class = "measurement" },
  },
  constraints = { { "battery_soc_min", "<", "battery_soc_max" } },
}
