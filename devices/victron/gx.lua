-- Victron GX (Cerbo GX, Venus GX, CCGX, Ekrano): the "system" service of a
-- Victron installation over Modbus TCP (port 502, unit 100), the totals the
-- GX computes for the whole site: grid, PV, battery and AC loads.
--
-- Register facts from Victron's published Modbus-TCP register list
-- ("CCGX-Modbus-TCP-register-list.xlsx", kept with its machine-readable
-- twin attributes.csv in github.com/victronenergy/dbus_modbustcp, read at
-- commit 24c50db, 2026-04-21), service com.victronenergy.system, which the
-- GX serves on unit 100 (unitid2di.csv: unit 100 is device instance 0, the
-- system service). Registers answer functions 3 and 4 alike; values are
-- 16-bit, signed where noted:
--   800-805  /Serial, string[6]: the GX's serial (its Ethernet MAC address,
--            12 hexadecimal characters)
--   808-810  /Ac/PvOnOutput/L1..L3/Power, uint16, W (PV inverters on AC-out)
--   811-813  /Ac/PvOnGrid/L1..L3/Power, uint16, W (PV inverters on AC-in)
--   817-819  /Ac/Consumption/L1..L3/Power, uint16, W (AC loads)
--   820-822  /Ac/Grid/L1..L3/Power, int16, W (positive: import)
--   826      /Ac/ActiveIn/Source, int16: 0 not available, 1 grid,
--            2 generator, 3 shore power, 240 not connected
--   840      /Dc/Battery/Voltage, uint16, scale 10 (0.1 V)
--   841      /Dc/Battery/Current, int16, scale 10 (0.1 A; positive: charging)
--   842      /Dc/Battery/Power, int16, W
--   843      /Dc/Battery/Soc, uint16, %
--   844      /Dc/Battery/State: 0 idle, 1 charging, 2 discharging
--   850      /Dc/Pv/Power, uint16, W (DC PV: solar chargers)
-- A value the GX does not have reads 0 (dbus_modbustcp's mappings.cpp
-- sends 0 for an invalid D-Bus value); an address not in the list is
-- refused with exception 2. The list also has 32-bit twins of the power
-- registers (872-918) on newer firmware; this profile uses the 16-bit
-- ones every GX firmware answers (PV and loads up to 65535 W per phase,
-- grid -32768..32767 W per phase).
--
-- Probe: the way Victron's own Modbus client (dbus-modbus-client) tells a
-- model, by a register only that device answers and the value it holds:
-- registers 800-805 exist only on a GX's system service, and hold 12
-- hexadecimal characters; 844 holds one of the three battery states.
--
-- Totals and sleep: the system service has no energy counters in the list,
-- so no point here is a total; a GX runs day and night (no sleeps).
return {
  protocol = "modbus",
  manufacturer = "Victron Energy",
  model = "GX (system)",
  info = {
    serial = { kind = "holding", addr = 800, type = "string", count = 6 },
  },
  probe = {
    { source = { kind = "holding", addr = 800, type = "string", count = 6 },
      match = "^%x%x%x%x%x%x%x%x%x%x%x%x$" },
    { source = { kind = "holding", addr = 844 }, one_of = { 0, 1, 2 } },
  },
  poll = 5,
  points = {
    { name = "grid_l1_power", label = "Grid L1 power",
      source = { kind = "holding", addr = 820, type = "int16" },
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "grid_l2_power", label = "Grid L2 power",
      source = { kind = "holding", addr = 821, type = "int16" },
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "grid_l3_power", label = "Grid L3 power",
      source = { kind = "holding", addr = 822, type = "int16" },
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "pv_ac_out_l1_power", label = "PV on AC-out L1", source = { kind = "holding", addr = 808 },
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "pv_ac_out_l2_power", label = "PV on AC-out L2", source = { kind = "holding", addr = 809 },
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "pv_ac_out_l3_power", label = "PV on AC-out L3", source = { kind = "holding", addr = 810 },
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "pv_ac_in_l1_power", label = "PV on AC-in L1", source = { kind = "holding", addr = 811 },
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "pv_ac_in_l2_power", label = "PV on AC-in L2", source = { kind = "holding", addr = 812 },
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "pv_ac_in_l3_power", label = "PV on AC-in L3", source = { kind = "holding", addr = 813 },
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "pv_dc_power", label = "PV on DC", source = { kind = "holding", addr = 850 },
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "consumption_l1_power", label = "AC loads L1", source = { kind = "holding", addr = 817 },
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "consumption_l2_power", label = "AC loads L2", source = { kind = "holding", addr = 818 },
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "consumption_l3_power", label = "AC loads L3", source = { kind = "holding", addr = 819 },
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "active_input", source = { kind = "holding", addr = 826, type = "int16" },
      options = { "not_available", "grid", "generator", "shore", "not_connected" },
      codes = { 0, 1, 2, 3, 240 }, device_class = "enum" },
    { name = "battery_voltage", source = { kind = "holding", addr = 840 }, scale = 0.1,
      unit = "V", device_class = "voltage", state_class = "measurement" },
    { name = "battery_current", source = { kind = "holding", addr = 841, type = "int16" }, scale = 0.1,
      unit = "A", device_class = "current", state_class = "measurement" },
    { name = "battery_power", source = { kind = "holding", addr = 842, type = "int16" },
      unit = "W", device_class = "power", state_class = "measurement" },
    { name = "battery_soc", label = "Battery SoC", source = { kind = "holding", addr = 843 },
      unit = "%", device_class = "battery", state_class = "measurement" },
    { name = "battery_state", source = { kind = "holding", addr = 844 },
      options = { "idle", "charging", "discharging" }, device_class = "enum" },
  },
}
