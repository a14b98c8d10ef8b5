-- `moondog sunspec` as users run it: the real tool as a subprocess (T.sh
-- blocks this engine, so every server is a process of its own, started
-- on a free port and stopped when the test ends): scan text and --json
-- against `moondog sunspec serve`, a device image served with --image,
-- usage errors (exit 2) and device failures (exit 1), one line each.

local T = require "moondog.testing"
local cjson = require "cjson"

local format = string.format
local q, read_file = T.quote, T.read_file

-- Run `moondog sunspec ARGS`; returns stdout, stderr, exit code.
local function cli(dir, args)
  local errf = dir.path .. "/cli.err"
  local out, code = T.sh(format("%s sunspec %s 2>%s </dev/null", q(md.paths.exe), args, q(errf)))
  return out, read_file(errf) or "", code
end

-- Exactly one line on stderr (plus the pointer to --help for usage errors).
local function one_line(err, text, what, usage)
  local lines = select(2, err:gsub("\n", ""))
  if lines ~= (usage and 2 or 1) or not err:find(text, 1, true) then
    error(format("%s: expected %s stderr line containing %q, got:\n%s", what,
      usage and "one (+ Try ...)" or "one", text, err), 2)
  end
end

-- `moondog sunspec serve ARGS` in its own process; returns it and its URL.
local function serve(dir, args)
  local p = T.start(dir, "serve", format("%s sunspec serve tcp://127.0.0.1:0 %s", q(md.paths.exe), args))
  local url = p:first_line()
  assert(url:match("^tcp://127%.0%.0%.1:%d+$"), "serve printed '" .. url .. "'")
  return p, url
end

