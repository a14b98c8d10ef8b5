#!/usr/bin/env bash
# tests/run.sh BUILD_DIR CMOCKA_BINARIES... - run every test and print one
# closing "N passed, N failed, N skipped" line. Called by `make test`.
#
# Order: the cmocka drivers (plain, then under valgrind unless this is a
# sanitizer build), the Lua behaviour tests under moondog itself (test_*.lua,
# then the regression tests regress/<issue>-<slug>.lua; the MQTT ones once
# more on libmosquitto), then the
# shell integration tests (tests/sh/test_*.sh, TAP output). Exit status 1
# when anything failed.
set -u
cd "$(dirname "$0")/.."
build=$1; shift
passed=0 failed=0 skipped=0
moondog=./moondog

count_cmocka() { # cmocka prints "[  PASSED  ] N test(s)." and "[  FAILED  ] N test(s)"
    local out=$1 rc=$2 p f
    p=$(grep -oE '^\[  PASSED  \] [0-9]+' <<<"$out" | grep -oE '[0-9]+$' || true)
    f=$(grep -oE '^\[  FAILED  \] [0-9]+' <<<"$out" | grep -oE '[0-9]+$' || true)
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
    if [ "$rc" != 0 ] && [ "${f:-0}" = 0 ]; then failed=$((failed + 1)); fi
}

count_tap() { # "ok ..." / "not ok ..." / "ok ... # SKIP ..."
    local out=$1 rc=$2 p f s
    s=$(grep -cE '^ok .*# SKIP' <<<"$out" || true)
    p=$(grep -cE '^ok ' <<<"$out" || true)
    f=$(grep -cE '^not ok ' <<<"$out" || true)
    passed=$((passed + p - s)); skipped=$((skipped + s)); failed=$((failed + f))
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
        echo "not ok - exited with status $rc without reporting a failure"
        failed=$((failed + 1))
    fi
}

section() { printf '\n== %s\n' "$1"; }

for bin in "$@"; do
    section "$bin"
    out=$(timeout 300 "$bin" 2>&1); rc=$?
    echo "$out"; count_cmocka "$out" "$rc"
    if [[ "$build" != *asan* ]] && command -v valgrind >/dev/null; then
        section "$bin under valgrind"
        out=$(timeout 600 valgrind -q --error-exitcode=99 --leak-check=full \
              --errors-for-leak-kinds=definite "$bin" 2>&1); rc=$?
        echo "$out"; count_cmocka "$out" "$rc"
    fi
done

for file in tests/lua/test_*.lua tests/lua/regress/*.lua; do
    [ -e "$file" ] || continue
    section "$file"
    out=$(timeout 600 "$moondog" test "$file" 2>&1); rc=$?
    echo "$out"; count_tap "$out" "$rc"
done

# The MQTT tests again on libmosquitto (MOONDOG_MQTT_LIB=mosquitto, the way
# back from the plain client, core/mqtt_plain.c), which also serves TLS and
# MQTT 5. The 30 s outage test runs on the default client only.
for file in tests/lua/test_mqtt_*.lua tests/lua/regress/17-mqtt-*.lua; do
    [ -e "$file" ] || continue
    [[ "$file" == */test_mqtt_outage.lua ]] && continue
    section "$file with MOONDOG_MQTT_LIB=mosquitto"
    out=$(MOONDOG_MQTT_LIB=mosquitto timeout 600 "$moondog" test "$file" 2>&1); rc=$?
    echo "$out"; count_tap "$out" "$rc"
done

if [[ "$build" != *asan* ]] && command -v valgrind >/dev/null; then
    # The engine itself under valgrind: tasks, waits, cancel, shutdown.
    section "tests/lua/test_tasks.lua under valgrind"
    out=$(timeout 900 valgrind -q --error-exitcode=99 --leak-check=full \
          --errors-for-leak-kinds=definite "$moondog" test tests/lua/test_tasks.lua 2>&1); rc=$?
    echo "$out" | grep -vE '^ok ' ; count_tap "$(grep -E '^(not )?ok ' <<<"$out" | sed 's/^/valgrind /; s/^valgrind not ok/not ok/; s/^valgrind ok/ok/')" "$rc"
fi

for script in tests/sh/test_*.sh; do
    [ -e "$script" ] || continue
    section "$script"
    out=$(timeout 600 bash "$script" "$moondog" 2>&1); rc=$?
    echo "$out"; count_tap "$out" "$rc"
done

echo
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
