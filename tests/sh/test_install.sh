#!/usr/bin/env bash
# make install into a temporary DESTDIR; the installed moondog must find its
# Lua library and tools without the source tree, the systemd units must pass
# `systemd-analyze verify` without a warning, the man page must render
# without warnings, the docs and the example site must be there, and the
# installed example site must run from / and show values. TAP output.
set -u
cd "$(dirname "$0")/../.."
dest=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dest"' EXIT
n=0 fail=0
check() { # description, command...
    local desc=$1; shift
    n=$((n + 1))
    if "$@" >/dev/null 2>&1; then echo "ok $n - $desc"; else echo "not ok $n - $desc"; fail=1; fi
}
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
make -s install DESTDIR="$dest" PREFIX=/opt/md >/dev/null
bin=$dest/opt/md/bin/moondog
share=$dest/opt/md/share
check "binary installed" test -x "$bin"
check "library installed" test -f "$share/moondog/lua/moondog/init.lua"
# Run from an unrelated directory so nothing resolves through the source tree.
check "installed moondog loads its library" \
    sh -c "cd / && '$bin' -e 'assert(md.paths.home:find(\"/opt/md/share/moondog\"))'"
check "installed tools run" sh -c "cd / && '$bin' test --help 2>&1 | grep -q 'usage: moondog test'"

for f in man/man1/moondog.1 doc/moondog/README.md doc/moondog/api.md doc/moondog/site.md \
         doc/moondog/control.md doc/moondog/mqtt.md doc/moondog/devices.md \
         doc/moondog/examples/site.lua doc/moondog/examples/secrets; do
    check "installed $f" test -s "$share/$f"
done
check "units and sysusers.d file installed" test -f "$dest/opt/md/lib/systemd/system/moondog@.service" -a \
    -f "$dest/opt/md/lib/systemd/system/moondog.service" -a -f "$dest/opt/md/lib/sysusers.d/moondog.conf"
check "the example site installed as /etc/moondog/site.lua" cmp packaging/site.lua "$dest/etc/moondog/site.lua"
check "the units run the installed binary" grep -q '^ExecStart=/opt/md/bin/moondog /etc/moondog/%i.lua$' \
    "$dest/opt/md/lib/systemd/system/moondog@.service"
check "the API reference has help()'s text" grep -q 'modbus.open(url \[, opts\]) -> bus, or nil, err, code' \
    "$share/doc/moondog/api.md"

# man -l renders the page; any warning from groff fails.
if command -v man >/dev/null; then
    check "man -l renders moondog.1 without warnings" \
        sh -c "out=\$(MANWIDTH=80 man --warnings -l '$share/man/man1/moondog.1' 2>&1 >/dev/null); [ -z \"\$out\" ]"
    check "the man page has every --help option" sh -c "page=\$(MANWIDTH=200 man -l '$share/man/man1/moondog.1' \
        2>/dev/null); for o in --log-level --log-file --simulated-time --version 'check SITE.lua'; do \
        echo \"\$page\" | grep -q -- \"\$o\" || exit 1; done"
else
    skip "man -l renders moondog.1 without warnings" "man is not installed"
    skip "the man page has every --help option" "man is not installed"
fi

# The README's command table and --help have the same commands (--help is
# the source of the man page).
check "every command of --help is in the README's command table" sh -c "'$bin' --help | \
    sed -nE 's/^(usage:|      ) (moondog \\[options\\] [^ ]+( [^ ]+)?) .*/\\2/p' | while read -r c; do \
    grep -qF -- \"\$c\" README.md || { echo \"missing: \$c\" >&2; exit 1; }; done"

# systemd-analyze verify: the template as instance moondog@home, with
# ExecStart pointing into DESTDIR (verify checks that the binary exists).
if command -v systemd-analyze >/dev/null; then
    mkdir "$dest/verify"
    for u in moondog@ moondog; do
        sed "s|/opt/md/bin/moondog|$bin|g" "$dest/opt/md/lib/systemd/system/$u.service" \
            > "$dest/verify/${u/@/@home}.service"
    done
    check "systemd-analyze verify passes without a warning" sh -c "out=\$(MANPATH='$share/man' \
        systemd-analyze verify '$dest/verify/moondog@home.service' '$dest/verify/moondog.service' 2>&1) \
        && [ -z \"\$out\" ] || { echo \"\$out\" >&2; exit 1; }"
else
    skip "systemd-analyze verify passes without a warning" "systemd is not installed (apt-get install systemd)"
fi

# The installed example site, run from / as a service would, shows values
# (simulated devices); stopped as soon as it did (at most 30 s).
log=$dest/site.log
(cd / && MOONDOG_ATTACH="$dest/site.sock" exec "$bin" "$dest/etc/moondog/site.lua") >"$log" 2>&1 &
pid=$!
for _ in $(seq 300); do grep -qE 'grid -?[0-9.]+ W, pv -?[0-9.]+ W' "$log" && break; sleep 0.1; done
check "the installed example site runs from / and shows values" grep -qE 'grid -?[0-9.]+ W, pv -?[0-9.]+ W' "$log"
kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=
check "moondog check passes the installed example site" sh -c "cd / && '$bin' check '$dest/etc/moondog/site.lua'"
exit $fail
