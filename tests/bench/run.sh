#!/usr/bin/env bash
# make bench: engine figures, each beside a reference measured in the same
# run (these machines are shared and noisy: compare ratios, not absolutes).
# Every loop is bounded in count.
set -eu
cd "$(dirname "$0")/../.."
md=./moondog
ref=lua5.4
ms_now() { date +%s%N | awk '{ printf "%.3f", $1 / 1e6 }'; }

echo "== task resumes per second (10,000 tasks, each sleeping 0 twenty times)"
md_rate=$($md -e '
  local N, R, done = 10000, 20, 0
  local t0 = os.clock()
  for i = 1, N do md.spawn(function() for _ = 1, R do md.sleep(0) end; done = done + 1 end) end
  while done < N do md.sleep(0.001) end
  print(math.floor(N * (R + 1) / (os.clock() - t0)))')
ref_rate=$($ref -e '
  -- reference: bare coroutines resumed round-robin by a plain Lua loop
  local N, R, live = 10000, 20, {}
  local t0 = os.clock()
  for i = 1, N do live[i] = coroutine.create(function() for _ = 1, R do coroutine.yield() end end) end
  local n = N
  while n > 0 do
    local keep = 0
    for i = 1, n do
      local co = live[i]
      coroutine.resume(co)
      if coroutine.status(co) ~= "dead" then keep = keep + 1; live[keep] = co end
    end
    n = keep
  end
  print(math.floor(N * (R + 1) / (os.clock() - t0)))')
awk -v a="$md_rate" -v b="$ref_rate" 'BEGIN { printf "moondog %d resumes/s (CPU time); plain Lua round-robin %d/s; ratio %.2f\n", a, b, a / b }'

echo "== CPU used by an idle engine over 10 s (one task sleeping)"
cpu=$($md -e 'md.sleep(10); print(os.clock())')
awk -v c="$cpu" 'BEGIN { printf "moondog %.4f s CPU in 10 s = %.3f %% of one core\n", c, c / 10 * 100 }'

echo "== RSS of an idle engine"
rss_of() { # command... ; prints VmRSS in KiB after 0.5 s
    "$@" & local pid=$!
    sleep 0.5
    awk '/VmRSS/ { print $2 }' /proc/$pid/status
    kill $pid 2>/dev/null; wait $pid 2>/dev/null || true
}
md_rss=$(rss_of $md -e 'md.sleep(5)')
ref_rss=$(rss_of $ref -e 'os.execute("sleep 5")')
awk -v a="$md_rss" -v b="$ref_rss" 'BEGIN { printf "moondog %d KiB; lua5.4 interpreter idle %d KiB; ratio %.2f (goal: under 3 MB)\n", a, b, a / b }'

echo "== start-up to exit, 200 runs each"
time_runs() {
    local t0 t1
    t0=$(date +%s%N)
    for _ in $(seq 200); do "$@" >/dev/null; done
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 200 ))
}
md_ns=$(time_runs $md -e '')
ref_ns=$(time_runs $ref -e '')
awk -v a="$md_ns" -v b="$ref_ns" 'BEGIN { printf "moondog -e \x27\x27 %.2f ms; lua5.4 -e \x27\x27 %.2f ms; ratio %.2f (goal: under 10 ms)\n", a / 1e6, b / 1e6, a / b }'

echo
tests/bench/modbus.sh

echo
tests/bench/rct.sh

echo
tests/bench/growatt.sh

echo
echo "== 200 simulated devices polled once a second from one engine (goal: < 5 % of one core, < 20 MB)"
srv_out=$(mktemp)
./moondog modbus serve tcp://127.0.0.1:0 >"$srv_out" 2>/dev/null & srv=$!
for _ in $(seq 100); do [ -s "$srv_out" ] && break; sleep 0.05; done
./moondog tests/bench/poll200.lua "$(head -n1 "$srv_out")" 10
kill $srv; wait $srv 2>/dev/null || true; rm -f "$srv_out"

echo
echo "== SunSpec points decoded per second: codec.decode against point-by-point md.modbus.decode"
./moondog tests/bench/sunspec_codec.lua

echo
./moondog tests/bench/sunspec.lua

echo
./moondog --log-level warn tests/bench/mqtt.lua

echo
echo "== Modbus gateway (site:serve_modbus / moondog.site.gateway) against reading the device directly"
tests/bench/gateway.sh

echo
echo "== a site of 1000 simulated SDM630 meters (issue 10)"
./moondog tests/bench/site1000.lua 20

echo
echo "== export limiting on the shipped scenarios: moondog against open-dynamic-export's and OpenEMS's rules"
./moondog --log-level error tests/bench/export_limit.lua
