-- The grott-async compatible command socket on a moondog Growatt proxy:
-- list, read and set as grott-async's scripts send them, over loopback,
-- against the fake datalogger; errors in one line; loopback only.

local T = require "moondog.testing"
local stream = require "moondog.stream"
local proxy = require "moondog.growatt.proxy"
local logger_sim = require "moondog.growatt.logger_sim"
local command_socket = require "moondog.growatt.command_socket"

local function addr(port) return string.format("127.0.0.1:%d", port) end

T.test("list, read and set as grott-async's scripts use them", function()
  local p <close> = assert(proxy.start { listen = "127.0.0.1:0", cloud = false })
  local cs <close> = assert(command_socket.start(p, { listen = "127.0.0.1:0", timeout = 2 }))
  local sim <close> = assert(logger_sim.start { server = addr(p:port()), records = 1,
                                               holding = { [3] = 50 } })
  T.wait_for(function()
    local l = p:loggers()[1]
    return l and l.serial == "SIMLOG0001" and l.conn and l.conn.inverter ~= nil
  end, 10, "the announce")
  local c <close> = assert(stream.connect("127.0.0.1", cs:port()))
  local function ask(cmd)
    assert(c:write(cmd))
    return assert(c:read(4096, 5))
  end
  T.eq(ask("list"):match("^SIMLOG0001 | SIMINV0001 | 127%.0%.0%.1:%d+\n$") ~= nil, true, "list")
  T.eq(ask("read SIMLOG0001 3"), "Reg: 3 Value: 50\n")
  T.eq(ask("set SIMLOG0001 3 40\n"), "SET Reg: 3 Value: 40\n")
  T.eq(ask("read SIMLOG0001 3\n"), "Reg: 3 Value: 40\n")
  T.eq(ask("read NOSUCH 3"), "ERR no datalogger NOSUCH is connected\n")
  assert(ask("frobnicate"):match("^ERR expected"))
  c:close()
  sim:close()
  cs:close()
  p:close()
end)

T.test("the command socket refuses a non-loopback address", function()
  local p <close> = assert(proxy.start { listen = "127.0.0.1:0", cloud = false })
  local ok, err = pcall(command_socket.start, p, { listen = "0.0.0.0:0" })
  T.eq(ok, false)
  assert(tostring(err):match("loopback only"), err)
  p:close()
end)

T.test("proxy.start{command_socket = ...} opens it and closes it with the proxy", function()
  local p <close> = assert(proxy.start { listen = "127.0.0.1:0", cloud = false,
                                         command_socket = "127.0.0.1:0" })
  local c <close> = assert(stream.connect("127.0.0.1", p.command_socket:port()))
  assert(c:write("list\n"))
  local got, _, code = c:read(4096, 0.3)
  T.eq(got, nil, "no logger, empty list: nothing to say")
  T.eq(code, "timeout")
  c:close()
  p:close()
end)
