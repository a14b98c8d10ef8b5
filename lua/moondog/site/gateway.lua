-- moondog.site.gateway: a Modbus gateway in front of a site's devices, so
-- that Home Assistant, evcc and scripts can all read an inverter that
-- accepts one Modbus client: the site holds the device's one connection
-- and serves everyone else from it. site:serve_modbus{...} makes one;
-- `moondog modbus proxy` makes one for a bare device without a site.
--
--   site:serve_modbus{ listen = "tcp://0.0.0.0:1502",
--     units = { [1] = "pv", [240] = "meter" },       -- default: each device's own unit
--     max_age = 2,                                   -- default: the device's poll interval
--     allow_write = { "power_limit", "40100-40110" },
--     refuse = "illegal_function",                   -- or "illegal_data_address", or "ignore"
--   }
--
-- Reads. When every register asked for was read by the site (or by an
-- earlier forwarded request) less than max_age seconds ago, the answer is
-- built from those registers and the device is not touched. Otherwise the
-- request goes to the device over the site's bus, in turn with the site's
-- own polling (the bus runs one transaction at a time); identical requests
-- in flight at once are sent once and answered to all. Ranges no profile
-- covers are forwarded as they are.
--
-- Writes (functions 5, 6, 15, 16, 23) reach the device only when every
-- register is on the allow-list (ranges, or profile point names); others
-- are answered with an exception, or with refuse = "ignore" acknowledged
-- without writing (evcc's readonly), and logged either way. An allowed write
-- drops the cached registers it touches.
--
-- Faults. A device the site knows is offline gets its clients exception
-- 0x0B (gateway target failed to respond) at once; a timeout or a lost
-- connection gives 0x0B too, an exception from the device is passed on.
-- The clients' transaction ids are the server's business (core/mbserver.c);
-- a client that sends garbage is closed by the server without disturbing
-- the others.
--
-- Function 43/14 is answered from the upstream device's identification,
-- read once at start. Counters are kept in total and per client ("host:port",
-- the 256 most recent). A forwarded single-register write always goes out as
-- function 6 (the hook does not see the client's function code).

local md = require "moondog"
local event = require "moondog.event"

local M = {}

local format = string.format

local Gateway = {}
Gateway.__index = Gateway

-- {===== the register cache =====

-- Blocks of registers: {kind, address, count, data, time}. The site's
-- Modbus driver keeps the blocks of its polls (dev.blocks); forwarded
-- reads add the gateway's own.
local function lookup(blocks, kind, addr, count, now, max_age, out)
  for i = 0, count - 1 do
    local a, found = addr + i, false
    for _, b in pairs(blocks) do
      if b.kind == kind and a >= b.address and a < b.address + b.count and now - b.time <= max_age then
        out[i + 1] = b.data[a - b.address + 1]
        found = true
        break
      end
    end
    if not found then return false end
  end
  return true
end

local function invalidate(blocks, kind, addr, count)
  for _, b in pairs(blocks) do
    if b.kind == kind and b.address < addr + count and addr < b.address + b.count then
      b.time = -math.huge
    end
  end
end

-- }=====

-- {===== targets =====

-- A target: a unit the gateway answers for, and where its requests go.
local function target_of_device(sd, unit_override)
  local dev = rawget(sd, "_dev")
  local bus = dev and dev.bus
  if not bus then return nil end
  local unit = dev.unit or (dev.opts and dev.opts.unit) or bus:default_unit()
  local poll = 0
  for _, s in pairs(sd._intervals) do poll = math.max(poll, s) end
  return {
    name = sd.id, sd = sd, bus = bus, unit = unit_override or unit, device_unit = unit,
    driver_blocks = dev.blocks, blocks = {}, poll = poll, points = sd._points, dev = dev,
  }
end

-- Profile point names -> register ranges {kind, first, last}.
local function point_range(t, name)
  local item = t.dev.items and t.dev.items[name]
  if item and item.address then
    return { kind = item.kind, first = item.address, last = item.address + item.count - 1 }
  end
  return nil
end

local function parse_allow(t, list)
  local ranges = {}
  for _, spec in ipairs(list or {}) do
    local a, b = tostring(spec):match("^(%d+)%-(%d+)$")
    local one = tostring(spec):match("^(%d+)$")
    if a then
      ranges[#ranges + 1] = { first = tonumber(a), last = tonumber(b) }
    elseif one then
      ranges[#ranges + 1] = { first = tonumber(one), last = tonumber(one) }
    elseif t then
      local r = point_range(t, spec)
      if not r then
        error(format("serve_modbus: allow_write: %s is neither a register range such as 40100-40110 nor a "
          .. "point of %s with a register", tostring(spec), t.name), 4)
      end
      ranges[#ranges + 1] = r
    else
      error(format("serve_modbus: allow_write: '%s' must be a register range such as 40100-40110",
        tostring(spec)), 4)
    end
  end
  return ranges
end

local function allowed(ranges, kind, addr, count)
  for i = addr, addr + count - 1 do
    local ok = false
    for _, r in ipairs(ranges) do
      if (r.kind == nil or r.kind == kind) and i >= r.first and i <= r.last then ok = true break end
    end
    if not ok then return false end
  end
  return true
end

-- }=====

-- {===== requests =====

local failed_codes = { timeout = true, connection_lost = true, not_connected = true, refused = true,
  connect_timeout = true, unreachable = true, dns = true, closed = true, busy = true, crc = true,
  malformed = true, wrong_unit = true, wrong_transaction = true }

-- The device's answer to a read, shared by identical requests in flight.
local function forward_read(self, t, kind, addr, count)
  local key = format("%d:%s:%d:%d", t.unit, kind, addr, count)
  local f = self.inflight[key]
  if f then
    self.counts.merged = self.counts.merged + 1
    return f.done:wait()
  end
  f = { done = event.new() }
  self.inflight[key] = f
  self.counts.forwarded = self.counts.forwarded + 1
  local data, err, code = t.bus:read(t.device_unit, kind, addr, count, { timeout = self.timeout })
  self.inflight[key] = nil
  if data then
    t.blocks[key] = { kind = kind, address = addr, count = count, data = data, time = md.now() }
  end
  f.done:set(data, err, code)
  return data, err, code
end

-- The counters of one client (by "host:port"); at most 256 are kept, the
-- least recently seen forgotten first.
local MAX_CLIENTS_KEPT = 256

local function client_counts(self, client)
  client = client or "?"
  local c = self.clients[client]
  if not c then
    if self.nclients >= MAX_CLIENTS_KEPT then
      local oldest, key
      for k, v in pairs(self.clients) do
        if not oldest or v.last < oldest then oldest, key = v.last, k end
      end
      self.clients[key] = nil
      self.nclients = self.nclients - 1
    end
    c = { client = client, reads = 0, hits = 0, forwarded = 0, writes = 0, refused = 0, failed = 0 }
    self.clients[client] = c
    self.nclients = self.nclients + 1
  end
  c.last = md.now()
  return c
end

-- Count in the gateway's totals and in the client's own.
local function count(self, c, what)
  self.counts[what] = self.counts[what] + 1
  if c[what] then c[what] = c[what] + 1 end
end

local function answer_code(code)
  if failed_codes[code] then return "gateway_target_failed" end
  if type(code) == "string" and code ~= "" then return code end
  return "gateway_target_failed"
end

local function on_read(self, unit, kind, addr, n, srv, client)
  local c = client_counts(self, client)
  count(self, c, "reads")
  local t = self.targets[unit]
  if not t then
    count(self, c, "unknown_unit")
    return "gateway_path_unavailable"
  end
  local now, out = md.now(), {}
  local max_age = self.max_age or t.poll
  if max_age > 0 and ((t.driver_blocks and lookup(t.driver_blocks, kind, addr, n, now, max_age, out))
      or lookup(t.blocks, kind, addr, n, now, max_age, out)) then
    count(self, c, "hits")
    srv:set(unit, kind, addr, out)
    return nil
  end
  if t.sd and (t.sd._state == "offline") then
    count(self, c, "failed")
    return "gateway_target_failed"
  end
  c.forwarded = c.forwarded + 1
  local data, err, code = forward_read(self, t, kind, addr, n)
  if not data then
    count(self, c, "failed")
    md.log.debug("gateway %s: read %s %d+%d of %s: %s", self._url, kind, addr, n, t.name,
      tostring(err))
    return answer_code(code)
  end
  srv:set(unit, kind, addr, data)
  return nil
end

local function on_write(self, unit, kind, addr, values, _, client)
  local c = client_counts(self, client)
  count(self, c, "writes")
  local t = self.targets[unit]
  if not t then return "gateway_path_unavailable" end
  local n = #values
  if not allowed(t.allow, kind, addr, n) then
    count(self, c, "refused")
    md.log.warn("gateway %s: %s wrote %s %d+%d of %s, which is not on the allow-list: %s", self._url,
      tostring(client), kind, addr, n, t.name, self.refuse == "ignore" and "acknowledged, not written"
        or "refused")
    if self.refuse == "ignore" then return nil end
    return self.refuse
  end
  if t.sd and t.sd._state == "offline" then return "gateway_target_failed" end
  local ok, err, code
  if kind == "coil" then
    if n == 1 then
      ok, err, code = t.bus:write_coil(t.device_unit, addr, values[1])
    else
      ok, err, code = t.bus:write_coils(t.device_unit, addr, values)
    end
  elseif n == 1 then
    ok, err, code = t.bus:write_register(t.device_unit, addr, values[1])
  else
    ok, err, code = t.bus:write_registers(t.device_unit, addr, values)
  end
  invalidate(t.blocks, kind, addr, n)
  if t.driver_blocks then invalidate(t.driver_blocks, kind, addr, n) end
  if not ok then
    count(self, c, "failed")
    md.log.warn("gateway %s: write %s %d+%d to %s failed: %s", self._url, kind, addr, n, t.name,
      tostring(err))
    return answer_code(code)
  end
  count(self, c, "written")
  md.log.info("gateway %s: %s wrote %s %d+%d to %s", self._url, tostring(client), kind, addr, n, t.name)
  return nil
end

-- }=====

--- gw:stats() -> {reads, hits, forwarded, merged, failed, writes, written,
--- refused, unknown_unit, clients (connected now), per_client = {{client =
--- "host:port", reads, hits, forwarded, writes, refused, failed}, ...}}
function Gateway:stats()
  local s = {}
  for k, v in pairs(self.counts) do s[k] = v end
  s.per_client = {}
  for _, c in pairs(self.clients) do
    s.per_client[#s.per_client + 1] = { client = c.client, reads = c.reads, hits = c.hits,
      forwarded = c.forwarded, writes = c.writes, refused = c.refused, failed = c.failed }
  end
  table.sort(s.per_client, function(a, b) return a.client < b.client end)
  local ok, st = pcall(self.server.stats, self.server)
  if ok and st then s.clients = st.clients end
  return s
end

function Gateway:url() return self.server:url() end
function Gateway:port() return self.server:port() end

function Gateway:close()
  if self.server then self.server:close() end
  self.server = nil
end
Gateway.__close = Gateway.close

local refusals = { illegal_function = true, illegal_data_address = true, ignore = true }

local function start(targets, opts)
  if type(opts.listen) ~= "string" then
    error("serve_modbus: listen = an address to serve on, such as 'tcp://0.0.0.0:1502'", 3)
  end
  local refuse = opts.refuse or "illegal_data_address"
  if not refusals[refuse] then
    error("serve_modbus: refuse must be \"illegal_function\", \"illegal_data_address\" or \"ignore\"", 3)
  end
  local self = setmetatable({
    targets = targets, max_age = opts.max_age, refuse = refuse, timeout = opts.timeout, inflight = {},
    clients = {}, nclients = 0,
    counts = { reads = 0, hits = 0, forwarded = 0, merged = 0, failed = 0, writes = 0, written = 0,
               refused = 0, unknown_unit = 0 },
  }, Gateway)
  local units = {}
  for u in pairs(targets) do units[#units + 1] = u end
  table.sort(units)
  -- Function 43/14: the upstream device's identification, read once (many
  -- devices have none: then the server's own).
  local device_id
  local first = targets[units[1]]
  local info = first.bus:read_device_info(first.device_unit, 1, { timeout = 1 })
  if info then
    device_id = {}
    for _, k in ipairs({ "vendor_name", "product_code", "revision", "vendor_url", "product_name",
      "model_name", "user_application_name" }) do
      if type(info[k]) == "string" and #info[k] <= 244 then device_id[k] = info[k] end
    end
  end
  local srv, err, code = md.modbus.serve(opts.listen, {
    units = units, device_id = device_id,
    on_read = function(unit, kind, addr, n, s, client)
      return on_read(self, unit, kind, addr, n, s, client)
    end,
    on_write = function(unit, kind, addr, values, s, client)
      return on_write(self, unit, kind, addr, values, s, client)
    end,
    idle_timeout = opts.idle_timeout, max_clients = opts.max_clients,
  })
  if not srv then return nil, err, code end
  self.server, self._url = srv, srv:url()
  md.log.info("gateway on %s for %s", self._url, table.concat((function()
    local names = {}
    for _, u in ipairs(units) do names[#names + 1] = format("unit %d = %s", u, targets[u].name) end
    return names
  end)(), ", "))
  return self
end

--- gateway.for_site(site, opts) -> gateway, or nil, message, code. See
--- the header for opts (listen, units, max_age, allow_write, refuse,
--- timeout).
function M.for_site(site, opts)
  opts = opts or {}
  local targets = {}
  if opts.units then
    for unit, id in pairs(opts.units) do
      local t = target_of_device(site[id], unit)
      if not t then error(format("serve_modbus: %s is not a Modbus device", tostring(id)), 2) end
      targets[unit] = t
    end
  else
    for _, sd in ipairs(site:devices()) do
      local t = target_of_device(sd)
      if t then
        if targets[t.unit] then
          error(format("serve_modbus: %s and %s both have unit %d; give units = {[n] = \"id\", ...}",
            targets[t.unit].name, t.name, t.unit), 2)
        end
        targets[t.unit] = t
      end
    end
  end
  if next(targets) == nil then error("serve_modbus: the site has no Modbus device to serve", 2) end
  for _, t in pairs(targets) do t.allow = parse_allow(t, opts.allow_write) end
  return start(targets, opts)
end

--- gateway.proxy(upstream_url, opts) -> gateway, or nil, message, code: one
--- device, no site, no profile (a raw register cache). opts as for_site,
--- max_age default 1 s.
function M.proxy(upstream, opts)
  opts = opts or {}
  local bus, err, code = md.modbus.shared(upstream)
  if not bus then return nil, err, code end
  local cfg = require("moondog.modbus.address").parse(upstream)
  local unit = cfg.unit or 1
  local t = { name = upstream, bus = bus, unit = unit, device_unit = unit, blocks = {}, poll = 1 }
  t.allow = parse_allow(nil, opts.allow_write)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.max_age = o.max_age or 1
  return start({ [unit] = t }, o)
end

return M
