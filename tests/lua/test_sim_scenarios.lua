-- The shipped scenarios (moondog.sim.scenarios) run with moondog's export
-- limiter through moondog.sim.run, in simulated time over real loopback
-- sockets: the loader, the serial line's wire time, and each scenario's
-- own point (a load drop within the floor, fail-safe on a silent meter and
-- on refused writes, two inverters on one 9600-baud bus shared by rating,
-- clouds, a day; the broker scenario runs in real time in
-- test_sim_broker.lua).

local T = require "moondog.testing"
local md = require "moondog"
local scenarios = require "moondog.sim.scenarios"
local simsite = require "moondog.sim.site"
local run = require "moondog.sim.run"

md.clock.simulate { start = "2026-06-21 12:00", seed = 12 }

-- Run a scenario for `seconds` (default: its own); check(r) may look at
-- the run while it goes, once a second.
local function run_scenario(name, opts)
  opts = opts or {}
  local sc = scenarios.get(name)
  for k, v in pairs(opts.change or {}) do sc[k] = v end
  local states = {}
  local r = assert(run.start(sc, { controller = opts.controller, mqtt = opts.mqtt,
    on_second = function(_, row)
      states[row.t] = row.state
      if opts.each then opts.each(row) end
    end }))
  md.sleep(opts.seconds or sc.seconds)
  local m = r:metrics()
  return r, m, states
end

