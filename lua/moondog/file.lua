-- moondog.file: a whole file read or written in one call, for the library's
-- own small files (secrets, a broker's configuration and log, a test's
-- output). Failures are data, as everywhere in moondog (docs/errors.md):
--
--   local file = require "moondog.file"
--   local text, msg, code = file.read("/etc/moondog/secrets")
--   if not text and code ~= "not_found" then md.log.warn("%s", msg) end
--   assert(file.write(dir .. "/mosquitto.conf", conf))
--
-- The code is "not_found" for a path that does not exist, else the token
-- moondog.err gives the errno ("permission", "io", ...); the message names
-- the path and what the system said. These are plain io calls on the loop
-- thread: meant for files of a few kilobytes, not for a hot path.

local err = require "moondog.err"

local M = {}

local ENOENT = 2 -- Linux, the only system moondog runs on

local function failed(verb, path, sys_msg, errno)
  -- io.open's message is "path: reason"; keep the reason only.
  local reason = tostring(sys_msg):gsub("^.*: ", "")
  local code = errno == ENOENT and "not_found" or (errno and err.token(errno)) or "io"
  return nil, string.format("cannot %s %s: %s", verb, path, reason), code
end

--- file.read(path) -> the whole file as a string, or nil, message, code
--- ("not_found", "permission", "io" for a folder, ...).
function M.read(path)
  if type(path) ~= "string" then
    error("file.read: expected a path, got " .. type(path), 2)
  end
  local f, msg, errno = io.open(path, "rb")
  if not f then return failed("read", path, msg, errno) end
  local text, rmsg, rerrno = f:read("a") -- a folder opens, then fails here
  f:close()
  if not text then return failed("read", path, rmsg, rerrno) end
  return text
end

--- file.write(path, text) -> true, or nil, message, code: replaces the
--- file's content with text (creating it, mode 0666 less the umask).
function M.write(path, text)
  if type(path) ~= "string" then
    error("file.write: expected a path, got " .. type(path), 2)
  end
  if type(text) ~= "string" then
    error("file.write: expected the text as a string, got " .. type(text), 2)
  end
  local f, msg, errno = io.open(path, "wb")
  if not f then return failed("write", path, msg, errno) end
  local ok, wmsg, werrno = f:write(text)
  local closed, cmsg, cerrno = f:close() -- a full disk can show only here
  if not ok then return failed("write", path, wmsg, werrno) end
  if not closed then return failed("write", path, cmsg, cerrno) end
  return true
end

return M