T.test("scan prints every model and point with value and unit", function()
  local dir <close> = T.tmpdir()
  local _p <close>, url = serve(dir, "--models 1,103,160:2 --set 103.W=2500 --set 1.SN=INV-42 "
    .. "--set 160.module.1.DCV=612.5 --unit 5")
  local out, err, code = cli(dir, "scan " .. url .. " --unit 5")
  T.eq(code, 0, "exit code: " .. err)
  T.eq(err, "", "stderr")
  local lines = {}
  for line in out:gmatch("[^\n]*") do lines[#lines + 1] = line end
  T.eq(lines[1], format("SunSpec device at %s unit 5, base 40000, 3 model(s)", url), "first line")
  local function has(line)
    for _, l in ipairs(lines) do if l == line then return true end end
    error(format("no line %q in:\n%s", line, out), 2)
  end
  has("model 1 common at 40002, L = 66")
  has("  SN   INV-42")
  has("  DA   5")
  has("model 103 inverter_three_phase at 40070, L = 50")
  has("  W        2500 W")
  has("  Hz       50 Hz")
  has("  PhVphA   230 V")
  has("  VA       -")            -- not implemented
  has("  St       MPPT")
  has("  Evt1     (none)")
  has("model 160 mppt at 40122, L = 48")
  has("  module[1]")
  has("    DCV    612.5 V")
  has("  module[2]")
end)

T.test("scan --json prints one JSON object with scaled values, null and group arrays", function()
  local dir <close> = T.tmpdir()
  local _p <close>, url = serve(dir, "--models 1,103,123,160:3 --set 103.W=2500 --set 103.Evt1=OVER_TEMP "
    .. "--set 160.module[3].DCW=333 --set 123.WMaxLimPct=42.5")
  local out, err, code = cli(dir, "scan " .. url .. " --json")
  T.eq(code, 0, "exit code: " .. err)
  T.eq(select(2, out:gsub("\n", "")), 1, "one line")
  local doc = cjson.decode(out)
  T.eq(doc.base, 40000, "base")
  T.eq(#doc.models, 4, "models")
  local inv = doc.models[2]
  T.eq(inv.id, 103, "id")
  T.eq(inv.name, "inverter_three_phase", "name")
  T.eq(inv.points.W, 2500, "W")
  T.eq(inv.points.Hz, 50, "Hz")
  T.eq(inv.points.VA, cjson.null, "not implemented is null")
  T.eq(inv.points.St, "MPPT", "enum as its symbol")
  T.eq(table.concat(inv.points.Evt1, ","), "OVER_TEMP", "bitfield as a list of names")
  T.eq(doc.models[3].points.WMaxLimPct, 42.5, "scaled with WMaxLimPct_SF -1")
  local mppt = doc.models[4]
  T.eq(#mppt.module, 3, "repeating group as an array")
  T.eq(mppt.module[3].DCW, 333, "module 3 DCW")
  T.eq(mppt.module[1].DCW, cjson.null, "module 1 DCW not set")
  T.eq(mppt.points.N, 3, "count")
  assert(out:find('"Evt2":[]', 1, true), "an empty bitfield is an empty array")
end)

T.test("a device image served with --image scans to its listed values", function()
  local shared = T.shared_dir()
  local image = shared and shared .. "/reference/sunspec/devices/inverter_1_103_160.regs.tsv"
  if not image or not read_file(image) then T.skip("../shared/reference/sunspec/devices is not there") end
  local dir <close> = T.tmpdir()
  local _p <close>, url = serve(dir, "--image " .. q(image))
  local out, err, code = cli(dir, "scan " .. url .. " --json")
  T.eq(code, 0, "exit code: " .. err)
  local doc = cjson.decode(out)
  T.eq(doc.models[1].points.Md, "TestInverter-2", "model")
  T.eq(doc.models[2].points.A, 12.4, "A")
  T.eq(doc.models[2].points.PPVphAB, cjson.null, "not implemented")
  T.eq(doc.models[2].points.WH, 1234567, "acc32")
  T.eq(doc.models[3].module[3].DCV, 300.13, "module 3 DCV")
  T.eq(doc.models[3].module[2].IDStr, "1:2", "module 2 IDStr")
end)

T.test("usage errors exit 2 with one line and a pointer to --help", function()
  local dir <close> = T.tmpdir()
  local cases = {
    { "scan", "missing the device URL" },
    { "scan tcp://127.0.0.1:1 --bogus", "unknown option '--bogus'" },
    { "scan tcp://127.0.0.1:1 --unit 300", "--unit must be an integer 0..255" },
    { "scan tcp://127.0.0.1:1 --base 70000", "--base must be an integer 0..65533" },
    { "scan notaurl", "notaurl" },
    { "scan tcp://127.0.0.1:1 --models /nonexistent/dir", "--models /nonexistent/dir" },
    { "serve tcp://127.0.0.1:0", "missing --models" },
    { "serve tcp://127.0.0.1:0 --models 1,99999", "no definition of model 99999" },
    { "serve tcp://127.0.0.1:0 --models 1,103 --set W=5", "expected MODEL.POINT=VALUE" },
    { "serve tcp://127.0.0.1:0 --models 1,103 --set 103.Nope=5", "no point 'Nope'" },
    { "frobnicate", "unknown command 'frobnicate'" },
  }
  for _, c in ipairs(cases) do
    local out, err, code = cli(dir, c[1])
    T.eq(code, 2, c[1] .. ": exit code (" .. err .. ")")
    T.eq(out, "", c[1] .. ": stdout")
    one_line(err, c[2], c[1], true)
  end
  local out, _, code = cli(dir, "scan --help")
  T.eq(code, 0, "--help exits 0")
  assert(out:find("usage: moondog sunspec scan", 1, true), out)
end)

T.test("device failures exit 1 with one line on stderr", function()
  local dir <close> = T.tmpdir()
  -- nothing listens on this port: take a free one from a server that then stops
  local p, url = serve(dir, "--models 1")
  p:stop()
  local out, err, code = cli(dir, "scan " .. url)
  T.eq(code, 1, "exit code")
  T.eq(out, "", "stdout")
  one_line(err, "cannot connect to " .. url, "refused")
  -- a Modbus device without SunSpec
  local m <close> = T.start(dir, "modbus", format(
    "%s modbus serve tcp://127.0.0.1:0 --strict --regs /dev/null", q(md.paths.exe)))
  local murl = m:first_line()
  out, err, code = cli(dir, "scan " .. murl .. " --timeout 2")
  T.eq(out, "", "stdout")
  T.eq(code, 1, "exit code: " .. err)
  one_line(err, "no SunSpec device at " .. murl, "not SunSpec")
  for _, base in ipairs({ "40000 (", "0 (", "50000 (" }) do
    assert(err:find(base, 1, true), "names base " .. base .. ": " .. err)
  end
end)
