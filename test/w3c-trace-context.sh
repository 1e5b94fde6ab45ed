#!/bin/sh
# Runs the W3C Trace Context validation suite (shared/conformance/w3c-trace-context,
# unmodified) against the demo's POST /test endpoint, at its default strict level and
# at Trace Context Level 2 (SPEC_LEVEL=2: Level 1's tests and the random flag's).
# The suite is looked up beside the checkout (../shared) or at $MHDCTX_W3C_SUITE.
# Skips (77) when the suite or python3-aiohttp is missing, unless MHDCTX_REQUIRE_W3C=1
# (CI), where that is a failure.
set -u
top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
suite=${MHDCTX_W3C_SUITE:-$top_srcdir/../shared/conformance/w3c-trace-context}
skip() {
    echo "$1"
    [ "${MHDCTX_REQUIRE_W3C:-0}" = 1 ] && exit 1
    exit 77
}
[ -f "$suite/test/test.py" ] || skip "W3C suite not found at $suite"
grep -q "define MHDCTX_HAVE_CURL 1" "$top_builddir/config.h" || skip "built without libcurl"
/usr/bin/python3 -c 'import aiohttp' 2>/dev/null || skip "python3-aiohttp missing"

work=$(mktemp -d)
log="$work/demo.log"
"$top_builddir/demo/mhdctx-demo" --port 0 --trace-context-test --log-level warn >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
port=""
for _ in $(seq 100); do
    port=$(head -n 1 "$log" | sed -n 's/.*"port":\([0-9]*\).*/\1/p')
    [ -n "$port" ] && break
    sleep 0.05
done
[ -n "$port" ] || { echo "demo did not start"; cat "$log"; exit 1; }
# The harness listens on a port of its own; pick a free one.
harness_port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cd "$suite/test" || exit 1
PYTHONDONTWRITEBYTECODE=1 SPEC_LEVEL=2 SERVICE_ENDPOINT="http://127.0.0.1:$port/test" \
    HARNESS_PORT=$harness_port /usr/bin/python3 test.py >"$work/result.txt" 2>&1
status=$?
tail -n 25 "$work/result.txt"
if grep -q '"level":"error"' "$log"; then
    echo "the demo logged errors:"; grep '"level":"error"' "$log"; status=1
fi
exit $status
