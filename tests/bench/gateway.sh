#!/usr/bin/env bash
# The Modbus gateway (moondog.site.gateway) against reading the device
# directly, with the same client (tests/bench/libmodbus_client.c), every
# process on loopback, in the same run:
#   - a cache miss (max_age 0: every request goes to the device): requests/s
#     and latency, goal: latency at most 1.1x direct;
#   - a cache hit (max_age 60): requests/s against direct;
#   - 10 clients at once on a miss-only gateway: requests that reached the
#     device per client request (merging of identical requests in flight).
# The device is tests/bench/libmodbus_server.c. Bounded: N requests each.
set -eu
cd "$(dirname "$0")/../.."
N=${N:-20000}
work=$(mktemp -d /tmp/moondog-gwbench.XXXXXX)
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
wait_file() {
    for _ in $(seq 200); do [ -s "$1" ] && return 0; sleep 0.05; done
    echo "gateway.sh: timed out waiting for $1" >&2; exit 1
}
"$work/libmodbus_server" "$work/dev.port" & pids+=($!)
wait_file "$work/dev.port"
dev=$(cat "$work/dev.port")

gateway() { # MAX_AGE NAME -> starts a gateway; its port in $port, its pid in $gpid
    ./moondog tests/bench/gateway_run.lua "tcp://127.0.0.1:$dev?unit=1" "$1" "$work/$2.port" \
        2>"$work/$2.log" &
    gpid=$!
    pids+=($gpid)
    wait_file "$work/$2.port"
    port=$(cat "$work/$2.port")
}
gateway 0 miss; miss=$port
gateway 60 hit; hit=$port

read -r d_rps d_cpu < <("$work/libmodbus_client" "$dev" "$N" 10)
read -r m_rps m_cpu < <("$work/libmodbus_client" "$miss" "$N" 10)
read -r h_rps h_cpu < <("$work/libmodbus_client" "$hit" "$N" 10)
awk -v d="$d_rps" -v m="$m_rps" -v h="$h_rps" 'BEGIN {
  printf "direct     %7d req/s  latency %6.1f us\n", d, 1e6 / d
  printf "miss       %7d req/s  latency %6.1f us  = %.2fx direct (goal: at most 1.1x; a miss is two hops)\n", m, 1e6 / m, d / m
  printf "hit        %7d req/s  latency %6.1f us  = %.2fx direct\n", h, 1e6 / h, d / h
}'

# A device that takes 2 ms to answer (real inverters take 10-100 ms): the
# gateway's cost on a miss against the device's own time.
./moondog tests/bench/gateway_device.lua 2 "$work/slow.port" & pids+=($!)
wait_file "$work/slow.port"
slow=$(cat "$work/slow.port")
dev_fast=$dev; dev=$slow
gateway 0 slowmiss; slowmiss=$port
dev=$dev_fast
M=$((N / 20))
read -r sd_rps _ < <("$work/libmodbus_client" "$slow" "$M" 10)
read -r sm_rps _ < <("$work/libmodbus_client" "$slowmiss" "$M" 10)
awk -v d="$sd_rps" -v m="$sm_rps" 'BEGIN {
  printf "2 ms device: direct %5.2f ms, through the gateway on a miss %5.2f ms = %.2fx direct (goal: at most 1.1x)\n", 1e3 / d, 1e3 / m, d / m
}'

# 10 clients at once on a fresh miss-only gateway
gateway 0 many; many=$port
cpids=()
for i in $(seq 10); do
    "$work/libmodbus_client" "$many" $((N / 10)) 10 >"$work/c$i.out" & cpids+=($!)
done
for p in "${cpids[@]}"; do wait "$p"; done
kill "$gpid"; wait "$gpid" 2>/dev/null || true
awk -v n="$N" '/^gateway/ { printf "10 clients: %d requests, %d reached the device (%.2f per client request), %d merged\n", $3, $7, $7 / $3, $9 }' "$work/many.log"
