#!/usr/bin/env bash
# packaging/test-deb.sh: the Debian package end to end, as CI runs it (root,
# Debian 12): make deb, apt-get install the .deb, moondog --version, the
# example site run the way its unit runs it (ExecStart, from /, as the
# moondog user) until it shows values, moondog check on it, then apt-get
# remove (and purge). systemd need not be PID 1: the unit is not started,
# its command is. TAP output; exit 1 when anything failed.
set -u
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "1..0 # SKIP needs root (apt-get install)"; exit 0; }
command -v dpkg-buildpackage >/dev/null || command -v apt-get >/dev/null \
    || { echo "1..0 # SKIP not a Debian system"; exit 0; }
export DEBIAN_FRONTEND=noninteractive
n=0 fail=0 pid=
log=$(mktemp)
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -f "$log"' EXIT
check() { # description, command...
    local desc=$1; shift
    n=$((n + 1))
    if "$@" >"$log.out" 2>&1; then echo "ok $n - $desc"; else
        echo "not ok $n - $desc"; sed 's/^/# /' "$log.out"; fail=1; fi
    rm -f "$log.out"
}

rm -f moondog_*.deb
check "make deb builds moondog_<version>_<arch>.deb" make deb
deb=$(ls moondog_*_*.deb 2>/dev/null | head -1)
check "the package is named moondog_<version>_<arch>.deb" \
    test "$deb" = "moondog_$(sed -n 's/^VERSION := //p' Makefile)_$(dpkg --print-architecture).deb"
check "apt-get install ./$deb" apt-get install -y -qq "./$deb"
check "moondog --version" sh -c "cd / && /usr/bin/moondog --version | grep -q '^moondog '"
check "the moondog user exists, in dialout" sh -c "id moondog && id -nG moondog | grep -qw dialout"
check "man moondog" sh -c "MANWIDTH=80 man moondog 2>/dev/null | grep -q 'moondog check SITE.lua'"
check "the unit, the example site, the docs" test -f /lib/systemd/system/moondog@.service -a \
    -f /etc/moondog/site.lua -a -f /usr/share/doc/moondog/api.md -a -f /usr/share/doc/moondog/README.md
check "moondog check /etc/moondog/site.lua" sh -c "cd / && runuser -u moondog -- moondog check /etc/moondog/site.lua"

# ExecStart of moondog.service, run from / as the moondog user, with the
# directories systemd would make (StateDirectory=, RuntimeDirectory=).
state=$(mktemp -d) run=$(mktemp -d)
chown moondog:moondog "$state" "$run"
exec_start=$(sed -n 's/^ExecStart=//p' /lib/systemd/system/moondog.service)
# setpriv execs (runuser would stay as the parent), so $pid is the engine.
(cd / && exec env STATE_DIRECTORY="$state" RUNTIME_DIRECTORY="$run" MOONDOG_ATTACH="$run/site.sock" \
    setpriv --reuid=moondog --regid=moondog --init-groups $exec_start) >"$log" 2>&1 &
pid=$!
for _ in $(seq 300); do grep -qE 'grid -?[0-9.]+ W' "$log" && break; sleep 0.1; done
check "the example site runs as its unit would and shows values" grep -qE 'grid -?[0-9.]+ W, pv -?[0-9.]+ W' "$log"
check "it runs as the moondog user, in dialout" sh -c "ps -o user= -p $pid | grep -qx moondog && \
    grep -q \"^Groups:.*\\b$(getent group dialout | cut -d: -f3)\\b\" /proc/$pid/status"
kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=
sed 's/^/# /' "$log" | head -20
rm -rf "$state" "$run"

check "apt-get remove -y moondog" apt-get remove -y -qq moondog
check "the binary is gone" test ! -e /usr/bin/moondog
check "apt-get purge removes /etc/moondog/site.lua" sh -c "apt-get purge -y -qq moondog && test ! -e /etc/moondog/site.lua"
echo "1..$n"
exit $fail
