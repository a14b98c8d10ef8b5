-- Bench: 200 simulated devices polled once a second from one engine.
--
--   moondog tests/bench/poll200.lua URL [SECONDS]
--
-- URL is a Modbus server answering every unit id (e.g. `moondog modbus
-- serve`). Each device is its own bus (one TCP connection, as separate
-- inverters on a LAN would be) polled every second by its own task, with
-- the reads the planner makes for an SDM630-like meter (about 40 float32
-- input registers). After a warm-up the engine measures its own CPU time
-- (os.clock) and RSS over SECONDS (default 10) and prints them.
local md = require "moondog"
local modbus = md.modbus

local url, seconds = arg[1], tonumber(arg[2] or "10")
assert(url, "usage: moondog tests/bench/poll200.lua URL [SECONDS]")

-- SDM630-like input registers: phases, totals, energy counters.
local points = {}
for addr = 0, 0x2E, 2 do points[#points + 1] = { kind = "input", address = addr, count = 2 } end
for _, addr in ipairs({ 0x30, 0x34, 0x38, 0x3C, 0x3E, 0x46, 0x48, 0x4E, 0x54, 0x56, 0x58,
  0xC8, 0xCA, 0xCC, 0xE0, 0xEA, 0xEC, 0x156, 0x158 }) do
  points[#points + 1] = { kind = "input", address = addr, count = 2 }
end
local reads = assert(modbus.plan(points))

local N = 200
local polls, failures = 0, 0
local tasks = {}
for unit = 1, N do
  local bus = assert(modbus.open(url))
  tasks[unit] = md.every(1, function()
    for _, r in ipairs(reads) do
      local regs = bus:read((unit - 1) % 247 + 1, r.kind, r.address, r.count)
      if regs then polls = polls + 1 else failures = failures + 1 end
    end
  end)
end

local function rss_kib()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmRSS:%s+(%d+)")
    if kb then return tonumber(kb) end
  end
end

md.sleep(2) -- warm-up: connections open, timeouts adapt
local cpu0, t0, polls0 = os.clock(), md.now(), polls
md.sleep(seconds)
local cpu, wall = os.clock() - cpu0, md.now() - t0
print(string.format("devices %d reads_per_cycle %d reads %d failures %d cpu_percent %.2f rss_kib %d",
  N, #reads, polls - polls0, failures, cpu / wall * 100, rss_kib()))
for _, t in ipairs(tasks) do t:cancel() end
md.exit(0)