T.test("the loader lists every shipped file and names them when a name is wrong", function()
  local names = scenarios.list()
  local dir = package.searchpath("moondog.sim.scenarios.load_drop", package.path):match("^(.*)/[^/]+$")
  local p = assert(io.popen("ls " .. T.quote(dir)))
  local files = {}
  for f in p:lines() do
    local n = f:match("^(.-)%.lua$")
    if n and n ~= "init" then files[#files + 1] = n end
  end
  p:close()
  table.sort(files)
  local sorted = table.move(names, 1, #names, 1, {})
  table.sort(sorted)
  T.eq(table.concat(sorted, " "), table.concat(files, " "), "list() names every file")
  for _, n in ipairs(names) do
    local sc = scenarios.get(n)
    T.eq(sc.name, n, "name")
    assert(type(sc.description) == "string" and sc.seconds > 0 and sc.devices.meter, n)
  end
  local a, b = scenarios.get("load_drop"), scenarios.get("load_drop")
  assert(a ~= b and a.plant ~= b.plant, "a fresh table each time")
  local ok, err = pcall(scenarios.get, "sunny")
  T.eq(ok, false, "unknown name")
  assert(err:find("no scenario 'sunny'", 1, true) and err:find("load_drop", 1, true), err)
end)

T.test("a serial line: each transaction costs its wire time, one at a time", function()
  local line = { baud = 9600, turnaround = 0.02 }
  -- 100 registers: request 8 bytes, response 205; 11 bits a byte, two 3.5-character gaps
  local want = (8 + 205 + 7) * 11 / 9600 + 0.02
  assert(math.abs(simsite.wire_time(line, 8, 205) - want) < 1e-9, "wire_time")
  local sim <close> = assert(simsite.start(scenarios.get("rs485_9600")))
  local meter = assert(md.modbus.shared(sim:url("meter")))
  local pv1 = assert(md.modbus.shared(sim:url("pv1")))
  sim:wire_client("meter", meter)
  sim:wire_client("pv1", pv1)
  local t0 = md.now()
  assert(meter:read_holding(1, 40000, 100))
  local took = md.now() - t0
  assert(took >= want - 1e-3 and took < want + 0.01, "one read took " .. took)
  t0 = md.now()
  local done = T.expect(function() end, 1)
  local task = md.spawn(function() assert(pv1:read_holding(1, 40000, 100)) done() end)
  assert(meter:read_holding(1, 40000, 100))
  task:join()
  took = md.now() - t0
  assert(took >= 2 * want - 1e-3, "two devices on one line wait for each other: " .. took)
  T.eq(sim:line_stats("bus").transactions, 3, "transactions on the line")
  meter:close()
  pv1:close()
end)

T.test("a serial line: a write goes before the reads waiting, not before the one on the wire", function()
  local line = { baud = 9600, turnaround = 0.02 }
  local read = simsite.wire_time(line, 8, 205)
  local write = simsite.wire_time(line, 11, 8)
  local sim <close> = assert(simsite.start(scenarios.get("rs485_9600")))
  local meter = assert(md.modbus.shared(sim:url("meter")))
  local pv1 = assert(md.modbus.shared(sim:url("pv1")))
  sim:wire_client("meter", meter)
  sim:wire_client("pv1", pv1)
  local t0 = md.now()
  local done = {}
  local a = md.spawn(function() assert(pv1:read_holding(1, 40000, 100)) done.read1 = md.now() - t0 end)
  md.sleep(0.001) -- the first read is on the wire
  local b = md.spawn(function() assert(meter:read_holding(1, 40000, 100)) done.read2 = md.now() - t0 end)
  md.sleep(0.001) -- the second one waits
  pv1:write_register(1, 40000, 0) -- refused or not, it takes its wire time
  done.write = md.now() - t0
  a:join()
  b:join()
  assert(math.abs(done.read1 - read) < 0.01, "the read on the wire first: " .. done.read1)
  assert(math.abs(done.write - (read + write)) < 0.01, "then the write: " .. done.write)
  assert(math.abs(done.read2 - (2 * read + write)) < 0.01, "then the read that waited: " .. done.read2)
  meter:close()
  pv1:close()
end)

T.test("load_drop: the 6 kW drop is answered within the plant's floor", function()
  local r <close>, m = run_scenario("load_drop")
  T.eq(m.floor_s, 4, "floor: 1 s meter period + 3 tau")
  assert(m.longest_excursion_s <= m.floor_s + 1, "longest excursion " .. m.longest_excursion_s .. " s")
  assert(m.over_wh < 10, "energy over the limit " .. m.over_wh .. " Wh")
  T.eq(r.ctl:status().state, "limiting", "limiting at the end")
  r:close()
end, { timeout = 3600 })

T.test("meter_silent: fail-safe within the bound plus a sample, normal control after", function()
  local r <close>, _, states = run_scenario("meter_silent")
  local first
  for t = 90, 120 do
    if states[t] == "fail-safe" then first = t break end
  end
  assert(first and first <= 90 + 3 + 1 + 1, "fail-safe at " .. tostring(first))
  T.eq(states[200], "limiting", "normal control once the meter is back")
  r:close()
end, { timeout = 3600 })

T.test("refuse_writes: fail-safe, the errors counted, then back at work", function()
  local r <close>, _, states = run_scenario("refuse_writes")
  local seen = false
  for t = 60, 125 do seen = seen or states[t] == "fail-safe" end
  T.eq(seen, true, "fail-safe while writes are refused")
  assert(r.ctl:status().write_errors >= 1, "write errors counted")
  T.eq(states[230], "limiting", "limiting again")
  r:close()
end, { timeout = 3600 })

T.test("rs485_9600: two inverters on a 9600-baud bus, shared by rating", function()
  local r <close>, m = run_scenario("rs485_9600")
  local inv = r.sim.plant.inverters
  -- model 123 takes whole percent, 704 tenths: one percentage for both, within a point
  assert(math.abs(inv.pv1.limit_pct - inv.pv2.limit_pct) <= 1, string.format(
    "one percentage for both (shared by rating): %g and %g", inv.pv1.limit_pct, inv.pv2.limit_pct))
  assert(inv.pv2.limit_pct < 100, "curtailed")
  local stats = r.sim:line_stats("bus")
  assert(stats.busy_s > 0.3 * 300, "the bus is busy for real: " .. stats.busy_s .. " s of 300")
  -- after the step, the export settles near the limit
  local rows = r.rows
  local worst = 0
  for i = 160, #rows do worst = math.max(worst, -rows[i].grid_w) end
  assert(worst < 300, "export after settling: " .. worst .. " W")
  assert(m.longest_excursion_s < 60, "longest excursion " .. m.longest_excursion_s)
  r:close()
end, { timeout = 3600 })

T.test("passing_clouds: no fail-safe, short excursions", function()
  local r <close>, m, states = run_scenario("passing_clouds", { seconds = 600 })
  for t = 30, 600 do assert(states[t] ~= "fail-safe", "fail-safe at " .. t) end
  assert(m.longest_excursion_s < 15, "longest excursion " .. m.longest_excursion_s)
  r:close()
end, { timeout = 3600 })

T.test("sunny_day: an hour around noon, curtailed to the house", function()
  local r <close>, m = run_scenario("sunny_day", { change = { start = 11 * 3600 + 1800 }, seconds = 3600 })
  assert(m.ideal_curtailed_wh > 500, "the limit required curtailment")
  assert(m.curtailed_extra_wh < 0.1 * m.ideal_curtailed_wh, "little curtailed beyond that: "
    .. m.curtailed_extra_wh)
  assert(m.longest_excursion_s <= m.floor_s + 1, "longest excursion " .. m.longest_excursion_s)
  r:close()
end, { timeout = 7200 })

T.test("battery_first: the battery (SunSpec 124/802) charges before PV is curtailed", function()
  local r <close>, m = run_scenario("battery_first", { seconds = 150 })
  local p = r.sim.plant
  -- 30 s after the 6 kW drop: the battery at its 3 kW, PV curtailed only by the rest
  assert(math.abs(p.battery_w - 3000) < 1, "the battery charges at its power: " .. p.battery_w)
  assert(p.pv_w > p.house_w + 2800 and p.pv_w < p.house_w + 3100,
    string.format("PV %.0f W = house %.0f W + the battery's 3 kW", p.pv_w, p.house_w))
  assert(p.grid_w > -50 and p.grid_w < 200, "no export: " .. p.grid_w)
  assert(m.longest_excursion_s <= m.floor_s, "longest excursion " .. m.longest_excursion_s)
  T.eq(r.ctl:status().battery_w, 3000, "the controller's view")
  assert(r.site.bat.storage_mode == "CHARGE", "charge mode set over model 124")
  r:close()
  -- the same with the battery full: PV takes the whole cut
  local full <close> = run_scenario("battery_first", { seconds = 150, change = { plant = (function()
    local plant = scenarios.get("battery_first").plant
    plant.battery.soc = 100
    return plant
  end)() } })
  p = full.sim.plant
  T.eq(p.battery_w, 0, "a full battery takes nothing")
  assert(p.pv_w < p.house_w + 100, "PV curtailed to the house: " .. p.pv_w)
  assert(p.grid_w > -50, "no export: " .. p.grid_w)
  full:close()
end, { timeout = 3600 })

T.test("growatt_min: a Growatt MIN limited by its Modbus profile (holding 3), within the floor", function()
  local r <close>, m = run_scenario("growatt_min", { seconds = 150 })
  local p = r.sim.plant
  local inv = p.inverters.gw
  local srv
  for _, d in ipairs(r.sim.devices) do if d.id == "gw" then srv = d.server end end
  local rate = srv:get(1, "holding", 3)[1]
  assert(rate < 30, "the rate cut after the 2 kW drop: " .. rate .. " %")
  T.eq(inv.limit_pct, rate, "the plant inverter follows holding register 3")
  assert(math.abs(p.pv_w - p.house_w) < 150, string.format("PV %.0f W at the house load %.0f W", p.pv_w,
    p.house_w))
  assert(m.longest_excursion_s <= m.floor_s, "longest excursion " .. m.longest_excursion_s)
  local _, err, code = r.site.gw:write("active_power_rate", 100)
  T.eq(code, "owned", "the controller owns the rate: " .. tostring(err))
  r:close()
end, { timeout = 3600 })

T.test("broker_gone in simulated time: MQTT is refused with a clear reason", function()
  local sc = scenarios.get("broker_gone")
  local r, err, code = run.start(sc)
  T.eq(r, nil, "refused")
  T.eq(code, "simulated", err)
  assert(err:find("--speed 1", 1, true), err)
end)
