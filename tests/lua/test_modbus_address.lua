-- Tests for moondog.modbus.address: every scheme, defaults, parameters,
-- canonical forms and round trips, and the message of every error path.

local T = require "moondog.testing"
local address = require "moondog.modbus.address"

-- parse(url) must fail with a message containing every one of `parts`.
local function fails(url, ...)
  local t, err = address.parse(url)
  assert(t == nil, "expected an error for '" .. url .. "', got " .. tostring(t and t.url))
  assert(type(err) == "string", "the error must be a string")
  for _, part in ipairs({ ... }) do
    if not err:find(part, 1, true) then
      error(string.format("error for '%s' lacks '%s': %s", url, part, err), 2)
    end
  end
  return err
end

local function parse(url)
  local t, err = address.parse(url)
  if not t then error("unexpected error: " .. err, 2) end
  return t
end

local function same_table(a, b)
  for k, v in pairs(a) do
    if b[k] ~= v then return false, k end
  end
  for k in pairs(b) do
    if a[k] == nil then return false, k end
  end
  return true
end

-- {===== schemes and defaults =====

T.test("tcp default port", function() T.eq(address.parse("tcp://10.0.0.1").port, 502) end)

T.test("tcp fields", function()
  local t = parse("tcp://10.0.0.1:1502")
  T.eq(t.scheme, "tcp"); T.eq(t.transport, "tcp"); T.eq(t.framing, "mbap")
  T.eq(t.host, "10.0.0.1"); T.eq(t.port, 1502)
  T.eq(t.url, "tcp://10.0.0.1:1502")
  T.eq(t.path, nil); T.eq(t.baud, nil); T.eq(t.parity, nil); T.eq(t.rs485, nil)
  T.eq(t.unit, nil); T.eq(t.timeout, nil); T.eq(t.delay, nil); T.eq(t.retries, nil)
end)

T.test("tcp canonical url writes the default port", function()
  T.eq(parse("tcp://10.0.0.1").url, "tcp://10.0.0.1:502")
  T.eq(parse("tcp://10.0.0.1").url, parse("tcp://10.0.0.1:502").url)
end)

T.test("udp default port and fields", function()
  local t = parse("udp://meter.local")
  T.eq(t.scheme, "udp"); T.eq(t.transport, "udp"); T.eq(t.framing, "mbap")
  T.eq(t.host, "meter.local"); T.eq(t.port, 502); T.eq(t.url, "udp://meter.local:502")
end)

T.test("rtu+tcp fields", function()
  local t = parse("rtu+tcp://gw:8899")
  T.eq(t.scheme, "rtu+tcp"); T.eq(t.transport, "tcp"); T.eq(t.framing, "rtu")
  T.eq(t.host, "gw"); T.eq(t.port, 8899); T.eq(t.url, "rtu+tcp://gw:8899")
  T.eq(t.baud, nil); T.eq(t.path, nil)
end)

T.test("rtu+udp fields", function()
  local t = parse("rtu+udp://10.1.2.3:4196?unit=7")
  T.eq(t.scheme, "rtu+udp"); T.eq(t.transport, "udp"); T.eq(t.framing, "rtu")
  T.eq(t.port, 4196); T.eq(t.unit, 7); T.eq(t.url, "rtu+udp://10.1.2.3:4196?unit=7")
end)

T.test("rtu serial defaults", function()
  local t = parse("rtu:///dev/ttyUSB0")
  T.eq(t.scheme, "rtu"); T.eq(t.transport, "serial"); T.eq(t.framing, "rtu")
  T.eq(t.path, "/dev/ttyUSB0")
  T.eq(t.baud, 9600); T.eq(t.parity, "N"); T.eq(t.data, 8); T.eq(t.stop, 1)
  T.eq(t.rs485, false)
  T.eq(t.host, nil); T.eq(t.port, nil)
  T.eq(t.url, "rtu:///dev/ttyUSB0?baud=9600&parity=N&data=8&stop=1")
end)

T.test("rtu serial settings", function()
  local t = parse("rtu:///dev/ttyAMA0?baud=19200&parity=E&data=7&stop=2&rs485=1&unit=3")
  T.eq(t.baud, 19200); T.eq(t.parity, "E"); T.eq(t.data, 7); T.eq(t.stop, 2)
  T.eq(t.rs485, true); T.eq(t.unit, 3)
  T.eq(t.url, "rtu:///dev/ttyAMA0?baud=19200&parity=E&data=7&stop=2&rs485=1&unit=3")
end)

T.test("rtu parameters in any order give one canonical url", function()
  local a = parse("rtu:///dev/ttyUSB0?unit=1&stop=2&baud=4800")
  local b = parse("rtu:///dev/ttyUSB0?baud=4800&stop=2&unit=1&parity=n&data=8")
  T.eq(a.url, b.url)
  T.eq(a.url, "rtu:///dev/ttyUSB0?baud=4800&parity=N&data=8&stop=2&unit=1")
end)

T.test("parity is case-insensitive", function()
  for _, p in ipairs({ "n", "N", "e", "E", "o", "O" }) do
    T.eq(parse("rtu:///dev/ttyS0?parity=" .. p).parity, p:upper(), "parity " .. p)
  end
end)

T.test("baud accepts any positive integer", function()
  T.eq(parse("rtu:///dev/ttyS0?baud=1").baud, 1)
  T.eq(parse("rtu:///dev/ttyS0?baud=115200").baud, 115200)
  T.eq(parse("rtu:///dev/ttyS0?baud=250000").baud, 250000)
  T.eq(math.type(parse("rtu:///dev/ttyS0?baud=2400").baud), "integer")
end)

T.test("data bits 5..8 and stop bits 1..2", function()
  for d = 5, 8 do T.eq(parse("rtu:///dev/ttyS0?data=" .. d).data, d) end
  T.eq(parse("rtu:///dev/ttyS0?stop=1").stop, 1)
  T.eq(parse("rtu:///dev/ttyS0?stop=2").stop, 2)
end)

T.test("rs485 flag forms", function()
  T.eq(parse("rtu:///dev/ttyS0?rs485=1").rs485, true)
  T.eq(parse("rtu:///dev/ttyS0?rs485").rs485, true)
  T.eq(parse("rtu:///dev/ttyS0?rs485=true").rs485, true)
  T.eq(parse("rtu:///dev/ttyS0?rs485=0").rs485, false)
  T.eq(parse("rtu:///dev/ttyS0?rs485=0").url, "rtu:///dev/ttyS0?baud=9600&parity=N&data=8&stop=1")
  T.eq(parse("rtu:///dev/ttyS0?rs485").url, "rtu:///dev/ttyS0?baud=9600&parity=N&data=8&stop=1&rs485=1")
end)

T.test("serial paths may hold ':' '-' '_' and '.'", function()
  local path = "/dev/serial/by-path/pci-0000:00:14.0-usb-0:2:1.0-port0"
  T.eq(parse("rtu://" .. path).path, path)
  local by_id = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A1234-if00-port0"
  T.eq(parse("rtu://" .. by_id .. "?baud=38400").path, by_id)
end)

T.test("scheme and host are case-insensitive, canonical is lowercase", function()
  local t = parse("TCP://Inverter.Example.COM:1502")
  T.eq(t.scheme, "tcp"); T.eq(t.host, "inverter.example.com")
  T.eq(t.url, "tcp://inverter.example.com:1502")
  T.eq(parse("RTU+TCP://GW:8899").url, "rtu+tcp://gw:8899")
  T.eq(parse("Rtu:///dev/ttyUSB0").scheme, "rtu")
end)

T.test("serial path keeps its case", function()
  T.eq(parse("rtu:///dev/ttyACM0").path, "/dev/ttyACM0")
end)

T.test("host names with '-' '_' and digits", function()
  T.eq(parse("tcp://sma-sb5_0.lan").host, "sma-sb5_0.lan")
  T.eq(parse("tcp://localhost:5020").host, "localhost")
  T.eq(parse("udp://3com").host, "3com")
end)

T.test("port bounds 1 and 65535", function()
  T.eq(parse("tcp://h:1").port, 1)
  T.eq(parse("tcp://h:65535").port, 65535)
  T.eq(parse("tcp://h:00502").port, 502)
  T.eq(parse("tcp://h:00502").url, "tcp://h:502")
end)

-- }=====

