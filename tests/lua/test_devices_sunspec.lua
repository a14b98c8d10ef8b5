-- The sunspec_inverter, sunspec_meter and sunspec_storage profiles and the
-- moondog.devices.sunspec driver: the device object contract of
-- devices/README.md against the SunSpec simulator (md.sunspec.serve).

local T = require "moondog.testing"
local devices = require "moondog.devices"

local function inverter(opts)
  local srv = assert(md.sunspec.serve("tcp://127.0.0.1:0", {
    models = { 1, 103, 120, 121, 123, { id = 160, count = 2 } },
    values = {
      [1] = { Mn = "Acme", Md = "X5", SN = "A123", Vr = "1.2" },
      [103] = { WH = 123456 }, [121] = { WMax = 5000 },
      [160] = { module = { { DCW = 2100 }, { DCW = 1900 } } },
    },
  }))
  srv:simulate_inverter { power = 4000 }
  local dev = devices.open("sunspec_inverter", srv:url(), opts)
  return setmetatable({ srv = srv, dev = dev }, {
    __close = function(s) s.dev:close(); s.srv:close() end,
  })
end

T.test("profiles: energy totals fit the Energy dashboard, power is W", function()
  for _, name in ipairs({ "sunspec_inverter", "sunspec_meter" }) do
    local profile = devices.load(name)
    T.eq(profile.protocol, "sunspec", name .. " protocol")
    for _, p in ipairs(profile.points) do
      if p.device_class == "energy" then
        T.eq(p.state_class, "total_increasing", p.name)
        T.eq(p.unit, "kWh", p.name)
        T.eq(p.scale, 0.001, p.name .. ": SunSpec counts Wh")
      elseif p.device_class == "power" then
        T.eq(p.unit, "W", p.name)
      end
    end
  end
end)

T.test("describe: the device block comes from the common model", function()
  local s <close> = inverter()
  local d = assert(s.dev:describe())
  T.eq(d.manufacturer, "Acme", "Mn")
  T.eq(d.model, "X5", "Md")
  T.eq(d.serial, "A123", "SN")
  T.eq(d.sw_version, "1.2", "Vr")
  local enabled
  for _, p in ipairs(d.points) do
    if p.name == "power_limit_enabled" then enabled = p end
  end
  T.eq(table.concat(enabled.options, ","), "DISABLED,ENABLED", "enum options")
end)

T.test("read: scaled values, kWh, repeating groups, enums; absent when not implemented", function()
  local s <close> = inverter()
  assert(not s.dev:online(), "offline before the first read")
  local v = assert(s.dev:read())
  assert(s.dev:online(), "online after a read")
  T.eq(v.power, 4000, "W")
  T.eq(v.energy, 123.456, "Wh -> kWh")
  T.eq(v.pv1_power, 2100, "module 1")
  T.eq(v.pv2_power, 1900, "module 2")
  T.eq(v.state, "MPPT", "enum symbol")
  T.eq(v.max_power, 5000, "WMax")
  T.eq(v.power_limit_revert, nil, "not implemented: absent")
end)

T.test("write: the power limit reaches the inverter; refusals send nothing", function()
  local s <close> = inverter()
  assert(s.dev:read())
  assert(s.dev:write("power_limit", 50))
  assert(s.dev:write("power_limit_enabled", "ENABLED"))
  T.eq(s.srv:get(123, "WMaxLimPct"), 50, "on the device")
  T.eq(assert(s.dev:read()).power, 2500, "the simulated inverter obeys")
  local before = s.srv:stats().requests
  assert(before > 0, "the server counts requests")
  local ok, err, code = s.dev:write("power_limit", 150)
  T.eq(ok, nil, "out of range")
  T.eq(code, "out_of_range", err)
  ok, err, code = s.dev:write("energy", 1)
  T.eq(ok, nil, "read-only")
  T.eq(code, "not_writable", err)
  ok, err, code = s.dev:write("power_limit_enabled", "MAYBE")
  T.eq(ok, nil, "bad option")
  T.eq(code, "bad_option", err)
  T.eq(s.srv:stats().requests, before, "no request for a refused write")
end)

