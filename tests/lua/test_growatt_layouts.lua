-- Layouts of devices/growatt/layouts.lua. First against real records:
-- tests/data/growatt_captures.tsv holds records captured by users of grott
-- and growattproxy (each row cites where it was published) with what they
-- decode to by grott's layout rules; each must parse (CRC included), get
-- the layout the data and the announce choose, and give those values. A
-- layout marked `verified` must have such a capture (here or in
-- ../shared/reference/growatt/packets.tsv).
--
-- Then every family with records built here (TL3-X/MAX and SPA have no
-- capture at all; for the others these reach values the captures leave at
-- 0): each record is built with moondog.growatt.core's builder from
-- register values written in the test, sent through the parser, and must
-- decode to those values with the layout that the groups and the announce
-- (device type code, tracker/phase word) choose. The register numbers come
-- from grott's byte offsets (see the layouts file), so a wrong register in
-- a layout fails here.

local T = require "moondog.testing"
local core = require "moondog.growatt.core"
local record = require "moondog.growatt.record"

local pack = string.pack
local PAD = string.rep("\0", 20)

-- A protocol 6 data record: groups {{first, last}, ...}, registers {[reg] = v}
-- (u16 each; 32-bit values are given as two registers by u32()).
local function data_record(rtype, groups, regs)
  local parts = { "LOGGER0001", PAD, "INVERTER01", PAD, "\24\6\1\12\0\0", string.char(#groups) }
  for _, g in ipairs(groups) do
    parts[#parts + 1] = pack(">I2I2", g[1], g[2])
    for r = g[1], g[2] do parts[#parts + 1] = pack(">I2", regs[r] or 0) end
  end
  local frame = core.build(7, 6, 1, rtype, table.concat(parts))
  local f = assert(core.parse(frame)[1])
  return f
end

local function u32(regs, reg, v)
  if v < 0 then v = v + 0x100000000 end
  regs[reg], regs[reg + 1] = v >> 16, v & 0xFFFF
end

local unhex = T.unhex

-- The rows of tests/data/growatt_captures.tsv ("#" lines are its prose).
local function capture_rows()
  local md = require "moondog"
  return T.read_tsv(md.paths.home .. "/tests/data/growatt_captures.tsv")
end

local function layout_named(name)
  for _, l in ipairs(record.layouts) do
    if l.name == name then return l end
  end
  error("no layout " .. tostring(name))
end

T.test("real captures decode to the values their sources give", function()
  local announces, compared, seen = {}, 0, {}
  for _, row in ipairs(capture_rows()) do
    local bytes = unhex(row.hex)
    if row.extra:match("cut=") then
      local seq, protocol, unit, typ = string.unpack(">I2I2xxBB", bytes)
      bytes = core.build(seq, protocol, unit, typ, bytes:sub(9))
    end
    local list, pending = core.parse(bytes)
    T.eq(#list, 1, row.label .. ": one frame")
    T.eq(pending, 0, row.label .. ": nothing left over")
    local f = list[1]
    T.eq(f.code, nil, row.label .. ": parsed, CRC good")
    local info = announces[f.body:sub(1, 10)]
    local r = record.decode(f, { dtc = info and info.dtc, tp = info and info.tp,
                                 log = function() error(row.label .. ": no log line expected") end })
    T.eq(r.kind, row.kind, row.label .. ": kind")
    if r.kind == "announce" then announces[f.body:sub(1, 10)] = r end
    for key, want in row.extra:gmatch("([%w_]+)=([^;]+)") do
      if key ~= "cut" then T.eq(tostring(r[key]), want, row.label .. ": " .. key) end
    end
    if row.layout ~= "" then
      T.eq(r.layout, row.layout, row.label .. ": layout")
      seen[row.layout] = true
      local by_grott = {}
      for _, pt in ipairs(layout_named(row.layout).points) do
        if pt.grott then by_grott[pt.grott] = pt.name end
      end
      for key, want in row.values:gmatch("([^=;]+)=([^;]+)") do
        local name = by_grott[key] or error(row.label .. ": no point for grott's " .. key)
        local got = r.values[name]
        assert(got ~= nil and math.abs(got - tonumber(want)) < 1e-4,
          string.format("%s: %s (grott's %s) = %s, the source says %s", row.label, name, key,
            tostring(got), want))
        compared = compared + 1
      end
    end
  end
  T.eq(compared, 25 + 20 + 23 + 22 + 44 + 37 + 48 + 48, "values compared")
  for _, l in ipairs(record.layouts) do
    if l.verified and l.name ~= "classic" and l.name ~= "tlx" then -- those: packets.tsv
      T.eq(seen[l.name], true, l.name .. " is marked verified: a capture must show it")
    end
  end
end)

local function decode(f, info)
  local opts = { log = function() error("no log line expected") end }
  if info then opts.dtc, opts.tp = info.dtc, info.tp end
  return record.decode(f, opts)
end

T.test("SPH / MIX: groups 0-124 + 1000-1124 give PV, grid and battery values", function()
  local regs = { [0] = 1, [3] = 3012, [38] = 2301, [1000] = 5, [1013] = 532, [1014] = 87 }
  u32(regs, 1, 41234)          -- PV power 4123.4 W
  u32(regs, 35, -1500)         -- AC power -150.0 W
  u32(regs, 53, 123)           -- 12.3 kWh today
  u32(regs, 1009, 2500)        -- battery discharge 250.0 W
  u32(regs, 1011, 0)
  u32(regs, 1021, 777)         -- from grid 77.7 W
  u32(regs, 1029, 12)          -- to grid 1.2 W
  u32(regs, 1037, 8888)        -- load 888.8 W
  u32(regs, 1052, 45)          -- discharged today 4.5 kWh
  u32(regs, 1058, 123456)      -- charged total 12345.6 kWh
  u32(regs, 112, 7)            -- AC charge today 0.7 kWh
  local r = decode(data_record(4, { { 0, 124 }, { 1000, 1124 } }, regs))
  T.eq(r.layout, "sph")
  local v = r.values
  T.eq(v.status, 1)
  T.eq(v.pv_power, 4123.4)
  T.eq(v.pv1_voltage, 301.2)
  T.eq(v.ac_power, -150.0)
  T.eq(v.grid_voltage, 230.1)
  T.eq(v.energy_today, 12.3)
  T.eq(v.system_work_mode, 5)
  T.eq(v.battery_discharge_power, 250.0)
  T.eq(v.battery_charge_power, 0)
  T.eq(v.battery_voltage, 53.2)
  T.eq(v.battery_soc, 87)
  T.eq(v.grid_import_power, 77.7)
  T.eq(v.grid_export_power, 1.2)
  T.eq(v.load_power, 888.8)
  T.eq(v.battery_discharge_energy_today, 4.5)
  T.eq(v.battery_charge_energy_total, 12345.6)
  T.eq(v.ac_charge_energy_today, 0.7)
end)

T.test("SPA: groups 1000-1124, 1125-1249, 2000-2124 give battery and inverter values", function()
  local regs = { [1014] = 42, [1086] = 41, [2000] = 1, [2038] = 2299 }
  u32(regs, 1011, 31000)       -- charging 3100.0 W
  u32(regs, 2035, 29876)       -- AC power 2987.6 W
  u32(regs, 2055, 98765)       -- 9876.5 kWh total
  local r = decode(data_record(4, { { 1000, 1124 }, { 1125, 1249 }, { 2000, 2124 } }, regs))
  T.eq(r.layout, "spa")
  T.eq(r.values.battery_soc, 42)
  T.eq(r.values.bms_soc, 41)
  T.eq(r.values.battery_charge_power, 3100.0)
  T.eq(r.values.status, 1)
  T.eq(r.values.ac_power, 2987.6)
  T.eq(r.values.grid_voltage, 229.9)
  T.eq(r.values.energy_total, 9876.5)
end)

T.test("TL3-X / MAX: groups 0-124 + 125-249, line voltages and PV3", function()
  local regs = { [11] = 6001, [50] = 4001, [51] = 4002, [52] = 4003, [93] = 456 }
  u32(regs, 13, 12345)
  u32(regs, 35, 100000)
  u32(regs, 91, 2000000)
  local r = decode(data_record(4, { { 0, 124 }, { 125, 249 } }, regs))
  T.eq(r.layout, "tl3")
  T.eq(r.values.pv3_voltage, 600.1)
  T.eq(r.values.pv3_power, 1234.5)
  T.eq(r.values.ac_power, 10000.0)
  T.eq(r.values.line_voltage_12, 400.1)
  T.eq(r.values.line_voltage_31, 400.3)
  T.eq(r.values.pv_energy_total, 200000.0)
  T.eq(r.values.temperature, 45.6)
end)

T.test("temperatures are signed: 0xFFF6 is -1.0 °C, not 6552.6", function()
  local r = decode(data_record(4, { { 0, 124 }, { 125, 249 } }, { [93] = 0xFFF6 }))
  T.eq(r.layout, "tl3")
  T.eq(r.values.temperature, -1.0)
  r = decode(data_record(4, { { 3000, 3124 }, { 3125, 3249 } }, { [3093] = 0xFFF6, [3097] = 0xFFEC }))
  T.eq(r.values.temperature, -1.0)
  T.eq(r.values.board_temperature, -2.0)
end)

T.test("3000-range: MOD when the announce says three-phase, TL-X/MIN otherwise", function()
  local regs = { [3026] = 2310, [3030] = 2320, [3038] = 4010 }
  u32(regs, 3041, 150)         -- from grid 15.0 W
  u32(regs, 3043, 2500)        -- to grid 250.0 W
  u32(regs, 3071, 33)          -- exported today 3.3 kWh
  local f = data_record(4, { { 3000, 3124 }, { 3125, 3249 } }, regs)
  local r = decode(f, { dtc = 5400, tp = 0x0203 })
  T.eq(r.layout, "mod")
  T.eq(r.values.grid_voltage, 231.0)
  T.eq(r.values.grid_voltage2, 232.0)
  T.eq(r.values.line_voltage_12, 401.0)
  T.eq(r.values.grid_import_power, 15.0)
  T.eq(r.values.grid_export_power, 250.0)
  T.eq(r.values.grid_export_energy_today, 3.3)
  T.eq(decode(f, { dtc = 5100, tp = 0x0201 }).layout, "tlx")
  T.eq(decode(f).layout, "tlx", "no announce seen yet: the single-phase family")
end)

T.test("the announce gives the device type code and the tracker/phase word", function()
  local f = data_record(3, { { 0, 124 }, { 125, 249 } }, { [43] = 5400, [44] = 0x0203 })
  local r = decode(f)
  T.eq(r.kind, "announce")
  T.eq(r.dtc, 5400)
  T.eq(r.tp, 0x0203)
end)

T.test("smart meter record 0x20: 32-bit values after the timestamp", function()
  -- protocol 6: serials and pads as in a data record, the timestamp, six
  -- bytes grott does not name, then the values (byte 80 on: voltage L1)
  local vals = {}
  local function put(at, v)
    if v < 0 then v = v + 0x100000000 end
    vals[at] = pack(">I4", v)
  end
  put(12, 2301); put(16, 2302); put(20, 2303)   -- voltages (0.1 V)
  put(24, 51)                                   -- current L1 5.1 A
  put(36, -1234)                                -- power L1 -123.4 W
  put(72, 998)                                  -- power factor L1 0.998
  put(84, -3456)                                -- power -345.6 W (export)
  put(100, 500)                                 -- 50.0 Hz
  put(116, 123456)                              -- import 12345.6 kWh
  put(120, 654321)                              -- export 65432.1 kWh
  local body = { "LOGGER0001", PAD, "METER00001", PAD, "\24\6\1\12\0\0" }
  for at = 6, 124, 2 do
    if vals[at] then body[#body + 1] = vals[at] elseif not vals[at - 2] then body[#body + 1] = "\0\0" end
  end
  local f = assert(core.parse(core.build(9, 6, 1, 0x20, table.concat(body)))[1])
  local r = decode(f)
  T.eq(r.kind, "meter")
  T.eq(r.layout, "meter")
  T.eq(r.logger, "LOGGER0001")
  T.eq(r.time, "2024-06-01T12:00:00")
  T.eq(r.values.voltage_l1, 230.1)
  T.eq(r.values.voltage_l3, 230.3)
  T.eq(r.values.current_l1, 5.1)
  T.eq(r.values.power_l1, -123.4)
  T.eq(r.values.power_factor_l1, 0.998)
  T.eq(r.values.power, -345.6)
  T.eq(r.values.frequency, 50.0)
  T.eq(r.values.import_energy, 12345.6)
  T.eq(r.values.export_energy, 65432.1)
end)

T.test("smart meter record 0x1b: comma-separated text fields", function()
  local fields = {}
  for i = 1, 40 do fields[i] = tostring(i) .. ".5" end
  fields[15], fields[21], fields[25], fields[26] = "231.2", "-1520.0", "49.98", "8123.4"
  local body = "LOGGER0001" .. PAD .. "\0\0\0\0\0\0\0\0\0\0" .. table.concat(fields, ",")
  local f = assert(core.parse(core.build(3, 6, 0x22, 0x1b, body))[1])
  local r = decode(f)
  T.eq(r.kind, "meter")
  T.eq(r.layout, "meter_sdm630")
  T.eq(r.values.voltage_l1, 231.2)
  T.eq(r.values.power, -1520.0)
  T.eq(r.values.frequency, 49.98)
  T.eq(r.values.import_energy, 8123.4)
  T.eq(r.values.power_l1, 3.5)
  T.eq(r.values.total_energy, 37.5)
end)

T.test("every layout point has a unique name and a register, offset or field", function()
  for _, l in ipairs(record.layouts) do
    local seen = {}
    for _, pt in ipairs(l.points) do
      assert(not seen[pt.name], l.name .. ": duplicate point " .. pt.name)
      seen[pt.name] = true
      assert(pt.reg or pt.at or pt.pos, l.name .. "." .. pt.name .. ": no place")
    end
  end
end)

T.test("opts.reuse: a layout's values go into one table kept per layout, filled anew", function()
  local reuse = {}
  local function tl3(v)
    local regs = { [93] = v }
    return data_record(4, { { 0, 124 }, { 125, 249 } }, regs)
  end
  local opts = { reuse = reuse, log = function() error("no log line expected") end }
  local a = record.decode(tl3(456), opts)
  local first = a.values
  T.eq(first.temperature, 45.6, "first record")
  local b = record.decode(tl3(321), opts)
  T.eq(b.values == first, true, "the same table")
  T.eq(b.values.temperature, 32.1, "filled with the second record's values")
  local regs = { [3026] = 2310 }
  local c = record.decode(data_record(4, { { 3000, 3124 }, { 3125, 3249 } }, regs), opts)
  T.eq(c.values == first, false, "another layout: another table")
  T.eq(c.values.line_voltage_12, nil, "nothing of the other layout's values")
  local d = decode(tl3(111))
  T.eq(d.values == first, false, "without reuse: a table of its own")
  T.eq(first.temperature, 32.1, "the reused table untouched by a decode without reuse")
end)
