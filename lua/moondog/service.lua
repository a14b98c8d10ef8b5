-- moondog.service: what a site needs when it runs as a systemd service
-- (moondog@.service, moondog.service): readiness and status for systemd
-- (Type=notify), the folder for state kept across restarts, and secrets
-- kept out of the site script.
--
-- The engine itself tells systemd READY=1 once the main chunk of the script
-- has returned and sends WATCHDOG=1 from its event loop (core/sdnotify.c);
-- a script whose main chunk never returns calls service.ready() itself.
-- Under systemd a main chunk that fails ends the engine (exit code 1), so
-- that Restart=on-failure starts the site again.
-- Outside systemd ($NOTIFY_SOCKET unset) every notification is a no-op.
--
-- Secrets (an MQTT password, a TLS key's passphrase) are looked up by name,
-- first match wins:
--   1. $CREDENTIALS_DIRECTORY/<name>: systemd's LoadCredential=<name>:<file>
--      (the file is readable by the service only, never on its command line
--      or in its environment);
--   2. the environment variable MOONDOG_<NAME> (upper case, other characters
--      than letters and digits as _), e.g. from EnvironmentFile=;
--   3. the secrets file: $MOONDOG_SECRETS, else /etc/moondog/secrets, lines
--      `name = value` (# starts a comment), best mode 0600.
-- A value found is registered with md.log.secret, so no log line shows it.

local core = require "moondog.service.core"
local log = require "moondog.log"
local file = require "moondog.file"

local M = {}

--- service.notify(state) -> true (sent), false (not under systemd), or nil,
--- message, code: sends a raw sd_notify message such as "RELOADING=1".
M.notify = core.notify

--- service.ready([status]) -> true/false: tells systemd the site is up
--- (READY=1), with an optional STATUS= line. The engine sends READY=1 by
--- itself once the main chunk returns; call this from a main chunk that runs
--- forever.
function M.ready(status)
  if status ~= nil and type(status) ~= "string" then
    error("service.ready: status must be a string", 2)
  end
  return core.notify("READY=1" .. (status and ("\nSTATUS=" .. status:gsub("\n", " ")) or ""))
end

--- service.status(text) -> true/false: the one-line status `systemctl status`
--- shows (STATUS=).
function M.status(text)
  if type(text) ~= "string" then error("service.status: expected a string", 2) end
  return core.notify("STATUS=" .. text:gsub("\n", " "))
end

--- service.watchdog_interval() -> seconds, or nil: systemd's WatchdogSec for
--- this process (the engine keeps it fed from its loop).
function M.watchdog_interval()
  local ms = core.watchdog_ms()
  return ms > 0 and ms / 1000 or nil
end

--- service.state_dir() -> path, or nil: where to keep state across restarts
--- (excursion counters): $STATE_DIRECTORY, which systemd sets from
--- StateDirectory=moondog (/var/lib/moondog), else $MOONDOG_STATE_DIR.
function M.state_dir()
  local dir = os.getenv("STATE_DIRECTORY") or os.getenv("MOONDOG_STATE_DIR")
  if not dir or dir == "" then return nil end
  return (dir:match("^[^:]+")) -- systemd lists several folders separated by ':'
end

-- The value of name in the secrets file at path; nil when it has none,
-- and then also why, when the file exists but cannot be read.
local function from_file(path, name)
  local text, msg, code = file.read(path)
  if not text then return nil, code ~= "not_found" and msg or nil end
  for line in text:gmatch("[^\n]+") do
    local k, v = line:match("^%s*([%w_.-]+)%s*=%s*(.-)%s*$")
    if k == name and not line:match("^%s*#") then
      return v
    end
  end
  return nil
end

--- service.secrets_file() -> the secrets file looked in: $MOONDOG_SECRETS,
--- else /etc/moondog/secrets.
function M.secrets_file()
  local f = os.getenv("MOONDOG_SECRETS")
  return (f and f ~= "") and f or "/etc/moondog/secrets"
end

--- service.secret(name) -> value, or nil, message, "not_found": a secret by
--- name from $CREDENTIALS_DIRECTORY/<name> (systemd LoadCredential=), the
--- environment variable MOONDOG_<NAME>, or the secrets file
--- (service.secrets_file(), lines `name = value`). The value never appears in
--- the log. `password = assert(md.secret("mqtt_password"))`.
function M.secret(name)
  if type(name) ~= "string" or not name:match("^[%w_.-]+$") or name:match("^%.") then
    error("md.secret: expected a name of letters, digits, '_', '-' and '.', such as "
      .. "\"mqtt_password\"", 2)
  end
  local value
  local creds = os.getenv("CREDENTIALS_DIRECTORY")
  if creds and creds ~= "" then
    value = file.read(creds .. "/" .. name)
    if value then value = value:gsub("\r?\n$", "") end
  end
  if not value then
    local env = os.getenv("MOONDOG_" .. name:upper():gsub("[^%w]", "_"))
    if env and env ~= "" then value = env end
  end
  local unreadable
  if not value then value, unreadable = from_file(M.secrets_file(), name) end
  if not value then
    return nil, string.format("no secret '%s': looked in %s, the environment variable "
      .. "MOONDOG_%s and %s%s", name,
      creds and creds ~= "" and ("$CREDENTIALS_DIRECTORY (" .. creds .. ")")
        or "$CREDENTIALS_DIRECTORY (unset)",
      name:upper():gsub("[^%w]", "_"), M.secrets_file(),
      unreadable and (" (" .. unreadable .. ")") or ""), "not_found"
  end
  log.secret(value)
  return value
end

return M
