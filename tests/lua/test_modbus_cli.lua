-- `moondog modbus` as users run it: the real tool as a subprocess, against a
-- python3-pymodbus server (tests/data/pymodbus_server.py) and against
-- `moondog modbus serve`, both started by each test on a free port and
-- stopped by PID when it ends (also when it fails).
--
-- The pymodbus server holds holding[i] = 1000 + i, input[i] = 2000 + i,
-- coil[i] = (i % 3 == 0), discrete[i] = (i % 2 == 0) for i in 0..199,
-- float32 230.5 (ABCD) at holding 100 and -1.25 (CDAB) at input 110, and
-- answers only the unit ids it was started with.
--
-- The tool runs through T.sh, which blocks the engine: fine here, since every
-- peer is a separate process.

local T = require "moondog.testing"

local PYTHON = "/usr/bin/python3" -- Debian's, which has pymodbus (not a pyenv one)
local format = string.format

local q, read_file = T.quote, T.read_file

local function has_pymodbus()
  local _, code = T.sh(PYTHON .. " -c 'import pymodbus' >/dev/null 2>&1")
  return code == 0
end

-- {===== helper processes =====

local tmpdir, start = T.tmpdir, T.start

-- A pymodbus server; returns the process and its URL.
local function pymodbus(dir, transport, units)
  local p = start(dir, "pymodbus", format("%s %s/tests/data/pymodbus_server.py %s 0 --units %s",
    PYTHON, q(md.paths.home), transport, units or "1"))
  local port = p:first_line():match("^ready (%d+)$")
  assert(port, "pymodbus server did not say 'ready PORT'")
  return p, format("%s://127.0.0.1:%s", transport, port)
end

-- }=====

-- Run `moondog modbus ARGS`; returns stdout, stderr, exit code.
local function cli(dir, args)
  local errf = dir.path .. "/cli.err"
  local out, code = T.sh(format("%s modbus %s 2>%s </dev/null", q(md.paths.exe), args, q(errf)))
  return out, read_file(errf) or "", code
end

-- Exactly one line on stderr, and it matches `pattern` (plain text).
local function one_line(err, text, what)
  local lines = select(2, err:gsub("\n", ""))
  if lines ~= 1 or not err:find(text, 1, true) then
    error(format("%s: expected one stderr line containing %q, got:\n%s", what, text, err), 2)
  end
end

local function need_pymodbus()
  if not has_pymodbus() then T.skip("python3-pymodbus is not installed (" .. PYTHON .. ")") end
end

T.test("read prints one 'address value' line per register", function()
  need_pymodbus()
  local dir <close> = tmpdir()
  local _srv <close>, url = pymodbus(dir, "tcp")
  local out, err, code = cli(dir, "read " .. url .. " --address 0 --count 3")
  T.eq(code, 0, "exit code")
  T.eq(out, "0   1000  0x03E8\n1   1001  0x03E9\n2   1002  0x03EA\n", "human output")
  T.eq(err, "", "stderr")
  -- unit in the URL, --opt=value spelling, input registers
  out, err, code = cli(dir, "read '" .. url .. "?unit=1' --address=198 --count=2 --kind=input")
  T.eq(code, 0, "exit code: " .. err)
  T.eq(out, "198   2198  0x0896\n199   2199  0x0897\n", "input registers")
  out = cli(dir, "read " .. url .. " -a 0 -c 4 --kind discrete")
  T.eq(out, "0  1\n1  0\n2  1\n3  0\n", "discrete inputs as 1/0")
end)