-- {===== IPv6 =====

T.test("IPv6 in brackets with port", function()
  local t = parse("tcp://[::1]:502")
  T.eq(t.host, "::1"); T.eq(t.port, 502); T.eq(t.url, "tcp://[::1]:502")
end)

T.test("IPv6 in brackets without port", function()
  local t = parse("udp://[fe80::1]")
  T.eq(t.host, "fe80::1"); T.eq(t.port, 502); T.eq(t.url, "udp://[fe80::1]:502")
end)

T.test("IPv6 is lowercased and works for rtu+tcp", function()
  local t = parse("rtu+tcp://[2001:DB8::A]:8899")
  T.eq(t.host, "2001:db8::a"); T.eq(t.url, "rtu+tcp://[2001:db8::a]:8899")
end)

T.test("IPv6 with embedded IPv4", function()
  T.eq(parse("tcp://[::ffff:192.168.1.5]:1502").host, "::ffff:192.168.1.5")
end)

-- }=====

-- {===== common parameters =====

T.test("unit bounds 0 and 255", function()
  T.eq(parse("tcp://h?unit=0").unit, 0)
  T.eq(parse("tcp://h?unit=255").unit, 255)
  T.eq(parse("rtu:///dev/ttyS0?unit=247").unit, 247)
end)

T.test("timeout, delay and retries", function()
  local t = parse("tcp://h?timeout=0.5&delay=0.05&retries=3")
  T.eq(t.timeout, 0.5); T.eq(t.delay, 0.05); T.eq(t.retries, 3)
  T.eq(t.url, "tcp://h:502?timeout=0.5&delay=0.05&retries=3")
end)

T.test("backoff and backoff_max: seconds > 0, in the canonical URL", function()
  local t = parse("tcp://h?backoff_max=2&backoff=0.2&unit=1")
  T.eq(t.backoff, 0.2); T.eq(t.backoff_max, 2)
  T.eq(t.url, "tcp://h:502?unit=1&backoff=0.2&backoff_max=2")
  T.eq(parse("rtu:///dev/ttyS0?backoff=1").backoff, 1)
  fails("tcp://h?backoff=0", "bad backoff '0'", "backoff=0.5")
  fails("tcp://h?backoff_max=-1", "bad backoff_max '-1'", "backoff_max=5")
  fails("tcp://h?backof=1", "did you mean backoff?")
end)

T.test("timeout forms: integer, decimal, leading dot", function()
  T.eq(parse("tcp://h?timeout=2").timeout, 2)
  T.eq(parse("tcp://h?timeout=2").url, "tcp://h:502?timeout=2")
  T.eq(parse("tcp://h?timeout=1.").timeout, 1)
  T.eq(parse("tcp://h?timeout=.25").timeout, 0.25)
  T.eq(parse("tcp://h?timeout=0.001").timeout, 0.001)
  T.eq(parse("tcp://h?timeout=0.1").url, "tcp://h:502?timeout=0.1")
end)

T.test("delay 0 and retries 0 are allowed", function()
  local t = parse("udp://h?delay=0&retries=0")
  T.eq(t.delay, 0); T.eq(t.retries, 0)
  T.eq(t.url, "udp://h:502?delay=0&retries=0")
end)

T.test("common parameters work on every scheme", function()
  for _, base in ipairs({ "tcp://h", "udp://h", "rtu+tcp://h:1", "rtu+udp://h:1", "rtu:///dev/ttyS0" }) do
    local t = parse(base .. "?unit=9&timeout=1.5&delay=0.2&retries=1")
    T.eq(t.unit, 9, base); T.eq(t.timeout, 1.5, base); T.eq(t.delay, 0.2, base); T.eq(t.retries, 1, base)
  end
end)

T.test("empty query items are ignored", function()
  T.eq(parse("tcp://h?").url, "tcp://h:502")
  T.eq(parse("tcp://h?unit=1&&retries=2&").url, "tcp://h:502?unit=1&retries=2")
end)

-- }=====

