-- moondog.growatt.logfile: the optional log file of one datalogger
-- (grott-async's per-logger log, the moondog way): one line per frame,
-- with the wall-clock time, the direction (up: logger -> cloud, down:
-- cloud -> logger), the record type, the sequence number and a short
-- summary of what it decoded to; and the logger's counters on SIGUSR1.
--
--   local logfile = require "moondog.growatt.logfile"
--   local f = logfile.open(dir, serial, { max_bytes = 1048576, keep = 1 })
--   f:frame("up", frame, rec)    f:line("counters: ...")    f:flush()    f:close()
--
-- Size-bounded: once the file would pass max_bytes (1 MiB) it is renamed
-- to <name>.1 (the older .1 becomes .2 ... up to `keep` old files, 1 by
-- default) and a new one is started. Lines are buffered in the process
-- (full buffering) and reach the disk on flush, which the proxy calls
-- every few seconds, on SIGUSR1 and on close: a write to a slow disk is
-- never made per frame, and never in the forwarding path (the proxy's
-- decoder task calls this, after the bytes were forwarded).

local M = {}

local format = string.format

local File = {}
File.__index = File

local function path_of(self, n)
  return n == 0 and self.path or format("%s.%d", self.path, n)
end

local function reopen(self)
  local f, err = io.open(self.path, "a")
  if not f then
    self.f = nil
    return nil, err
  end
  f:setvbuf("full")
  self.f = f
  self.size = f:seek("end") or 0
  return true
end

--- logfile.open(dir, name, opts) -> file, or nil, message. name: the
--- datalogger's serial (characters other than letters, digits, - and _
--- become _). opts.max_bytes (1 MiB), opts.keep (old files kept, 1).
function M.open(dir, name, opts)
  opts = opts or {}
  local self = setmetatable({
    path = format("%s/%s.log", dir, (tostring(name):gsub("[^%w_%-]", "_"))),
    max_bytes = opts.max_bytes or 1024 * 1024, keep = opts.keep or 1, rotations = 0,
  }, File)
  local ok, err = reopen(self)
  if not ok then return nil, format("cannot open the datalogger log %s: %s", self.path, tostring(err)) end
  return self
end

local function rotate(self)
  self.f:close()
  for n = self.keep, 1, -1 do os.rename(path_of(self, n - 1), path_of(self, n)) end
  if self.keep < 1 then os.remove(self.path) end
  self.rotations = self.rotations + 1
  return reopen(self)
end

--- file:line(text): one line, with the time in front.
function File:line(text)
  if not self.f then return end
  local s = format("%s %s\n", os.date("%Y-%m-%dT%H:%M:%S"), text)
  if self.size + #s > self.max_bytes and self.size > 0 then
    if not rotate(self) then return end
  end
  self.f:write(s)
  self.size = self.size + #s
end

local SUMMARY = { "pv_power", "ac_power", "energy_today", "battery_soc", "battery_charge_power",
                  "battery_discharge_power", "power", "import_energy", "export_energy" }

--- file:frame(direction, frame, rec): a frame's line. rec: its decode
--- (moondog.growatt.record) or nil.
function File:frame(direction, f, rec)
  if not self.f then return end
  local parts = { format("%-4s type 0x%02x seq %5d len %4d", direction, f.type, f.seq, #f.raw) }
  if rec then
    parts[#parts + 1] = rec.kind
    if rec.buffered and rec.time then parts[#parts + 1] = "recorded " .. rec.time end
    if rec.layout then parts[#parts + 1] = "layout " .. rec.layout end
    if rec.values then
      for _, k in ipairs(SUMMARY) do
        local v = rec.values[k]
        if v ~= nil then parts[#parts + 1] = format("%s=%s", k, tostring(v)) end
      end
    elseif rec.registers and rec.kind ~= "announce" then
      parts[#parts + 1] = "raw registers (no layout)"
    end
    if rec.kind == "announce" and rec.dtc then parts[#parts + 1] = format("device type %d", rec.dtc) end
    if rec.kind == "command" and rec.args and #rec.args >= 2 then
      parts[#parts + 1] = format("register %d", string.unpack(">I2", rec.args))
    end
  end
  self:line(table.concat(parts, " "))
end

--- file:flush()
function File:flush()
  if self.f then self.f:flush() end
end

--- file:close()
function File:close()
  if self.f then
    self.f:close()
    self.f = nil
  end
end

return M