T.test("read --json prints exactly a JSON array on stdout", function()
  need_pymodbus()
  local dir <close> = tmpdir()
  local _srv <close>, url = pymodbus(dir, "tcp")
  local out, err, code = cli(dir, "read " .. url .. " --address 0 --count 3 --json")
  T.eq(code, 0, "exit code")
  T.eq(out, "[1000,1001,1002]\n", "registers")
  T.eq(err, "", "stderr")
  out = cli(dir, "read " .. url .. " --address 0 --count 7 --kind coil --json")
  T.eq(out, "[true,false,false,true,false,false,true]\n", "coils")
  -- the JSON parses back to the same numbers
  local cjson = require "cjson"
  out = cli(dir, "read " .. url .. " -a 150 -c 50 --kind input --json")
  local values = cjson.decode(out)
  T.eq(#values, 50, "values")
  for i, v in ipairs(values) do T.eq(v, 2149 + i, "input " .. (149 + i)) end
  -- more than 125 registers: read in several requests, one array
  out = cli(dir, "read " .. url .. " -a 0 -c 200 --json")
  values = cjson.decode(out)
  T.eq(#values, 200, "200 registers in one array")
  T.eq(values[200], 1199, "last register")
end)

T.test("typed read decodes values; --count counts values", function()
  need_pymodbus()
  local dir <close> = tmpdir()
  local _srv <close>, url = pymodbus(dir, "tcp")
  local out, _, code = cli(dir, "read " .. url .. " --address 100 --type float32")
  T.eq(code, 0, "exit code")
  T.eq(out, "100  230.5\n", "float32 ABCD")
  out = cli(dir, "read " .. url .. " -a 110 --kind input --type float32 --order CDAB --json")
  T.eq(out, "[-1.25]\n", "float32 CDAB")
  out = cli(dir, "read " .. url .. " -a 0 -c 2 --type uint32 --json")
  T.eq(out, format("[%d,%d]\n", 1000 * 65536 + 1001, 1002 * 65536 + 1003), "two uint32 from four registers")
  out = cli(dir, "read " .. url .. " -a 0 -c 3 --type int16")
  T.eq(out, "0  1000\n1  1001\n2  1002\n", "int16 lines")
end)

T.test("write then read back: registers, typed values, coils", function()
  need_pymodbus()
  local dir <close> = tmpdir()
  local _srv <close>, url = pymodbus(dir, "tcp")
  local out, err, code = cli(dir, "write " .. url .. " --address 10 4242")
  T.eq(code, 0, "exit code (FC 6)")
  T.eq(out .. err, "", "nothing printed on success")
  T.eq(cli(dir, "read " .. url .. " -a 10 --json"), "[4242]\n", "single register")
  cli(dir, "write " .. url .. " -a 11 -- -2 0xFFFF 7")
  T.eq(cli(dir, "read " .. url .. " -a 11 -c 3 --json"), "[65534,65535,7]\n", "FC 16, negative and hex")
  out, err, code = cli(dir, "write " .. url .. " -a 20 --type float32 --order CDAB 3.14 -1e10 --verbose")
  T.eq(code, 0, "exit code (typed)")
  T.eq(out, "", "stdout with --verbose")
  T.eq(err, format("wrote 4 registers at 20 on unit 1 of %s\n", url), "--verbose")
  T.eq(cli(dir, "read " .. url .. " -a 20 -c 2 --type float32 --order CDAB --json"), "[3.14,-1e+10]\n",
    "float32 back")
  T.eq(cli(dir, "read " .. url .. " -a 20 -c 4 --json"), "[62915,16456,761,53269]\n", "raw CDAB words")
  cli(dir, "write " .. url .. " -a 30 --type string 'SN-42'")
  T.eq(cli(dir, "read " .. url .. " -a 30 -c 3 --type string --json"), "[\"SN-42\"]\n", "string")
  cli(dir, "write " .. url .. " -a 40 --kind coil on")
  cli(dir, "write " .. url .. " -a 41 --kind coil 1 false off true")
  T.eq(cli(dir, "read " .. url .. " -a 40 -c 5 --kind coil --json"), "[true,true,false,false,true]\n",
    "coils back (FC 5 and FC 15)")
end)

T.test("scan finds exactly the units present", function()
  need_pymodbus()
  local dir <close> = tmpdir()
  local _srv <close>, url = pymodbus(dir, "tcp", "2,5")
  local out, err, code = cli(dir, "scan " .. url .. " --from 1 --to 7 --timeout 0.2 --json")
  T.eq(code, 0, "exit code")
  T.eq(out, "[2,5]\n", "units found")
  assert(err:find("found 2 unit(s): 2, 5", 1, true), "summary on stderr: " .. err)
  out = cli(dir, "scan " .. url .. " --from 4 --to 6 --timeout 0.2")
  T.eq(out, "unit 5: holding 0 = 1000\n", "human list")
  -- an exception answer still means a device is there
  out = cli(dir, "scan " .. url .. " --from 1 --to 3 --address 500 --timeout 0.2")
  T.eq(out, "unit 2: answers with exception 'illegal_data_address' (a device is there)\n", "exception")
  out, err, code = cli(dir, "scan " .. url .. " --from 6 --to 8 --timeout 0.2")
  T.eq(code, 1, "exit code when nobody answers")
  T.eq(out, "", "no units")
  assert(err:find("no unit answered", 1, true), err)
end, { timeout = 60 })

T.test("info shows device identification and server id", function()
  need_pymodbus()
  local dir <close> = tmpdir()
  local _srv <close>, url = pymodbus(dir, "tcp")
  local out, _, code = cli(dir, "info " .. url)
  T.eq(code, 0, "exit code")
  assert(out:find("vendor_name%s+pymodbus%-test\n"), out)
  assert(out:find("product_code%s+PMT\n"), out)
  assert(out:find("server id %(fc 17%)%s+pymodbus%-test%-PMT"), out)
  local info = require("cjson").decode((cli(dir, "info " .. url .. " --json")))
  T.eq(info.device_id.revision, "3.0.0", "revision")
end)

T.test("device and I/O failures exit 1 with one clear line", function()
  need_pymodbus()
  local dir <close> = tmpdir()
  local url
  do -- a port nobody listens on: the one a stopped server had
    local _srv <close>, u = pymodbus(dir, "tcp")
    url = u
  end
  local out, err, code = cli(dir, "read " .. url .. " -a 0")
  T.eq(code, 1, "exit code (refused)")
  T.eq(out, "", "stdout")
  one_line(err, "moondog modbus: cannot connect to " .. url .. ": connection refused — is the device on",
    "refused")

  local _srv <close>, live = pymodbus(dir, "tcp")
  out, err, code = cli(dir, "read " .. live .. " -a 0 --unit 9 --timeout 0.3")
  T.eq(code, 1, "exit code (timeout)")
  T.eq(out, "", "stdout (timeout)")
  one_line(err, "no response within 0.3 s — check the unit id", "timeout")
  out, err, code = cli(dir, "read " .. live .. " -a 500 -c 2")
  T.eq(code, 1, "exit code (exception)")
  T.eq(out, "", "stdout (exception)")
  one_line(err, "illegal data address (Modbus exception 2) — the device has no such registers", "exception")
  out, err, code = cli(dir, "write " .. live .. " -a 199 1 2")
  T.eq(code, 1, "exit code (write past the end)")
  T.eq(out, "", "stdout (write)")
  one_line(err, "illegal data address", "write exception")
  out, err, code = cli(dir, "read rtu:///dev/moondog-no-such-port -a 0")
  T.eq(code, 1, "exit code (no serial port)")
  T.eq(out, "", "stdout (no serial port)")
  one_line(err, "cannot connect to rtu:///dev/moondog-no-such-port", "no device")
  assert(err:find("is the adapter plugged in?", 1, true), err)
end)

T.test("command-line mistakes exit 2 with the reason", function()
  local dir <close> = tmpdir()
  local url = "tcp://127.0.0.1:1502"
  local cases = {
    { "read " .. url .. " --address 0 --bogus", "unknown option '--bogus'" },
    { "read " .. url .. " --count 2", "missing --address" },
    { "read " .. url .. " --address", "option --address needs a value" },
    { "read " .. url .. " --address 70000", "--address must be an integer 0..65535, got '70000'" },
    { "read " .. url .. " -a 0 --kind holdnig", "unknown --kind 'holdnig'" },
    { "read " .. url .. " -a 0 --type float33", "unknown --type 'float33'" },
    { "read " .. url .. " -a 0 --order ABCD", "--order applies only with --type" },
    { "read " .. url .. " -a 0 --json=yes", "option --json takes no value" },
    { "read tcp://127.0.0.1:99999 -a 0", "bad port '99999' in 'tcp://127.0.0.1:99999'" },
    { "read tpc://127.0.0.1 -a 0", "unknown scheme 'tpc' in 'tpc://127.0.0.1' (did you mean tcp?" },
    { "read -a 0", "missing the device URL" },
    { "read " .. url .. " " .. url .. " -a 0", "unexpected argument" },
    { "write " .. url .. " -a 0", "missing VALUE" },
    { "write " .. url .. " -a 0 70000", "register value '70000' must be an integer -32768..65535" },
    { "write " .. url .. " -a 0 --kind input 1", "input registers are read-only" },
    { "write " .. url .. " -a 0 --kind coil maybe", "coil value 'maybe' is not 1/0" },
    { "write " .. url .. " -a 0 --type int16 40000", "40000 does not fit --type int16" },
    { "scan " .. url .. " --from 9 --to 3", "--from 9 is above --to 3" },
    { "frobnicate", "unknown command 'frobnicate'" },
  }
  for _, c in ipairs(cases) do
    local out, err, code = cli(dir, c[1])
    T.eq(code, 2, "exit code of '" .. c[1] .. "'")
    T.eq(out, "", "stdout of '" .. c[1] .. "'")
    if not err:find(c[2], 1, true) or not err:find("--help'", 1, true) then
      error(format("'%s': expected %q and a --help pointer on stderr, got:\n%s", c[1], c[2], err))
    end
  end
  local _, _, code = cli(dir, "")
  T.eq(code, 2, "no command")
end)

T.test("--help for the tool and each command", function()
  local dir <close> = tmpdir()
  for _, cmd in ipairs({ "", "read ", "write ", "scan ", "info ", "serve " }) do
    local out, err, code = cli(dir, cmd .. "--help")
    T.eq(code, 0, "exit code of '" .. cmd .. "--help'")
    T.eq(err, "", "stderr")
    assert(out:find("^usage: moondog modbus " .. cmd), out)
  end
end)

-- {===== against `moondog modbus serve` =====

local function has_server()
  local _, code = T.sh(format("%s -e 'os.exit(type(md.modbus.serve) == \"function\" and 0 or 1)'",
    q(md.paths.exe)))
  return code == 0
end

local function moondog_serve(dir, args, env)
  local vars = {}
  for k, v in pairs(env or {}) do vars[#vars + 1] = format("%s=%s ", k, q(v)) end
  local p = start(dir, "serve", format("env %s%s modbus serve %s", table.concat(vars), q(md.paths.exe), args))
  local url = p:first_line()
  assert(url:match("^%a[%w+]*://"), "serve printed '" .. url .. "', expected its URL")
  return p, url
end

T.test("serve prints its URL, loads --regs, answers read/write/scan", function()
  if not has_server() then T.skip("md.modbus.serve is not there yet") end
  local dir <close> = tmpdir()
  local regs = dir.path .. "/regs.txt"
  local f = assert(io.open(regs, "w"))
  f:write("0 111\n1 222\n2 333\n")
  f:close()
  local _srv <close>, url = moondog_serve(dir, "tcp://127.0.0.1:0 --unit 3 --regs " .. q(regs))
  assert(url:match("^tcp://127%.0%.0%.1:%d+$") and not url:match(":0$"), "URL with the bound port: " .. url)
  local out, err, code = cli(dir, "read " .. url .. " --unit 3 -a 0 -c 3 --json")
  T.eq(code, 0, "exit code: " .. err)
  T.eq(out, "[111,222,333]\n", "preloaded registers")
  cli(dir, "write " .. url .. " --unit 3 -a 50 --type float32 -0.5")
  T.eq(cli(dir, "read " .. url .. " --unit 3 -a 50 --type float32 --json"), "[-0.5]\n", "typed write back")
  cli(dir, "write " .. url .. " --unit 3 -a 7 --kind coil 1 1 0 1")
  T.eq(cli(dir, "read " .. url .. " --unit 3 -a 7 -c 4 --kind coil --json"), "[true,true,false,true]\n",
    "coils back")
  T.eq(cli(dir, "scan " .. url .. " --from 1 --to 5 --timeout 0.2 --json"), "[3]\n", "scan finds unit 3 only")
end, { timeout = 60 })

T.test("serve: bad URL exits 2, busy port exits 1", function()
  if not has_server() then T.skip("md.modbus.serve is not there yet") end
  local dir <close> = tmpdir()
  local out, err, code = cli(dir, "serve tcp//127.0.0.1:0")
  T.eq(code, 2, "exit code (bad URL)")
  T.eq(out, "", "stdout")
  assert(err:find("tcp//127.0.0.1:0", 1, true), err)
  local _srv <close>, url = moondog_serve(dir, "tcp://127.0.0.1:0")
  out, err, code = cli(dir, "serve " .. url)
  T.eq(code, 1, "exit code (port in use)")
  T.eq(out, "", "stdout")
  one_line(err, url, "port in use")
end)

T.test("serve: one map for every unit, --strict, a bad --regs file, SIGTERM", function()
  if not has_server() then T.skip("md.modbus.serve is not there yet") end
  local dir <close> = tmpdir()
  local regs = dir.path .. "/regs.txt"
  local f = assert(io.open(regs, "w"))
  f:write("# a meter\n100 17254 32768\ni5 42\nc3 1\n")
  f:close()
  do
    local srv <close>, url = moondog_serve(dir, "tcp://127.0.0.1:0 --regs " .. q(regs))
    T.eq(cli(dir, "read " .. url .. " --unit 17 -a 100 --type float32 --json"), "[230.5]\n", "any unit")
    T.eq(cli(dir, "read " .. url .. " --unit 200 -a 5 --kind input --json"), "[42]\n", "input")
    T.eq(cli(dir, "read " .. url .. " -a 2 -c 3 --kind coil --json"), "[false,true,false]\n", "coil")
    T.eq(cli(dir, "read " .. url .. " -a 7 --json"), "[0]\n", "unset addresses read 0")
    local ok, how, code = srv:stop()
    T.eq(how, "exit", "serve ended by SIGTERM exits")
    T.eq(code, 0, "exit code after SIGTERM")
    assert(ok, "clean exit")
  end
  local _srv <close>, url = moondog_serve(dir, "tcp://127.0.0.1:0 --strict --regs " .. q(regs))
  T.eq(cli(dir, "read " .. url .. " -a 100 -c 2 --json"), "[17254,32768]\n", "strict: loaded")
  local out, err, code = cli(dir, "read " .. url .. " -a 102")
  T.eq(code, 1, "strict: unset address")
  T.eq(out, "", "stdout")
  one_line(err, "illegal data address", "strict")
  f = assert(io.open(regs, "a"))
  f:write("h12 lots\n")
  f:close()
  out, err, code = cli(dir, "serve tcp://127.0.0.1:0 --regs " .. q(regs))
  T.eq(code, 2, "bad --regs file")
  T.eq(out, "", "no URL printed for a bad file")
  assert(err:find("regs.txt:5: 'lots' is not an integer", 1, true), err)
end, { timeout = 60 })

T.test("serve --regs: typed values (float32, int32 in CDAB, strings) next to raw ones", function()
  local dir <close> = tmpdir()
  local regs = dir.path .. "/typed.regs"
  T.write_file(regs, "# typed\ni0 float32 230.1\n30001 float32 1234.5\nh10 int32 CDAB -5 7\n"
    .. "h20 string ACME\n5 17 18\n")
  local _srv <close>, url = moondog_serve(dir, "tcp://127.0.0.1:0 --regs " .. q(regs))
  local bus <close> = assert(md.modbus.open(url .. "?unit=1"))
  local codec = require "moondog.modbus.codec"
  T.eq(assert(bus:read_input(1, 0, 2))[1], 0x4366, "230.1 as float32: high word")
  T.eq(codec.decode(assert(bus:read_input(1, 0, 2)), "float32", "ABCD"), codec.decode({ 0x4366, 0x199A },
    "float32", "ABCD"), "230.1 as float32")
  local e = assert(bus:read_holding(1, 30001, 2))
  T.eq(e[1], 0x449A, "1234.5 = 0x449A5000")
  T.eq(e[2], 0x5000, "1234.5 = 0x449A5000")
  local w = assert(bus:read_holding(1, 10, 4))
  T.eq(w[1], 0xFFFB, "-5 in CDAB: low word first")
  T.eq(w[2], 0xFFFF, "-5 in CDAB: high word")
  T.eq(w[3], 7, "7 in CDAB: low word first")
  T.eq(w[4], 0, "7 in CDAB: high word")
  local t = assert(bus:read_holding(1, 20, 2))
  T.eq(t[1], 0x4143, "'AC'")
  T.eq(t[2], 0x4D45, "'ME'")
  T.eq(assert(bus:read_holding(1, 5, 2))[2], 18, "raw values as before")
  T.write_file(regs, "h0 float32 lots\n")
  local out, err, code = cli(dir, "serve tcp://127.0.0.1:0 --regs " .. q(regs))
  T.eq(code, 2, "bad typed value")
  T.eq(out, "", "no URL printed")
  assert(err:find("typed.regs:1: 'lots' is not a number", 1, true), err)
end)

T.test("serve --profile sdm120 --set: engineering values encoded through the profile, changed from attach",
function()
  local dir <close> = tmpdir()
  local sock = dir.path .. "/sim.sock"
  local _srv <close>, url = moondog_serve(dir, "tcp://127.0.0.1:0 --profile sdm120 --set voltage=230.1 "
    .. "--set import_energy=1234.5 --set frequency=50 --attach", { MOONDOG_ATTACH = sock })
  local bus <close> = assert(md.modbus.open(url .. "?unit=1"))
  -- SDM120: voltage at input 0x00, frequency at 0x46, import energy at 0x48, float32 ABCD
  T.eq(table.concat(assert(bus:read_input(1, 0x00, 2)), ","), "17254,6554", "230.1 = 0x4366199A")
  T.eq(table.concat(assert(bus:read_input(1, 0x48, 2)), ","), "17562,20480", "1234.5 = 0x449A5000")
  T.eq(table.concat(assert(bus:read_input(1, 0x46, 2)), ","), "16968,0", "50 = 0x42480000")
  local dev <close> = assert(require("moondog.devices").open("eastron/sdm120", url .. "?unit=1"))
  local v = assert(dev:read())
  T.eq(v.voltage, 230.1, "through the driver")
  T.eq(v.import_energy, 1234.5, "through the driver")
  T.wait_for(function() return os.execute("test -S " .. q(sock)) == true end,
    10, "the attach socket")
  local out, code = T.sh(format("printf '%%s\\n' 'sim:set(\"voltage\", 231.5)' 'sim:get(\"import_energy\")' "
    .. "| %s attach %s 2>&1", q(md.paths.exe), q(sock)))
  T.eq(code, 0, "attach: " .. out)
  assert(out:find("1234.5", 1, true), "sim:get in the REPL: " .. out)
  T.eq(assert(dev:read()).voltage, 231.5, "changed while it runs")
  local err
  out, err, code = cli(dir, "serve tcp://127.0.0.1:0 --profile sdm120 --set volts=1")
  T.eq(code, 2, "unknown point")
  T.eq(out, "", "stdout")
  assert(err:find("no point 'volts'", 1, true) and err:find("voltage", 1, true), err)
  out, err, code = cli(dir, "serve tcp://127.0.0.1:0 --set voltage=1")
  T.eq(code, 2, "--set without --profile")
  T.eq(out, "", "stdout")
  assert(err:find("--set needs --profile", 1, true), err)
end, { timeout = 60 })

T.test("serve URL?unit=100 --profile victron/gx --set: the profile on the URL's unit", function()
  local dir <close> = tmpdir()
  local _srv <close>, url = moondog_serve(dir, q("tcp://127.0.0.1:0?unit=100")
    .. " --profile victron/gx --set battery_soc=85 --set grid_l1_power=-1234")
  local bus <close> = assert(md.modbus.open(url))
  T.eq(assert(bus:read_holding(100, 843, 1))[1], 85, "SoC at 843")
  T.eq(assert(bus:read_holding(100, 820, 1))[1], 0x10000 - 1234, "grid L1 at 820, an int16")
  local _, _, code = bus:read_holding(1, 843, 1, { timeout = 1 })
  T.eq(code, "gateway_target_failed", "unit 1 is not served")
end, { timeout = 60 })

-- }=====
