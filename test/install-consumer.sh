#!/bin/sh
# make install into a temporary prefix, then build examples/minimal.c (the README's
# five-line integration) against it with pkg-config, run it and ask it for a page.
# Used by scripts/test.sh --full.
set -eu
top_srcdir=$(cd "${top_srcdir:-.}" && pwd)
top_builddir=$(cd "${top_builddir:-.}" && pwd)
. "$top_srcdir/test/lib.sh"
work=$(mktemp -d /tmp/mhdctx-install.XXXXXX)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
server=""
make -C "$top_builddir" install prefix="$work/prefix" >/dev/null
export PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig"
cc -std=c11 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L "$top_srcdir/examples/minimal.c" \
    $(pkg-config --define-prefix --cflags --libs mhdctx) -Wl,-rpath,"$work/prefix/lib" -o "$work/minimal"
pass "examples/minimal.c builds against the installed library with pkg-config"
# The header asks GCC to call mhdctx_current() through the GOT, not the PLT (MHDCTX_NOPLT).
printf '#include <mhdctx.h>\nint main(void) { return mhdctx_current() != 0; }\n' >"$work/noplt.c"
cc -std=c11 -Wall -Wextra -Werror -fPIE -pie "$work/noplt.c" \
    $(pkg-config --define-prefix --cflags --libs mhdctx) -o "$work/noplt"
if ! cc --version | grep -q 'Free Software Foundation'; then
    echo "skip: the compiler is not GCC; MHDCTX_NOPLT does nothing there"
elif objdump -d "$work/noplt" | grep -q 'mhdctx_current@plt'; then
    fail "mhdctx_current() is called through the PLT"
else
    pass "mhdctx_current() is called through the GOT"
fi
"$work/minimal" 0 >"$work/log" 2>&1 &
server=$!
for _ in $(seq 100); do
    port=$(head -n 1 "$work/log" | sed -n 's/.*"port":\([0-9]*\).*/\1/p')
    [ -n "$port" ] && break
    sleep 0.05
done
headers=$(curl -s -D - -o /dev/null -H 'X-Request-Id: consumer-1' "http://127.0.0.1:$port/")
echo "$headers" | grep -qi '^X-Request-Id: consumer-1' && pass "it answers with the request id" ||
    fail "no X-Request-Id: $headers"
kill $server; wait $server 2>/dev/null || true
grep '"message":"saying hello"' "$work/log" | grep -q '"request_id":"consumer-1"' &&
    pass "the handler's line carries the request id" || fail "log: $(cat "$work/log")"
finish
