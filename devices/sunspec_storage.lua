-- A SunSpec storage system: a battery (model 802) and the storage controls
-- of an inverter (model 124), over Modbus TCP or RTU.
--
--   local bat = md.devices.open("sunspec_storage", "tcp://192.168.1.50:502?unit=1")
--
-- Point facts from the SunSpec Alliance model definitions shipped in
-- devices/sunspec (802 "battery", 124 "storage_basic"); sources are
-- "<model>.<point>" (lua/moondog/devices/sunspec.lua), scale factors are
-- applied by md.sunspec. A device that has one of the two models gets the
-- points of that model; the others are absent.
--
-- Model 802 gives the state of charge and health (% of WHRtg), the
-- battery's DC voltage, current and power, its charge status and state,
-- and its rated energy. Neither model defines lifetime energy totals in or
-- out of the battery, so the Energy dashboard's battery section needs them
-- from elsewhere (the inverter's own registers, or a meter).
--
-- Model 124 controls, writable: max_charge_power (WChaMax, W) is the
-- reference for the rates; charge_rate (InWRte) and discharge_rate
-- (OutWRte) are in % of it (OutWRte: of WDisChaMax) and take effect only
-- while storage_mode (StorCtl_Mod) has the CHARGE or DISCHARGE bit set; the
-- device drops them after rate_revert seconds (InOutWRte_RvrtTms) unless
-- they are written again; min_reserve (MinRsvPct) is the reserve kept for
-- backup, in % of the capacity.
return {
  protocol = "sunspec",
  manufacturer = "SunSpec",
  model = "Storage",
  poll = 10,
  points = {
    -- battery (model 802)
    { name = "battery_soc", source = "battery.SoC",
      unit = "%", device_class = "battery", state_class = "measurement" },
    { name = "battery_soh", label = "Battery health", source = "battery.SoH", poll = 300,
      unit = "%", state_class = "measurement" },
    { name = "battery_voltage", source = "battery.V",
      unit = "V", device_class = "voltage", state_class = "measurement" },
    { name = "battery_current", source = "battery.A",
      unit = "A", device_class = "current", state_class = "measurement" },
    { name = "battery_power", source = "battery.W",
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "battery_state", source = "battery.State", type = "enum", device_class = "enum" },
    { name = "charge_status", source = "battery.ChaSt", type = "enum", device_class = "enum" },
    { name = "battery_capacity", source = "battery.WHRtg", scale = 0.001, poll = 300,
      unit = "kWh", device_class = "energy_storage", state_class = "measurement" },
    { name = "battery_cycles", source = "battery.NCyc", poll = 300, state_class = "total_increasing" },
    -- storage controls (model 124)
    { name = "storage_soc", source = "storage.ChaState",
      unit = "%", device_class = "battery", state_class = "measurement" },
    { name = "max_charge_power", source = "storage.WChaMax", writable = true,
      min = 0, max = 100000, step = 1, unit = "W", device_class = "power" },
    { name = "charge_rate", source = "storage.InWRte", writable = true,
      min = -100, max = 100, step = 0.1, unit = "%" },
    { name = "discharge_rate", source = "storage.OutWRte", writable = true,
      min = -100, max = 100, step = 0.1, unit = "%" },
    { name = "rate_revert", source = "storage.InOutWRte_RvrtTms", writable = true,
      min = 0, max = 3600, step = 1, unit = "s", device_class = "duration" },
    { name = "min_reserve", source = "storage.MinRsvPct", writable = true,
      min = 0, max = 100, step = 0.1, unit = "%" },
    { name = "storage_mode", source = "storage.StorCtl_Mod", type = "string", writable = true },
  },
}
