-- `moondog rct` as users run it: the real tool as a subprocess against
-- `moondog rct serve`, started by each test on a free port and stopped by
-- PID when it ends. The tool runs through T.sh, which blocks this engine:
-- fine, since the simulator is a separate process.

local T = require "moondog.testing"

local format = string.format
local q = T.quote

-- `moondog rct serve --port 0`; returns the process and its port.
local function serve(dir)
  local p = T.start(dir, "rct-serve", format("%s rct serve --port 0", q(md.paths.exe)))
  local port = p:first_line():match("^127%.0%.0%.1:(%d+)$")
  assert(port, "serve did not print HOST:PORT")
  return p, port
end

-- Run `moondog rct ARGS`; returns stdout, stderr, exit code.
local function cli(dir, args)
  local errf = dir.path .. "/cli.err"
  local out, code = T.sh(format("%s rct %s 2>%s </dev/null", q(md.paths.exe), args, q(errf)))
  return out, T.read_file(errf) or "", code
end

local function lines(s)
  return select(2, s:gsub("\n", ""))
end

-- Exactly one line on stderr, containing `text`.
local function one_line(err, text, what)
  if lines(err) ~= 1 or not err:find(text, 1, true) then
    error(format("%s: expected one stderr line containing %q, got:\n%s", what, text, err), 2)
  end
end

T.test("read-value prints only the value", function()
  local dir <close> = T.tmpdir()
  local _srv <close>, port = serve(dir)
  local host = "--host 127.0.0.1 --port " .. port
  for args, want in pairs({
    ["--name battery.soc"] = "0.62\n",
    ["--id 0x959930BF"] = "0.62\n",
    ["--name=inverter_sn"] = "SIM0000000000001\n",
    ["--name prim_sm.state"] = "13\n",
    ["--name power_mng.is_grid"] = "true\n",
    ["--name energy.e_grid_feed_total"] = "1523400\n",
    ["--name display_struct.brightness"] = "200\n",
  }) do
    local out, err, code = cli(dir, "read-value " .. host .. " " .. args)
    T.eq(code, 0, args .. ": exit code (" .. err .. ")")
    T.eq(out, want, args)
    T.eq(err, "", args .. ": stderr")
  end
  -- structures print as JSON
  local out = cli(dir, "read-value " .. host .. " --name battery.cells_stat[0]")
  local stat = require("cjson").decode(out)
  T.eq(stat.u_max.cell, 7, "JSON structure")
end)

T.test("read-value --verbose adds id, name, type and unit", function()
  local dir <close> = T.tmpdir()
  local _srv <close>, port = serve(dir)
  local host = "--host 127.0.0.1 --port " .. port
  local out, _, code = cli(dir, "read-value " .. host .. " --name battery.soc --verbose")
  T.eq(code, 0, "exit code")
  T.eq(out, "0x959930BF  battery.soc  FLOAT  0.62 %\n", "verbose line")
  out = cli(dir, "read-value " .. host .. " --id 0x5F33284E -v")
  T.eq(out, "0x5F33284E  prim_sm.state  ENUM  13 (Feed in)\n", "enum with its symbol")
end)

T.test("read-value failures: one line on stderr, exit 1", function()
  local dir <close> = T.tmpdir()
  local _srv <close>, port = serve(dir)
  -- an id the device does not answer
  local out, err, code = cli(dir, "read-value --host 127.0.0.1 --port " .. port
    .. " --id 0x12345678 --timeout 0.1 --retries 0")
  T.eq(code, 1, "exit code")
  T.eq(out, "", "stdout")
  one_line(err, "no answer from 127.0.0.1:" .. port .. " for reading 0x12345678 within 0.1 s", "timeout")
  -- nobody listening
  _srv:stop()
  out, err, code = cli(dir, "read-value --host 127.0.0.1 --port " .. port .. " --name battery.soc")
  T.eq(code, 1, "exit code when refused")
  T.eq(out, "", "stdout when refused")
  one_line(err, "cannot connect to 127.0.0.1:" .. port, "refused")
  assert(err:find("8899", 1, true), "the hint names the usual port: " .. err)
end)

T.test("usage errors exit 2 and say what is wrong", function()
  local dir <close> = T.tmpdir()
  for args, text in pairs({
    ["read-value --name battery.soc"] = "missing --host",
    ["read-value --host h"] = "exactly one of --name",
    ["read-value --host h --name battery.soc --id 0x1"] = "exactly one of --name",
    ["read-value --host h --name no.such.thing"] = "no object named 'no.such.thing'",
    ["read-value --host h --id 0xZZ"] = "--id must be a 32-bit id",
    ["read-value --host h --name battery.soc --port 70000"] = "--port must be",
    ["read-value --host h --name battery.soc --timeout -1"] = "--timeout must be",
    ["read-value --host h --name battery.soc --bogus"] = "unknown option '--bogus'",
    ["read-value --host"] = "option --host needs a value",
    ["read-value --host h --name battery.soc extra"] = "unexpected argument 'extra'",
    ["list a b"] = "one PATTERN at most",
    ["serve --port x"] = "--port must be",
    ["frobnicate"] = "unknown command 'frobnicate'",
  }) do
    local out, err, code = cli(dir, args)
    T.eq(code, 2, args .. ": exit code")
    T.eq(out, "", args .. ": stdout")
    assert(err:find(text, 1, true), args .. ": " .. err)
  end
  local _, err, code = cli(dir, "")
  T.eq(code, 2, "no command")
  assert(err:find("usage: moondog rct", 1, true), err)
  local out
  out, err, code = cli(dir, "read-value --help")
  T.eq(code, 0, "--help exit code")
  assert(out:find("usage: moondog rct read-value", 1, true), out)
  T.eq(err, "", "--help stderr")
end)

T.test("list searches the registry", function()
  local dir <close> = T.tmpdir()
  local out, err, code = cli(dir, "list power_mng.soc_m")
  T.eq(code, 0, "exit code")
  T.eq(err, "", "stderr")
  local want = {
    "0x97997C93  power_mng.soc_max         FLOAT  rw",
    "0xCE266F0F  power_mng.soc_min         FLOAT  rw",
    "0x8EBF9574  power_mng.soc_min_island  FLOAT  rw",
  }
  T.eq(out, table.concat(want, "\n") .. "\n", "lines")
  out = cli(dir, "list 'LOGGER.MINUTES_SOC_LOG'")
  T.eq(out, "0x5293B668  logger.minutes_soc_log_ts  INT32>TIMESERIES  %\n", "request>answer types, unit")
  out = cli(dir, "list")
  T.eq(lines(out), 895, "everything")
  out, err, code = cli(dir, "list zzzz")
  T.eq(code, 1, "nothing found")
  T.eq(out, "", "stdout")
  one_line(err, "no object name contains 'zzzz'", "nothing found")
end)

T.test("serve: a port in use is one clear line and exit 1", function()
  local dir <close> = T.tmpdir()
  local _srv <close>, port = serve(dir)
  local out, err, code = cli(dir, "serve --port " .. port)
  T.eq(code, 1, "exit code")
  T.eq(out, "", "stdout")
  one_line(err, "another program listens there", "in use")
end)
