-- `moondog probe` as users run it: the real tool as a child process against
-- one bus holding devices of different profiles at different unit ids (a
-- moondog Modbus server in its own process, serving register images this
-- test writes by hand), over TCP and over a socat pty pair (RTU). Each
-- device is identified by its profile's probe, and nothing else is.

local T = require "moondog.testing"

local format = string.format
local q = T.quote

-- The server script: units 1 (an Eastron single-phase meter), 3 (a Growatt
-- MIN TL-X), 5 (a device that answers with zeros), 7 (an Eastron
-- SDM72D-M-2), 9 (a Growatt MOD TL3-X) and 100 (a Victron GX's system
-- service), serving URL (arg[1]); prints "ready PORT".
local SERVER = [[
local srv = assert(md.modbus.serve(arg[1], { units = { 1, 3, 5, 7, 9, 100 } }))
local function f32(v) return { string.unpack(">I2I2", string.pack(">f", v)) } end
srv:set(1, "input", 0x00, f32(230.1))
srv:set(1, "input", 0x46, f32(50.0))
srv:set(3, "holding", 44, { 0x0201 })
srv:set(3, "input", 3000, { 1 })
srv:set(7, "holding", 0xFC02, { 0x0089 })
srv:set(7, "input", 0x00, f32(231.0))
srv:set(9, "holding", 44, { 0x0203 })
srv:set(9, "input", 3000, { 1 })
srv:set(100, "holding", 800, { string.unpack(">I2I2I2I2I2I2", "c0ffee15bad1") })
srv:set(100, "holding", 844, { 2 })
print("ready " .. (srv:port() or 0))
io.stdout:flush()
]]

local function start_server(dir, url)
  T.write_file(dir.path .. "/server.lua", SERVER)
  local p = T.start(dir, "server", format("%s %s %s", q(md.paths.exe), q(dir.path .. "/server.lua"), q(url)))
  local port = assert(p:first_line():match("^ready (%d+)$"), "the server says ready")
  return p, port
end

-- Run `moondog probe ARGS`; returns stdout, stderr, exit code.
local function probe(dir, args)
  local errf = dir.path .. "/probe.err"
  local out, code = T.sh(format("%s probe %s 2>%s </dev/null", q(md.paths.exe), args, q(errf)))
  return out, T.read_file(errf) or "", code
end

local function expected(url)
  return table.concat({
    "unit 1: eastron/sdm120 (Eastron SDM120), eastron/sdm230 (Eastron SDM230)",
    format('  site:add("sdm120_1", "eastron/sdm120", "%s")', url(1)),
    format('  site:add("sdm230_1", "eastron/sdm230", "%s")', url(1)),
    "unit 3: growatt/min_tlx (Growatt MIN/MIC TL-X)",
    format('  site:add("min_tlx_3", "growatt/min_tlx", "%s")', url(3)),
    "unit 5: answers, but no profile's probe fits",
    "unit 7: eastron/sdm72d (Eastron SDM72D-M)",
    format('  site:add("sdm72d_7", "eastron/sdm72d", "%s")', url(7)),
  }, "\n") .. "\n"
end

T.test("TCP: each device by its probe, nothing at the silent units", function()
  local dir <close> = T.tmpdir()
  local _srv <close>, port = start_server(dir, "tcp://127.0.0.1:0")
  local base = "tcp://127.0.0.1:" .. port
  local out, err, code = probe(dir, base .. " --units 1-8 --timeout 0.3")
  T.eq(code, 0, "exit code: " .. err)
  T.eq(out, expected(function(u) return format("%s?unit=%d", base, u) end), "stdout")
  T.eq(err, "", "no progress line redrawn into a pipe")
end)

T.test("TCP: a MOD TL3-X and a Victron GX at unit 100, each by its probe", function()
  local dir <close> = T.tmpdir()
  local _srv <close>, port = start_server(dir, "tcp://127.0.0.1:0")
  local base = "tcp://127.0.0.1:" .. port
  local out, err, code = probe(dir, base .. " --units 3,9,100 --timeout 0.3")
  T.eq(code, 0, "exit code: " .. err)
  T.eq(out, table.concat({
    "unit 3: growatt/min_tlx (Growatt MIN/MIC TL-X)",
    format('  site:add("min_tlx_3", "growatt/min_tlx", "%s?unit=3")', base),
    "unit 9: growatt/mod_tl3x (Growatt MOD TL3-X)",
    format('  site:add("mod_tl3x_9", "growatt/mod_tl3x", "%s?unit=9")', base),
    "unit 100: victron/gx (Victron Energy GX (system))",
    format('  site:add("gx_100", "victron/gx", "%s?unit=100")', base),
  }, "\n") .. "\n", "stdout")
end)

