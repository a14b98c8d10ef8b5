#!/usr/bin/env bash
# make install into a temporary DESTDIR; the installed moondog must find its
# Lua library and tools without the source tree. TAP output.
set -u
cd "$(dirname "$0")/../.."
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
n=0 fail=0
check() { # description, command...
    local desc=$1; shift
    n=$((n + 1))
    if "$@" >/dev/null 2>&1; then echo "ok $n - $desc"; else echo "not ok $n - $desc"; fail=1; fi
}
make -s install DESTDIR="$dest" PREFIX=/opt/md >/dev/null
bin=$dest/opt/md/bin/moondog
check "binary installed" test -x "$bin"
check "library installed" test -f "$dest/opt/md/share/moondog/lua/moondog/init.lua"
# Run from an unrelated directory so nothing resolves through the source tree.
check "installed moondog loads its library" \
    sh -c "cd / && '$bin' -e 'assert(md.paths.home:find(\"/opt/md/share/moondog\"))'"
check "installed tools run" sh -c "cd / && '$bin' test --help 2>&1 | grep -q 'usage: moondog test'"
exit $fail
