-- Scenario: battery first, with an RCT Power battery. The battery_first
-- site (a 6 kW load switches off at 12:00 under 8 kW of PV) whose 10 kWh,
-- 3 kW battery sits behind an RCT Power inverter, served over the RCT
-- protocol (moondog.sim.site: power_mng.soc_strategy External and
-- power_mng.battery_power_extern). The controller charges it through the
-- rct_power profile's battery_charge_setpoint before it curtails PV.
-- Everything but the battery's protocol is battery_first's, loaded afresh.
local sc = dofile(assert(package.searchpath("moondog.sim.scenarios.battery_first", package.path)))
sc.name = "battery_rct"
sc.description = "a 6 kW load switches off; an RCT Power battery (3 kW) charges before PV is curtailed"
sc.devices.bat.protocol = "rct"
return sc
