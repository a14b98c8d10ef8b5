-- md.modbus.vreglink (Victron's VregLink on function 23) against the
-- VregLink simulator: the exact registers of the examples in Victron's
-- dbus-modbus-client README (product id 0x0100 at base 0x4000, setting the
-- description 0x010C to "My Precious"), a value longer than the first read,
-- and every status word the document defines as its error code.

local T = require "moondog.testing"
local md = require "moondog"
local modbus = require "moondog.modbus"
local vreglink = require "moondog.modbus.vreglink"

local BASE = 0x4000

local function serve(vregs, opts)
  opts = opts or {}
  opts.base, opts.vregs = opts.base or BASE, vregs
  return assert(vreglink.serve("tcp://127.0.0.1:0", opts))
end

local function vregs()
  return {
    [0x0100] = { value = "\x00\x12\x34\xFE", access = "r" },      -- product id
    [0x010C] = { value = "", access = "rw" },                     -- description
    [0x0200] = { value = string.rep("abcdefghij", 10) },          -- 100 bytes
    [0x0300] = { value = "\x01", access = "w" },                  -- a command
    [0x0400] = { value = "\x00\x05", fail = true },
    [0x0500] = { value = "\x00\x05", valid = function(b) return #b == 2 and b:byte(1) == 0 end },
  }
end

T.test("vreglink: get reads the document's product id example, register for register", function()
  local sim <close> = serve(vregs())
  local bus <close> = assert(modbus.open(sim:url()))
  -- the document's transaction: write {0x0100}, read 5 registers
  local regs = assert(bus:write_read(1, BASE, { 0x0100 }, BASE, 5))
  T.eq(table.concat(regs, ","), table.concat({ 0x0100, 0, 4, 0x0012, 0x34FE }, ","), "the response")
  local link = md.modbus.vreglink(bus, BASE)
  T.eq(link:get(0x0100), "\x00\x12\x34\xFE", "product id bytes")
  T.eq(table.concat(sim.written, ","), tostring(0x0100), "a get writes the vreg id alone")
end)

T.test("vreglink: set sends the document's description example and reads it back", function()
  local sim <close> = serve(vregs())
  local bus <close> = assert(modbus.open(sim:url()))
  local link = md.modbus.vreglink(bus:unit(1), BASE)
  T.eq(link:set(0x010C, "My Precious"), true, "set")
  local want = { 0x010C, 0x000B, 0x4D79, 0x2050, 0x7265, 0x6369, 0x6F75, 0x7300 }
  T.eq(table.concat(sim.written, ","), table.concat(want, ","), "id, size 11, data padded with 0")
  T.eq(sim:get(0x010C), "My Precious", "the device holds it")
  T.eq(link:get(0x010C), "My Precious", "read back: the odd size cuts the padding")
  T.eq(link:set(0x010C, ""), true, "an empty value")
  T.eq(link:get(0x010C), "", "read back empty")
end)

T.test("vreglink: a value longer than the first read is read whole with a second one", function()
  local sim <close> = serve(vregs())
  local bus <close> = assert(modbus.open(sim:url()))
  local link = modbus.vreglink(bus, BASE, { size = 4 })
  T.eq(link:get(0x0200), string.rep("abcdefghij", 10), "100 bytes")
  T.eq(sim:stats().fc23, 2, "two transactions: 8 bytes, then all 100")
  local big = modbus.vreglink(bus, BASE, { size = 60 })
  T.eq(big:get(0x0200), string.rep("abcdefghij", 10), "100 bytes at once")
  T.eq(sim:stats().fc23, 3, "one transaction when the first read holds it")
end)

T.test("vreglink: every status word as its error code", function()
  local sim <close> = serve(vregs())
  local bus <close> = assert(modbus.open(sim:url()))
  local link = modbus.vreglink(bus, BASE)
  local function code_of(ok, msg, code)
    T.eq(ok, nil, "fails")
    assert(type(msg) == "string" and msg:find("vreg 0x", 1, true), msg)
    return code
  end
  T.eq(code_of(link:get(0x0999)), "vreg_unknown", "get: no such vreg (0x8001)")
  T.eq(code_of(link:get(0x0300)), "vreg_write_only", "get: write-only (0x8002)")
  T.eq(code_of(link:get(0x0400)), "vreg_read_failed", "get: unknown error (0x8000)")
  T.eq(code_of(link:set(0x0999, "\1")), "vreg_unknown", "set: no such vreg (0x8101)")
  T.eq(code_of(link:set(0x0100, "\0\0\0\0")), "vreg_read_only", "set: read-only (0x8102)")
  T.eq(code_of(link:set(0x0400, "\0\1")), "vreg_write_failed", "set: unknown error (0x8100)")
  T.eq(code_of(link:set(0x0500, "\1\1")), "vreg_invalid_data", "set: invalid data (0x8104)")
  T.eq(sim:get(0x0500), "\x00\x05", "a refused value is not stored")
  T.eq(link:set(0x0500, "\0\7"), true, "a valid value")
  T.eq(link:set(0x0300, "\1"), true, "a write-only vreg can be set")
  T.eq(vreglink.statuses[0x8104], "vreg_invalid_data", "the table of statuses")
  -- a device answering a status the document does not define, or for another vreg
  sim._access = function(_, regs) return { regs[1], 0x8123, 0 } end
  local _, msg, code = link:get(0x0100)
  T.eq(code, "vreg_failed", "an undefined status")
  assert(msg:find("0x8123", 1, true), msg)
  sim._access = function() return { 0x0999, 0, 0 } end
  T.eq(code_of(link:get(0x0100)), "malformed", "an answer for another vreg")
end)

T.test("vreglink: a wrong base is the device's Modbus exception; wrong arguments raise", function()
  local sim <close> = serve(vregs())
  local bus <close> = assert(modbus.open(sim:url()))
  local _, msg, code = modbus.vreglink(bus, BASE + 1):get(0x0100)
  T.eq(code, "illegal_data_address", "the simulator refuses an access off the block's start")
  assert(msg:find("VregLink get vreg 0x0100", 1, true), msg)
  local link = modbus.vreglink(bus, BASE)
  T.eq(pcall(link.get, link, "x"), false, "vreg not an integer")
  T.eq(pcall(link.get, link, 0x10000), false, "vreg out of range")
  T.eq(pcall(link.set, link, 1, 5), false, "value not bytes")
  T.eq(pcall(link.set, link, 1, string.rep("x", 239)), false, "more than one request carries")
  T.eq(pcall(modbus.vreglink, nil, BASE), false, "no bus")
  T.eq(pcall(modbus.vreglink, bus, -1), false, "bad base")
  local other = modbus.vreglink(bus, BASE, { unit = 7 })
  _, _, code = other:get(0x0100)
  T.eq(code, "gateway_target_failed", "another unit: exception 0x0B")
end)
