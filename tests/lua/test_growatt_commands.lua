-- Commands through moondog.growatt.proxy (logger:read / write /
-- config_get / config_set): matched by their own sequence numbers while
-- the fake cloud sends register reads of its own on the same connection,
-- the replies kept from the cloud, queued per logger, and a timeout for a
-- logger that never answers.

local T = require "moondog.testing"
local md = require "moondog"
local proxy = require "moondog.growatt.proxy"
local logger_sim = require "moondog.growatt.logger_sim"
local cloud_sim = require "moondog.growatt.cloud_sim"

local function addr(port) return string.format("127.0.0.1:%d", port) end

local function the_logger(p)
  T.wait_for(function()
    local l = p:loggers()[1]
    return l and l.serial == "SIMLOG0001" and l.conn ~= nil and l.conn.protocol ~= nil
  end, 10, "the datalogger's announce")
  return p:loggers()[1]
end

T.test("commands while the cloud sends its own: each gets its own answer", function()
  local cloud <close> = assert(cloud_sim.start { listen = "127.0.0.1:0", commands_every = 3 })
  local p <close> = assert(proxy.start { listen = "127.0.0.1:0", cloud = addr(cloud:port()) })
  local sim <close> = assert(logger_sim.start { server = addr(p:port()), records = 300, interval = 0.01,
                                               holding = { [3] = 50, [4] = 7, [3000] = 1 } })
  local logger = the_logger(p)
  local results = {}
  local tasks = {}
  for i = 1, 3 do -- three callers at once: queued, one command at a time
    tasks[i] = md.spawn(function()
      for k = 1, 5 do
        local v = assert(logger:read(3, 2))
        results[#results + 1] = v[1] * 100 + v[2]
        assert(logger:write(10 + i, 100 * i + k))
        T.eq(assert(logger:read(10 + i))[1], 100 * i + k, "read back")
      end
      return true
    end)
  end
  for i = 1, 3 do assert(tasks[i]:join(30)) end
  T.eq(#results, 15)
  for _, r in ipairs(results) do T.eq(r, 5007, "registers 3 and 4") end
  T.eq(assert(logger:config_get(4)), "5")
  assert(logger:config_set(4, "1"))
  T.eq(assert(logger:config_get(4)), "1")
  assert(sim:wait(30))
  T.wait_for(function() return cloud.counts.records == 300 end, 10, "all records at the cloud")
  T.wait_for(function() return cloud.counts.replies == cloud.counts.commands + 1 end, 10,
    "the cloud saw answers to its own commands (and clock set) only")
  T.eq(cloud.counts.replies, 100 + 1)
  T.eq(logger:stats().own_commands, 15 * 3 + 3)
  sim:close()
  p:close()
  cloud:close()
end, { timeout = 90 })

T.test("a logger that never answers: the command times out", function()
  local p <close> = assert(proxy.start { listen = "127.0.0.1:0", cloud = false })
  local sim <close> = assert(logger_sim.start { server = addr(p:port()), records = 1, mute = true })
  local logger = the_logger(p)
  local v, err, code = logger:read(0, 1, 0.3)
  T.eq(v, nil)
  T.eq(code, "timeout")
  assert(err:match("did not answer"), err)
  -- the next command is not blocked by the one that timed out
  local _, _, code2 = logger:write(1, 2, 0.3)
  T.eq(code2, "timeout")
  sim:close()
  T.wait_for(function() return logger.conn == nil end, 10, "disconnected")
  local _, _, code3 = logger:read(0)
  T.eq(code3, "not_connected")
  p:close()
end)
