-- moondog devices: list the device profiles moondog can find, and check a
-- profile before a site opens it.
--
--   moondog devices [PATTERN]          profiles on the search path
--   moondog devices list [PATTERN]     the same
--   moondog devices check FILE...      every check a profile goes through
--
-- The list walks the search path of moondog.devices ($MOONDOG_DEVICES,
-- ~/.config/moondog/devices, /etc/moondog/devices, the shipped devices/),
-- two levels deep (`sdm630`, `eastron/sdm120`), and shows the profile each
-- name opens: a name found in an earlier folder hides the later ones, as it
-- does for a site. Files that return a table without points (SunSpec model
-- definitions, the RCT registry) are data, not profiles, and are left out.
--
-- check runs md.devices.check: the driver's checks at open, the site's and
-- Home Assistant's, all mistakes collected, so that an author fixes them in
-- one go. It prints one line per mistake and exits 1, or "ok: N points"
-- and exits 0. Exit 2: the command line is wrong.

local md = require "moondog"
local devices = require "moondog.devices"
local cli_mod = require "moondog.cli"

local format = string.format
local TOOL = "moondog devices"
local cli = cli_mod.new(TOOL)
local show_help = cli_mod.show_help

-- {===== list =====

-- Rows {name, manufacturer, model, protocol, from, file} of every profile
-- that a name opens, and the files that do not load.
local function profiles()
  local rows, broken = devices.list()
  local out = {}
  for i, r in ipairs(rows) do
    local p = r.profile
    out[i] = { r.name, tostring(p.manufacturer or "-"), tostring(p.model or "-"), tostring(p.protocol or "?"),
      r.from, r.file }
  end
  return out, broken
end

-- Rows as columns padded to their widest cell, the last one unpadded.
local function print_table(rows)
  local widths = {}
  for _, row in ipairs(rows) do
    for i, cell in ipairs(row) do
      widths[i] = math.max(widths[i] or 0, utf8.len(cell) or #cell)
    end
  end
  for _, row in ipairs(rows) do
    local cells = {}
    for i, cell in ipairs(row) do
      cells[i] = i < #row and cell .. string.rep(" ", widths[i] - (utf8.len(cell) or #cell)) or cell
    end
    io.stdout:write(table.concat(cells, "  "), "\n")
  end
end

local list_help = [=[
usage: moondog devices [list] [PATTERN]

Lists the device profiles that a site can open by name: name, manufacturer,
model, protocol, where it comes from (MOONDOG_DEVICES, user, system,
shipped) and its file. PATTERN keeps the profiles whose name, manufacturer
or model contains it (any case). Exit code 1 when none matches.

Profiles are looked for in $MOONDOG_DEVICES (folders separated by ':'),
~/.config/moondog/devices, /etc/moondog/devices, the folder of the site
script being run, then the profiles shipped with moondog; the first file of
a name wins. devices/README.md describes the profile format.
]=]

local function cmd_list(args)
  local o, pos = cli:parse("list", args, { help = {}, short = { h = "help" } })
  if o.help then show_help(list_help) end
  if #pos > 1 then cli:usage_error("list", "unexpected argument '%s' (one PATTERN at most)", pos[2]) end
  local pattern = pos[1] and pos[1]:lower()
  local rows, broken = profiles()
  for _, line in ipairs(broken) do
    cli_mod.say("%s: %s", TOOL, line)
  end
  local shown = { { "NAME", "MANUFACTURER", "MODEL", "PROTOCOL", "FROM", "FILE" } }
  for _, row in ipairs(rows) do
    local hit = not pattern
    for i = 1, 3 do
      hit = hit or row[i]:lower():find(pattern, 1, true) ~= nil
    end
    if hit then shown[#shown + 1] = row end
  end
  if #shown == 1 then
    cli_mod.say("%s: no profile %s", TOOL, pattern and format("matches '%s'", pos[1]) or "found")
    io.stdout:flush()
    md.exit(1)
    return
  end
  print_table(shown)
end

-- }=====

-- {===== check =====

local check_help = [=[
usage: moondog devices check FILE...

Runs every check a profile goes through when a site opens and publishes
it, and reports all mistakes at once, one line each: each point's source
(Modbus register specs; SunSpec model.point paths against the model
definitions, e.g. inverter.Wattz; RCT object names), names, writable points,
enums, the read plan, info sources, the offline/asleep policies and poll of
a site, names a site device keeps for itself, and the Home Assistant
device_class, state_class and unit, and min/max/step of writable numbers.

FILE is a path or a profile name. Prints "ok: N points" for a clean profile.
Exit codes: 0 every profile is clean, 1 a profile has mistakes, 2 the
command line is wrong.
]=]

local function cmd_check(args)
  local o, pos = cli:parse("check", args, { help = {}, short = { h = "help" } })
  if o.help then show_help(check_help) end
  if #pos == 0 then cli:usage_error("check", "missing the profile FILE to check") end
  local failed = false
  for _, file in ipairs(pos) do
    local prefix = #pos > 1 and file .. ": " or ""
    local mistakes, profile = devices.check(file)
    if #mistakes > 0 then
      failed = true
      for _, m in ipairs(mistakes) do
        io.stdout:write(prefix, m, "\n")
      end
    else
      io.stdout:write(format("%sok: %d points\n", prefix, #profile.points))
    end
  end
  io.stdout:flush()
  if failed then md.exit(1) end
end

-- }=====

local help = [=[
usage: moondog devices [list] [PATTERN]
       moondog devices check FILE...

  list    the profiles a site can open by name, and where each comes from
  check   every check a profile goes through, all mistakes at once

"moondog devices COMMAND --help" explains each command.
]=]

local args = { ... }
local first = args[1]
if first == "check" or first == "list" then
  local commands = { check = cmd_check, list = cmd_list }
  cli:dispatch(commands, args, help)
elseif first == "--help" or first == "-h" or first == "help" then
  show_help(help)
else
  cmd_list(args)
  io.stdout:flush()
end
