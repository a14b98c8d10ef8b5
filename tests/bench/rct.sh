#!/usr/bin/env bash
# tests/bench/rct.sh: RCT Power figures, each beside a reference measured in
# the same run (machines are shared and noisy: compare ratios).
#
#  1. Frames built, parsed and decoded per second: the C codec
#     (tests/bench/rct_codec.c, compiled here), the same through Lua
#     (tests/bench/rct.lua codec), and the reference: the same CRC, escaping,
#     framing and float decoding in pure Python (/usr/bin/python3), the way
#     the rctclient library does it (rctclient itself is not installable here).
#  2. `moondog rct read-value` from start to exit against a simulator
#     (`moondog rct serve`, a separate process), with hyperfine when it is
#     installed, else a bounded loop; references: `lua5.4 -e ''` and
#     `moondog -e ''` start-up.
#  3. 100 objects read from the simulator with all requests in flight
#     (read_many) and one request at a time.
#
# RCT_BENCH_N overrides the number of frames in the C run (default 5000000).
set -eu
cd "$(dirname "$0")/../.."
md=./moondog
py=/usr/bin/python3
N=${RCT_BENCH_N:-5000000}
work=$(mktemp -d /tmp/moondog-rct-bench.XXXXXX)
srv=
cleanup() {
    if [ -n "$srv" ]; then kill "$srv" 2>/dev/null || true; wait "$srv" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "== RCT frames built + parsed + decoded per second (goal: C over 5,000,000/s)"
cc -O2 -std=c11 -D_GNU_SOURCE -Icore -o "$work/rct_codec" tests/bench/rct_codec.c core/rctcodec.c -lm
c_rate=$("$work/rct_codec" "$N" | cut -d' ' -f1)
lua_rate=$($md tests/bench/rct.lua codec 1000000 | cut -d' ' -f1)
py_rate=$($py - 50000 <<'PY'
# The RCT codec in pure Python: table CRC-16/CCITT-FALSE with the odd-length
# pad, escaping, a byte-at-a-time receive state machine, struct for floats.
import struct, sys, time
TABLE = []
for i in range(256):
    c = i << 8
    for _ in range(8):
        c = ((c << 1) ^ 0x1021) & 0xFFFF if c & 0x8000 else (c << 1) & 0xFFFF
    TABLE.append(c)
def crc(data):
    if len(data) % 2:
        data = data + b"\0"
    c = 0xFFFF
    for b in data:
        c = ((c << 8) & 0xFFFF) ^ TABLE[((c >> 8) ^ b) & 0xFF]
    return c
def build(cmd, oid, payload):
    body = bytes([cmd, 4 + len(payload)]) + struct.pack(">I", oid) + payload
    raw = body + struct.pack(">H", crc(body))
    out = bytearray(b"+")
    for b in raw:
        if b in (0x2B, 0x2D):
            out.append(0x2D)
        out.append(b)
    return bytes(out)
def parse(data):
    body, esc, started = bytearray(), False, False
    for b in data:
        if not started:
            started = b == 0x2B
            continue
        if esc:
            esc = False
        elif b == 0x2D:
            esc = True
            continue
        body.append(b)
        if len(body) >= 2 and len(body) == 2 + body[1] + 2:
            if crc(bytes(body[:-2])) != struct.unpack(">H", body[-2:])[0]:
                raise ValueError("crc")
            return body[0], struct.unpack(">I", body[2:6])[0], bytes(body[6:-2])
    raise ValueError("incomplete")
oids = [0x959930BF, 0xDB2D69AE, 0x91617C58, 0x1AC87AA0, 0xDB11855B, 0x0CB5D21B, 0x400F015B, 0x3AFEF139]
n = int(sys.argv[1])
t0 = time.process_time()
s = 0.0
for i in range(n):
    f = build(5, oids[i & 7], struct.pack(">f", (i & 0xFFFF) * 0.25))
    cmd, oid, payload = parse(f)
    s += struct.unpack(">f", payload)[0] + oid
print(int(n / (time.process_time() - t0)))
PY
)
awk -v c="$c_rate" -v l="$lua_rate" -v p="$py_rate" 'BEGIN {
  printf "C codec %.0f frames/s; through Lua %.0f frames/s; pure Python %.0f frames/s\n", c, l, p
  printf "ratio C/Python %.0f, Lua/Python %.1f, C/Lua %.1f\n", c / p, l / p, c / l }'

echo
echo "== moondog rct read-value, start to exit, against a simulator (goal: under 10 ms)"
$md rct serve --port 0 >"$work/serve.out" 2>/dev/null & srv=$!
for _ in $(seq 100); do [ -s "$work/serve.out" ] && break; sleep 0.05; done
target=$(head -n1 "$work/serve.out")
port=${target##*:}
read_cmd="$md rct read-value --host 127.0.0.1 --port $port --name battery.soc"
[ "$($read_cmd)" = "0.62" ] || { echo "rct.sh: read-value did not print 0.62" >&2; exit 1; }
if command -v hyperfine >/dev/null; then
    hyperfine -N --warmup 20 --runs 300 --export-json "$work/hf.json" \
        "$read_cmd" "lua5.4 -e ''" "$md -e ''" >/dev/null 2>&1
    $py - "$work/hf.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
# medians: a shared machine adds outliers that would drag the means
rv, lua, md = (x["median"] * 1000 for x in r)
mean = r[0]["mean"] * 1000
print("read-value %.2f ms (median of 300 runs, mean %.2f, hyperfine); lua5.4 -e '' %.2f ms; moondog -e '' %.2f ms"
      % (rv, mean, lua, md))
print("ratio read-value/lua5.4 start-up %.2f, read-value/moondog start-up %.2f" % (rv / lua, rv / md))
PY
else
    time_runs() {
        local t0 t1
        t0=$(date +%s%N)
        for _ in $(seq 200); do "$@" >/dev/null; done
        t1=$(date +%s%N)
        echo $(( (t1 - t0) / 200 ))
    }
    rv=$(time_runs $read_cmd)
    lua=$(time_runs lua5.4 -e '')
    awk -v a="$rv" -v b="$lua" 'BEGIN { printf "read-value %.2f ms; lua5.4 -e \x27\x27 %.2f ms (200 runs each); ratio %.2f\n", a / 1e6, b / 1e6, a / b }'
fi

echo
echo "== 100 objects from the simulator: all requests in flight vs one at a time"
out=$($md tests/bench/rct.lua pipeline "127.0.0.1:$port" 50)
awk -v p="${out% *}" -v s="${out#* }" 'BEGIN {
  printf "read_many of 100: %.2f ms; 100 single reads: %.2f ms (mean of 50 rounds); ratio sequential/pipelined %.1f\n", p, s, s / p }'
