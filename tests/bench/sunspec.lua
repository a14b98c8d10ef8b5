-- Bench: SunSpec discovery and reads of a typical inverter.
--
--   moondog tests/bench/sunspec.lua [ROUNDS]
--
-- The device: models 1, 103, 120, 121, 122, 123, 160 (3 modules), 203 and
-- 701, 588 registers from 'SunS' to the end marker, served by
-- md.sunspec.serve on loopback in this same engine. Printed:
--   * Modbus transactions and registers moved for discovery + full read
--     and for a later poll (dev:read()), against the minimum
--     (registers / 125, rounded up) and against pysunspec2, which needs 29
--     requests for discovery + full read of such a device and 10 per poll
--     (../shared/reference/sunspec/README.md); once on a map that reads
--     zeros past its end and once on one that answers an exception there;
--   * wall time of discovery + full read (mean of ROUNDS, default 50);
--   * points decoded per second by dev:read() over loopback, and from
--     bytes at hand (no I/O) against a plain Lua decoder of the same points
--     (string.unpack and scaling per point) measured in the same run.
-- Counts are exact; times are for comparison within one run only.
local md = require "moondog"
local codec = require "moondog.sunspec.codec"

local rounds = math.tointeger(tonumber(arg[1] or "50")) or 50
local format = string.format

local TYPICAL = { 1, 103, 120, 121, 122, 123, { id = 160, count = 3 }, 203, 701 }
local PYSUNSPEC_OPEN, PYSUNSPEC_POLL = 29, 10

local function serve(strict)
  local srv = assert(md.sunspec.serve("tcp://127.0.0.1:0", { models = TYPICAL, strict = strict }))
  srv:set(103, "W", 2500)
  srv:set(701, "TotWhInj", 123456789)
  return srv
end

local function moved(bus)
  local s = bus:stats()
  return s.requests, s.requests - s.failed
end

local function counts(strict)
  local srv <close> = serve(strict)
  local bus <close> = assert(md.modbus.open(srv:url()))
  local image = #srv:image().registers
  local dev = assert(md.sunspec.open(bus))
  local tx = moved(bus)
  local poll_tx0 = tx
  assert(dev:read())
  local poll_tx = moved(bus) - poll_tx0
  local ptx, pregs = dev:plan_stats()
  return { image = image, open_tx = tx, poll_tx = poll_tx, poll_regs = pregs, plan_tx = ptx,
           failed = bus:stats().failed }
end

print(format("== SunSpec: typical inverter, %s",
  "models 1, 103, 120, 121, 122, 123, 160 (3 modules), 203, 701"))
for _, strict in ipairs({ false, true }) do
  local c = counts(strict)
  local min_open = math.ceil(c.image / 125)
  print(format("%s: %d registers; discovery + full read %d transactions (%d refused) = %.2f x the "
    .. "minimum %d, %.2f x pysunspec2's %d",
    strict and "map answering an exception past its end" or "map reading zeros past its end",
    c.image, c.open_tx, c.failed, c.open_tx / min_open, min_open, c.open_tx / PYSUNSPEC_OPEN,
    PYSUNSPEC_OPEN))
  local min_poll = math.ceil(c.poll_regs / 125)
  print(format("  later poll: %d transactions, %d registers = %.2f x the minimum %d, %.2f x "
    .. "pysunspec2's %d", c.poll_tx, c.poll_regs, c.poll_tx / min_poll, min_poll,
    c.poll_tx / PYSUNSPEC_POLL, PYSUNSPEC_POLL))
end

-- Registers moved (dev.counters: read requests and registers that came back).
do
  local srv <close> = serve(false)
  local bus <close> = assert(md.modbus.open(srv:url()))
  local dev = assert(md.sunspec.open(bus))
  local after_open = dev.counters.registers
  assert(dev:read())
  local size = #srv:image().registers
  print(format("registers moved (map reading zeros past its end): discovery + full read %d "
    .. "(the map has %d: %.2f x), poll %d (static points and the common model left out)",
    after_open, size, after_open / size, dev.counters.registers - after_open))
end

-- Wall time of discovery + full read (md.now() is the loop's clock, in
-- milliseconds: the mean over all rounds is finer than one round).
do
  local srv <close> = serve(false)
  local t0 = md.now()
  for _ = 1, rounds do
    local bus <close> = assert(md.modbus.open(srv:url()))
    assert(md.sunspec.open(bus))
  end
  print(format("discovery + full read on loopback (server in the same engine): %.2f ms mean "
    .. "over %d rounds", (md.now() - t0) * 1000 / rounds, rounds))
