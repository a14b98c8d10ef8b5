-- moondog.sim.site: a simulated site: a plant (moondog.sim.plant) whose
-- devices are served over their real protocol from this engine, so that a
-- site script cannot tell them from hardware.
--
--   local sim = assert(require("moondog.sim.site").start(scenario))
--   local site = md.site.new { name = "home" }
--   sim:add_to(site, { poll = 1 })    -- site:add for each simulated device
--   ... sim.plant.grid_w, sim.plant.inverters.pv.output_w ...
--   sim:close()
--
-- A scenario is a table:
--   { name = "load drop", seed = 1, start = 12 * 3600 (plant seconds),
--     plant = { ...moondog.sim.plant spec... },
--     devices = {                                   -- what is served, by id
--       meter = { kind = "meter" },                 -- SunSpec meter, model 203
--       bat = { kind = "battery" },                 -- SunSpec storage, 124 + 802
--       rbat = { kind = "battery", protocol = "rct" }, -- RCT Power battery over RCT
--       gw = { kind = "inverter", protocol = "growatt_min" }, -- Growatt MIN over Modbus
--                                   -- (own_meter = "ct": its own export limit works)
--       pv = { kind = "inverter", inverter = "pv", models = { 123, 704 } },
--     },
--     events = { { at = s, meter = "silent", duration = 30 },     -- every meter
--                { at = s, silent = "pv", duration = 30 },       -- one device, by id
--                { at = s, refuse_writes = "pv", duration = 60 },  -- an inverter or a battery
--                { at = s, broker = "gone", duration = 300 } },
--     lines = { bus = { baud = 9600, turnaround = 0.02 } } }
-- `at` counts from the scenario's start. An event this module does not
-- act on itself (broker) goes to the handler the runner set with
-- sim:on(kind, fn(event, phase)), phase "start" and, after `duration`,
-- "end"; with no handler it is logged and ignored.
--
-- Serial lines. A device with `line = "bus"` is served as if it sat on
-- that RS-485 line: every transaction it serves is delayed by its wire
-- time, (request + response bytes of the Modbus RTU frames) x 11 bits /
-- baud, plus a 3.5-character gap after each frame and the device's
-- turnaround (default 0.02 s), and the devices of one line serve one
-- transaction at a time, as a half-duplex bus does: in arrival order,
-- except that a write goes before the reads still waiting, as the one
-- master's queue sends it (core/mbus.c).
-- The delay is an md.sleep in the server's hook task, so in simulated time
-- a 9600-baud bus costs exactly what it would on the wire.
--
-- Inverters are SunSpec devices with models 1, 103 (W, WH), 120, 121
-- (WMax) and the control models of `models`: 123 (WMaxLimPct,
-- WMaxLim_Ena, WMaxLimPct_RvrtTms: reverts to no limit) and/or 704
-- (WMaxLimPct, WMaxLimPctEna, WMaxLimPctRvrt, WMaxLimPctEnaRvrt,
-- WMaxLimPctRvrtTms: reverts to WMaxLimPctRvrt). A write of a limit, an
-- enable or a revert time sets the plant inverter's limit and restarts its
-- revert timer, as a real inverter does. The meter is model 203 (W, and
-- TotWhImp/TotWhExp); it shows the plant meter's last sample, so the
-- site reads it with the meter's own period and latency.
--
-- The plant runs on md.now(): a task advances it every `step` seconds
-- (default 0.1) and copies its state into the served registers. In
-- simulated time (md.clock) the whole site runs faster than real time and
-- repeats exactly.

local md = require "moondog"
local event = require "moondog.event"
local plant_mod = require "moondog.sim.plant"

local M = {}

local format = string.format

local Sim = {}
Sim.__index = Sim

local HISTORY_WH = 1000000 -- what the simulated counters held before the scenario

