-- moondog.file: the one reader and writer of whole files that the service
-- (secrets), the broker helper and the test harness share; failures come
-- back as nil, message, code (docs/errors.md), and the broker turns them
-- into its own "start" failure instead of raising.

local T = require "moondog.testing"
local file = require "moondog.file"
local broker = require "moondog.mqtt.broker"

T.test("file.write then file.read give back the same bytes", function()
  local dir <close> = T.tmpdir()
  local path = dir.path .. "/data"
  local bytes = "line 1\r\n\0binary\255\n"
  T.eq(file.write(path, bytes), true)
  T.eq(file.read(path), bytes)
  T.eq(file.write(path, ""), true, "an empty file replaces the old content")
  T.eq(file.read(path), "")
end)

T.test("file.read: a missing file is not_found, a folder is io, each with the path", function()
  local dir <close> = T.tmpdir()
  local text, msg, code = file.read(dir.path .. "/nothing")
  T.eq(text, nil)
  T.eq(code, "not_found")
  T.eq(msg, "cannot read " .. dir.path .. "/nothing: No such file or directory")
  text, msg, code = file.read(dir.path)
  T.eq(text, nil)
  T.eq(code, "io")
  T.eq(msg, "cannot read " .. dir.path .. ": Is a directory")
end)

T.test("file.write: into a missing folder is not_found, onto a folder is io", function()
  local dir <close> = T.tmpdir()
  local ok, msg, code = file.write(dir.path .. "/no/such", "x")
  T.eq(ok, nil)
  T.eq(code, "not_found")
  T.eq(msg, "cannot write " .. dir.path .. "/no/such: No such file or directory")
  ok, msg, code = file.write(dir.path, "x")
  T.eq(ok, nil)
  T.eq(code, "io")
  T.eq(msg, "cannot write " .. dir.path .. ": Is a directory")
end)

T.test("file.read and file.write raise on a path that is not a string", function()
  local ok, err = pcall(file.read, 42)
  T.eq(ok, false)
  assert(tostring(err):find("file.read: expected a path, got number", 1, true), err)
  ok, err = pcall(file.write, "/tmp/x", nil)
  T.eq(ok, false)
  assert(tostring(err):find("file.write: expected the text as a string, got nil", 1, true), err)
end)

T.test("T.write_file raises with the reason, T.read_file returns it", function()
  local dir <close> = T.tmpdir()
  local ok, err = pcall(T.write_file, dir.path .. "/no/such", "x")
  T.eq(ok, false)
  assert(tostring(err):find("cannot write .*/no/such: No such file or directory"), err)
  local _, _, code = T.read_file(dir.path .. "/nothing")
  T.eq(code, "not_found")
end)

T.test("broker.start into a folder that does not exist: nil, the reason, start", function()
  T.need("mosquitto", "mosquitto")
  local dir <close> = T.tmpdir()
  local b, msg, code = broker.start { dir = dir.path .. "/no/such" }
  T.eq(b, nil)
  T.eq(code, "start")
  assert(msg:find("cannot write " .. dir.path .. "/no/such/mosquitto.conf: No such file", 1, true), msg)
end)
