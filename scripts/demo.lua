-- moondog demo: a small simulated solar site built from tasks and timers.
--
--   moondog demo [--seconds N]      (N = 0 runs until Ctrl-C; default 10)
--
-- Three tasks share one engine: the sun moves the PV output, the house load
-- wanders, and a battery task charges from surplus and covers deficits. A
-- fourth task prints the site once a second. While it runs, `moondog attach`
-- opens a REPL inside it (try `site`, `md.tasks()` or `site.load_w = 5000`).

local md = require "moondog"

local seconds = 10
local args = { ... }
for i = 1, #args do
  if args[i] == "--seconds" then
    seconds = tonumber(args[i + 1]) or error("--seconds needs a number (0 = run until Ctrl-C)")
  elseif args[i] == "--help" then
    print("usage: moondog demo [--seconds N]   (N = 0 runs until Ctrl-C)")
    return
  end
end

-- Site state: a global on purpose, so that an attached REPL can see it.
site = {
  pv_w = 0,
  load_w = 600,
  battery_w = 0,      -- > 0 charging, < 0 discharging
  soc = 50,           -- %
  grid_w = 0,         -- > 0 import, < 0 export
  capacity_wh = 10000,
  max_battery_w = 3000,
}

-- The sun: one simulated day passes in 60 s, a sine between 06:00 and 18:00.
md.every(0.1, function()
  local hour = (md.now() / 60 * 24 + 9) % 24
  local daylight = math.max(0, math.sin((hour - 6) / 12 * math.pi))
  site.pv_w = math.floor(5000 * daylight + 0.5)
  site.hour = hour
end)

-- The house: a load that wanders around its base value.
md.every(0.5, function()
  site.load_w = math.max(150, site.load_w + math.random(-200, 200))
end)

-- The battery controller: absorb surplus, cover deficit, respect limits.
md.every(0.2, function()
  local surplus = site.pv_w - site.load_w
  local want = math.max(-site.max_battery_w, math.min(site.max_battery_w, surplus))
  if (want > 0 and site.soc >= 100) or (want < 0 and site.soc <= 10) then
    want = 0
  end
  site.battery_w = want
  site.soc = math.min(100, math.max(0, site.soc + want * 0.2 / 3600 / site.capacity_wh * 100 * 60))
  site.grid_w = site.load_w - site.pv_w + site.battery_w
end)

local attach = md.attach.listen()
if attach then
  md.log.info("attach with: moondog attach %s", attach:path())
end

md.log.info("demo site running%s", seconds > 0 and (" for " .. seconds .. " s") or "; Ctrl-C to stop")
print(string.format("%5s %7s %7s %9s %6s %8s", "time", "pv W", "load W", "battery W", "soc %", "grid W"))
local view = md.every(1, function()
  local h = site.hour or 0
  print(string.format("%02d:%02d %7d %7d %9d %6.1f %8d", math.floor(h), math.floor(h % 1 * 60),
    site.pv_w, site.load_w, site.battery_w, site.soc, site.grid_w))
  io.stdout:flush()
end)

if seconds > 0 then
  md.sleep(seconds)
  view:cancel()
  md.exit(0)
end
