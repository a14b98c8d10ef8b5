-- moondog.err: the one error vocabulary (core/err.h) seen from Lua: numbers
-- to messages and tokens, -errno included, and Modbus exceptions told apart
-- by their code alone.

local T = require "moondog.testing"
local err = require "moondog.err"

T.test("own codes and errno values have a message and a token", function()
  T.eq(err.token(0), "ok")
  T.eq(err.token(-111), "refused", "ECONNREFUSED")
  T.eq(err.token(111), "refused", "either sign")
  T.eq(err.token(-110), "timeout", "ETIMEDOUT")
  T.eq(err.token(-113), "unreachable", "EHOSTUNREACH")
  T.eq(err.token(-9999), "io", "an errno without a token of its own")
  T.eq(err.strerror(-111), "Connection refused")
  local seen = {}
  for n = 10001, 10100 do
    local tok = err.token(-n)
    if err.strerror(-n) == "unknown error" then break end
    assert(tok:match("^[a-z_]+$"), "token of " .. n .. ": " .. tok)
    seen[tok] = true
  end
  for _, tok in ipairs { "timeout", "connect_timeout", "dns", "crc", "range", "closed" } do
    assert(seen[tok], tok .. " is in the table")
  end
end)

T.test("a Modbus exception is recognisable by its code", function()
  T.eq(err.is_exception("illegal_data_address"), true)
  T.eq(err.exceptions.illegal_data_address, 2)
  T.eq(err.exceptions.gateway_target_failed, 11)
  T.eq(err.is_exception("exception"), true, "an unnamed exception number")
  T.eq(err.is_exception("timeout"), false)
  T.eq(err.is_exception(nil), false)
end)

T.test("the codecs agree: a value that does not fit is nil, message, range", function()
  local cases = {
    { "modbus", function() return require("moondog.modbus.codec").encode(70000, "uint16") end },
    { "modbus string", function()
      return require("moondog.modbus.codec").encode("abcde", "string", "ABCD", 1)
    end },
    { "sunspec", function() return require("moondog.sunspec.codec").encode("uint16", 1, 70000) end },
    { "rct", function() return require("moondog.rct.codec").encode("UINT8", 256) end },
    { "rct float", function() return require("moondog.rct.codec").encode("FLOAT", 1e39) end },
  }
  for _, c in ipairs(cases) do
    local ok, r, msg, code = pcall(c[2])
    assert(ok, c[1] .. " raised: " .. tostring(r))
    T.eq(r, nil, c[1] .. ": no result")
    T.eq(code, "range", c[1] .. ": code of " .. tostring(msg))
    assert(type(msg) == "string" and #msg > 0, c[1] .. ": a message")
  end
end)

T.test("the codecs agree: a value of the wrong kind is nil, message, type", function()
  local cases = {
    { "modbus", function() return require("moondog.modbus.codec").encode("x", "uint16") end },
    { "sunspec", function() return require("moondog.sunspec.codec").encode("uint16", 1, "x") end },
    { "rct", function() return require("moondog.rct.codec").encode("FLOAT", "x") end },
  }
  for _, c in ipairs(cases) do
    local ok, r, msg, code = pcall(c[2])
    assert(ok, c[1] .. " raised: " .. tostring(r))
    T.eq(r, nil, c[1] .. ": no result")
    T.eq(code, "type", c[1] .. ": code of " .. tostring(msg))
  end
end)

-- Issue 16: a connect timeout was "connect_timeout" from Modbus and MQTT but
-- "timeout" from moondog.stream (so RCT); a DNS failure was "dns",
-- "unreachable" or "bad_address" depending on the module.
T.test("same failure, same token: dns and refused from a stream, a Modbus bus and server", function()
  local stream = require "moondog.stream"
  local _, msg, code = stream.connect("host.invalid", 502)
  T.eq(code, "dns", "stream: " .. tostring(msg))
  local bus <close> = assert(md.modbus.open("tcp://host.invalid:502?timeout=0.5"))
  _, msg, code = bus:read_holding(1, 0, 1)
  T.eq(code, "dns", "modbus: " .. tostring(msg))
  _, msg, code = md.modbus.serve("tcp://host.invalid:0", {})
  T.eq(code, "dns", "modbus server: " .. tostring(msg))
  local l = assert(stream.listen("127.0.0.1", 0))
  local port = l:port()
  l:close()
  _, msg, code = stream.connect("127.0.0.1", port)
  T.eq(code, "refused", "stream: " .. tostring(msg))
  local bus2 <close> = assert(md.modbus.open("tcp://127.0.0.1:" .. port .. "?timeout=0.5"))
  _, msg, code = bus2:read_holding(1, 0, 1)
  T.eq(code, "refused", "modbus: " .. tostring(msg))
end)
