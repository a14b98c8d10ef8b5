-- md.sunspec.open against our SunSpec server (md.sunspec.serve) on
-- loopback: discovery at every base, many models, repeated and unknown
-- models, lengths that contradict the definition, a truncated list,
-- exceptions during the scan, a device that refuses reads across models,
-- request counts (bus:stats(), deterministic), and writes.
--
-- Values are checked point by point against what the server holds
-- (srv:get decodes its own image) after the server was filled with
-- varied values of every type; the device-image tests in
-- test_sunspec_server.lua check against values listed by others.

local T = require "moondog.testing"
local md = require "moondog"

local sunspec = md.sunspec
local format = string.format

-- {===== helpers =====

local function serve(opts)
  local srv, err, code = sunspec.serve("tcp://127.0.0.1:0", opts)
  assert(srv, tostring(err) .. " (" .. tostring(code) .. ")")
  return srv
end

local function requests(bus)
  return bus:stats().requests
end

-- A value that fits point slot s of server model m, varied by i; nil
-- every ninth point (not implemented).
local function sample(m, s, i)
  local p = s.point
  if p.name == "ID" or p.name == "L" or p.type == "sunssf" or p.type == "count"
    or p.type == "pad" or m.counts[p.name] then -- counts of repeating groups stay
    return "keep"
  end
  if i % 9 == 0 then return nil end
  local k = i % 30 + 1
  local t = p.type
  if t == "string" then
    return (format("p%d-%d", m.id, i)):sub(1, 2 * p.size)
  elseif t:match("^enum") and p.symbols then
    return p.symbols[i % #p.symbols + 1].name
  elseif t:match("^bitfield") and p.symbols then
    return { p.symbols[i % #p.symbols + 1].name }
  elseif t == "float32" or t == "float64" then
    return k + 0.5
  elseif t == "ipaddr" then
    return format("10.0.0.%d", k)
  elseif t == "ipv6addr" then
    return format("fe80::%d", k)
  elseif t == "eui48" then
    return format("00:11:22:33:44:%02x", k)
  end
  return k -- integers, also scaled (k * 10^-sf fits every type for k <= 31)
end

-- Fill every point of every defined model of srv with varied values.
local function fill(srv)
  for _, m in ipairs(srv.models) do
    if m.inst then
      for i, s in ipairs(m.inst.slots) do
        local v = sample(m, s, i)
        if v ~= "keep" then srv:set(m, s.path, v) end
      end
    end
  end
end

local function show(v)
  if type(v) == "table" then return "{" .. table.concat(v, ",") .. "}" end
  return tostring(v)
end

-- Every point of every model of dev equals what srv holds; raw models
-- hold the server's registers. Returns the number of points compared.
local function check_all(dev, srv)
  T.eq(#dev.models, #srv.models, "number of models")
  local n = 0
  for i, dm in ipairs(dev.models) do
    local sm = srv.models[i]
    T.eq(dm.id, sm.id, "model id")
    T.eq(dm.address, sm.addr, "address of model " .. sm.id)
    if dm.raw then
      local regs = srv.core:get(srv.unit, "holding", sm.addr + 2, sm.len)
      T.eq(table.concat(dm.registers, ","), table.concat(regs, ","), "raw registers of " .. sm.id)
    else
      for _, path in ipairs(dm:paths()) do
        local got, want = dm:get(path), srv:get(sm, path)
        if show(got) ~= show(want) then
          error(format("model %d at %d, %s: read %s, the server holds %s", dm.id, dm.address,
            path, show(got), show(want)), 2)
        end
        n = n + 1
      end
    end
  end
  return n
end

local TYPICAL = { 1, 103, 120, 121, 122, 123, { id = 160, count = 3 }, 203, 701 }

-- }=====

T.test("typical inverter: discovery and full read in 6 requests, a poll in 5", function()
  local srv <close> = serve({ models = TYPICAL, strict = false })
  fill(srv)
  local bus <close> = assert(md.modbus.open(srv:url()))
  local dev = assert(sunspec.open(bus))
  -- 588 registers: 5 reads at least; 6 is the least that keeps every value
  -- whole with its scale factor (701's W..W_SF span, 113 registers, leaves
  -- the 429 before it to 4 reads) -- see moondog.sunspec.discover.
  T.eq(requests(bus), 6, "requests for discovery + full read")
  T.eq(dev.base, 40000, "base")
  T.eq(dev:summary(), "1, 103, 120, 121, 122, 123, 160, 203, 701", "models")
  local n = check_all(dev, srv)
  assert(n > 300, "points compared: " .. n)
  -- A poll: everything but static points, 514 registers.
  srv:set(103, "W", 4321)
  srv:set(160, "module[3].DCW", 17)
  local before = requests(bus)
  assert(dev:read())
  T.eq(requests(bus) - before, 5, "requests for a poll")
  T.eq(dev.inverter.W, 4321, "fresh W")
  T.eq(dev[160].module[3].DCW, 17, "fresh module 3 DCW")
  check_all(dev, srv)
  local tx, regs = dev:plan_stats()
  T.eq(tx, 5, "planned transactions")
  T.eq(regs, 514, "planned registers")
end)

T.test("typical inverter, strict map: one more request, refused past the end", function()
  local srv <close> = serve({ models = TYPICAL })
  fill(srv)
  local bus <close> = assert(md.modbus.open(srv:url()))
  local dev = assert(sunspec.open(bus))
  T.eq(requests(bus), 7, "requests (the blind read past the end marker is refused once)")
  T.eq(bus:stats().errors.exception, 1, "exceptions")
  check_all(dev, srv)
  local before = requests(bus)
  assert(dev:read())
  T.eq(requests(bus) - before, 5, "requests for a poll")
end)

T.test("many models: floats, meters, DER, repeated and unknown models", function()
  local list = { 1, 101, 102, 103, 111, 112, 113, 120, 121, 122, 123, 124,
    { id = 160, count = 5 }, 201, 202, 203, 204, 211, 212, 213, 214,
    { id = 64900, registers = { 1, 2, 3, 0xFFFF, 0x8000 } },
    701, 702, 703, 704, 705, 706, 707, 708, 709, 710, 711, 712, 713, 714, 715,
    { id = 160, count = 2 }, 203, 802 }
  local srv <close> = serve({ models = list })
  fill(srv)
  srv:set(701, "TotWhInj", 123456789012345)   -- uint64
  srv:set(203, "TotWhExp", 4000000000)        -- acc32 near its top
  srv:set(113, "W", -1234.5)                  -- float32 without a scale factor
  local bus <close> = assert(md.modbus.open(srv:url()))
  local dev = assert(sunspec.open(bus))
  local n = check_all(dev, srv)
  assert(n > 1000, "points compared: " .. n)
  T.eq(dev[701].TotWhInj, 123456789012345, "uint64 value")
  T.eq(dev[203].TotWhExp, 4000000000, "acc32 value")
  T.eq(dev[113].W, -1234.5, "float32 value")
  T.eq(#dev:models_by_id(160), 2, "two 160 models")
  T.eq(#dev:models_by_id(160)[1].module, 5, "first 160: 5 modules")
  T.eq(#dev:models_by_id(160)[2].module, 2, "second 160: 2 modules")
  T.eq(#dev:models_by_id(203), 2, "two meters")
  local raw = dev[64900]
  assert(raw.raw, "model 64900 is kept raw")
  T.eq(table.concat(raw.registers, ","), "1,2,3,65535,32768", "raw registers")
  -- names and short names
  T.eq(dev.inverter, dev[103], "inverter = the first three-phase inverter")
  T.eq(dev.meter, dev[203], "meter")
  T.eq(dev.DERMeasureAC, dev[701], "by model name")
  T.eq(dev.der_measure_ac, dev[701], "by snake_case name")
  T.eq(dev.common, dev.models[1], "common")
  T.eq(dev[1]:units("Mn"), nil, "no units for text")
  T.eq(dev[160]:units("module.DCW"), "W", "units of a group point")
  T.eq(dev[103]:info("W").sf, "W_SF", "point metadata")
  -- a full poll over everything, again equal
  for _, m in ipairs(srv.models) do
    if m.id == 203 then srv:set(m, "W", 321) end
  end
  assert(dev:read())
  T.eq(dev:models_by_id(203)[2].W, 321, "second meter refreshed")
  check_all(dev, srv)
end)

T.test("not implemented values read as nil, also through an unimplemented scale factor", function()
  local srv <close> = serve({ models = { 1, 103, { id = 160, count = 2 } } })
  srv:set(103, "W", 1000)
  srv:set(103, "VA", nil)
  srv:set(103, "Hz_SF", nil) -- Hz has a value but no usable factor
  srv:set(160, "module[1].DCWH", nil)
  srv:set(160, "module[2].IDStr", nil)
  srv:set(160, "module[2].DCEvt", nil)
  local bus <close> = assert(md.modbus.open(srv:url()))
  local dev = assert(sunspec.open(bus))
  T.eq(dev[103].W, 1000, "W")
  T.eq(dev[103].VA, nil, "VA not implemented")
  T.eq(dev[103].Hz_SF, nil, "Hz_SF not implemented")
  T.eq(dev[103].Hz, nil, "Hz without a factor")
  T.eq(dev[160].module[1].DCWH, nil, "acc32 0 = not implemented")
  T.eq(dev[160].module[2].IDStr, nil, "empty string = not implemented")
  T.eq(dev[160].module[2].DCEvt, nil, "bitfield 0xFFFFFFFF = not implemented")
  local flags = dev[103].Evt1
  T.eq(#flags, 0, "no event bits")
  T.eq(flags.GROUND_FAULT, false, "flags answer by name")
end)

T.test("enums read as symbols, bitfields as names of the bits set", function()
  local srv <close> = serve({ models = { 1, 103 } })
  srv:set(103, "St", "THROTTLED")
  srv:set(103, "Evt1", { "GROUND_FAULT", "OVER_TEMP" })
  srv:set(103, "StVnd", 77) -- an enum without symbols: the number
  local bus <close> = assert(md.modbus.open(srv:url()))
  local dev = assert(sunspec.open(bus))
  T.eq(dev[103].St, "THROTTLED", "enum")
  T.eq(table.concat(dev[103].Evt1, ","), "GROUND_FAULT,OVER_TEMP", "bitfield")
  T.eq(dev[103].Evt1.OVER_TEMP, true, "bitfield by name")
  T.eq(dev[103].StVnd, 77, "enum without symbols")
end)

T.test("a length that contradicts the definition: a warning, a raw model, the rest read", function()
  local srv <close> = serve({ models = { 1, { id = 103, L = 40 }, 120 } })
  local bus <close> = assert(md.modbus.open(srv:url()))
  local dev = assert(sunspec.open(bus))
  T.eq(dev:summary(), "1, 103 (raw), 120", "models")
  T.eq(#dev[103].registers, 40, "raw block of L registers")
  local w = table.concat(dev.warnings, "\n")
  assert(w:find("model 103 at 40070", 1, true) and w:find("L = 50", 1, true)
    and w:find("L = 40", 1, true), "warning names model, address and both lengths: " .. w)
  assert(dev[120].WRtg_SF ~= nil or dev[120].DERTyp ~= nil, "the model after it is decoded")
  check_all(dev, srv)
end)

T.test("model 1 with L = 65 (no Pad) is accepted", function()
  local srv <close> = serve({ models = { { id = 1, L = 65 }, 103 } })
  local bus <close> = assert(md.modbus.open(srv:url()))
  local dev = assert(sunspec.open(bus))
  T.eq(dev:summary(), "1, 103", "models")
  T.eq(dev.common.SN, "MD-SIM-0001", "serial number")
  T.eq(#dev.warnings, 0, "no warning")
end)

T.test("a list without end marker: the models kept, a warning saying where", function()
  local srv <close> = serve({ models = { 1, 103, 120 }, end_marker = false })
  local bus <close> = assert(md.modbus.open(srv:url()))
  local dev = assert(sunspec.open(bus))
  T.eq(dev:summary(), "1, 103, 120", "models")
  assert(dev.truncated, "marked truncated")
  local w = table.concat(dev.warnings, "\n")
  assert(w:find("40150", 1, true) and w:find("illegal data address", 1, true),
    "warning names the address and the exception: " .. w)
  check_all(dev, srv)
end)

T.test("an exception inside a model during the scan: earlier models kept, the place named", function()
  -- registers 40130..40131 (inside model 120) answer "server device failure"
  local srv <close> = serve({
    models = { 1, 103, 120, 121 },
    on_read = function(_, _, addr, count)
      if addr <= 40131 and addr + count > 40130 then return "server_device_failure" end
    end,
  })
  local bus <close> = assert(md.modbus.open(srv:url()))
  local dev = assert(sunspec.open(bus))
  T.eq(dev:summary(), "1, 103", "models before the failure")
  local w = table.concat(dev.warnings, "\n")
  assert(w:find("model 120 at 40122", 1, true) and w:find("server device failure", 1, true),
    "warning names the model and the exception: " .. w)
end)

T.test("bases 0 and 50000 are found; a given base is the only one tried", function()
  for _, base in ipairs({ 0, 50000 }) do
    local srv <close> = serve({ models = { 1, 103 }, base = base })
    local bus <close> = assert(md.modbus.open(srv:url()))
    local dev = assert(sunspec.open(bus))
    T.eq(dev.base, base, "base")
    T.eq(dev[103].ID, 103, "model 103")
  end
  local srv <close> = serve({ models = { 1 }, base = 0 })
  local bus <close> = assert(md.modbus.open(srv:url()))
  local dev, err, code = sunspec.open(bus, { base = 40000 })
  T.eq(dev, nil, "not at 40000")
  T.eq(code, "not_sunspec", "code")
  assert(err:find("40000", 1, true) and not err:find("50000", 1, true), err)
end)

T.test("no marker anywhere: the error names every address tried", function()
  local srv <close> = serve({ image = { address = 40000, registers = { 0x1234, 0x5678, 1, 2 } } })
  local bus <close> = assert(md.modbus.open(srv:url()))
  local dev, err, code = sunspec.open(bus)
  T.eq(dev, nil, "no device")
  T.eq(code, "not_sunspec", "code")
  for _, want in ipairs({ "40000 (it holds 0x1234 0x5678", "0 (", "50000 (", "illegal data address" }) do
    assert(err:find(want, 1, true), "error mentions " .. want .. ": " .. err)
  end
end)

T.test("garbage after 'SunS' never raises: a device with warnings, or an error", function()
  math.randomseed(4242) -- the same images every run
  local known = { 1, 103, 160, 203, 701, 64000 }
  for round = 1, 40 do
    local regs = { 0x5375, 0x6E53 }
    local n = math.random(4, 400)
    for i = 3, n do
      -- headers of known models with random lengths now and then, noise otherwise
      regs[i] = math.random() < 0.05 and known[math.random(#known)] or math.random(0, 0xFFFF)
      if math.random() < 0.1 then regs[i] = math.random(0, 80) end
    end
    local srv <close> = serve({ image = { address = 40000, registers = regs } })
    local bus <close> = assert(md.modbus.open(srv:url()))
    local ok, dev, err, code = pcall(sunspec.open, bus, { base = 40000 })
    assert(ok, format("round %d raised: %s", round, tostring(dev)))
    if dev then
      assert(dev:summary(), "summary")
      local rok, rerr = pcall(dev.read, dev)
      assert(rok, format("round %d: read raised: %s", round, tostring(rerr)))
    else
      assert(type(err) == "string" and type(code) == "string", "nil, message, code")
    end
  end
end)

T.test("chains of real models with wrong lengths and random bodies never raise", function()
  math.randomseed(777)
  local ids = sunspec.models.ids()
  local layout = require "moondog.sunspec.layout"
  local random_count = setmetatable({}, { __index = function() return math.random(0, 3) end })
  for round = 1, 60 do
    local regs = { 0x5375, 0x6E53 }
    for _ = 1, math.random(1, 6) do
      local id = ids[math.random(#ids)]
      local len = layout.length(sunspec.models.get(id), random_count)
      if math.random() < 0.3 then len = math.max(0, len + math.random(-5, 5)) end
      regs[#regs + 1], regs[#regs + 1] = id, len
      for _ = 1, len do
        regs[#regs + 1] = math.random() < 0.3 and math.random(0, 5) or math.random(0, 0xFFFF)
      end
    end
    if math.random() < 0.8 then regs[#regs + 1], regs[#regs + 1] = 0xFFFF, 0 end
    local srv <close> = serve({ image = { address = 40000, registers = regs },
                                strict = math.random() < 0.5 })
    local bus <close> = assert(md.modbus.open(srv:url()))
    local ok, dev = pcall(sunspec.open, bus, { base = 40000 })
    assert(ok, format("round %d raised: %s", round, tostring(dev)))
    if dev then
      local rok, rerr = pcall(dev.read, dev, { static = true })
      assert(rok, format("round %d: read raised: %s", round, tostring(rerr)))
    end
  end
end, { timeout = 120 })

T.test("a timeout during discovery fails open with where it happened", function()
  local srv <close> = serve({
    models = { 1, 103 },
    on_read = function(_, _, addr) if addr > 40000 then md.sleep(5) end end,
  })
  local bus <close> = assert(md.modbus.open(srv:url() .. "?timeout=0.2"))
  local dev, err, code = sunspec.open(bus, { timeout = 0.2 })
  T.eq(dev, nil, "no device")
  T.eq(code, "timeout", "code")
  assert(err:find("registers 40", 1, true), "the error says which registers: " .. err)
end, { timeout = 20 })

T.test("a device refusing reads across models: read per model, still correct", function()
  local srv <close> = serve({ models = TYPICAL, cross_model = false })
  fill(srv)
  local bus <close> = assert(md.modbus.open(srv:url()))
  local dev = assert(sunspec.open(bus))
  assert(dev.no_cross_model, "learned at discovery")
  check_all(dev, srv)
  srv:set(103, "W", 77)
  local before = requests(bus)
  assert(dev:read())
  T.eq(requests(bus) - before, 9, "one read per model (701 needs two), the common model skipped")
  T.eq(bus:stats().errors.exception, 2, "refusals during discovery only (125 and 4 registers at 40000)")
  T.eq(dev.inverter.W, 77, "fresh W")
end)

T.test("refusal learned during a poll: correct at once, fewer requests the next time", function()
  local refuse = false
  local srv
  srv = serve({
    models = TYPICAL,
    on_read = function(_, _, addr, count)
      if refuse then
        for _, m in ipairs(srv.models) do
          local lo, hi = m.addr, m.addr + m.len + 2
          if addr >= lo and addr < hi and addr + count > hi then return "illegal_data_address" end
        end
      end
    end,
  })
  local _srv <close> = srv
  fill(srv)
  local bus <close> = assert(md.modbus.open(srv:url()))
  local dev = assert(sunspec.open(bus))
  assert(not dev.no_cross_model, "reads across models work at first")
  refuse = true
  srv:set(103, "W", 55)
  local r0 = requests(bus)
  assert(dev:read())
  local first = requests(bus) - r0
  assert(dev.no_cross_model, "learned")
  T.eq(dev.inverter.W, 55, "correct on the poll that learned")
  check_all(dev, srv)
  r0 = requests(bus)
  assert(dev:read())
  local second = requests(bus) - r0
  assert(second < first, format("next poll %d requests, fewer than the %d of the learning one",
    second, first))
  T.eq(second, 9, "one read per model (701 needs two), the common model skipped")
end)

-- {===== writes =====

T.test("writes to read-only or impossible values are refused before anything is sent", function()
  local srv <close> = serve({ models = { 1, 103, 120, 121, 123, 704 } })
  local bus <close> = assert(md.modbus.open(srv:url()))
  local dev = assert(sunspec.open(bus))
  local r0 = requests(bus)
  local ok, err, code = dev.inverter:write("W", 100)
  T.eq(ok, nil, "W is read-only")
  T.eq(code, "read_only", "code")
  assert(err:find("W of model 103", 1, true) and err:find("read-only", 1, true), err)
  local function refused(want, what, m, ...)
    local rok, rerr, rcode = m:write(...)
    T.eq(rok, nil, what)
    T.eq(rcode, want, what .. ": " .. tostring(rerr))
    return rerr
  end
  refused("read_only", "a scale factor is read-only", dev.controls,
    { WMaxLimPct = 50, WMaxLimPct_SF = 0 })
  refused("range", "negative percentage", dev.controls, "WMaxLimPct", -5)
  refused("range", "no scale factor -10..10 makes 1e16 fit 16 bits", dev.controls, "WMaxLimPct", 1e16)
  err = refused("range", "unknown symbol", dev.controls, "WMaxLim_Ena", "MAYBE")
  assert(err:find("DISABLED, ENABLED", 1, true), "lists the symbols: " .. err)
  refused("type", "text for a number", dev.controls, "WMaxLimPct_RvrtTms", "soon")
  refused("range", "negative uint32", dev[704], "WMaxLimPctRvrtTms", -1)
  T.eq(requests(bus) - r0, 0, "no request was sent")
  local perr = select(2, pcall(dev.controls.write, dev.controls, "NoSuchPoint", 1))
  assert(tostring(perr):find("no point 'NoSuchPoint'", 1, true), "unknown point raises: " .. tostring(perr))
end)

T.test("model 123: limit, revert time and enable; fresh scale factor; contiguous in one write", function()
  local srv <close> = serve({ models = { 1, 103, 120, 121, 123 },
                              values = { [123] = { WMaxLimPct_SF = -1 } } })
  local writes = {}
  srv:on_write(function(id, path, value) writes[#writes + 1] = format("%d %s=%s", id, path, show(value)) end)
  local bus <close> = assert(md.modbus.open(srv:url()))
  local dev = assert(sunspec.open(bus))
  srv:set(123, "WMaxLimPct_SF", -2) -- the device changed its factor after discovery
  srv:set(123, "WMaxLimPct_WinTms", 11)
  srv:set(123, "WMaxLimPct_RmpTms", 13)
  local r0 = requests(bus)
  assert(dev.controls:write{ WMaxLimPct = 42.5, WMaxLimPct_RvrtTms = 60, WMaxLim_Ena = "ENABLED" })
  -- one read of the factor; WMaxLimPct (5), RvrtTms (7) and Ena (9) have
  -- WinTms (6) and RmpTms (8) between, RW both: read 5..9, one write
  T.eq(requests(bus) - r0, 3, "requests: factor, the span, one write")
  T.eq(srv:get(123, "WMaxLimPct_WinTms"), 11, "the register between is written back unchanged")
  T.eq(srv:get(123, "WMaxLimPct_RmpTms"), 13, "so is the other")
  T.eq(srv:get(123, "WMaxLimPct"), 42.5, "limit")
  local raw = assert(bus:read_holding(1, dev.controls.address + 5, 1))[1]
  T.eq(raw, 4250, "raw limit with the fresh factor -2")
  T.eq(srv:get(123, "WMaxLimPct_RvrtTms"), 60, "revert time")
  T.eq(srv:get(123, "WMaxLim_Ena"), "ENABLED", "enabled")
  T.eq(table.concat(writes, "; "),
    "123 WMaxLimPct=42.5; 123 WMaxLimPct_WinTms=11; 123 WMaxLimPct_RvrtTms=60; 123 WMaxLimPct_RmpTms=13; "
    .. "123 WMaxLim_Ena=ENABLED", "the server saw one write of the span, in address order")
  T.eq(dev.controls.WMaxLimPct, 42.5, "the model shows what was written")
  -- contiguous points: one write
  r0 = requests(bus)
  assert(dev.controls:write{ WMaxLimPct_WinTms = 5, WMaxLimPct_RvrtTms = 6, WMaxLimPct_RmpTms = 7 })
  T.eq(requests(bus) - r0, 1, "three contiguous points without scale factor: one write")
  -- with verification
  r0 = requests(bus)
  assert(dev.controls:write("WMaxLimPct", 80, { verify = true }))
  T.eq(requests(bus) - r0, 3, "factor, write, read back")
end)

T.test("model 123: a device that refuses the registers between gets the points one write each", function()
  local srv <close> = serve({ models = { 1, 103, 120, 121, 123 } })
  srv:on_write(function(_, path) if path == "WMaxLimPct_WinTms" then return "illegal_data_address" end end)
  local bus <close> = assert(md.modbus.open(srv:url()))
  local dev = assert(sunspec.open(bus))
  local r0 = requests(bus)
  assert(dev.controls:write{ WMaxLimPct = 40, WMaxLimPct_RvrtTms = 30, WMaxLim_Ena = "ENABLED" })
  T.eq(requests(bus) - r0, 6, "factor, the span, the refused write, then three writes")
  T.eq(srv:get(123, "WMaxLimPct"), 40, "limit")
  T.eq(srv:get(123, "WMaxLimPct_RvrtTms"), 30, "revert time")
  T.eq(srv:get(123, "WMaxLim_Ena"), "ENABLED", "enabled")
end)

T.test("verify reports a device that did not take the value", function()
  local srv <close> = serve({ models = { 1, 103, 121, 123 } })
  srv:on_write(function(id, path, value, s)
    if id == 123 and path == "WMaxLimPct" and value > 90 then
      md.spawn(function() s:set(123, "WMaxLimPct", 90) end) -- clamps after accepting
    end
  end)
  local bus <close> = assert(md.modbus.open(srv:url()))
  local dev = assert(sunspec.open(bus))
  assert(dev.controls:write("WMaxLimPct", 50, { verify = true }))
  md.sleep(0.01)
  local ok, err, code = dev.controls:write("WMaxLimPct", 95, { verify = true })
  T.eq(ok, nil, "verification fails")
  T.eq(code, "verify", "code")
  assert(err:find("WMaxLimPct = 95", 1, true)
    and err:find(tostring(dev.controls.address + 5), 1, true), err)
end)

T.test("a write the device refuses comes back with the exception", function()
  local srv <close> = serve({ models = { 1, 103, 121, 123 } })
  srv:on_write(function(_, path, value)
    if path == "WMaxLimPct" and value > 100 then return "illegal_data_value" end
  end)
  local bus <close> = assert(md.modbus.open(srv:url()))
  local dev = assert(sunspec.open(bus))
  local ok, err, code = dev.controls:write("WMaxLimPct", 150)
  T.eq(ok, nil, "refused")
  T.eq(code, "illegal_data_value", "code")
  assert(err:find("WMaxLimPct of model 123", 1, true), err)
  T.eq(srv:get(123, "WMaxLimPct"), nil, "nothing stored")
end)

T.test("model 704: percent limit and absolute setpoint, the simulated inverter obeys", function()
  local srv <close> = serve({ models = { 1, 701, 702, 704 },
                              values = { [702] = { WMax = 10000, W_SF = 0 } } })
  local sim = srv:simulate_inverter{ power = 8000 }
  local bus <close> = assert(md.modbus.open(srv:url()))
  local dev = assert(sunspec.open(bus))
  T.eq(dev[701].W, 8000, "unlimited")
  local r0 = requests(bus)
  assert(dev[704]:write{ WMaxLimPctEna = "ENABLED", WMaxLimPct = 30, WMaxLimPctRvrtTms = 600 })
  -- Ena (14), Pct (15), and RvrtTms (18..19) with Rvrt/EnaRvrt (RW) between: one write
  T.eq(requests(bus) - r0, 3, "factor read, the span, one write")
  assert(dev:read(701))
  T.eq(dev[701].W, 3000, "limited to 30 % of WMax")
  T.eq(sim.w, 3000, "simulator")
  assert(dev[704]:write{ WSetEna = "ENABLED", WSetMod = "WATTS", WSet = 2500, WSetRvrtTms = 60 })
  T.eq(srv:get(704, "WSet"), 2500, "absolute setpoint")
  T.eq(srv:get(704, "WSetMod"), "WATTS", "mode")
  T.eq(srv:get(704, "WSetRvrtTms"), 60, "revert time")
  assert(dev[704]:write("WMaxLimPctEna", "DISABLED"))
  assert(dev:read(701))
  T.eq(dev[701].W, 8000, "limit off again")
end)

T.test("model 123 on a simulated inverter: W follows WMaxLimPct of WMax", function()
  local srv <close> = serve({ models = { 1, 103, 121, 123 },
                              values = { [121] = { WMax = 6000, WMax_SF = 0 } } })
  srv:simulate_inverter{ power = 5000 }
  local bus <close> = assert(md.modbus.open(srv:url()))
  local dev = assert(sunspec.open(bus))
  assert(dev.controls:write{ WMaxLimPct = 50, WMaxLim_Ena = "ENABLED" })
  assert(dev.inverter:read())
  T.eq(dev.inverter.W, 3000, "50 % of 6000 W")
  srv:set_power(2000)
  assert(dev:read())
  T.eq(dev.inverter.W, 2000, "less sun than the limit")
end)

-- }=====

T.test("open takes a URL, a bus or a unit; misuse raises", function()
  local srv <close> = serve({ models = { 1, 103 }, unit = 7 })
  local dev <close> = assert(sunspec.open(srv:url() .. "?unit=7"))
  T.eq(dev[103].ID, 103, "by URL with ?unit=")
  local bus <close> = assert(md.modbus.open(srv:url()))
  local d2 = assert(sunspec.open(bus:unit(7)))
  T.eq(d2.unit, 7, "by unit handle")
  local d3 = assert(sunspec.open(bus, { unit = 7 }))
  T.eq(d3.common.DA, 7, "DA is the unit id")
  assert(not pcall(sunspec.open, 42), "a number is no target")
  assert(not pcall(sunspec.open, bus, { base = -1 }), "bad base raises")
  local d4, err = sunspec.open(bus, { unit = 8 })
  T.eq(d4, nil, "another unit does not answer")
  assert(err, "message")
end)
