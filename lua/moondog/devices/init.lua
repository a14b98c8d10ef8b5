-- moondog.devices: open a device from a profile (see devices/README.md).
-- The profile names its protocol; the driver moondog.devices.<protocol>
-- turns profile + target into a device object with describe/read/write.

local M = {}

local function devices_dir()
  return require("moondog").paths.devices
end

--- devices.load(name_or_path) -> profile table. Raises on a missing or broken file:
--- a profile is part of the program, not input from a device.
function M.load(spec)
  if type(spec) == "table" then
    return spec
  end
  assert(type(spec) == "string", "devices.load: expected a profile name, path or table")
  local path = spec
  if not spec:find("/", 1, true) and not spec:find("%.lua$") then
    path = devices_dir() .. "/" .. spec .. ".lua"
  end
  local chunk, err = loadfile(path, "t", {})
  if not chunk then
    error("devices.load: cannot load profile " .. spec .. ": " .. err, 2)
  end
  local profile = chunk()
  if type(profile) ~= "table" or type(profile.points) ~= "table" then
    error("devices.load: profile " .. spec .. " must return a table with a points list", 2)
  end
  profile.name = profile.name or spec:match("([^/]+)%.lua$") or spec
  return profile
end

--- devices.open(profile, target [, opts]) -> device. target is what the
--- driver connects to (a Modbus URL, "host:port" for RCT, ...).
function M.open(spec, target, opts)
  local profile = M.load(spec)
  local protocol = profile.protocol
  assert(type(protocol) == "string", "devices.open: profile has no protocol")
  local ok, driver = pcall(require, "moondog.devices." .. protocol)
  if not ok then
    error("devices.open: no driver for protocol '" .. protocol .. "': " .. driver, 2)
  end
  return driver.open(profile, target, opts or {})
end

return M
