-- moondog.modbus.address: the one address syntax for every Modbus transport.
--
-- Every tool, profile and script names a Modbus endpoint with one URL:
--
-- | URL | carries | framing | port |
-- | --- | --- | --- | --- |
-- | `tcp://host[:port]` | Modbus TCP | MBAP | 502 |
-- | `udp://host[:port]` | Modbus UDP, one ADU per datagram | MBAP | 502 |
-- | `rtu+tcp://host:port` | RTU frames with CRC on TCP (RS-485 gateway, transparent mode) | RTU | required |
-- | `rtu+udp://host:port` | RTU frames with CRC in UDP datagrams | RTU | required |
-- | `rtu:///dev/ttyUSB0` | a serial port (note the three slashes) | RTU | - |
--
-- | parameter | for | value | default |
-- | --- | --- | --- | --- |
-- | `unit=N` | all | default unit (slave) id, 0..255 | the client's |
-- | `timeout=S` | all | response timeout in seconds, > 0 (`0.5`) | the client's |
-- | `delay=S` | all | pause between transactions in seconds, >= 0 | the client's |
-- | `retries=N` | all | retries after a failed transaction, >= 0 | the client's |
-- | `backoff=S` | all | client: first wait after a failed connect, seconds > 0 | 0.5 |
-- | `backoff_max=S` | all | client: the wait doubles up to this, seconds > 0 | 5 |
-- | `baud=N` | `rtu://` | any positive integer | 9600 |
-- | `parity=P` | `rtu://` | `N`, `E` or `O` (any case) | `N` |
-- | `data=N` | `rtu://` | data bits, 5..8 | 8 |
-- | `stop=N` | `rtu://` | stop bits, 1 or 2 | 1 |
-- | `rs485=1` | `rtu://` | switch the port to RS-485 mode (`rs485` alone also works) | off |
--
-- Examples: `tcp://192.168.1.50`, `tcp://[fe80::1]:1502?unit=3`,
-- `rtu+tcp://ew11.local:8899?unit=2&timeout=1`,
-- `rtu:///dev/ttyUSB0?baud=19200&parity=E&unit=1`.
--
--   local t, err = address.parse(url)   -- table, or nil and a message
--   address.format(t)                   -- canonical URL; raises on a bad table
--
-- parse returns {scheme, transport ("tcp", "udp" or "serial"), framing ("mbap"
-- or "rtu"), host and port (network), path, baud, parity, data, stop, rs485
-- (serial), unit, timeout, delay, retries, backoff, backoff_max (nil when
-- not given), url}. `url` is the canonical form: lowercase scheme and host,
-- the port always written, every serial line setting written, parameters in
-- the order of the table above. URLs that differ only in spelling (case, a
-- default port or serial setting left out, parameter order) share one
-- canonical form, and parse(t.url) gives back t. IPv6 addresses are lowercased, not compressed.
--
-- A malformed URL is user input: parse returns nil and a message that says
-- what is wrong and shows a correct URL. Passing something that is not a
-- string is a programmer error and raises. Pure Lua, no I/O, no globals.

local M = {}

local format = string.format

M.DEFAULT_PORT = 502
M.DEFAULT_BAUD = 9600

-- What each scheme means. `port` is the default port, or nil when the user
-- must give one: a transparent gateway listens wherever it was configured.
local schemes = {
  ["tcp"] = { transport = "tcp", framing = "mbap", port = M.DEFAULT_PORT },
  ["udp"] = { transport = "udp", framing = "mbap", port = M.DEFAULT_PORT },
  ["rtu+tcp"] = { transport = "tcp", framing = "rtu", what = "RTU over TCP" },
  ["rtu+udp"] = { transport = "udp", framing = "rtu", what = "RTU over UDP" },
  ["rtu"] = { transport = "serial", framing = "rtu" },
}
local scheme_list = "tcp, udp, rtu+tcp, rtu+udp or rtu"

