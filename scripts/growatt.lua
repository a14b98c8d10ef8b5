-- moondog growatt: the Growatt datalogger proxy and its simulators from the
-- shell.
--
--   moondog growatt proxy [--listen HOST:PORT] [--cloud HOST:PORT | --standalone]
--                         [--mqtt HOST[:PORT]] [--prefix P] [--command-socket [HOST:]PORT]
--                         [--block] [--writable] [--log-dir DIR [--log-max BYTES]]
--   moondog growatt logger --server HOST:PORT [--records N] [--interval S] [--protocol 2|5|6] [--burst]
--   moondog growatt cloud [--listen HOST:PORT] [--commands-every N]
--
-- proxy runs until Ctrl-C; it prints the address it listens on. logger
-- sends N records and exits 0 once the server has ACKed them (1 when the
-- connection failed). cloud runs until Ctrl-C and prints its address.
-- Exit codes: 0 done, 1 a connection or listen failed, 2 the command line
-- is wrong.

local md = require "moondog"
local proxy = require "moondog.growatt.proxy"
local cli_mod = require "moondog.cli"

local format = string.format
local TOOL = "moondog growatt"
local cli = cli_mod.new(TOOL)
local show_help = cli_mod.show_help

local function hostport(cmd, what, s, default_port)
  local h, p = proxy.parse_hostport(s, default_port)
  if not h then cli:usage_error(cmd, "--%s: %s", what, p) end
  return h, p
end

local proxy_help = [=[
usage: moondog growatt proxy [--listen HOST:PORT] [--cloud HOST:PORT | --standalone]
                             [--mqtt HOST[:PORT]] [--prefix P]
                             [--command-socket [HOST:]PORT] [--block] [--writable]
                             [--log-dir DIR [--log-max BYTES]]

Forward Growatt dataloggers' traffic to the cloud unchanged and decode a
copy. --listen defaults to 0.0.0.0:5279, --cloud to server.growatt.com:5279;
--standalone answers the dataloggers without a cloud. With --mqtt, values
go to that broker with Home Assistant discovery under --prefix (moondog).
--command-socket opens grott-async's text command socket (list, read, set)
on loopback (grott-async uses 15279). --block drops the cloud's
configuration writes except the clock, and its inverter register writes.
--writable makes the active power rate (holding register 3, %) and the
export limit (mode: register 122; power rate: register 123, %) number
entities in Home Assistant, written through the datalogger.
--log-dir writes a log file per datalogger there (DIR/<serial>.log: a line
per frame both ways), rotated to .1 at --log-max bytes (1048576).
SIGUSR1 writes every datalogger's counters to the log (and its log file).
]=]

local function cmd_proxy(args)
  local o, pos = cli:parse("proxy", args, { listen = { arg = "HOST:PORT" }, cloud = { arg = "HOST:PORT" },
    standalone = {}, mqtt = { arg = "HOST[:PORT]" }, prefix = { arg = "P" },
    ["command-socket"] = { arg = "[HOST:]PORT" }, block = {}, writable = {}, help = {},
    ["log-dir"] = { arg = "DIR" }, ["log-max"] = { arg = "BYTES" } })
  if o.help then show_help(proxy_help) end
  if #pos > 0 then cli:usage_error("proxy", "unexpected argument '%s'", pos[1]) end
  if o.standalone and o.cloud then cli:usage_error("proxy", "--cloud and --standalone exclude each other") end
  local listen = o.listen or "0.0.0.0:5279"
  hostport("proxy", "listen", listen, 5279)
  if o.cloud then hostport("proxy", "cloud", o.cloud, 5279) end
  if o["log-max"] and not o["log-dir"] then cli:usage_error("proxy", "--log-max needs --log-dir") end
  local site = md.site.new { name = "growatt" }
  local pub
  if o.mqtt then
    local h, p = hostport("proxy", "mqtt", o.mqtt, 1883)
    -- state messages at QoS 0 (retained): see docs/growatt.md, "MQTT"
    pub = site:publish { mqtt = { host = h, port = p }, prefix = o.prefix or "moondog", state_qos = 0 }
  end
  local cs = o["command-socket"]
  if cs and cs:match("^%d+$") then cs = "127.0.0.1:" .. cs end
  if cs then
    local h = hostport("proxy", "command-socket", cs, 15279)
    if not (h:match("^127%.") or h == "::1" or h == "localhost") then
      cli:usage_error("proxy", "--command-socket listens on loopback only (127.0.0.1 or ::1)")
    end
  end
  local p, err = proxy.start { listen = listen, cloud = (not o.standalone) and (o.cloud or nil) or false,
                               site = site, publisher = pub, command_socket = cs, block = o.block and true,
                               writable = o.writable and true, log_dir = o["log-dir"],
                               log_max_bytes = o["log-max"]
                                 and cli:int("proxy", "log-max", o["log-max"], 1024, 1e12) }
  if not p then
    cli_mod.say("%s proxy: %s", TOOL, tostring(err))
    md.exit(1)
  end
  io.stdout:write(format("%s:%d\n", listen:match("^(.*):%d+$") or listen, p:port()))
  io.stdout:flush()
  md.log.info("growatt proxy on port %d (%s); Ctrl-C stops", p:port(),
    o.standalone and "standalone" or ("cloud " .. (o.cloud or "server.growatt.com:5279")))