-- {===== errors =====

T.test("missing port for rtu+tcp names the fix", function()
  local err = fails("rtu+tcp://gw", "missing port", "'rtu+tcp://gw'", "RTU over TCP has no standard port",
    "rtu+tcp://gw:8899")
  T.eq(err, "missing port in 'rtu+tcp://gw': RTU over TCP has no standard port; write rtu+tcp://gw:8899")
end)

T.test("missing port for rtu+udp and IPv6 example", function()
  fails("rtu+udp://10.0.0.9", "missing port", "RTU over UDP", "rtu+udp://10.0.0.9:8899")
  fails("rtu+tcp://[::1]", "missing port", "rtu+tcp://[::1]:8899")
end)

T.test("empty port after ':'", function()
  fails("tcp://h:", "missing port after ':'", "tcp://h:502")
end)

T.test("bad ports", function()
  fails("tcp://h:0", "bad port '0'", "1..65535", "tcp://h:502")
  fails("tcp://h:65536", "bad port '65536'", "1..65535")
  fails("tcp://h:abc", "bad port 'abc'")
  fails("tcp://h:-1", "bad port '-1'")
  fails("tcp://h:5.2", "bad port '5.2'")
  fails("tcp://h:1000000", "bad port '1000000'")
  fails("tcp://[::1]:0", "bad port '0'", "tcp://[::1]:502")
end)

T.test("missing host", function()
  fails("tcp://", "missing host", "'tcp://'", "tcp://192.168.1.50:502")
  fails("tcp://:502", "missing host", "tcp://192.168.1.50:502")
  fails("udp://?unit=1", "missing host")
  fails("rtu+tcp://:8899", "missing host", "rtu+tcp://192.168.1.50:8899")
  fails("tcp://[]:502", "missing host")
end)

T.test("IPv6 without brackets", function()
  fails("tcp://::1", "IPv6 address without brackets", "tcp://[::1]:502")
  fails("tcp://fe80::1:502", "without brackets", "brackets")
end)

T.test("bad IPv6 in brackets", function()
  fails("tcp://[::1", "unclosed '['", "tcp://[::1]:502")
  fails("tcp://[localhost]:502", "bad IPv6 address 'localhost'", "brackets only around IPv6")
  fails("tcp://[1.2.3.4]", "bad IPv6 address '1.2.3.4'")
  fails("tcp://[::g]", "bad IPv6 address '::g'")
  fails("tcp://[::1]x", "unexpected 'x' after ']'")
end)

T.test("bad IPv4 and host names", function()
  fails("tcp://10.0.0.256", "bad IPv4 address '10.0.0.256'", "0..255")
  fails("tcp://1.2.3", "bad IPv4 address '1.2.3'")
  fails("tcp://1.2.3.4.5", "bad IPv4 address")
  fails("tcp://1..2.3", "bad IPv4 address")
  fails("tcp://a..b", "bad host name 'a..b'")
  fails("tcp://-x", "bad host name '-x'")
  fails("tcp://h%20x", "bad host name")
  fails("tcp://" .. string.rep("a", 254), "bad host name")
end)

T.test("paths and user names are not part of network addresses", function()
  fails("tcp://h/modbus", "unexpected path '/modbus'", "only host and port")
  fails("tcp://h:502/", "unexpected path '/'")
  fails("rtu+tcp://user@gw:8899", "unexpected user name", "no login")
end)

T.test("missing or unknown scheme", function()
  T.eq(fails("10.0.0.1:502", "missing scheme"), "missing scheme in '10.0.0.1:502': write tcp://10.0.0.1:502")
  fails("inverter.lan", "missing scheme", "tcp://inverter.lan")
  fails("/dev/ttyUSB0", "missing scheme", "rtu:///dev/ttyUSB0")
  fails("", "missing scheme")
  fails("modbus://x", "unknown scheme 'modbus'", "expected tcp, udp, rtu+tcp, rtu+udp or rtu")
  fails("rtutcp://x:1", "unknown scheme 'rtutcp'", "did you mean rtu+tcp?")
  fails("tcp+rtu://x:1", "did you mean rtu+tcp?")
  fails("rtu-udp://x:1", "did you mean rtu+udp?")
  fails("tpc://x", "did you mean tcp?")
  fails("tcp:10.0.0.1", "missing '//' after the scheme")
end)

T.test("serial device errors", function()
  fails("rtu://", "missing serial device", "rtu:///dev/ttyUSB0")
  fails("rtu:///", "missing serial device")
  fails("rtu://?baud=9600", "missing serial device")
  fails("rtu://dev/ttyUSB0", "absolute path", "rtu:///dev/ttyUSB0 (three slashes)")
  fails("rtu://ttyUSB1", "absolute path", "rtu:///dev/ttyUSB1")
  fails("rtu://gw:8899", "rtu:// is for serial ports", "rtu+tcp://gw:8899")
end)

T.test("unknown parameter lists the expected ones", function()
  local err = fails("rtu:///dev/ttyUSB0?bau=9600", "unknown parameter 'bau'", "'rtu:///dev/ttyUSB0?bau=9600'",
    "did you mean baud?",
    "expected baud, parity, data, stop, rs485, unit, timeout, delay, retries, backoff, backoff_max")
  assert(err:find("^unknown parameter 'bau' in 'rtu:///dev/ttyUSB0%?bau=9600' %("), err)
  fails("tcp://h?slave=1", "unknown parameter 'slave'",
    "expected unit, timeout, delay, retries, backoff, backoff_max")
  fails("tcp://h?UNIT=1", "unknown parameter 'UNIT'", "did you mean unit?")
  fails("tcp://h?tiemout=1", "did you mean timeout?")
  fails("tcp://h?slave=1", "did you mean unit?")
  fails("rtu:///dev/ttyS0?baudrate=9600", "did you mean baud?")
  fails("rtu:///dev/ttyS0?stopbits=2", "did you mean stop?")
  err = fails("tcp://h?speed=9600", "unknown parameter 'speed'")
  assert(not err:find("did you mean", 1, true), err)
end)

T.test("serial parameters on network transports", function()
  fails("tcp://h?baud=9600", "parameter 'baud' is not valid for tcp://", "only applies to serial ports")
  fails("udp://h?rs485=1", "parameter 'rs485' is not valid for udp://")
  fails("rtu+tcp://gw:8899?parity=E", "parameter 'parity' is not valid for rtu+tcp://",
    "gateway's configuration")
  fails("rtu+udp://gw:8899?stop=2", "gateway's configuration")
end)

T.test("bad parameter values", function()
  fails("tcp://h?unit=256", "bad unit '256'", "0..255", "unit=1")
  fails("tcp://h?unit=-1", "bad unit '-1'")
  fails("tcp://h?unit=0x10", "bad unit '0x10'")
  fails("tcp://h?unit=1.0", "bad unit '1.0'")
  fails("tcp://h?timeout=0", "bad timeout '0'", "seconds > 0", "timeout=0.5")
  fails("tcp://h?timeout=-1", "bad timeout '-1'")
  fails("tcp://h?timeout=1e3", "bad timeout '1e3'")
  fails("tcp://h?timeout=inf", "bad timeout 'inf'")
  fails("tcp://h?timeout=500ms", "bad timeout '500ms'", "seconds")
  fails("tcp://h?delay=-0.1", "bad delay '-0.1'", "seconds >= 0", "delay=0.05")
  fails("tcp://h?delay=nan", "bad delay 'nan'")
  fails("tcp://h?retries=-1", "bad retries '-1'", ">= 0", "retries=2")
  fails("tcp://h?retries=1.5", "bad retries '1.5'")
  fails("rtu:///dev/ttyS0?baud=0", "bad baud '0'", "positive integer", "baud=9600")
  fails("rtu:///dev/ttyS0?baud=96OO", "bad baud '96OO'")
  fails("rtu:///dev/ttyS0?parity=X", "bad parity 'X'", "N, E or O", "parity=E")
  fails("rtu:///dev/ttyS0?parity=none", "bad parity 'none'")
  fails("rtu:///dev/ttyS0?data=4", "bad data '4'", "5..8")
  fails("rtu:///dev/ttyS0?data=9", "bad data '9'")
  fails("rtu:///dev/ttyS0?stop=0", "bad stop '0'", "1 or 2")
  fails("rtu:///dev/ttyS0?stop=3", "bad stop '3'")
  fails("rtu:///dev/ttyS0?rs485=2", "bad rs485 '2'", "rs485=1 or rs485=0")
end)

T.test("parameters without values, names or given twice", function()
  fails("tcp://h?unit", "parameter 'unit' has no value", "unit=1")
  fails("tcp://h?unit=", "bad unit ''")
  fails("rtu:///dev/ttyS0?baud", "parameter 'baud' has no value", "baud=9600")
  fails("tcp://h?=1", "parameter without a name")
  fails("tcp://h?unit=1&unit=2", "parameter 'unit' given twice")
end)

T.test("white space and fragments", function()
  fails("tcp://h ost", "unexpected white space")
  fails(" tcp://h", "unexpected white space")
  fails("tcp://h\n", "unexpected white space")
  fails("tcp://h#frag", "unexpected '#'")
end)

T.test("every error quotes the url", function()
  local urls = { "rtu+tcp://gw", "tcp://h:0", "tcp://", "x", "rtu://", "tcp://h?x=1", "tcp://h?unit=999" }
  for _, url in ipairs(urls) do
    fails(url, "'" .. url .. "'")
  end
end)

T.test("parse raises on a non-string", function()
  local ok, err = pcall(address.parse, 502)
  assert(not ok and err:find("expected a URL string, got number", 1, true), err)
  ok, err = pcall(address.parse)
  assert(not ok and err:find("got nil", 1, true), err)
  ok, err = pcall(address.parse, { url = "tcp://h" })
  assert(not ok and err:find("got table", 1, true), err)
end)

-- }=====