local common_params = { "unit", "timeout", "delay", "retries", "backoff", "backoff_max" }
local serial_params = { "baud", "parity", "data", "stop", "rs485" }
-- Names other tools use for our parameters: hints only, never accepted, so
-- that there stays one spelling.
local aliases = {
  slave = "unit", slave_id = "unit", id = "unit", device_id = "unit", unit_id = "unit",
  baudrate = "baud", speed = "baud", bps = "baud", databits = "data", bits = "data",
  stopbits = "stop", timeout_ms = "timeout", retry = "retries",
}
local is_serial_param = {}
for _, name in ipairs(serial_params) do is_serial_param[name] = true end

-- Numbers in canonical URLs: integers without ".0", other floats in the
-- shortest form that reads back to the same value.
local function num(x)
  if type(x) ~= "number" then return tostring(x) end
  if x == math.floor(x) and math.abs(x) < 2^53 then return format("%d", x) end
  for digits = 1, 17 do
    local s = format("%." .. digits .. "g", x)
    if tonumber(s) == x then return s end
  end
  return format("%.17g", x)
end

-- Edit distance counting a swap of two neighbours as one edit ("tpc" is one
-- edit from "tcp"), for "did you mean" hints on short words.
local function distance(a, b)
  local d = {}
  for i = 0, #a do d[i] = { [0] = i } end
  for j = 1, #b do d[0][j] = j end
  for i = 1, #a do
    for j = 1, #b do
      local ca, cb = a:sub(i, i), b:sub(j, j)
      local v = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (ca == cb and 0 or 1))
      if i > 1 and j > 1 and ca == b:sub(j - 1, j - 1) and a:sub(i - 1, i - 1) == cb then
        v = math.min(v, d[i - 2][j - 2] + 1)
      end
      d[i][j] = v
    end
  end
  return d[#a][#b]
end

-- The closest word of `words` to `word`, if it is close enough to be a typo.
local function closest(word, words)
  local best, best_d
  for _, w in ipairs(words) do
    local d = distance(word, w)
    if not best_d or d < best_d then best, best_d = w, d end
  end
  if best_d and best_d <= math.max(1, #word // 3) then return best end
  return nil
end

-- {===== building =====

local function host_text(host)
  if host:find(":", 1, true) then return "[" .. host .. "]" end
  return host
end

-- The scheme of a table: its own, or the one its transport and framing imply.
local function scheme_of(t)
  if t.scheme ~= nil then return tostring(t.scheme):lower() end
  if t.transport == "serial" then return "rtu" end
  if t.framing == "rtu" then return "rtu+" .. tostring(t.transport) end
  return tostring(t.transport)
end

-- The URL text of a table, with defaults filled in. Not checked: format()
-- parses it back to validate, so there is one set of rules.
local function build(t)
  local scheme = scheme_of(t)
  local spec = schemes[scheme]
  local params = {}
  local out
  if spec and spec.transport == "serial" then
    out = scheme .. "://" .. tostring(t.path or "")
    local parity = t.parity or "N"
    params[#params + 1] = "baud=" .. num(t.baud or M.DEFAULT_BAUD)
    params[#params + 1] = "parity=" .. (type(parity) == "string" and parity:upper() or tostring(parity))
    params[#params + 1] = "data=" .. num(t.data or 8)
    params[#params + 1] = "stop=" .. num(t.stop or 1)
    if t.rs485 then params[#params + 1] = "rs485=1" end
  else
    out = scheme .. "://" .. host_text(tostring(t.host or ""):lower())
    local port = t.port or (spec and spec.port)
    if port then out = out .. ":" .. num(port) end
  end
  for _, name in ipairs(common_params) do
    if t[name] ~= nil then params[#params + 1] = name .. "=" .. num(t[name]) end
  end
  if #params > 0 then out = out .. "?" .. table.concat(params, "&") end
  return out
end

-- }=====

-- {===== parsing =====

-- An error message: what is wrong, where, and a URL that would work.
local function bad(what, url, hint)
  return format("%s in '%s': %s", what, url, hint)
end

-- The text after "?" split into an ordered list of {name, value}; value is
-- nil for a bare flag. Empty items ("a=1&&b=2", a trailing "?") are skipped.
local function split_query(query, url)
  local list, seen = {}, {}
  for item in (query .. "&"):gmatch("([^&]*)&") do
    if item ~= "" then
      local name, value = item:match("^([^=]*)=(.*)$")
      name = name or item
      if name == "" then
        return nil, bad("parameter without a name", url, "write name=value, e.g. ?unit=1")
      end
      if seen[name] then
        return nil, bad(format("parameter '%s' given twice", name), url, "keep one")
      end
      seen[name] = true
      list[#list + 1] = { name = name, value = value }
    end
  end
  return list
end

local function int_param(value, lo, hi)
  if not value:match("^%d+$") or #value > 9 then return nil end
  local n = math.tointeger(tonumber(value))
  if n < lo or (hi and n > hi) then return nil end
  return n
end

-- Seconds: plain decimal notation only ("0.5", "2", ".25"), so that "1e3",
-- "0x10" or "inf" never sneak in as a timeout.
local function seconds_param(value, allow_zero)
  if not (value:match("^%d+%.?%d*$") or value:match("^%.%d+$")) then return nil end
  local s = tonumber(value)
  if s == nil or s < 0 or (s == 0 and not allow_zero) or s == math.huge then return nil end
  return s
end

local function flag_param(value)
  if value == nil or value == "1" or value == "true" or value == "yes" then return true end
  if value == "0" or value == "false" or value == "no" then return false end
  return nil
end

-- For each parameter: how to read its value and the hint for a bad one.
local param_rules = {
  unit = { read = function(v) return int_param(v, 0, 255) end,
           hint = "expected a unit id 0..255, e.g. unit=1" },
  timeout = { read = function(v) return seconds_param(v, false) end,
              hint = "expected seconds > 0, e.g. timeout=0.5" },
  delay = { read = function(v) return seconds_param(v, true) end,
            hint = "expected seconds >= 0, e.g. delay=0.05" },
  retries = { read = function(v) return int_param(v, 0) end,
              hint = "expected a count >= 0, e.g. retries=2" },
  backoff = { read = function(v) return seconds_param(v, false) end,
              hint = "expected seconds > 0, e.g. backoff=0.5" },
  backoff_max = { read = function(v) return seconds_param(v, false) end,
                  hint = "expected seconds > 0, e.g. backoff_max=5" },
  baud = { read = function(v) return int_param(v, 1) end,
           hint = "expected a positive integer, e.g. baud=9600" },
  parity = { read = function(v)
               local p = v:upper()
               if p == "N" or p == "E" or p == "O" then return p end
               return nil
             end,
             hint = "expected N, E or O, e.g. parity=E" },
  data = { read = function(v) return int_param(v, 5, 8) end,
           hint = "expected data bits 5..8, e.g. data=8" },
  stop = { read = function(v) return int_param(v, 1, 2) end,
           hint = "expected stop bits 1 or 2, e.g. stop=1" },
  rs485 = { read = flag_param, hint = "expected rs485=1 or rs485=0" },
}

-- Read the query into t; returns nil on success, else a message.
local function parse_query(t, query, url, serial)
  local list, err = split_query(query, url)
  if not list then return err end
  local allowed = serial and { table.unpack(serial_params) } or {}
  for _, name in ipairs(common_params) do allowed[#allowed + 1] = name end
  local allowed_set = {}
  for _, name in ipairs(allowed) do allowed_set[name] = true end
  for _, item in ipairs(list) do
    local name, value = item.name, item.value
    if not allowed_set[name] then
      if is_serial_param[name] then
        local hint = t.framing == "rtu"
          and "set the serial line in the gateway's configuration"
          or "it only applies to serial ports, e.g. rtu:///dev/ttyUSB0?" .. name .. "=..."
        return bad(format("parameter '%s' is not valid for %s://", name, t.scheme), url, hint)
      end
      local guess = aliases[name:lower()] or closest(name:lower(), allowed)
      if not allowed_set[guess] then guess = nil end
      return format("unknown parameter '%s' in '%s' (%sexpected %s)", name, url,
        guess and format("did you mean %s? ", guess) or "", table.concat(allowed, ", "))
    end
    local rule = param_rules[name]
    if value == nil and name ~= "rs485" then
      return bad(format("parameter '%s' has no value", name), url, rule.hint)
    end
    local v = rule.read(value)
    if v == nil then
      return bad(format("bad %s '%s'", name, tostring(value)), url, rule.hint)
    end
    t[name] = v
  end
  return nil
end

-- A dotted-quad IPv4 address with every octet in range, or a host name.
local function check_hostname(host, url, example)
  if host:match("^[%d.]+$") then
    local octets = {}
    for o in host:gmatch("[^.]+") do octets[#octets + 1] = o end
    local ok = #octets == 4 and host:sub(-1) ~= "." and not host:find("..", 1, true)
    for _, o in ipairs(octets) do
      if #o > 3 or tonumber(o) > 255 then ok = false end
    end
    if not ok then
      return bad(format("bad IPv4 address '%s'", host), url, "write four numbers 0..255, e.g. " .. example)
    end
    return nil
  end
  if #host > 253 or not host:match("^[%w_][%w_.-]*$") or host:find("..", 1, true) then
    return bad(format("bad host name '%s'", host), url,
      "use letters, digits, '-', '_' and '.', e.g. " .. example)
  end
  return nil
end

-- host[:port] of a network URL into t; returns nil on success, else a message.
local function parse_authority(t, body, url, spec)
  local scheme = t.scheme
  local example = scheme .. "://192.168.1.50:" .. (spec.port or 8899)
  local slash = body:find("/", 1, true)
  if slash then
    return bad(format("unexpected path '%s'", body:sub(slash)), url,
      format("a %s:// address is only host and port, e.g. %s", scheme, example))
  end
  if body:find("@", 1, true) then
    return bad("unexpected user name", url, "Modbus has no login; write " .. example)
  end
  local host, port
  if body:sub(1, 1) == "[" then
    host, port = body:match("^%[([^%]]*)%](.*)$")
    if not host then
      return bad("unclosed '[' in IPv6 address", url, "write " .. scheme .. "://[::1]:502")
    end
    if host == "" then
      return bad("missing host", url, "write " .. example)
    end
    if not host:find(":", 1, true) or not host:match("^[%x:.]+$") then
      return bad(format("bad IPv6 address '%s'", host), url,
        "write " .. scheme .. "://[fe80::1]:502 (brackets only around IPv6 addresses)")
    end
    host = host:lower()
    if port ~= "" and port:sub(1, 1) ~= ":" then
      return bad(format("unexpected '%s' after ']'", port), url, "write " .. scheme .. "://[::1]:502")
    end
  elseif select(2, body:gsub(":", "")) > 1 then
    return bad("IPv6 address without brackets", url,
      format("put the address in brackets and the port after them, e.g. %s://[::1]:502", scheme))
  else
    host, port = body:match("^([^:]*)(.*)$")
    host = host:lower()
  end
  if host == "" then
    return bad("missing host", url, "write " .. example)
  end
  if host:find(":", 1, true) == nil then
    local err = check_hostname(host, url, example)
    if err then return err end
  end
  t.host = host
  if port == "" then
    if not spec.port then
      return bad("missing port", url, format("%s has no standard port; write %s://%s:8899",
        spec.what, scheme, host_text(host)))
    end
    t.port = spec.port
    return nil
  end
  local digits = port:sub(2)
  local n = digits:match("^%d+$") and #digits <= 5 and math.tointeger(tonumber(digits))
  if not n or n < 1 or n > 65535 then
    if digits == "" then
      return bad("missing port after ':'", url, format("write %s://%s:502", scheme, host_text(host)))
    end
    return bad(format("bad port '%s'", digits), url,
      format("expected 1..65535, e.g. %s://%s:502", scheme, host_text(host)))
  end
  t.port = n
  return nil
end

-- The device path of an rtu:// URL into t; returns nil on success, else a message.
local function parse_path(t, body, url)
  if body == "" then
    return bad("missing serial device", url, "write rtu:///dev/ttyUSB0?baud=9600")
  end
  if body:sub(1, 1) ~= "/" then
    if body:match("^[%w_.%-]+:%d+$") then
      return bad("rtu:// is for serial ports", url,
        format("for an RS-485 gateway write rtu+tcp://%s, for a port rtu:///dev/ttyUSB0", body))
    end
    -- rtu://dev/ttyUSB0 or rtu://ttyUSB0: the path lost its leading slash.
    local fixed = body:match("^dev/") and "/" .. body or "/dev/" .. body
    return bad("serial device must be an absolute path", url,
      format("write rtu://%s (three slashes)", fixed))
  end
  if body:match("^/+$") then
    return bad("missing serial device", url, "write rtu:///dev/ttyUSB0?baud=9600")
  end
  t.path = body
  t.baud, t.parity, t.data, t.stop, t.rs485 = M.DEFAULT_BAUD, "N", 8, 1, false
  return nil
end

-- "10.0.0.1:502" or "/dev/ttyUSB0": what the user probably meant.
local function missing_scheme(url)
  if url:sub(1, 1) == "/" then
    return bad("missing scheme", url, format("write rtu://%s?baud=9600", url))
  end
  local guess = url:match("^[%w_.%-%[%]:]+$") and "tcp://" .. url or "tcp://192.168.1.50:502"
  return bad("missing scheme", url, "write " .. guess)
end

--- Parse a Modbus URL. Returns the address table, or nil and a message.
function M.parse(url)
  if type(url) ~= "string" then
    error(format("address.parse: expected a URL string, got %s", type(url)), 2)
  end
  if url:find("%s") then
    return nil, bad("unexpected white space", url, "write the URL without spaces, e.g. tcp://192.168.1.50")
  end
  if url:find("#", 1, true) then
    return nil, bad("unexpected '#'", url, "Modbus URLs have no fragment; remove it")
  end
  local scheme, rest = url:match("^([%a][%w+.-]*)://(.*)$")
  if not scheme then
    if url:match("^[%a][%w+.-]*:") and not url:match("^[%w_.-]+:%d+$") then
      return nil, bad("missing '//' after the scheme", url, "write e.g. tcp://192.168.1.50:502")
    end
    return nil, missing_scheme(url)
  end
  scheme = scheme:lower()
  local spec = schemes[scheme]
  if not spec then
    local guess = closest(scheme, { "tcp", "udp", "rtu+tcp", "rtu+udp", "rtu" })
    if scheme:match("rtu") and scheme:match("tcp") then guess = "rtu+tcp" end
    if scheme:match("rtu") and scheme:match("udp") then guess = "rtu+udp" end
    return nil, format("unknown scheme '%s' in '%s' (%sexpected %s)", scheme, url,
      guess and format("did you mean %s? ", guess) or "", scheme_list)
  end
  local body, query = rest:match("^([^?]*)%?(.*)$")
  body = body or rest
  local t = { scheme = scheme, transport = spec.transport, framing = spec.framing }
  local err
  if spec.transport == "serial" then
    err = parse_path(t, body, url)
  else
    err = parse_authority(t, body, url, spec)
  end
  if not err and query then
    err = parse_query(t, query, url, spec.transport == "serial")
  end
  if err then return nil, err end
  t.url = build(t)
  return t
end

--- The canonical URL of an address table (as parse returns, or written by
--- hand: scheme, or transport and framing, plus the fields). Raises when the
--- table does not describe a valid address: that is a programmer error.
function M.format(t)
  if type(t) ~= "table" then
    error(format("address.format: expected an address table, got %s", type(t)), 2)
  end
  local url = build(t)
  local parsed, err = M.parse(url)
  if not parsed then
    error("address.format: invalid address table: " .. err, 2)
  end
  return parsed.url
end

-- }=====

return M