T.test("write{...}: the points of one model in one write (704 adjacent; 123 across RW registers)",
function()
  local reads = 0
  local srv <close> = assert(md.sunspec.serve("tcp://127.0.0.1:0", {
    models = { 1, 103, 120, 121, 123, 704 }, values = { [121] = { WMax = 5000 } },
    on_read = function() reads = reads + 1 end,
  }))
  local dev <close> = devices.open("sunspec_inverter", srv:url())
  assert(dev:read())
  -- writes reaching the server: its requests less the reads it answered
  local function writes(fn)
    local r0, q0 = reads, srv:stats().requests
    fn()
    return srv:stats().requests - q0 - (reads - r0)
  end
  T.eq(writes(function()
    assert(dev:write { der_limit = 60, der_limit_enabled = "ENABLED", der_failsafe_limit = 30,
      der_failsafe_enabled = "ENABLED", der_revert = 120 })
  end), 1, "five adjacent points of 704: one write")
  T.eq(srv:get(704, "WMaxLimPct"), 60, "704 limit")
  T.eq(srv:get(704, "WMaxLimPctRvrtTms"), 120, "704 revert time")
  -- 123: WMaxLimPct, WMaxLimPct_RvrtTms and WMaxLim_Ena have WinTms and
  -- RmpTms (RW, not in the profile) between: written back as they are
  srv:set(123, "WMaxLimPct_WinTms", 7)
  T.eq(writes(function()
    assert(dev:write { power_limit = 50, power_limit_revert = 60, power_limit_enabled = "ENABLED" })
  end), 1, "123: limit, revert time and enable in one write")
  T.eq(srv:get(123, "WMaxLimPct_WinTms"), 7, "the register between keeps its value")
  T.eq(srv:get(123, "WMaxLimPct"), 50, "123 limit")
  T.eq(srv:get(123, "WMaxLimPct_RvrtTms"), 60, "123 revert")
  T.eq(srv:get(123, "WMaxLim_Ena"), "ENABLED", "123 enabled")
  T.eq(writes(function()
    local ok, err, code = dev:write { power_limit = 40, power_limit_revert = 60, der_limit = 150 }
    T.eq(ok, nil, "one bad value")
    T.eq(code, "out_of_range", err)
  end), 0, "refuses them all")
  T.eq(srv:get(123, "WMaxLimPct"), 50, "unchanged")
end)

T.test("an unreachable device: read fails with a reason, then recovers", function()
  local srv = assert(md.sunspec.serve("tcp://127.0.0.1:0", { models = { 1, 203 } }))
  local url = srv:url()
  srv:close()
  local dev <close> = devices.open("sunspec_meter", url, { timeout = 0.3 })
  local v, err, code = dev:read()
  T.eq(v, nil, "no values")
  assert(type(err) == "string" and err:find("sunspec_meter", 1, true), err)
  assert(code, "a code")
  assert(not dev:online(), "offline")
  T.eq(dev:describe(), nil, "describe fails too")
  -- The device comes back on the same address: the next read discovers it.
  local _again <close> = assert(md.sunspec.serve(url, {
    models = { 1, 203 }, values = { [203] = { W = 42 } },
  }))
  T.eq(assert(dev:read()).power, 42, "read after recovery")
  assert(dev:online(), "online again")
end)

T.test("a meter: power and both energy totals", function()
  local srv <close> = assert(md.sunspec.serve("tcp://127.0.0.1:0", {
    models = { 1, 203 }, values = { [203] = { W = -1500, TotWhImp = 4000500, TotWhExp = 2000 } },
  }))
  local dev <close> = devices.open("sunspec_meter", srv:url())
  local v = assert(dev:read())
  T.eq(v.power, -1500, "export")
  T.eq(v.import_energy, 4000.5, "kWh")
  T.eq(v.export_energy, 2, "kWh")
end)

