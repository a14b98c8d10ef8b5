-- moondog: the umbrella module. `local md = require "moondog"` gives the
-- task functions of the C core (spawn, sleep, every, now, ...), the log, and
-- every other moondog module on first use (md.modbus loads moondog.modbus).

local core = require "moondog.core"

local M = {}
for name, value in pairs(core) do
  M[name] = value
end
M.log = require "moondog.log"

M.paths = {
  exe = core.exe,
  home = core.home,
  lua = core.home .. "/lua",
  scripts = core.home .. "/scripts",
  devices = core.home .. "/devices",
}

--- md.every(s) -> iterator over ticks: `for n in md.every(1) do ... end`.
--- md.every(s, fn, ...) -> task calling fn(...) on every tick until cancelled.
--- Ticks are drift-free: the n-th is due at start + n * s.
function M.every(period, fn, ...)
  local ticks = core.every(period)
  if fn == nil then
    return ticks
  end
  assert(type(fn) == "function", "md.every: second argument must be a function")
  local args = table.pack(...)
  return core.spawn(function()
    for _ in ticks do
      fn(table.unpack(args, 1, args.n))
    end
  end)
end

-- Modules loaded on first use; listed so that the REPL can complete them.
local lazy = { "attach", "devices", "modbus", "mqtt", "rct", "repl", "site", "sunspec", "testing" }
local is_lazy = {}
for _, name in ipairs(lazy) do
  is_lazy[name] = true
end

return setmetatable(M, {
  __index = function(t, key)
    if is_lazy[key] then
      local mod = require("moondog." .. key)
      rawset(t, key, mod)
      return mod
    end
  end,
  __complete = function()
    return lazy
  end,
})