-- {===== serial lines =====

-- Modbus RTU frame sizes (bytes, CRC included) of one transaction.
local function rtu_bytes(kind, count, write)
  if write then return 9 + 2 * count, 8 end -- FC 16: request, response
  if kind == "coil" or kind == "discrete" then return 8, 5 + (count + 7) // 8 end
  return 8, 5 + 2 * count
end

--- sim.wire_time(line, request_bytes, response_bytes) -> seconds a
--- transaction holds the line.
function M.wire_time(line, req, resp)
  local char = 11 / line.baud
  return (req + resp) * char + 2 * 3.5 * char + (line.turnaround or 0.02)
end

-- Hold the caller for the transaction's wire time, after the
-- transactions already on the line. The line has one master, and its
-- queue sends a write before the reads still waiting (core/mbus.c keeps
-- writes in a queue of their own): a write waits for the transaction on
-- the wire and for earlier writes, not for every read booked before it.
local function on_line(line, req, resp, write)
  local cost = M.wire_time(line, req, resp)
  local q = line.waiting
  local me = { write = write }
  -- the line goes to the next waiter when this transaction ends, or when
  -- its caller is cancelled, waiting or on the wire
  local _ <close> = setmetatable({}, { __close = function()
    if line.holder == me then
      line.holder = table.remove(q, 1)
      if line.holder then line.holder.ev:set() end
    else
      for i = 1, #q do if q[i] == me then table.remove(q, i) break end end
    end
  end })
  if line.holder then
    local at = #q + 1
    if write then
      at = 1
      while q[at] and q[at].write do at = at + 1 end
    end
    me.ev = event.new()
    table.insert(q, at, me)
    me.ev:wait()
  else
    line.holder = me
  end
  line.busy_until = md.now() + cost
  line.transactions = line.transactions + 1
  line.busy_s = line.busy_s + cost
  md.sleep(cost)
end

-- Where the delay is taken. The natural place is the server: its hooks
-- run in tasks, and a hook that sleeps delays the answer. That is how it
-- works in real time. In simulated time it cannot: a Modbus request in
-- flight holds the loop (core/mbus_lua.c, md_loop_hold), and a held loop
-- never jumps its clock, so a server that sleeps while this process's own
-- client waits would wait for ever. There the delay is taken on the
-- client side instead, before the request is sent, on the buses this
-- process opened to the simulated devices (sim:add_to and
-- moondog.sim.run register them), so that the cost is the same and
-- nothing is in flight while the clock jumps. A client in another process
-- gets no wire time in simulated time.
local lined = setmetatable({}, { __mode = "k" }) -- bus -> line
local wrapped = false

local READS = { read = true, read_holding = "holding", read_input = "input", read_coils = "coil",
                read_discrete = "discrete", read_value = "value" }
local WRITES = { write_register = 1, write_registers = true, write_coil = 1, write_coils = true,
                 mask_write = 1, write_read = true }

local function wrap_bus_methods(bus)
  if wrapped then return end
  wrapped = true
  local methods = getmetatable(bus).__index
  for name, kind in pairs(READS) do
    local orig = methods[name]
    methods[name] = function(b, unit, a1, a2, a3, ...)
      local line = lined[b]
      if line then
        if kind == true then on_line(line, rtu_bytes(a1, a3, false)) -- read(unit, kind, addr, count)
        elseif kind == "value" then on_line(line, rtu_bytes("holding", 2, false))
        else on_line(line, rtu_bytes(kind, a2, false)) end
      end
      return orig(b, unit, a1, a2, a3, ...)
    end
  end
  for name, n in pairs(WRITES) do
    local orig = methods[name]
    methods[name] = function(b, unit, addr, values, ...)
      local line = lined[b]
      if line then
        local req, resp = rtu_bytes("holding", n == 1 and 1 or #values, true)
        on_line(line, req, resp, true)
      end
      return orig(b, unit, addr, values, ...)
    end
  end
end

-- Server side (real time only; see above).
local function line_hook(self, name, req, resp, write)
  if name and self.lines[name] and not md.clock.simulated() then
    on_line(self.lines[name], req, resp, write)
  end
end

-- Put a SunSpec server's writes on its line.
local function wire(self, srv, name)
  if not name then return end
  local write = srv._on_write
  srv._on_write = function(s, kind, addr, values)
    local req, resp = rtu_bytes(kind, #values, true)
    line_hook(self, name, req, resp, true)
    return write(s, kind, addr, values)
  end
end

-- A silent device (an event) answers reads with "the gateway's target
-- does not answer", as the RS-485 device behind a Modbus gateway would.
local function silent_hook(self, id)
  return function()
    local untl = self.silent_until[id]
    if untl and self.plant.t < untl then return "gateway_target_failed" end
  end
end

local function line_read_hook(self, name, inner)
  return function(unit, kind, addr, count, mb)
    line_hook(self, name, rtu_bytes(kind, count, false))
    if inner then return inner(unit, kind, addr, count, mb) end
  end
end

--- sim:wire_client(id, bus): in simulated time, the bus this process
--- uses for device id pays the wire time of the device's line (see above).
--- bus may be nil: the device's shared bus is taken then. A device that
--- is not on a Modbus line (an RCT battery) pays nothing here.
function Sim:wire_client(id, bus)
  local d = self.scenario_devices[id]
  if not (d and d.line and d.protocol ~= "rct" and md.clock.simulated()) then return end
  bus = bus or assert(require("moondog.modbus").shared(self:url(id)))
  wrap_bus_methods(bus)
  lined[bus] = self.lines[d.line]
end

-- }=====

-- {===== inverters =====

-- The limit a SunSpec inverter applies now, from its control models.
local function apply_limit(inv, srv, models)
  local pct, opts = 100, {}
  if models[704] and srv:get(704, "WMaxLimPctEna") == "ENABLED" then
    pct = srv:get(704, "WMaxLimPct") or 100
    local rvrt = srv:get(704, "WMaxLimPctRvrtTms")
    if rvrt and rvrt > 0 then
      opts.revert = rvrt
      opts.revert_to = srv:get(704, "WMaxLimPctEnaRvrt") == "ENABLED" and srv:get(704, "WMaxLimPctRvrt")
        or 100
    end
  elseif models[123] and srv:get(123, "WMaxLim_Ena") == "ENABLED" then
    pct = srv:get(123, "WMaxLimPct") or 100
    local rvrt = srv:get(123, "WMaxLimPct_RvrtTms")
    if rvrt and rvrt > 0 then opts.revert, opts.revert_to = rvrt, 100 end
  end
  return inv:set_limit(math.max(0, math.min(100, pct)), opts)
end

local function serve_inverter(self, id, d)
  local inv = self.plant.inverters[d.inverter or id]
    or error(format("sim site: device %s: the plant has no inverter '%s'", id, d.inverter or id), 3)
  local models = { 1, 103, 120, 121 }
  local has = {}
  for _, m in ipairs(d.models or { 123 }) do
    models[#models + 1] = m
    has[m] = true
  end
  local values = {
    [1] = { Mn = "moondog", Md = "Simulated inverter", SN = "SIM-" .. id:upper(), Vr = "1.0" },
    [121] = { WMax = inv.rating },
    [120] = { WRtg = inv.rating },
  }
  if has[123] then values[123] = { WMaxLimPct = 100, WMaxLim_Ena = "DISABLED", WMaxLimPct_RvrtTms = 0 } end
  if has[704] then
    values[704] = { WMaxLimPct = 100, WMaxLimPctEna = "DISABLED", WMaxLimPctRvrt = 100,
                    WMaxLimPctEnaRvrt = "DISABLED", WMaxLimPctRvrtTms = 0 }
  end
  local srv, err, code = md.sunspec.serve("tcp://127.0.0.1:0", { models = models, values = values,
    on_read = line_read_hook(self, d.line, silent_hook(self, id)) })
  if not srv then return nil, err, code end
  wire(self, srv, d.line)
  srv:on_write(function(model)
    if model == 123 or model == 704 then
      local ok, werr = apply_limit(inv, srv, has)
      if not ok then
        md.log.debug("sim %s: write refused: %s", id, tostring(werr))
        return "server_device_failure"
      end
    end
  end)
  local dev = { id = id, kind = "inverter", server = srv, profile = "sunspec_inverter", inv = inv }
  function dev.update()
    srv:set(103, "W", math.floor(inv.output_w + 0.5))
    srv:set(103, "WH", math.floor(HISTORY_WH + self.plant.pv_wh))
    srv:set(103, "DCW", math.floor(inv.output_w * 1.03 + 0.5))
  end
  return dev
end

-- }=====

-- {===== Growatt MIN =====

-- A Growatt MIN/MIC TL-X over Modbus (its registers as
-- devices/growatt/min_tlx.lua reads them) in front of a plant inverter:
-- holding register 3, the active power rate (% of the rating; 255: no
-- limit), sets the inverter's limit, which its output follows with the
-- plant's lag. The TL-X has no revert timer: a rate stays until written
-- again (in the inverter's memory; real ones keep it across a restart).
local function serve_growatt_min(self, id, d)
  local inv = self.plant.inverters[d.inverter or id]
    or error(format("sim site: device %s: the plant has no inverter '%s'", id, d.inverter or id), 3)
  local srv, err, code = md.modbus.serve("tcp://127.0.0.1:0", {
    on_read = d.line and line_read_hook(self, d.line) or nil,
    on_write = function(_, kind, addr, values)
      if kind ~= "holding" then return end
      local rate = addr <= 3 and values[3 - addr + 1]
      if not rate then return end
      if rate > 100 and rate ~= 255 then return "illegal_data_value" end
      local ok = inv:set_limit(rate == 255 and 100 or rate)
      if not ok then return "server_device_failure" end
    end,
  })
  if not srv then return nil, err, code end
  srv:set(1, "holding", 0, { 1, 0, 0, 255 })                  -- 3: active power rate, no limit
  srv:set_value(1, "holding", 9, "SIM", "string", "ABCD", 3)  -- firmware
  srv:set_value(1, "holding", 23, "SIMGW" .. id:upper():sub(1, 5), "string", "ABCD", 5)
  srv:set(1, "holding", 44, 0x0101)                           -- 1 tracker, 1 AC phase
  -- its own export limit (122 mode, 123 in 0.1 %): disabled unless the
  -- scenario gives it a meter of its own (own_meter = "ct" or "rs485")
  local modes = { rs485 = 1, rs232 = 2, ct = 3 }
  srv:set(1, "holding", 122, { modes[d.own_meter] or 0, 1000 })
  srv:set(1, "input", 3000, 1)                                -- normal
  local dev = { id = id, kind = "inverter", server = srv, profile = "growatt/min_tlx", inv = inv,
                rating = inv.rating }
  function dev.update()
    local mode, limit = table.unpack(srv:get(1, "holding", 122, 2))
    inv.export_limit_w = mode ~= 0 and limit / 1000 * inv.rating or nil
    local w = math.floor(inv.output_w * 10 + 0.5)
    srv:set_value(1, "input", 3001, math.floor(w * 1.03), "uint32")
    srv:set_value(1, "input", 3023, w, "uint32")
    srv:set(1, "input", 3025, { 5000, 2300, math.floor(inv.output_w / 23 + 0.5) })
    srv:set_value(1, "input", 3051, math.floor(HISTORY_WH / 100 + self.plant.pv_wh / 100), "uint32")
  end
  return dev
end

-- }=====

-- {===== battery =====

-- A SunSpec storage system (models 802 battery and 124 storage controls)
-- in front of the plant's battery. A write of model 124 sets the battery's
-- power: with StorCtl_Mod's CHARGE bit, InWRte % of WChaMax charging; with
-- DiSCHARGE, OutWRte % discharging; neither: idle. InOutWRte_RvrtTms > 0
-- makes the battery go idle by itself that long after the last write, as
-- the rate timers of model 124 do.
local function battery_setpoint(srv, max_w)
  local mode = srv:get(124, "StorCtl_Mod") or {}
  local bits = {}
  for _, name in ipairs(type(mode) == "table" and mode or {}) do bits[name] = true end
  if bits.CHARGE then return (srv:get(124, "InWRte") or 0) / 100 * max_w end
  if bits.DiSCHARGE then return -(srv:get(124, "OutWRte") or 0) / 100 * max_w end
  return 0
end

local function serve_battery(self, id, d)
  local b = self.plant.battery or error(format("sim site: device %s: the plant has no battery", id), 3)
  local srv, err, code = md.sunspec.serve("tcp://127.0.0.1:0", {
    models = {
      1,
      { id = 124, raw = { WChaMax = math.floor(b.max_w), WChaMax_SF = 0, InWRte = 0, OutWRte = 0,
                          InOutWRte_SF = -1, InOutWRte_RvrtTms = 0, MinRsvPct = math.floor(b.min_soc * 10),
                          MinRsvPct_SF = -1, ChaState = 0, ChaState_SF = -1, StorCtl_Mod = 0 } },
      { id = 802, raw = { SoC = 0, SoC_SF = -1, SoH = 100, SoH_SF = 0, V = 5000, V_SF = -1, A = 0, A_SF = -1,
                          W = 0, W_SF = 0, State = 3, ChaSt = 6,
                          WHRtg = math.floor(b.capacity_wh / 10), WHRtg_SF = 1, NCyc = 0 } },
    },
    values = { [1] = { Mn = "moondog", Md = "Simulated battery", SN = "SIM-" .. id:upper(), Vr = "1.0" } },
    on_read = d.line and line_read_hook(self, d.line) or nil,
  })
  if not srv then return nil, err, code end
  wire(self, srv, d.line)
  srv:on_write(function(model)
    if model == 124 then
      if b.refuse_writes then return "server_device_failure" end
      b.setpoint_w = battery_setpoint(srv, b.max_w)
      local rvrt = srv:get(124, "InOutWRte_RvrtTms") or 0
      b.revert_at = rvrt > 0 and self.plant.t + rvrt or nil
    end
  end)
  local dev = { id = id, kind = "battery", server = srv, profile = "sunspec_storage" }
  function dev.update()
    if b.revert_at and self.plant.t >= b.revert_at then b.setpoint_w, b.revert_at = 0, nil end
    srv:set(802, "SoC", math.floor(b.soc * 10 + 0.5) / 10)
    srv:set(124, "ChaState", math.floor(b.soc * 10 + 0.5) / 10)
    srv:set(802, "W", -math.floor(b.w + 0.5)) -- 802: < 0 charging
    srv:set(802, "A", math.floor(-b.w / 500 * 10 + 0.5) / 10)
    srv:set(802, "ChaSt", b.w > 0 and "CHARGING" or b.w < 0 and "DISCHARGING" or b.soc >= 100 and "FULL"
      or "HOLDING")
  end
  return dev
end

-- {===== RCT battery =====

-- An RCT Power battery inverter (Power Storage) in front of the plant's
-- battery, over the RCT protocol on TCP (moondog.rct.simulator), as
-- devices/rct_power.lua reads it. Facts used:
--  * objects, ids and types: shared/reference/rct/registry.tsv (from
--    python-rctclient): battery.soc 0x959930BF FLOAT, a fraction (0.62);
--    g_sync.p_acc_lp 0x400F015B FLOAT W, > 0 discharges the battery;
--    g_sync.p_ac_grid_sum_lp 0x91617C58 W, > 0 draws from the grid;
--    g_sync.p_ac_load_sum_lp 0x1AC87AA0 W (house); g_sync.p_ac_sum_lp
--    0xDB2D69AE W (the inverter's AC output); battery.stored_energy /
--    used_energy Wh; energy.e_grid_load_total / e_grid_feed_total Wh;
--    power_mng.soc_strategy 0xF168B748 ENUM (2 External, 4 Internal);
--    power_mng.battery_power_extern 0xBD008E29 FLOAT W.
--  * external battery power control, as the RCT write-support tools and
--    evcc's RCT battery control use it (github.com/do-gooder/
--    rctpower_writesupport, evcc-io/evcc pull 18178 and 18662): set
--    soc_strategy to 2 (External), then battery_power_extern to the power,
--    < 0 charging (-6000: charge at 6 kW), > 0 discharging; soc_strategy 4
--    (Internal) gives control back to the device. The device has no
--    timer that takes an external power back: it holds until written.
--  * no error frames: an RCT device answers a write with the value the
--    object holds, or not at all (shared/reference/rct/README.md,
--    Transport). So a write to a read-only object, or whose payload does
--    not fit the object's type, is answered with the unchanged value, and
--    a refused write (the scenario's refuse_writes) the same: the client
--    sees its value was not taken. A `silent` fault leaves the client to
--    its timeout.
-- Not modelled: the device's own strategies. Under any strategy but
-- External the simulated battery idles (a real one would run its own
-- self-consumption control). There are no PV strings on this inverter
-- (the plant's PV is on its own inverters): dc_conv reads 0. The voltage
-- is 400 V, and battery.maximum_charge_current is max_w / 400 V, so
-- current x voltage gives the battery's charge power.
local RCT_VOLTS = 400
local RCT_EXTERNAL = 2

local function serve_rct_battery(self, id, d)
  local b = self.plant.battery or error(format("sim site: device %s: the plant has no battery", id), 3)
  if d.line then
    error(format("sim site: device %s: an RCT battery talks TCP; `line` is for Modbus", id), 3)
  end
  local rct = require "moondog.rct"
  local srv
  local function setpoint()
    if srv:get("power_mng.soc_strategy") ~= RCT_EXTERNAL then return 0 end
    return -srv:get("power_mng.battery_power_extern")
  end
  local err, code
  srv, err, code = rct.serve {
    values = {
      ["power_mng.soc_strategy"] = 4, ["power_mng.battery_power_extern"] = 0.0,
      ["power_mng.soc_min"] = b.min_soc / 100, ["power_mng.soc_max"] = 1.0,
      ["battery.voltage"] = RCT_VOLTS, ["battery.maximum_charge_current"] = b.max_w / RCT_VOLTS,
      ["inverter_sn"] = "SIM-" .. id:upper(), ["android_description"] = "moondog simulated RCT battery",
      ["dc_conv.dc_conv_struct[0].p_dc_lp"] = 0.0, ["dc_conv.dc_conv_struct[1].p_dc_lp"] = 0.0,
    },
    accept_write = function() return not b.refuse_writes end,
    on_write = function(e)
      if e.name == "power_mng.soc_strategy" or e.name == "power_mng.battery_power_extern" then
        b.setpoint_w = setpoint()
      end
    end,
  }
  if not srv then return nil, err, code end
  local dev = { id = id, kind = "battery", protocol = "rct", server = srv, profile = "rct_power",
                url = "127.0.0.1:" .. srv:port() }
  local p = self.plant
  function dev.update()
    srv:set("battery.soc", b.soc / 100)
    srv:set("g_sync.p_acc_lp", -b.w)
    srv:set("g_sync.p_ac_sum_lp", -b.w)
    srv:set("g_sync.p_ac_grid_sum_lp", p.grid_w)
    srv:set("g_sync.p_ac_load_sum_lp", p.house_w)
    srv:set("battery.current", -b.w / RCT_VOLTS)
    srv:set("battery.stored_energy", HISTORY_WH + b.charged_wh)
    srv:set("battery.used_energy", HISTORY_WH + b.discharged_wh)
    srv:set("energy.e_grid_load_total", HISTORY_WH + p.import_wh)
    srv:set("energy.e_grid_feed_total", HISTORY_WH + p.export_wh)
  end
  return dev
end

-- }=====

-- {===== meter =====

local function serve_meter(self, id, d)
  local srv, err, code = md.sunspec.serve("tcp://127.0.0.1:0", {
    models = { 1, 203 },
    values = { [1] = { Mn = "moondog", Md = "Simulated grid meter", SN = "SIM-METER", Vr = "1.0" } },
    on_read = line_read_hook(self, d.line, silent_hook(self, id)),
  })
  if not srv then return nil, err, code end
  wire(self, srv, d.line)
  local dev = { id = id, kind = "meter", server = srv, profile = "sunspec_meter" }
  function dev.update()
    local w = self.plant.meter:reading()
    srv:set(203, "W", math.floor(w + 0.5))
    -- a meter with a history: SunSpec accumulators read 0 as "not implemented"
    srv:set(203, "TotWhImp", math.floor(HISTORY_WH + self.plant.import_wh))
    srv:set(203, "TotWhExp", math.floor(HISTORY_WH + self.plant.export_wh))
  end
  return dev
end

-- }=====

-- {===== events and the clock =====

local function run_events(self)
  for _, e in ipairs(self.events) do
    if not e.done and self.plant.t >= self.t0 + e.at then
      e.done = true
      if e.meter == "silent" or e.silent then
        local ids = { e.silent }
        if e.meter then
          for id, d in pairs(self.scenario_devices) do
            if d.kind == "meter" then ids[#ids + 1] = id end
          end
        end
        for _, id in ipairs(ids) do
          local d = self.scenario_devices[id]
          if not (d and (d.kind == "meter" or (d.kind == "inverter" and not d.protocol))) then
            error(format("sim site: silent: no SunSpec meter or inverter '%s'", id))
          end
          self.silent_until[id] = self.plant.t + (e.duration or 30)
          md.log.info("sim: %s goes silent for %g s", id, e.duration or 30)
        end
      elseif e.refuse_writes then
        local sd = self.scenario_devices[e.refuse_writes]
        local inv = self.plant.inverters[e.refuse_writes]
          or (sd and sd.kind == "battery" and self.plant.battery)
          or error(format("sim site: refuse_writes: no inverter or battery '%s'", e.refuse_writes))
        inv.refuse_writes = true
        md.log.info("sim: %s refuses writes", e.refuse_writes)
        if e.duration then
          self.undo[#self.undo + 1] = {
            at = self.plant.t + e.duration, fn = function() inv.refuse_writes = nil end,
          }
        end
      else
        local kind = e.broker and "broker" or "?"
        local fn = self.handlers[kind]
        if fn then
          fn(e, "start")
          if e.duration then
            self.undo[#self.undo + 1] = { at = self.plant.t + e.duration, fn = function() fn(e, "end") end }
          end
        else
          md.log.info("sim: event '%s' at %g s: nothing here acts on it", kind, e.at)
        end
      end
    end
  end
  for i = #self.undo, 1, -1 do
    if self.plant.t >= self.undo[i].at then
      self.undo[i].fn()
      table.remove(self.undo, i)
    end
  end
end

local function tick(self)
  local t = self.t0 + (md.now() - self.now0)
  self.plant:run_until(t)
  run_events(self)
  for _, d in ipairs(self.devices) do d.update() end
  if self.on_tick then self.on_tick(self) end
end

-- }=====

--- sim:on(kind, fn): fn(event, phase) acts on the scenario's events of
--- that kind ("broker"), phase "start", then "end" after its duration.
function Sim:on(kind, fn)
  self.handlers[kind] = fn
end

--- sim:line_stats(name) -> {transactions =, busy_s =, baud =} of a line.
function Sim:line_stats(name)
  local l = self.lines[name] or error("sim site: no line " .. tostring(name), 2)
  return { transactions = l.transactions, busy_s = l.busy_s, baud = l.baud }
end

--- sim:add_to(site [, opts]) adds every simulated device to the site,
--- with its profile and address; opts go to site:add (poll, ...).
function Sim:add_to(site, opts)
  for _, d in ipairs(self.devices) do
    assert(site:add(d.id, d.profile, self:url(d.id), opts))
    self:wire_client(d.id)
  end
end

--- sim:url(id) -> the address of a simulated device: Modbus
--- ("tcp://127.0.0.1:port?unit=1"), or "127.0.0.1:port" for an RCT one.
function Sim:url(id)
  for _, d in ipairs(self.devices) do
    if d.id == id then return d.url or d.server:url() .. "?unit=1" end
  end
  error("sim site: no device " .. tostring(id), 2)
end

--- sim:time() -> seconds since the scenario's start (plant time).
function Sim:time()
  return self.plant.t - self.t0
end

function Sim:close()
  if self.ticker then self.ticker:cancel() end
  for _, d in ipairs(self.devices) do d.server:close() end
  self.devices = {}
end
Sim.__close = Sim.close

--- site.start(scenario) -> simulated site, or nil, message, code.
function M.start(scenario)
  assert(type(scenario) == "table", "sim site: expected a scenario table")
  local spec = {}
  for k, v in pairs(scenario.plant or {}) do spec[k] = v end
  spec.start = scenario.start or spec.start or 12 * 3600
  spec.seed = scenario.seed or spec.seed
  local self = setmetatable({
    plant = plant_mod.new(spec), devices = {}, events = {}, undo = {}, silent_until = {},
    name = scenario.name,
    on_tick = scenario.on_tick, handlers = {}, lines = {}, scenario_devices = scenario.devices or {},
  }, Sim)
  self.t0, self.now0 = self.plant.t, md.now()
  for i, e in ipairs(scenario.events or {}) do
    local copy = {}
    for k, v in pairs(e) do copy[k] = v end
    self.events[i] = copy
  end
  for name, l in pairs(scenario.lines or {}) do
    if type(l.baud) ~= "number" or l.baud <= 0 then
      error(format("sim site: line %s: baud must be a number > 0", name), 2)
    end
    self.lines[name] = { baud = l.baud, turnaround = l.turnaround or 0.02, busy_until = 0, transactions = 0,
      busy_s = 0, waiting = {} }
  end
  local ids = {}
  for id in pairs(scenario.devices or {}) do ids[#ids + 1] = id end
  table.sort(ids)
  for _, id in ipairs(ids) do
    local d = scenario.devices[id]
    if d.line and not self.lines[d.line] then
      self:close()
      error(format("sim site: device %s: no line '%s' in the scenario's lines", id, d.line), 2)
    end
    local dev, err, code
    if d.kind == "meter" then
      dev, err, code = serve_meter(self, id, d)
    elseif d.kind == "inverter" and d.protocol == "growatt_min" then
      dev, err, code = serve_growatt_min(self, id, d)
    elseif d.kind == "inverter" then
      dev, err, code = serve_inverter(self, id, d)
    elseif d.kind == "battery" and d.protocol == "rct" then
      dev, err, code = serve_rct_battery(self, id, d)
    elseif d.kind == "battery" then
      dev, err, code = serve_battery(self, id, d)
    else
      error(format("sim site: device %s: kind must be \"meter\", \"inverter\" or \"battery\", got %s", id,
        tostring(d.kind)), 2)
    end
    if not dev then
      self:close()
      return nil, err, code
    end
    self.devices[#self.devices + 1] = dev
  end
  tick(self)
  self.ticker = md.every(scenario.step or 0.1, tick, self)
  self.ticker:name("sim site " .. tostring(scenario.name or ""))
  return self
end

return M