T.test("sunspec_storage: battery (802) and storage controls (124) from raw register values", function()
  -- Raw integers and scale factors as a device image holds them, set on the
  -- simulator by model point (not through the profile).
  local srv <close> = assert(md.sunspec.serve("tcp://127.0.0.1:0", {
    models = {
      1,
      { id = 124, raw = { ChaState = 655, ChaState_SF = -1, WChaMax = 5000, WChaMax_SF = 0,
                          InWRte = 500, OutWRte = -250, InOutWRte_SF = -1, InOutWRte_RvrtTms = 600,
                          MinRsvPct = 200, MinRsvPct_SF = -1, StorCtl_Mod = 1 } },
      { id = 802, raw = { SoC = 655, SoC_SF = -1, SoH = 98, SoH_SF = 0, V = 5123, V_SF = -1,
                          A = -105, A_SF = -1, W = -5380, W_SF = 0, State = 3, ChaSt = 4,
                          WHRtg = 1020, WHRtg_SF = 1, NCyc = 321 } },
    },
  }))
  local dev <close> = devices.open("sunspec_storage", srv:url())
  local v = assert(dev:read())
  T.eq(v.battery_soc, 65.5, "SoC")
  T.eq(v.battery_soh, 98, "SoH")
  T.eq(v.battery_voltage, 512.3, "V")
  T.eq(v.battery_current, -10.5, "A")
  T.eq(v.battery_power, -5380, "W")
  T.eq(v.battery_state, "CONNECTED", "State 3")
  T.eq(v.charge_status, "CHARGING", "ChaSt 4")
  T.eq(v.battery_capacity, 10.2, "WHRtg 1020 x 10 Wh in kWh")
  T.eq(v.battery_cycles, 321, "NCyc")
  T.eq(v.storage_soc, 65.5, "ChaState")
  T.eq(v.max_charge_power, 5000, "WChaMax")
  T.eq(v.charge_rate, 50, "InWRte")
  T.eq(v.discharge_rate, -25, "OutWRte")
  T.eq(v.rate_revert, 600, "InOutWRte_RvrtTms")
  T.eq(v.min_reserve, 20, "MinRsvPct")
  T.eq(v.storage_mode, "CHARGE", "StorCtl_Mod bit 0")
  assert(dev:write("charge_rate", 75.5))
  T.eq(srv:get(124, "InWRte"), 75.5, "InWRte written with its scale factor")
  local ok, _, code = dev:write("charge_rate", 150)
  T.eq(ok, nil, "refused")
  T.eq(code, "out_of_range", "above 100 %")
end)

-- Issue 16: a mistake in a profile source is an error at open for every
-- driver (SunSpec, RCT, Modbus), points and info alike; the SunSpec driver
-- no longer hides point lookups behind pcall.
T.test("issue 16: a typo in any profile source raises at open, for every driver", function()
  local function opens(profile, target)
    local ok, err = pcall(devices.open, profile, target)
    return ok, tostring(err)
  end
  local ok, err = opens({ name = "t", protocol = "sunspec",
    points = { { name = "p", source = "inverter.Wattz" } } }, "tcp://127.0.0.1:1")
  T.eq(ok, false, "sunspec point")
  assert(err:find("'Wattz' is not a point of SunSpec model", 1, true), err)
  ok, err = opens({ name = "t", protocol = "sunspec", info = { serial = "1.Serial" },
    points = { { name = "p", source = "inverter.W" } } }, "tcp://127.0.0.1:1")
  T.eq(ok, false, "sunspec info")
  assert(err:find("info.serial: 'Serial' is not a point of SunSpec model 1", 1, true), err)
  ok, err = opens({ name = "t", protocol = "rct", info = { serial = "no.such_object" },
    points = { { name = "p", source = "dc_conv.dc_conv_struct[0].p_dc" } } }, "127.0.0.1:1")
  T.eq(ok, false, "rct info")
  assert(err:find("info.serial: 'no.such_object' is not in the RCT registry", 1, true), err)
  ok, err = opens({ name = "t", protocol = "modbus", info = { serial = { kind = "holdin", addr = 1 } },
    points = { { name = "p", source = { kind = "holding", addr = 0 } } } }, "tcp://127.0.0.1:1")
  T.eq(ok, false, "modbus info")
  assert(err:find("info.serial: source.kind must be", 1, true), err)
end)

T.test("issue 16: a group instance the device lacks is absent, not an error", function()
  local s <close> = inverter()
  -- module[3] of the two modules the simulator has: checked at open against
  -- the definition, absent from read() on this device.
  local dev <close> = devices.open({ name = "t", protocol = "sunspec", points = {
    { name = "m2", source = "160.module[2].DCW" }, { name = "m3", source = "160.module[3].DCW" },
  } }, s.srv:url())
  local v = assert(dev:read())
  T.eq(v.m2, 1900, "module 2")
  T.eq(v.m3, nil, "module 3 is absent")
end)
