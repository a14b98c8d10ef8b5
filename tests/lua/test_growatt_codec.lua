-- moondog.growatt.core and moondog.growatt.record from Lua: every packet of
-- ../shared/reference/growatt/packets.tsv parsed (header fields, CRC
-- verdict) and decoded to the values listed there (skipped when that folder
-- is absent); the synthetic rows with stale CRCs rejected; the builders
-- against the constructed rows; the parser on all packets in one stream
-- split at every byte; a record with no layout kept as raw registers with
-- one log line.

local T = require "moondog.testing"
local core = require "moondog.growatt.core"
local record = require "moondog.growatt.record"

local format = string.format

local unhex, hex = T.unhex, T.hex

local function rows()
  local dir = T.shared_dir()
  if not dir then T.skip("../shared is absent") end
  return T.read_tsv(dir .. "/reference/growatt/packets.tsv")
end

-- grott's names (the "decoded" column) to the layout's points.
local function grott_names(layout_name)
  for _, l in ipairs(record.layouts) do
    if l.name == layout_name then
      local map = {}
      for _, p in ipairs(l.points) do
        if p.grott then map[p.grott] = p.name end
      end
      return map
    end
  end
  error("no layout " .. tostring(layout_name))
end

T.test("every reference packet: header, CRC verdict, values", function()
  local checked, values, rejected = 0, 0, 0
  for _, row in ipairs(rows()) do
    local list, pending = core.parse(unhex(row.hex))
    if row.crc == "bad" then
      T.eq(#list, 1, row.label)
      T.eq(list[1].code, "crc", row.label .. ": stale CRC rejected")
      rejected = rejected + 1
    else
      local f = list[1]
      T.eq(pending, 0, row.label .. ": nothing left over")
      T.eq(#list, 1, row.label)
      T.eq(f.protocol, tonumber(row.protocol), row.label)
      T.eq(f.seq, tonumber(row.seq), row.label)
      T.eq(f.length, tonumber(row.length_field), row.label)
      T.eq(f.unit, tonumber(row.unit), row.label)
      T.eq(f.type, tonumber(row.type), row.label)
      T.eq(#f.raw, tonumber(row.total_bytes), row.label)
      local r = record.decode(f)
      if row.datalogger_serial ~= "" then T.eq(r.logger, row.datalogger_serial, row.label) end
      if row.inverter_serial ~= "" then T.eq(r.inverter, row.inverter_serial, row.label) end
      T.eq(r.buffered == true, f.type == 0x50, row.label .. ": buffered flag")
      if row.layout ~= "" then
        assert(r.layout ~= nil, row.label .. ": a layout")
        local map = grott_names(r.layout)
        for key, want in row.decoded:gmatch("([%w_]+)=([^;]+)") do
          if key == "date" then
            if want:match("^none") then
              T.eq(r.time, nil, row.label .. " date")
            elseif want:match("^invalid") then
              T.eq(r.time, nil, row.label .. " date")
              T.eq(r.time_raw, want:match("raw (%x+)"), row.label .. " raw date")
            else
              T.eq(r.time, want, row.label .. " date")
            end
          else
            local name = map[key] or error(row.label .. ": no point for " .. key)
            local got = r.values[name]
            assert(got ~= nil and math.abs(got - tonumber(want)) < 0.001,
              format("%s: %s = %s, expected %s", row.label, name, tostring(got), want))
            values = values + 1
          end
        end
      end
      checked = checked + 1
    end
  end
  T.eq(checked + rejected, 31, "31 rows")
  T.eq(rejected, 5, "the 4 synthetic rows and the ACK with XORed CRC bytes are rejected")
  T.eq(values, 16 * 14, "values compared (16 decoded rows, 14 values each)")
end)

T.test("builders reproduce the constructed packets", function()
  local want = {}
  for _, row in ipairs(rows()) do want[row.label] = row.hex end
  local s = "JPC281833B"
  T.eq(hex(core.read_holding(1, 6, 1, s, 0, 0)),
    want["constructed: read holding register 0 of inverter (0x05), protocol 6"])
  T.eq(hex(core.write_holding(1, 6, 1, s, 3, 50)),
    want["constructed: write holding register 3 = 50 (0x06), protocol 6"])
  T.eq(hex(core.config_set(1, 6, 1, s, 31, "2020-08-17 20:47:51")),
    want["constructed: set datalogger time (0x18 register 31), protocol 6"])
  T.eq(hex(core.ack(17, 6, 1, 4)), want["constructed: server ACK for a 0x04 record, protocol 6"])
  T.eq(hex(core.ack(1, 2, 1, 4)),
    want["constructed: ACK for a 0x04 record, protocol 2 (no scramble, no CRC)"])
  T.eq(hex(core.config_get(1, 6, 1, s, 4, 21)), want["capture p6 config-read-request #1"])
  T.eq(hex(core.ping(32, 6, 1, s)), want["capture p6 ping #1"])
  -- misuse raises
  assert(not pcall(core.ack, 1, 4, 1, 4), "protocol 4 raises")
  assert(not pcall(core.read_holding, 1, 6, 1, "01234567890", 0, 0), "long serial raises")
  assert(not pcall(core.read_holding, 1, 6, 1, s, 5, 4), "first > last raises")
end)

T.test("all good packets in one stream, split at every byte", function()
  local parts = {}
  for _, row in ipairs(rows()) do
    if row.crc ~= "bad" then parts[#parts + 1] = unhex(row.hex) end
  end
  -- a protocol-2 record last: the parser is never lost here, so it comes out at once
  local stream = table.concat(parts)
  for cut = 1, #stream - 1 do
    local p = core.parser()
    p:push(stream:sub(1, cut))
    local n = 0
    while true do
      local f = p:next()
      if f == nil then break end
      assert(f, "no error")
      n = n + 1
    end
    p:push(stream:sub(cut + 1))
    while true do
      local f = p:next()
      if f == nil then break end
      n = n + 1
    end
    if n ~= #parts then T.eq(n, #parts, "frames with a cut at " .. cut) end
  end
end)

T.test("garbage before a frame: one error, then the frame", function()
  local p = core.parser()
  local ack = core.ack(17, 6, 1, 4)
  p:push("\1\2\3\4\5\6\7\8" .. ack)
  local ok, msg, code = p:next()
  T.eq(ok, false)
  T.eq(code, "protocol")
  assert(msg:match("protocol id"), msg)
  local f = p:next()
  T.eq(f.raw, ack)
  T.eq(f.name, "data")
  T.eq(p:next(), nil)
  T.eq(p:noise(), 8)
end)

T.test("a parsed frame's raw is its bytes as on the wire, made when first read", function()
  for _, protocol in ipairs({ 2, 5, 6 }) do
    local body = "LOGGER0001" .. string.rep("\0", 20) .. "x\255\1" .. string.rep("Growatt", 9)
    local wire = core.build(0xFFFE, protocol, 1, 0x04, body) .. core.ping(3, protocol, 1, "LOGGER0001")
    local p = core.parser()
    p:push(wire)
    local f, g = p:next(), p:next()
    T.eq(f.body, body, "protocol " .. protocol)
    T.eq(rawget(f, "raw"), nil, "not made before it is read")
    T.eq(f.raw .. g.raw, wire, "protocol " .. protocol)
    T.eq(rawget(f, "raw"), f.raw, "kept once made")
    T.eq(f.nothing, nil)
  end
end)

T.test("a record without a layout keeps its raw registers, logged once", function()
  -- protocol 6 data record with groups 1000-1001 (no layout has them)
  local pad = string.rep("\0", 20)
  local body = "LOGGER0001" .. pad .. "INVERTER01" .. pad .. "\24\1\2\3\4\5"
    .. "\1" .. string.pack(">I2I2I2I2", 1000, 1001, 77, 0xFFFF)
  local frame = core.build(5, 6, 1, 4, body)
  local lines = {}
  local log = function(fmt, ...) lines[#lines + 1] = format(fmt, ...) end
  for _ = 1, 2 do
    local f = core.parse(frame)[1]
    local r = record.decode(f, { log = log })
    T.eq(r.kind, "data")
    T.eq(r.layout, nil)
    T.eq(r.registers[1000], 77)
    T.eq(r.registers[1001], 0xFFFF)
    T.eq(r.time, "2024-01-02T03:04:05")
    T.eq(r.logger, "LOGGER0001")
    T.eq(r.inverter, "INVERTER01")
  end
  T.eq(#lines, 1, "one log line")
  assert(lines[1]:match("1000%-1001"), lines[1])
end)
