-- md.sunspec.serve: the register image it builds, values set and read in
-- engineering units, what clients may write, devices refusing reads
-- across models; device images from ../shared served and decoded to the
-- values listed there; and peers we did not write: a python3-pymodbus
-- server holding a SunSpec image read by our client, and mbpoll reading
-- `moondog sunspec serve`.

local T = require "moondog.testing"
local md = require "moondog"
local cjson = require "cjson"

local sunspec = md.sunspec
local format = string.format
local q, read_file = T.quote, T.read_file

local PYTHON = "/usr/bin/python3" -- Debian's, which has pymodbus (not a pyenv one)

-- {===== helpers =====

local function serve(opts)
  local srv, err, code = sunspec.serve("tcp://127.0.0.1:0", opts)
  assert(srv, tostring(err) .. " (" .. tostring(code) .. ")")
  return srv
end

local function join(t) return table.concat(t, ",") end

local function fails(want, what, v, err, code)
  T.eq(v, nil, what)
  T.eq(code, want, what .. " (" .. tostring(err) .. ")")
end

local function devices_dir()
  local shared = T.shared_dir()
  local dir = shared and shared .. "/reference/sunspec/devices"
  if not dir or not read_file(dir .. "/inverter_1_103_160.regs.tsv") then
    T.skip("../shared/reference/sunspec/devices is not there")
  end
  return dir
end

-- A *.regs.tsv image: {address, registers}.
local function read_regs_tsv(path)
  local image = { registers = {} }
  for line in io.lines(path) do
    local addr, words = line:match("^(%d+)\t%d+\t(.*)$")
    if addr then
      image.address = image.address or math.tointeger(tonumber(addr))
      for w in words:gmatch("%x+") do image.registers[#image.registers + 1] = tonumber(w, 16) end
    end
  end
  return image
end

local function close_enough(got, want)
  if math.type(got) == "integer" and math.type(want) == "integer" then return got == want end
  return type(got) == "number" and math.abs(got - want) <= 1e-9 * math.max(1, math.abs(want))
end

-- The value a raw number of point p shows in Lua (enum symbol, bit names).
local function shown(p, raw)
  if p.type:match("^enum") and p.symbol_of then return p.symbol_of[raw] or raw end
  if p.type:match("^bitfield") then
    local names = {}
    for bit = 0, 31 do
      if raw & (1 << bit) ~= 0 then names[#names + 1] = p.symbol_of and p.symbol_of[bit] or "bit" .. bit end
    end
    return join(names)
  end
  return raw
end

-- }=====

T.test("the image: 'SunS', models back to back, the end marker", function()
  local srv <close> = serve({ models = { 1, 103, { id = 160, count = 2 } }, unit = 3 })
  local bus <close> = assert(md.modbus.open(srv:url()))
  local head = assert(bus:read_holding(3, 40000, 4))
  T.eq(join(head), "21365,28243,1,66", "'SunS', model 1, L = 66")
  T.eq(join(assert(bus:read_holding(3, 40070, 2))), "103,50", "model 103 follows")
  T.eq(join(assert(bus:read_holding(3, 40122, 2))), "160,48", "model 160, 8 + 2 x 20 registers")
  T.eq(join(assert(bus:read_holding(3, 40172, 2))), "65535,0", "end marker")
  fails("illegal_data_address", "nothing after the end marker", bus:read_holding(3, 40174, 1))
  fails("gateway_target_failed", "only unit 3 answers", bus:read_holding(1, 40000, 1))
  local image = srv:image()
  T.eq(image.address, 40000, "image address")
  T.eq(#image.registers, 174, "image size")
  -- plausible defaults
  T.eq(srv:get(1, "Mn"), "moondog", "maker")
  T.eq(srv:get(1, "DA"), 3, "device address = unit id")
  T.eq(srv:get(103, "Hz"), 50, "frequency")
  T.eq(srv:get(103, "St"), "MPPT", "operating state")
  T.eq(srv:get(160, "N"), 2, "count of modules")
  T.eq(srv:get(103, "A_SF"), -2, "scale factor by the units of its points")
  T.eq(srv:get(103, "VA"), nil, "optional point not implemented")
end)

T.test("set and get in engineering units, scaled with the factor in the image", function()
  local srv <close> = serve({ models = { 1, 103, { id = 160, count = 3 }, 701 },
                              values = { [103] = { W_SF = -1, W = 1234.5 },
                                         [160] = { module = { { DCW = 11 }, {}, { DCW = 33 } } } } })
  local bus <close> = assert(md.modbus.open(srv:url()))
  T.eq(srv:get(103, "W"), 1234.5, "W")
  T.eq(assert(bus:read_holding(1, 40070 + 14, 1))[1], 12345, "raw W with W_SF = -1")
  srv:set(103, "W", -20.5)
  T.eq(assert(bus:read_holding(1, 40070 + 14, 1))[1], 65536 - 205, "negative int16")
  srv:set(103, "W", nil)
  T.eq(assert(bus:read_holding(1, 40070 + 14, 1))[1], 0x8000, "not implemented")
  T.eq(srv:get(103, "W"), nil, "reads as nil")
  T.eq(srv:get(160, "module[3].DCW"), 33, "third module")
  T.eq(srv:get(160, "module[2].DCW"), nil, "second module: not set")
  srv:set(701, "TotWhInj", 2 ^ 53)
  T.eq(srv:get(701, "TotWhInj"), 2 ^ 53, "uint64")
  srv:set(103, "Evt1", { "OVER_TEMP", "UNDER_TEMP" })
  T.eq(join(srv:get(103, "Evt1")), "OVER_TEMP,UNDER_TEMP", "bitfield by names")
  local ok, err = pcall(srv.set, srv, 103, "NoSuch", 1)
  assert(not ok and err:find("no point 'NoSuch'", 1, true), tostring(err))
  ok, err = pcall(srv.set, srv, 103, "W", 1e9)
  assert(not ok and err:find("cannot set W", 1, true), tostring(err))
  ok, err = pcall(srv.set, srv, 999, "W", 1)
  assert(not ok and err:find("no model 999", 1, true), tostring(err))
  ok, err = pcall(sunspec.serve, "tcp://127.0.0.1:0", { models = { 1, 64999 } })
  assert(not ok and err:find("model 64999 has no definition", 1, true), tostring(err))
end)

T.test("clients may write whole writable points only; hooks see scaled values and may refuse", function()
  local srv <close> = serve({ models = { 1, 103, 123, 704 }, values = { [123] = { WMaxLimPct_SF = -1 } } })
  local seen = {}
  srv:on_write(function(id, path, value)
    seen[#seen + 1] = format("%d %s %s", id, path, tostring(value))
    if path == "WMaxLimPct" and value > 100 then return "illegal_data_value" end
  end)
  local bus <close> = assert(md.modbus.open(srv:url()))
  local c123 = srv:model(123).addr
  local c704 = srv:model(704).addr
  fails("illegal_data_address", "W is read-only", bus:write_register(1, 40070 + 14, 5))
  fails("illegal_data_address", "the model header", bus:write_registers(1, c123, { 123, 24 }))
  fails("illegal_data_address", "half of a uint32", bus:write_register(1, c704 + 18, 1))
  fails("illegal_data_address", "a writable point (VArPct_Ena) and a read-only one (WMaxLimPct_SF)",
    bus:write_registers(1, c123 + 22, { 1, 0 }))
  fails("illegal_data_value", "an enum outside its symbols", bus:write_register(1, c123 + 9, 7))
  T.eq(#seen, 0, "no hook ran for refused writes")
  assert(bus:write_registers(1, c123 + 5, { 505, 0, 60 }))
  T.eq(join(seen), "123 WMaxLimPct 50.5,123 WMaxLimPct_WinTms 0,123 WMaxLimPct_RvrtTms 60", "hooks")
  T.eq(srv:get(123, "WMaxLimPct_RvrtTms"), 60, "stored")
  fails("illegal_data_value", "the hook refuses 120 %", bus:write_registers(1, c123 + 5, { 1200, 1, 1 }))
  T.eq(srv:get(123, "WMaxLimPct"), 50.5, "the refused write was undone")
  T.eq(srv:get(123, "WMaxLimPct_WinTms"), 0, "all of it")
  assert(bus:write_registers(1, c704 + 18, { 0, 900 }))
  T.eq(srv:get(704, "WMaxLimPctRvrtTms"), 900, "a whole uint32")
end)

T.test("cross_model = false refuses reads that span two models", function()
  local srv <close> = serve({ models = { 1, 103 }, cross_model = false })
  local bus <close> = assert(md.modbus.open(srv:url()))
  fails("illegal_data_address", "marker and model 1", bus:read_holding(1, 40000, 4))
  fails("illegal_data_address", "model 1 into 103", bus:read_holding(1, 40060, 20))
  T.eq(#assert(bus:read_holding(1, 40000, 2)), 2, "the marker alone")
  T.eq(#assert(bus:read_holding(1, 40070, 52)), 52, "one whole model")
end)

T.test("models without a definition and wrong lengths are served raw", function()
  local srv <close> = serve({ models = { 1, { id = 64000, registers = { 7, 8, 9 } }, { id = 103, L = 12 } } })
  local bus <close> = assert(md.modbus.open(srv:url()))
  T.eq(join(assert(bus:read_holding(1, 40070, 5))), "64000,3,7,8,9", "raw model")
  T.eq(join(assert(bus:read_holding(1, 40075, 2))), "103,12", "a 103 that is 12 registers long")
  T.eq(join(assert(bus:read_holding(1, 40089, 2))), "65535,0", "end marker after it")
  local ok, err = pcall(srv.get, srv, 103, "W")
  assert(not ok and err:find("served raw", 1, true), tostring(err))
end)

T.test("simulate_inverter: W follows the power available and the limit", function()
  local srv <close> = serve({ models = { 1, 103, 121, 123 }, values = { [121] = { WMax = 8000 } } })
  local sim = srv:simulate_inverter{ power = 6000 }
  T.eq(srv:get(103, "W"), 6000, "all the power")
  local bus <close> = assert(md.modbus.open(srv:url()))
  local c = srv:model(123).addr
  assert(bus:write_register(1, c + 5, 250)) -- 25.0 % with WMaxLimPct_SF -1
  T.eq(srv:get(103, "W"), 6000, "not enabled yet")
  assert(bus:write_register(1, c + 9, 1))
  T.eq(srv:get(103, "W"), 2000, "25 % of 8000 W")
  srv:set_power(1500)
  T.eq(sim.w, 1500, "less sun than the limit")
end)

-- {===== device images =====

T.test("inverter_1_103_160 image decodes to the listed values", function()
  local dir = devices_dir()
  local srv <close> = serve({ image = read_regs_tsv(dir .. "/inverter_1_103_160.regs.tsv") })
  local bus <close> = assert(md.modbus.open(srv:url()))
  local dev = assert(sunspec.open(bus))
  T.eq(dev:summary(), "1, 103, 160", "models")
  local n, header = 0, nil
  for line in io.lines(dir .. "/inverter_1_103_160.decoded.tsv") do
    local f = {}
    for field in (line .. "\t"):gmatch("([^\t]*)\t") do f[#f + 1] = field end
    if not header then
      header = {}
      for i, name in ipairs(f) do header[name] = i end
    else
      local id, addr, path = tonumber(f[header.model_id]), tonumber(f[header.address]), f[header.point]
      local m = dev[id]
      local got = m:get(path)
      local what = format("%d %s at %d", id, path, addr)
      T.eq(m.address + tonumber(f[header.offset]), addr, what .. ": address")
      if f[header.implemented] == "N" then
        T.eq(got, nil, what .. " not implemented")
      else
        local p = m:info(path)
        local want = f[header.scaled_value]
        if p.type == "string" then
          T.eq(got, want, what)
        elseif p.type:match("^enum") or p.type:match("^bitfield") then
          local expect = shown(p, math.tointeger(tonumber(f[header.raw_value])))
          T.eq(type(got) == "table" and join(got) or got, expect, what)
        else
          assert(close_enough(got, tonumber(want)), format("%s: read %s, listed %s", what,
            tostring(got), want))
        end
        if f[header.units] ~= "" then T.eq(m:units(path), f[header.units], what .. " units") end
      end
      n = n + 1
    end
  end
  T.eq(n, 93, "points checked")
end)

-- cjson reads every number as a float: integral ones back to integers.
local function integers(t)
  for k, v in pairs(t) do
    if type(v) == "table" then
      integers(v)
    elseif math.type(v) == "float" and math.tointeger(v) then
      t[k] = math.tointeger(v)
    end
  end
  return t
end

-- The model list of a pysunspec2 device image, served from raw values.
local function image_models(doc)
  local list = {}
  for _, m in ipairs(doc.models) do
    if m.ID ~= 65535 then
      local spec = { id = m.ID, L = m.L, raw = m }
      for k, v in pairs(m) do
        if type(v) == "table" then spec.counts = { [k] = #v } end
      end
      list[#list + 1] = spec
    end
  end
  return list
end

-- Every key of a pysunspec2 image model equals what the client decoded.
local function check_image_model(dm, raw, prefix, scope)
  local n = 0
  for key, v in pairs(raw) do
    local path = prefix .. key
    if type(v) == "table" then
      for i, inst in ipairs(v) do
        local inner = setmetatable({}, {
          __index = function(_, k) if inst[k] ~= nil then return inst[k] end return scope[k] end,
        })
        n = n + check_image_model(dm, inst, format("%s%s[%d].", prefix, key, i), inner)
      end
    else
      local p = dm:info(path)
      local got = dm:get(path)
      local what = format("model %d %s", dm.id, path)
      if v == cjson.null or p.type == "pad" then
        if p.type ~= "pad" then T.eq(got, nil, what .. " not implemented") end
      elseif p.type == "string" then
        T.eq(got, v, what)
      elseif p.symbol_of then
        local s = shown(p, v)
        T.eq(type(got) == "table" and join(got) or got, s, what)
      else
        local sf = p.sf
        if type(sf) == "string" then sf = scope[sf] end
        local want = v * 10.0 ^ (sf or 0)
        if not sf or sf == 0 then want = v end
        assert(close_enough(got, want), format("%s: read %s, image says %s (sf %s)", what,
          tostring(got), tostring(want), tostring(sf)))
      end
      n = n + 1
    end
  end
  return n
end

T.test("pysunspec2 image inverter_123.json: model 129 with four curves", function()
  local dir = devices_dir()
  if not sunspec.models.get(129) then -- not shipped: the official definition from ../shared
    assert(sunspec.models.load_json_dir(dir .. "/../models"))
  end
  local doc = integers(cjson.decode(assert(read_file(dir .. "/inverter_123.json"))))
  local srv <close> = serve({ models = image_models(doc) })
  local bus <close> = assert(md.modbus.open(srv:url()))
  local dev = assert(sunspec.open(bus))
  T.eq(dev:summary(), "1, 129", "models")
  T.eq(dev[129].length, 210, "L")
  T.eq(#dev[129].curve, 4, "four curves sized from L")
  local n = 0
  for i, raw in ipairs(doc.models) do
    if raw.ID ~= 65535 then
      n = n + check_image_model(dev.models[i], raw, "", raw)
    end
  end
  assert(n > 170, "points checked: " .. n)
  T.eq(dev[129].curve[1].V1, 88.0, "curve 1, V1 = 880 x 10^-1")
  T.eq(dev[129].curve[1].Tms2, 0.71, "curve 1, Tms2 = 71 x 10^-2")
end)

-- }=====

-- {===== peers we did not write =====

T.test("a pymodbus server holding a SunSpec image, read by our client", function()
  local dir = devices_dir()
  local _, code = T.sh(PYTHON .. " -c 'import pymodbus' >/dev/null 2>&1")
  if code ~= 0 then T.skip("python3-pymodbus is not installed (" .. PYTHON .. ")") end
  local tmp <close> = T.tmpdir()
  local p <close> = T.start(tmp, "pymodbus", format("%s %s/tests/data/pymodbus_sunspec.py %s",
    PYTHON, q(md.paths.home), q(dir .. "/inverter_1_103_160.regs.tsv")))
  local port = assert(p:first_line():match("^ready (%d+)$"), "pymodbus did not say 'ready PORT'")
  local bus <close> = assert(md.modbus.open("tcp://127.0.0.1:" .. port))
  local dev = assert(sunspec.open(bus))
  T.eq(dev:summary(), "1, 103, 160", "models")
  T.eq(dev.common.SN, "sn-123456789", "serial number")
  T.eq(dev.inverter.Hz, 59.99, "Hz with Hz_SF -2")
  T.eq(dev.inverter.WH, 1234567, "acc32")
  T.eq(dev[160].module[2].DCV, 300.12, "module 2 DCV")
  -- pymodbus refuses the read past the end: 3 reads, one of them refused
  T.eq(bus:stats().requests, 3, "requests")
  assert(dev:read())
end)

T.test("mbpoll reads moondog sunspec serve", function()
  T.need("mbpoll")
  local tmp <close> = T.tmpdir()
  local p <close> = T.start(tmp, "serve", format(
    "%s sunspec serve tcp://127.0.0.1:0 --models 1,103,123 --set 103.W=2500", q(md.paths.exe)))
  local url = p:first_line()
  local port = assert(url:match(":(%d+)$"), "serve printed " .. url)
  local out, rc = T.sh(format("mbpoll -1 -0 -m tcp -p %s -a 1 -t 4 -r 40000 -c 4 127.0.0.1 2>&1", port))
  T.eq(rc, 0, "mbpoll: " .. out)
  local values = {}
  for ref, v in out:gmatch("\n%[(%d+)%]:%s+(%S+)") do values[tonumber(ref)] = v end
  T.eq(format("%s,%s,%s,%s", values[40000], values[40001], values[40002], values[40003]),
    "21365,28243,1,66", "'SunS', model 1, L = 66")
  out = T.sh(format("mbpoll -1 -0 -m tcp -p %s -a 1 -t 4 -r %d -c 2 127.0.0.1 2>&1", port, 40070 + 14))
  T.eq(out:match("\n%[40084%]:%s+(%S+)"), "2500", "W set with --set")
  -- mbpoll sets a power limit: 40 % (WMaxLimPct_SF -1), then enables it
  local c = 40070 + 52
  out, rc = T.sh(format("mbpoll -1 -0 -m tcp -p %s -a 1 -t 4 -r %d 127.0.0.1 -- 400 2>&1", port, c + 5))
  T.eq(rc, 0, "mbpoll write: " .. out)
  out, rc = T.sh(format("mbpoll -1 -0 -m tcp -p %s -a 1 -t 4 -r %d 127.0.0.1 -- 1 2>&1", port, c + 9))
  T.eq(rc, 0, "mbpoll write: " .. out)
  local bus <close> = assert(md.modbus.open(url))
  local dev = assert(sunspec.open(bus))
  T.eq(dev.controls.WMaxLimPct, 40, "limit written by mbpoll")
  T.eq(dev.inverter.W, 1000, "the simulated inverter obeys: 40 % of the 2500 W set")
  out, rc = T.sh(format("mbpoll -1 -0 -m tcp -p %s -a 1 -t 4 -r %d 127.0.0.1 -- 1 2>&1", port, 40070 + 14))
  assert(rc ~= 0 and out:find("Illegal data address"), "writing W is refused: " .. out)
end)

-- }=====