T.test("RTU on a pty pair: the same devices on one serial bus", function()
  local dir <close> = T.tmpdir()
  local a, b, _socat <close> = T.pty_pair(dir)
  local _srv <close> = start_server(dir, "rtu://" .. a .. "?baud=19200")
  local out, err, code = probe(dir, q("rtu://" .. b) .. " --units 1-8 --bauds 19200 --timeout 0.2")
  T.eq(code, 0, "exit code: " .. err)
  T.eq(out, expected(function(u) return format("rtu://%s?baud=19200&unit=%d", b, u) end), "stdout")
end)

T.test("nothing identified exits 1; command-line mistakes exit 2", function()
  local dir <close> = T.tmpdir()
  local _srv <close>, port = start_server(dir, "tcp://127.0.0.1:0")
  local base = "tcp://127.0.0.1:" .. port
  local out, err, code = probe(dir, base .. " --units 2,4 --timeout 0.3")
  T.eq(code, 1, "exit code")
  T.eq(out, "", "stdout")
  assert(err:find("no device identified on " .. base .. " (units 2,4)", 1, true), err)
  for _, case in ipairs {
    { "", "missing the bus URL" },
    { base .. " --bauds 9600", "--bauds is for serial lines" },
    { base .. " --units 0-300", "--units takes numbers or ranges 1..247" },
  } do
    out, err, code = probe(dir, case[1])
    T.eq(code, 2, case[2] .. ": exit code")
    T.eq(out, "", case[2] .. ": stdout")
    assert(err:find(case[2], 1, true), err)
  end
end)

T.test("rct://host:port: an RCT Power device by its identity objects; a Modbus server is not one", function()
  local dir <close> = T.tmpdir()
  local sim <close> = T.start(dir, "rct-serve", format("%s rct serve --port 0", q(md.paths.exe)))
  local hostport = sim:first_line()
  assert(hostport:match("^127%.0%.0%.1:%d+$"), "serve prints HOST:PORT: " .. hostport)
  local out, err, code = probe(dir, "rct://" .. hostport .. " --timeout 2")
  T.eq(code, 0, "exit code: " .. err)
  assert(out:find("serial SIM0000000000001", 1, true), "the serial it read: " .. out)
  assert(out:find("moondog RCT simulator", 1, true), "its description: " .. out)
  assert(out:find(format("site:add(\"rct_power\", \"rct_power\", %q)", hostport), 1, true), out)
  local _srv <close>, port = start_server(dir, "tcp://127.0.0.1:0")
  out, err, code = probe(dir, "rct://127.0.0.1:" .. port .. " --timeout 0.5")
  T.eq(code, 1, "a Modbus server answers no identity object")
  T.eq(out, "", "nothing identified")
  assert(err:find("no RCT Power device answered", 1, true), err)
  out, err, code = probe(dir, "rct://" .. hostport .. " --units 1-3")
  T.eq(code, 2, "--units does not apply")
  T.eq(out, "", "stdout")
  assert(err:find("--units and --bauds are for Modbus buses", 1, true), err)
end, { timeout = 60 })

T.test("a bus that cannot be reached ends the scan with the reason, never 'answers'", function()
  local dir <close> = T.tmpdir()
  local port = 1 -- nothing listens on port 1 here
  for _, case in ipairs {
    { url = format("tcp://127.0.0.1:%d", port), why = "refused" },
    { url = "tcp://nosuchhost.invalid:502", why = "does not resolve" },
  } do
    local out, err, code = probe(dir, case.url .. " --units 1-3 --timeout 0.2")
    T.eq(code, 1, case.url)
    T.eq(out, "", "nothing claimed on stdout for " .. case.url)
    assert(err:find(case.why, 1, true), case.url .. ": the reason on stderr, got: " .. err)
    assert(not err:find("answers", 1, true), "no unit 'answers' at " .. case.url)
  end
end)

T.test("modbus serve --profile answers its own probe: identified with one value set", function()
  local dir <close> = T.tmpdir()
  local srv <close> = T.start(dir, "serve", format("%s modbus serve %s --profile eastron/sdm72d %s",
    q(md.paths.exe), q("tcp://127.0.0.1:0?unit=4"), "--set power=1500"))
  local url = assert(srv:first_line():match("^(tcp://%S+)"), "the server prints its URL")
  local port = url:match(":(%d+)")
  local out, _, code = probe(dir, format("tcp://127.0.0.1:%s --units 3-5 --timeout 0.3", port))
  T.eq(code, 0)
  assert(out:find("unit 4: eastron/sdm72d", 1, true), out)
end)
