-- packaging/man.lua: the man page moondog(1), rendered to roff from
-- `moondog --help` (core/main.c's usage text), the one source of the
-- command line's description; the README's command table is checked
-- against the same text (tests/sh/test_install.sh). What --help does not
-- say (files, environment, the service) is written here, once.
--
--   ./moondog packaging/man.lua VERSION > build/moondog.1   (make docs does this)

local md = require "moondog"

local version = arg[1] or "unknown"
local p = assert(io.popen(string.format("%q --help", md.paths.exe)))
local help = p:read("a")
p:close()

-- roff: a leading dot or quote would be a request; backslashes and hyphens
-- are escaped so that man prints them as typed.
local function esc(s)
  s = s:gsub("\\", "\\e"):gsub("%-", "\\-")
  if s:match("^[.']") then s = "\\&" .. s end
  return s
end

local out = {}
local function put(s) out[#out + 1] = s end

put('.TH MOONDOG 1 "" "moondog ' .. esc(version) .. '" "User Commands"')
put(".SH NAME")
put("moondog \\- C engine with Lua scripting for solar and energy sites")

local section, para = nil, {}
local function flush()
  if #para > 0 then put(esc(table.concat(para, " "))); para = {} end
end

put(".SH SYNOPSIS")
for line in help:gmatch("[^\n]*") do
  local usage = line:match("^usage: (.*)$") or line:match("^       (moondog .*)$")
  local usage_more = line:match("^%s%s%s%s%s%s%s%s%s%s%s%s%s%s%s+(%S.*)$")
  if usage then
    local cmd, what = usage:match("^(.-)%s%s+(%S.*)$")
    put(".TP"); put(".B " .. esc(cmd or usage)); if what then put(esc(what)) end
    section = "usage"
  elseif section == "usage" and usage_more and not line:match("^  %-") then
    put(esc(usage_more))
  elseif line == "options:" then
    put(".SH OPTIONS"); section = "options"
  elseif section == "options" and line:match("^  %-") then
    local opt, what = line:match("^  (%S.-)%s%s+(%S.*)$")
    put(".TP"); put(".B " .. esc(opt or line:match("^%s*(.-)%s*$"))); if what then put(esc(what)) end
  elseif section == "options" and usage_more then
    put(esc(usage_more))
  elseif line:match("^tools ") then
    flush()
    put(".SH TOOLS")
    local names = {}
    for name in line:match(":%s*(.*)$"):gmatch("%S+") do names[#names + 1] = name end
    table.sort(names)
    put("Each tool is a Lua script run as \\fBmoondog\\fR \\fITOOL\\fR; \\fBmoondog\\fR \\fITOOL\\fR "
      .. "\\fB\\-\\-help\\fR describes it:")
    put(esc(table.concat(names, ", ")) .. ".")
    section = "tools"
  elseif line == "" then
    flush()
    if section == "options" then section = "text" end
  elseif section == "text" then
    if #para == 0 and #out > 0 and not out[#out]:match("^%.SH DESCRIPTION") then put(".SH DESCRIPTION") end
    para[#para + 1] = line
  end
end
flush()

put([[.SH SITES AND THE SERVICE
A site is a Lua script in
.IR /etc/moondog/ .
.B moondog@NAME.service
runs
.IR /etc/moondog/NAME.lua ;
.B moondog.service
runs
.IR /etc/moondog/site.lua ,
an example that reads simulated devices.
.B systemctl enable \-\-now moondog@home
starts a site now and at boot. The engine tells systemd when the site is up
(Type=notify) and feeds the watchdog from its event loop.
.B moondog check SITE.lua
reports every mistake of a site (profiles, addresses, points, options)
without opening a device or the MQTT broker.
.SH FILES
.TP
.I /etc/moondog/*.lua
site scripts, one per service instance
.TP
.I /etc/moondog/secrets
secrets read by md.secret(NAME): lines NAME = value; mode 0640, group moondog
.TP
.I /var/lib/moondog
state kept across restarts (md.state_dir())
.TP
.I /run/moondog/NAME.sock
the attach socket of a service instance (moondog attach /run/moondog/NAME.sock)
.SH ENVIRONMENT
.TP
.B MOONDOG_HOME
where the Lua library, tools and device profiles are (default: next to the
binary, else PREFIX/share/moondog)
.TP
.B MOONDOG_DEVICES
more folders of device profiles
.TP
.B MOONDOG_ATTACH
the attach socket's path
.TP
.B MOONDOG_MQTT_LIB
mosquitto: every MQTT connection uses libmosquitto (by default plain TCP
connections use moondog's own client, TLS and MQTT 5 ones libmosquitto)
.TP
.BR CREDENTIALS_DIRECTORY ", " MOONDOG_ \fINAME\fR ", " MOONDOG_SECRETS
where md.secret(NAME) looks, in this order (systemd LoadCredential=, the
environment, the secrets file)
.TP
.BR NOTIFY_SOCKET ", " WATCHDOG_USEC ", " STATE_DIRECTORY
set by systemd: readiness and watchdog notifications, the state folder
.SH SEE ALSO
.BR systemctl (1),
.BR systemd.exec (5).
The guides and the Lua API reference (api.md, the text of help() in the
REPL) are in
.IR /usr/share/doc/moondog/ .]])
io.write(table.concat(out, "\n"), "\n")
