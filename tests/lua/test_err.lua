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
