-- site:add_pushed: a device fed by records its source pushes (the Growatt
-- proxy) rather than polled. dev:update sets values through the site's
-- policy (a total never goes down) and makes the device "ok"; dev:expire
-- makes it offline; watchers see both; add_pushed again adds points;
-- misuse raises.

local T = require "moondog.testing"
local md = require "moondog"

local function raises(fn, pattern)
  local ok, err = pcall(fn)
  assert(not ok, "expected an error matching " .. pattern)
  assert(tostring(err):find(pattern, 1, true), tostring(err))
end

T.test("a pushed device: update, watchers, totals held, expire, back", function()
  local site = md.site.new { name = "pushed" }
  local sd = site:add_pushed("meter1", { manufacturer = "ACME", model = "M1", points = {
    { name = "power", unit = "W", device_class = "power", state_class = "measurement" },
    { name = "energy", unit = "kWh", device_class = "energy", state_class = "total_increasing" },
  } })
  T.eq(site.meter1, sd)
  T.eq(sd.profile.manufacturer, "ACME")
  local _, _, state = sd:get("power")
  T.eq(state, "stale", "no value before the first update")
  local seen = {}
  local w = site:watch("meter1.power", function(v) seen[#seen + 1] = v end)
  local changed = sd:update({ power = 120.5, energy = 10.0 })
  T.eq(#changed, 2)
  T.wait_for(function() return #seen >= 1 end, 5, "the watcher sees the update")
  T.eq(seen[1], 120.5)
  local v, _, st = sd:get("power")
  T.eq(v, 120.5)
  T.eq(st, "ok")
  sd:update({ energy = 9.0 })            -- a total that goes down is held
  T.eq((sd:get("energy")), 10.0)
  T.eq((sd:get("power")), 120.5, "a point not in the update keeps its value")
  sd:expire("no record for 900 s")
  local _, _, st2 = sd:get("energy")
  T.eq(st2, "offline")
  T.eq((sd:get("power")), nil, "power is unavailable while offline")
  sd:update({ power = 99 })
  local v3, _, st3 = sd:get("power")
  T.eq(v3, 99)
  T.eq(st3, "ok")
  w:cancel()
  site:close()
end)

-- update's inline path for plain floats against take()'s rules: NaN is no
-- value, a total held back until it passes the held one, unchanged values
-- are not reported as changed, integers and floats alike.
T.test("a pushed device: NaN, held totals and unchanged values, float by float", function()
  local site = md.site.new { name = "pushed2" }
  local sd = site:add_pushed("m2", { points = {
    { name = "power", unit = "W", device_class = "power", state_class = "measurement" },
    { name = "energy", unit = "kWh", device_class = "energy", state_class = "total_increasing" },
  } })
  T.eq(#sd:update({ power = 1.5, energy = 10.5 }), 2)
  T.eq(#sd:update({ power = 1.5, energy = 10.5 }), 0, "nothing changed")
  T.eq(sd:update({ power = 0 / 0 })[1], "power", "NaN: the value is gone")
  T.eq((sd:get("power")), nil)
  T.eq(sd:update({ power = 2.5 })[1], "power", "a float after NaN")
  T.eq((sd:get("power")), 2.5)
  T.eq(#sd:update({ energy = 9.5 }), 0, "a lower total is held: nothing changed")
  T.eq((sd:get("energy")), 10.5)
  T.eq(#sd:update({ energy = 10.0 }), 0, "still below the held total")
  T.eq(sd:update({ energy = 11.0 })[1], "energy")
  T.eq((sd:get("energy")), 11.0)
  T.eq(sd:update({ energy = 12 })[1], "energy", "an integer")
  T.eq(sd.stats and sd:stats().held, 2, "two readings held back")
  site:close()
end)

T.test("pushed devices: misuse raises", function()
  local site = md.site.new { name = "pushed2" }
  local sd = site:add_pushed("p1", { points = { { name = "x" } } })
  raises(function() sd:update({ y = 1 }) end, "no point 'y'")
  site:value("sv.limit", { writable = true, min = 0, max = 10 })
  raises(function() site:add_pushed("sv", {}) end, "taken")
  -- again with more points: adds the ones it does not have
  T.eq(site:add_pushed("p1", { points = { { name = "x" }, { name = "z" } } }), sd)
  T.eq(#sd:update({ x = 1, z = 3 }), 2)
  raises(function() site.sv:update({ limit = 1 }) end, "not a pushed device")
  -- more points through site:value
  site:value("p1.y", {})
  T.eq(#sd:update({ y = 2 }), 1)
  site:close()
end)

-- A watch of one point sees that point only: not the same point name on
-- another device, not another point of its device (watchers_see compares
-- the device first, then the point, without a key per changed value).
T.test("a watch sees its own point of its own device only", function()
  local site = md.site.new { name = "pushed3" }
  local pts = { points = { { name = "x" }, { name = "y" } } }
  local a, b = site:add_pushed("dev_a", pts), site:add_pushed("dev_b", pts)
  local seen, all = {}, {}
  local w = site:watch("dev_a.x", function(v) seen[#seen + 1] = v end)
  local h = site:on_change(function(id, name, v) all[#all + 1] = id .. "." .. name .. "=" .. tostring(v) end)
  local function settle(n) T.wait_for(function() return #all >= n end, 5, "on_change sees update " .. n) end
  a:update({ x = 1 })
  settle(1)
  b:update({ x = 2 })
  settle(2)
  a:update({ y = 5 })
  settle(3)
  a:update({ x = 3 })
  settle(4)
  T.wait_for(function() return #seen >= 2 end, 5, "the watch sees dev_a.x twice")
  md.sleep(0)
  T.eq(#seen, 2, "dev_a.x changes seen")
  T.eq(seen[1], 1)
  T.eq(seen[2], 3)
  T.eq(table.concat(all, " "), "dev_a.x=1 dev_b.x=2 dev_a.y=5 dev_a.x=3", "on_change sees every change")
  w:cancel()
  h:cancel()
  site:close()
end)