-- {===== format and round trips =====

local round_trip_urls = {
  "tcp://10.0.0.1", "tcp://10.0.0.1:1502?unit=1", "TCP://Host.Example:502?timeout=0.25&retries=2",
  "udp://[::1]", "udp://[FE80::2]:5020?delay=0&unit=0", "rtu+tcp://gw:8899?unit=247&timeout=3",
  "rtu+udp://10.0.0.2:4196", "rtu:///dev/ttyUSB0", "rtu:///dev/ttyUSB0?baud=115200&parity=o&stop=2&data=5",
  "rtu:///dev/ttyS1?rs485&unit=2&delay=0.1&retries=0&timeout=0.3",
  "tcp://h?timeout=0.1&delay=0.3", "tcp://h?timeout=123.456789",
}

T.test("format(parse(url)) is the canonical url", function()
  for _, url in ipairs(round_trip_urls) do
    local t = parse(url)
    T.eq(address.format(t), t.url, url)
  end
end)

T.test("parse(canonical url) gives back the same table", function()
  for _, url in ipairs(round_trip_urls) do
    local t = parse(url)
    local again = parse(t.url)
    local ok, key = same_table(t, again)
    assert(ok, string.format("%s: field %s differs after a round trip", url, tostring(key)))
    T.eq(again.url, t.url, url)
  end
end)

T.test("format builds urls from hand-written tables", function()
  T.eq(address.format({ scheme = "tcp", host = "10.0.0.5" }), "tcp://10.0.0.5:502")
  T.eq(address.format({ scheme = "udp", host = "::1", port = 1502 }), "udp://[::1]:1502")
  T.eq(address.format({ transport = "tcp", framing = "rtu", host = "GW", port = 8899, timeout = 0.1 }),
    "rtu+tcp://gw:8899?timeout=0.1")
  T.eq(address.format({ transport = "udp", framing = "mbap", host = "h" }), "udp://h:502")
  T.eq(address.format({ transport = "serial", path = "/dev/ttyUSB0", parity = "e", unit = 1 }),
    "rtu:///dev/ttyUSB0?baud=9600&parity=E&data=8&stop=1&unit=1")
  T.eq(address.format({ scheme = "rtu", path = "/dev/ttyS0", rs485 = true, baud = 19200.0 }),
    "rtu:///dev/ttyS0?baud=19200&parity=N&data=8&stop=1&rs485=1")
end)

T.test("format after changing a field", function()
  local t = parse("tcp://10.0.0.1?unit=1")
  t.unit = 2
  T.eq(address.format(t), "tcp://10.0.0.1:502?unit=2")
  t.port = 1502
  T.eq(address.format(t), "tcp://10.0.0.1:1502?unit=2")
end)

T.test("format raises on an invalid table", function()
  local cases = {
    { { scheme = "tcp", host = "x", unit = 300 }, "bad unit '300'" },
    { { scheme = "tcp" }, "missing host" },
    { { scheme = "rtu+tcp", host = "gw" }, "missing port" },
    { { scheme = "rtu" }, "missing serial device" },
    { { scheme = "serial", path = "/dev/ttyS0" }, "unknown scheme 'serial'" },
    { { scheme = "tcp", host = "x", port = 70000 }, "bad port '70000'" },
    { { scheme = "tcp", host = "x", timeout = 0 }, "bad timeout '0'" },
    { { scheme = "rtu", path = "/dev/ttyS0", parity = "X" }, "bad parity 'X'" },
  }
  for _, c in ipairs(cases) do
    local ok, err = pcall(address.format, c[1])
    assert(not ok, "format should raise for " .. c[2])
    assert(err:find("address.format: invalid address table", 1, true), err)
    assert(err:find(c[2], 1, true), err)
  end
  local ok, err = pcall(address.format, "tcp://h")
  assert(not ok and err:find("expected an address table, got string", 1, true), err)
end)

T.test("format does not change its argument", function()
  local t = { scheme = "tcp", host = "H" }
  address.format(t)
  T.eq(t.host, "H"); T.eq(t.port, nil); T.eq(t.url, nil)
end)

-- }=====
