-- The moondog side of tests/bench/modbus.sh, run as
--   moondog tests/bench/modbus_bench.lua reads PORT COUNT NREGS
--   moondog tests/bench/modbus_bench.lua buses PORT NBUSES COUNT_PER_BUS NREGS
--   moondog tests/bench/modbus_bench.lua planner [PORT [CYCLES]]
-- against a Modbus TCP server on 127.0.0.1:PORT whose holding and input
-- tables hold at least 10,000 registers. Prints figures as "key value"
-- lines for the shell script. Wall time is md.now(); client CPU is
-- os.clock(), the whole process (every thread).
-- Every loop is bounded by its count; a failed read stops the run.

local md = require "moondog"
local modbus = require "moondog.modbus"
local planner = require "moondog.modbus.planner"

local mode = ...
local args = { select(2, ...) }

local function open(port)
  local bus, err = modbus.open("tcp://127.0.0.1:" .. port, { timeout = 1 })
  return assert(bus, err)
end

-- n reads of nregs registers from address 0, one after the other.
local function read_loop(bus, n, nregs)
  for i = 1, n do
    local regs, err = bus:read_holding(1, 0, nregs)
    if not regs then
      error(string.format("read %d failed: %s", i, err), 0)
    end
  end
end

local function report(key, value)
  print(string.format("%s %.2f", key, value))
end

if mode == "reads" then
  local port, count, nregs = args[1], tonumber(args[2]), tonumber(args[3])
  local bus <close> = open(port)
  read_loop(bus, 10, nregs) -- connect and warm up outside the measurement
  local t0, c0 = md.now(), os.clock()
  read_loop(bus, count, nregs)
  local wall, cpu = md.now() - t0, os.clock() - c0
  report("rps", count / wall)
  report("cpu_us", cpu / count * 1e6)

elseif mode == "buses" then
  local port, nbuses, count, nregs = args[1], tonumber(args[2]), tonumber(args[3]), tonumber(args[4])
  local buses = {}
  for i = 1, nbuses do
    buses[i] = open(port)
    read_loop(buses[i], 10, nregs)
  end
  local t0, c0 = md.now(), os.clock()
  local tasks = {}
  for i = 1, nbuses do
    tasks[i] = md.spawn(read_loop, buses[i], count, nregs)
  end
  for i = 1, nbuses do
    local ok, err = tasks[i]:join()
    if ok == nil and err then error(err, 0) end
  end
  local wall, cpu = md.now() - t0, os.clock() - c0
  for i = 1, nbuses do buses[i]:close() end
  report("rps", nbuses * count / wall)
  report("cpu_us", cpu / (nbuses * count) * 1e6)

elseif mode == "planner" then
  -- Eastron SDM630-like meter: float32 input registers (2 each), the
  -- readings a site controller polls (address = register - 30001).
  local sdm = {}
  for _, a in ipairs({
    0x00, 0x02, 0x04, 0x06, 0x08, 0x0A, 0x0C, 0x0E, 0x10, 0x12, 0x14, 0x16, 0x18, 0x1A, 0x1C,
    0x1E, 0x20, 0x22, 0x2A, 0x2E, 0x30, 0x34, 0x38, 0x3C, 0x3E, 0x46, 0x48, 0x4A, 0x4C, 0x4E,
    0x54, 0x56, 0xC8, 0xCA, 0xCC, 0xE0, 0xEA, 0xEC, 0xEE, 0xF0, 0xF2, 0xF4, 0x156, 0x158,
  }) do
    sdm[#sdm + 1] = { kind = "input", address = a, count = 2 }
  end
  -- Growatt MOD/MIN TL3-X-like inverter: input registers 0..125, uint16
  -- and uint32 (2 registers) readings from protocol v1.24.
  local growatt = {}
  for _, p in ipairs({
    { 0, 1 }, { 1, 2 }, { 3, 1 }, { 4, 1 }, { 5, 2 }, { 7, 1 }, { 8, 1 }, { 9, 2 }, { 35, 2 },
    { 37, 1 }, { 38, 1 }, { 39, 1 }, { 40, 2 }, { 42, 1 }, { 43, 1 }, { 44, 2 }, { 46, 1 },
    { 47, 1 }, { 48, 2 }, { 53, 2 }, { 55, 2 }, { 57, 2 }, { 59, 2 }, { 61, 2 }, { 63, 2 },
    { 65, 2 }, { 91, 2 }, { 93, 1 }, { 94, 1 }, { 95, 1 }, { 98, 1 }, { 99, 1 }, { 104, 1 },
    { 105, 1 }, { 110, 1 }, { 125, 1 },
  }) do
    growatt[#growatt + 1] = { kind = "input", address = p[1], count = p[2] }
  end

  local port, cycles = args[1], tonumber(args[2] or 200)
  local bus = port and open(port)
  for _, list in ipairs({ { "sdm630", sdm }, { "growatt", growatt } }) do
    local name, points = list[1], list[2]
    local reads = assert(planner.plan(points))
    local s = planner.stats(reads, points)
    print(string.format("%s_points %d", name, #points))
    print(string.format("%s_planned %d", name, s.transactions))
    print(string.format("%s_per_point %d", name, s.one_per_point))
    print(string.format("%s_extra_regs %d", name, s.extra))
    if bus then
      -- Poll cycles against the server: planned reads vs one read per point.
      local function cycle_rate(list_of_reads)
        local t0 = md.now()
        for _ = 1, cycles do
          for _, r in ipairs(list_of_reads) do
            assert(bus:read(1, r.kind, r.address, r.count))
          end
        end
        return cycles / (md.now() - t0)
      end
      report(name .. "_cycles_per_s_planned", cycle_rate(reads))
      report(name .. "_cycles_per_s_per_point", cycle_rate(points))
    end
  end
  if bus then bus:close() end
else
  io.stderr:write("usage: moondog tests/bench/modbus_bench.lua reads|buses|planner ...\n")
  md.exit(2)
end