end

local logger_help = [=[
usage: moondog growatt logger --server HOST:PORT [--records N] [--interval S]
                              [--protocol 2|5|6] [--buffered N] [--serial S] [--burst]

A fake datalogger: an announce, N live records (10) every S seconds (1),
after N buffered ones (0). Exits 0 once every record was ACKed. Like a
real datalogger it sends a record only once the one before was ACKed (or
5 s passed); --burst sends them back to back without waiting (a stress
test).
]=]

local function cmd_logger(args)
  local o, pos = cli:parse("logger", args, { server = { arg = "HOST:PORT" }, records = { arg = "N" },
    interval = { arg = "S" }, protocol = { arg = "P" }, buffered = { arg = "N" }, serial = { arg = "S" },
    burst = {}, help = {} })
  if o.help then show_help(logger_help) end
  if #pos > 0 then cli:usage_error("logger", "unexpected argument '%s'", pos[1]) end
  if not o.server then cli:usage_error("logger", "--server HOST:PORT is required") end
  hostport("logger", "server", o.server, 5279)
  local records = cli:int("logger", "records", o.records or "10", 0, 1e9)
  local buffered = cli:int("logger", "buffered", o.buffered or "0", 0, 1e6)
  local protocol = cli:int("logger", "protocol", o.protocol or "6", 2, 6)
  if protocol ~= 2 and protocol ~= 5 and protocol ~= 6 then
    cli:usage_error("logger", "--protocol must be 2, 5 or 6")
  end
  local interval = tonumber(o.interval or "1")
  if not interval or interval < 0 then cli:usage_error("logger", "--interval must be seconds >= 0") end
  local sim = require "moondog.growatt.logger_sim"
  local l, err = sim.start { server = o.server, records = records, interval = interval, protocol = protocol,
                             buffered = buffered, serial = o.serial, ping_every = 10,
                             burst = o.burst and true }
  if not l then
    cli_mod.say("%s logger: %s", TOOL, tostring(err))
    md.exit(1)
  end
  l:wait()
  for _ = 1, 100 do
    if l.counts.acks >= 1 + buffered + records or l.lost then break end
    md.sleep(0.05)
  end
  io.stdout:write(format("sent %d records, %d buffered; %d ACKs\n", l.counts.records, l.counts.buffered,
    l.counts.acks))
  l:close()
  md.exit(l.counts.acks >= 1 + buffered + records and 0 or 1)
end

local cloud_help = [=[
usage: moondog growatt cloud [--listen HOST:PORT] [--commands-every N]

A fake Growatt cloud: ACKs, ping echoes, a clock set after each announce,
and with --commands-every N a register read of its own every N records.
]=]

local function cmd_cloud(args)
  local o, pos = cli:parse("cloud", args, { listen = { arg = "HOST:PORT" },
    ["commands-every"] = { arg = "N" }, help = {} })
  if o.help then show_help(cloud_help) end
  if #pos > 0 then cli:usage_error("cloud", "unexpected argument '%s'", pos[1]) end
  local listen = o.listen or "127.0.0.1:0"
  hostport("cloud", "listen", listen, 5279)
  local every = o["commands-every"] and cli:int("cloud", "commands-every", o["commands-every"], 1, 1e9)
  local c, err = require("moondog.growatt.cloud_sim").start { listen = listen, commands_every = every }
  if not c then
    cli_mod.say("%s cloud: %s", TOOL, tostring(err))
    md.exit(1)
  end
  io.stdout:write(format("%s:%d\n", listen:match("^(.*):%d+$") or listen, c:port()))
  io.stdout:flush()
  -- the listener's accept keeps the engine running until Ctrl-C
end

local help = [=[
usage: moondog growatt COMMAND [options]

  proxy    forward dataloggers to the Growatt cloud and decode their records
  logger   a fake datalogger
  cloud    a fake Growatt cloud

"moondog growatt COMMAND --help" explains each command. Exit codes: 0 done,
1 a connection failed, 2 the command line is wrong.
]=]

cli:dispatch({ proxy = cmd_proxy, logger = cmd_logger, cloud = cmd_cloud }, { ... }, help)
