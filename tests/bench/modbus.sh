#!/usr/bin/env bash
# tests/bench/modbus.sh: Modbus client figures, each beside references
# measured in the same run against the same server (machines are shared and
# noisy: compare ratios, not absolutes).
#
# Server: tests/bench/libmodbus_server.c, a plain libmodbus TCP server on
# loopback (none of the clients under test), compiled here with cc.
# Clients, one connection each, N back-to-back reads of 125 and of 2
# holding registers:
#   moondog   reads issued from Lua (tests/bench/modbus_bench.lua), CPU from os.clock()
#   C         tests/bench/libmodbus_client.c, libmodbus directly, CPU from getrusage
#   pymodbus  python3-pymodbus's sync ModbusTcpClient, CPU from time.process_time
# CPU is the whole client process per request (moondog: every thread; a TCP
# bus runs on the loop thread). Then: 1, 2 and 4 moondog buses in parallel
# tasks; the read planner on an SDM630-like and a Growatt-like point list;
# and the same C client against `moondog modbus serve` to set our server
# beside libmodbus's.
#
# MODBUS_BENCH_N overrides N (default 20000). Every loop is bounded.
set -eu
cd "$(dirname "$0")/../.."
md=./moondog
py=/usr/bin/python3
N=${MODBUS_BENCH_N:-20000}
work=$(mktemp -d /tmp/moondog-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

for f in libmodbus_server libmodbus_client; do
    cc -O2 -Wall -Wextra -o "$work/$f" "tests/bench/$f.c" $(pkg-config --cflags --libs libmodbus)
done

# wait_file FILE: up to 5 s for FILE to hold a line
wait_file() {
    for _ in $(seq 100); do
        [ -s "$1" ] && return 0
        sleep 0.05
    done
    echo "modbus.sh: timed out waiting for $1" >&2
    exit 1
}

"$work/libmodbus_server" "$work/port" & pids+=($!)
wait_file "$work/port"
port=$(cat "$work/port")

have_pymodbus=0
$py -c 'import pymodbus' 2>/dev/null && have_pymodbus=1

pymodbus_reads() { # PORT COUNT NREGS -> "rps cpu_us"
    $py - "$@" <<'PY'
import sys, time
from pymodbus.client import ModbusTcpClient
port, count, nregs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
c = ModbusTcpClient("127.0.0.1", port=port, timeout=1)
if not c.connect():
    sys.exit("pymodbus: cannot connect")
for _ in range(10):
    c.read_holding_registers(0, nregs, slave=1)
t0, c0 = time.monotonic(), time.process_time()
for i in range(count):
    r = c.read_holding_registers(0, nregs, slave=1)
    if r.isError() or len(r.registers) != nregs:
        sys.exit(f"pymodbus: read {i} failed: {r}")
wall, cpu = time.monotonic() - t0, time.process_time() - c0
print(f"{count / wall:.0f} {cpu / count * 1e6:.2f}")
c.close()
PY
}

md_field() { # KEY < "key value" lines
    awk -v k="$1" '$1 == k { print $2 }'
}

for nregs in 125 2; do
    echo "== $N reads of $nregs registers over loopback TCP, one connection"
    out=$($md tests/bench/modbus_bench.lua reads "$port" "$N" "$nregs")
    md_rps=$(md_field rps <<<"$out"); md_cpu=$(md_field cpu_us <<<"$out")
    read -r c_rps c_cpu < <("$work/libmodbus_client" "$port" "$N" "$nregs")
    awk -v a="$md_rps" -v b="$md_cpu" 'BEGIN { printf "moondog   %6d requests/s, %6.1f us CPU per request\n", a, b }'
    awk -v a="$c_rps" -v b="$c_cpu" 'BEGIN { printf "C         %6d requests/s, %6.1f us CPU per request\n", a, b }'
    if [ $have_pymodbus = 1 ]; then
        read -r p_rps p_cpu < <(pymodbus_reads "$port" "$N" "$nregs")
        awk -v a="$p_rps" -v b="$p_cpu" 'BEGIN { printf "pymodbus  %6d requests/s, %6.1f us CPU per request\n", a, b }'
    fi
    awk -v a="$md_rps" -v b="$c_rps" -v x="$md_cpu" -v y="$c_cpu" 'BEGIN {
        printf "moondog/C: requests/s ratio %.2f, CPU per request ratio %.2f\n", a / b, x / y }'
    if [ $have_pymodbus = 1 ]; then
        awk -v a="$md_rps" -v b="$p_rps" -v x="$md_cpu" -v y="$p_cpu" 'BEGIN {
            printf "moondog/pymodbus: requests/s ratio %.2f, CPU per request ratio %.2f\n", a / b, x / y }'
    fi
done

echo "== moondog buses in parallel (separate connections, one task each, $((N / 4)) reads of 2 registers per bus)"
base=
for buses in 1 2 4; do
    out=$($md tests/bench/modbus_bench.lua buses "$port" "$buses" $((N / 4)) 2)
    rps=$(md_field rps <<<"$out"); cpu=$(md_field cpu_us <<<"$out")
    base=${base:-$rps}
    awk -v n="$buses" -v a="$rps" -v b="$cpu" -v r="$base" 'BEGIN {
        printf "%d bus(es): %6d requests/s (%.2f x one bus), %5.1f us CPU per request\n", n, a, a / r, b }'
done

echo "== read planner: transactions per poll cycle (and cycles/s against the server, 200 cycles each)"
out=$($md tests/bench/modbus_bench.lua planner "$port" 200)
for dev in sdm630 growatt; do
    f() { md_field "${dev}_$1" <<<"$out"; }
    awk -v d="$dev" -v p="$(f points)" -v t="$(f planned)" -v o="$(f per_point)" -v x="$(f extra_regs)" \
        -v cp="$(f cycles_per_s_planned)" -v co="$(f cycles_per_s_per_point)" 'BEGIN {
        printf "%-8s %d points: %d transactions planned vs %d one per point (%.1f x fewer, %d extra registers read); %d vs %d cycles/s (%.1f x)\n",
            d, p, t, o, o / t, x, cp, co, cp / co }'
done

echo "== servers: the C client ($N reads of 2 registers) against moondog modbus serve and libmodbus"
$md modbus serve tcp://127.0.0.1:0 >"$work/serve.url" 2>"$work/serve.log" & pids+=($!)
wait_file "$work/serve.url"
md_port=$(sed 's/.*://' "$work/serve.url")
read -r s_rps s_cpu < <("$work/libmodbus_client" "$md_port" "$N" 2)
read -r l_rps l_cpu < <("$work/libmodbus_client" "$port" "$N" 2)
awk -v a="$s_rps" -v b="$l_rps" 'BEGIN {
    printf "moondog serve %d requests/s; libmodbus server %d requests/s; ratio %.2f\n", a, b, a / b }'
