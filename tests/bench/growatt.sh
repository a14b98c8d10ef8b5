#!/usr/bin/env bash
# tests/bench/growatt.sh: the Growatt proxy against a plain socat relay, in
# the same run (machines are shared and noisy: compare ratios).
#
# A fake datalogger (`moondog growatt logger`) sends N TL-X records as fast
# as the fake cloud (`moondog growatt cloud`) ACKs them (each record once
# the one before was ACKed, as a real ShineWiFi/ShineLAN does), once through
# `moondog growatt proxy` (every record decoded and published to a local
# mosquitto with Home Assistant discovery) and once through
# `socat TCP-LISTEN TCP` (forwarding only: the floor any proxy sits on).
# Printed: records per second, CPU per record of the relay process (from
# /proc/PID/stat, user + system) and the proxy's memory at the end: RSS
# (with the shared libraries' pages), PSS (those shared pages divided among
# the processes that map them) and private dirty (its own heap and stacks).
# The proxy publishes in its default MQTT mode: one JSON state message per
# record (docs/mqtt.md); tests/bench/growatt_parts.lua splits its CPU and
# garbage by stage.
#
# Each relay runs GROWATT_BENCH_RUNS times (default 3), alternating with
# the other, each pair in the same conditions; the verdict line gives the
# median and the range of the pairs' ratios. GROWATT_BENCH_N overrides the
# number of records (default 5000), MOONDOG the binary (./moondog).
set -eu
cd "$(dirname "$0")/../.."
md=${MOONDOG:-./moondog}
RUNS=${GROWATT_BENCH_RUNS:-3}
N=${GROWATT_BENCH_N:-5000}
work=$(mktemp -d /tmp/moondog-growatt-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
first_line() { # file: wait up to 5 s for its first line
    for _ in $(seq 50); do [ -s "$1" ] && break; sleep 0.1; done
    head -1 "$1"
}

mport=$(free_port)
mosquitto -p "$mport" >"$work/mosquitto.log" 2>&1 & pids+=($!)
$md growatt cloud --listen 127.0.0.1:0 >"$work/cloud.out" 2>/dev/null & pids+=($!)
cloud=$(first_line "$work/cloud.out")

run() { # name pid addr: run the logger through addr, print rate and CPU/record of pid
    local name=$1 pid=$2 addr=$3 c0 c1 t0 t1
    c0=$(cpu_ticks "$pid"); t0=$(date +%s%N)
    $md growatt logger --server "$addr" --records "$N" --interval 0 >/dev/null 2>&1
    t1=$(date +%s%N)
    # The decoder (and MQTT) may still work through a backlog after the
    # last byte was forwarded: count its CPU until it is idle (bounded).
    c1=$(cpu_ticks "$pid")
    for _ in $(seq 100); do
        sleep 0.2
        c2=$(cpu_ticks "$pid")
        if [ "$c2" = "$c1" ]; then break; fi
        c1=$c2
    done
    awk -v n="$N" -v c="$((c1 - c0))" -v t="$((t1 - t0))" -v k="$tck" -v name="$name" \
        'BEGIN { printf "%-8s %8.0f records/s  %7.1f us CPU/record\n", name, n / (t / 1e9), c / k / n * 1e6 }'
}

socat_run() { # socat serves one connection and exits: its CPU comes from /usr/bin/time.
    local sport spid t0 t1
    sport=$(free_port)
    /usr/bin/time -f "%U %S" -o "$work/socat.time" \
        socat "TCP-LISTEN:$sport,bind=127.0.0.1,reuseaddr" "TCP:$cloud" & spid=$!
    sleep 0.3
    t0=$(date +%s%N)
    $md growatt logger --server "127.0.0.1:$sport" --records "$N" --interval 0 >/dev/null 2>&1
    t1=$(date +%s%N)
    wait "$spid" 2>/dev/null || true
    awk -v n="$N" -v t="$((t1 - t0))" '{ printf "%-8s %8.0f records/s  %7.1f us CPU/record\n", "socat", n / (t / 1e9), ($1 + $2) / n * 1e6 }' \
        "$work/socat.time"
}

echo "== $N records, $RUNS runs of each, alternating: logger -> relay -> cloud (goal: proxy CPU/record below socat's, RSS under 5 MB)"
for r in $(seq "$RUNS"); do
    $md growatt proxy --listen 127.0.0.1:0 --cloud "$cloud" --mqtt "127.0.0.1:$mport" >"$work/proxy.out" 2>"$work/proxy.log" &
    ppid=$!; pids+=($ppid)
    paddr=$(first_line "$work/proxy.out")
    run moondog "$ppid" "$paddr" | tee "$work/md.txt" | tee -a "$work/md.all"
    if [ "$r" = 1 ]; then
        awk '/^(Rss|Pss|Private_Dirty):/ { v[$1] = $2 } END {
          printf "moondog proxy RSS %d KiB, PSS %d KiB, private dirty %d KiB\n", v["Rss:"], v["Pss:"], v["Private_Dirty:"] }' \
            "/proc/$ppid/smaps_rollup" >"$work/mem.txt"
        # After 1 s without work the engine collects the Lua heap and trims glibc's
        # (core/engine.c): the same figures once the proxy idled 2 s.
        sleep 2
        awk '/^(Rss|Pss|Private_Dirty):/ { v[$1] = $2 } END {
          printf "moondog proxy idle 2 s: RSS %d KiB, PSS %d KiB, private dirty %d KiB\n", v["Rss:"], v["Pss:"], v["Private_Dirty:"] }' \
            "/proc/$ppid/smaps_rollup" >>"$work/mem.txt"
    fi
    # What the proxy decoded and published (SIGUSR1 logs its counters): a
    # decoder more than 1 MB behind the forwarding drops its copy rather than
    # hold bytes, and such records count in neither.
    kill -USR1 "$ppid"
    sleep 0.3
    sed -n 's/.*growatt proxy: datalogger [^:]*: \([0-9]* records\).*, \([0-9]* decoder copies dropped\).*/moondog decoded \1 (\2)/p;
            s/.*growatt proxy: MQTT: \(.*\)/moondog MQTT: \1/p' "$work/proxy.log" >"$work/decoded.txt"
    grep -q "MQTT" "$work/decoded.txt" ||
        echo "moondog MQTT: NO PUBLISHER (the broker did not start or refused): these figures are without MQTT" \
            >>"$work/decoded.txt"
    kill "$ppid" 2>/dev/null || true
    wait "$ppid" 2>/dev/null || true
    socat_run | tee "$work/socat.txt" | tee -a "$work/socat.all"
    awk -v r="$r" 'FNR == 1 { cpu[FILENAME] = $4 } END {
      for (f in cpu) if (f ~ /md.txt/) m = cpu[f]; else s = cpu[f];
      if (s > 0) printf "run %d: moondog %.1f us, socat %.1f us CPU/record: %.2f\n", r, m, s, m / s }' \
        "$work/md.txt" "$work/socat.txt" | tee -a "$work/ratios.txt"
    sed 's/^/  /' "$work/decoded.txt"
done
cat "$work/mem.txt"
# The verdict: the median and range of the same-run ratios (the machine is
# shared and noisy: one run says little).
sort -t: -k3 -n "$work/ratios.txt" | awk -F': ' '{ split($2, a, " "); r[NR] = $3; m[NR] = a[2]; s[NR] = a[5] }
  END {
    n = NR; if (n == 0) exit
    med = n % 2 ? r[(n + 1) / 2] : (r[n / 2] + r[n / 2 + 1]) / 2
    printf "CPU per record, moondog / socat: median %.2f (range %.2f-%.2f, %d runs)\n", med, r[1], r[n], n
  }'
for f in md socat; do
    sort -k4 -n "$work/$f.all" | awk -v f="$f" '{ c[NR] = $4 } END {
      n = NR; med = n % 2 ? c[(n + 1) / 2] : (c[n / 2] + c[n / 2 + 1]) / 2
      printf "%s CPU per record: median %.1f us (range %.1f-%.1f)\n", f == "md" ? "moondog" : "socat", med, c[1], c[n] }'
done