end

-- Points decoded per second.
do
  local srv <close> = serve(false)
  local bus <close> = assert(md.modbus.open(srv:url()))
  local dev = assert(md.sunspec.open(bus))
  local points = 0
  for _, m in ipairs(dev.models) do
    if m ~= dev.common then points = points + #m:paths() end
  end
  local n, t0 = 0, md.now()
  while md.now() - t0 < 1 and n < 100000 do
    assert(dev:read())
    n = n + 1
  end
  local wall = md.now() - t0
  print(format("dev:read() over loopback: %.0f polls/s, %.0f points/s", n / wall, n * points / wall))

  -- From bytes at hand: the image of the whole map, decoded as dev:read
  -- does (codec layouts per read, symbols, values stored in the model
  -- tables), against a plain Lua decoder of the same points.
  local image = srv:image()
  local bytes = {}
  for i, r in ipairs(image.registers) do bytes[i] = string.pack(">I2", r) end
  bytes = table.concat(bytes)
  -- moondog's path: one codec layout for the whole image
  local layout_slots = {}
  for _, m in ipairs(dev.models) do
    for _, s in ipairs(m._slots) do layout_slots[#layout_slots + 1] = s end
  end
  local spec, pos = {}, {}
  for j, s in ipairs(layout_slots) do pos[s] = j end
  for j, s in ipairs(layout_slots) do
    spec[j] = { type = s.type, size = s.size, offset = s.addr,
                sf = s.sf_const or (s.sf and { index = pos[s.sf] }) }
  end
  local layout = codec.compile(spec)
  local function moondog_decode()
    local values = codec.decode(layout, bytes, image.address)
    for j, s in ipairs(layout_slots) do
      local v = values[j]
      if v ~= nil and s.convert then v = s.convert(v) end
      s.values[s.key] = v
    end
  end
  -- reference: string.unpack per point, scaling and sentinels in Lua
  local fmt = { int16 = ">i2", uint16 = ">I2", count = ">I2", acc16 = ">I2", enum16 = ">I2",
    bitfield16 = ">I2", sunssf = ">i2", pad = ">I2", int32 = ">i4", uint32 = ">I4", acc32 = ">I4",
    enum32 = ">I4", bitfield32 = ">I4", int64 = ">i8", uint64 = ">I8", acc64 = ">I8",
    float32 = ">f", float64 = ">d" }
  local none = { int16 = -32768, uint16 = 0xFFFF, count = 0xFFFF, acc16 = 0, enum16 = 0xFFFF,
    bitfield16 = 0xFFFF, sunssf = -32768, int32 = math.mininteger >> 32 << 32 >> 32,
    uint32 = 0xFFFFFFFF, acc32 = 0, enum32 = 0xFFFFFFFF, bitfield32 = 0xFFFFFFFF }
  local plain = {}
  local ordered = {} -- scale factors first, so that their points find them
  for _, s in ipairs(layout_slots) do
    if s.type == "sunssf" then table.insert(ordered, 1, s) else ordered[#ordered + 1] = s end
  end
  local function plain_decode()
    for _, s in ipairs(ordered) do
      local off = 2 * (s.addr - image.address) + 1
      local f = fmt[s.type]
      local v
      if f then
        v = string.unpack(f, bytes, off)
        if v == none[s.type] then v = nil end
      else
        v = bytes:sub(off, off + 2 * s.size - 1):gsub("%z+$", "")
      end
      local sf = s.sf_const or (s.sf and plain[s.sf])
      if v and sf and sf ~= 0 then v = sf < 0 and v / 10.0 ^ -sf or v * 10.0 ^ sf end
      if v ~= nil and s.convert then v = s.convert(v) end
      plain[s] = v
    end
  end
  local function rate(fn)
    local k, start = 0, os.clock()
    while os.clock() - start < 0.5 do
      for _ = 1, 50 do fn() end
      k = k + 50
    end
    return k * #layout_slots / (os.clock() - start)
  end
  local a, b = rate(moondog_decode), rate(plain_decode)
  print(format("decoding from bytes at hand, %d points: moondog (codec) %.0f points/s; plain Lua "
    .. "string.unpack per point %.0f points/s; ratio %.2f", #layout_slots, a, b, a / b))
end
md.exit(0)
