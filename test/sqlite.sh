#!/bin/sh
# The demo on SQLite, its default store: a file database created and seeded at start,
# tagged queries in the statement log (SQLite's trace hook), and the request's deadline
# stopping a statement through SQLite's progress handler.
set -u
top_builddir=${top_builddir:-.}
. "${top_srcdir:-.}/test/lib.sh"
grep -q "define MHDCTX_HAVE_SQLITE 1" "$top_builddir/config.h" || skip "built without SQLite"
work=$(mktemp -d /tmp/mhdctx-sqlite.XXXXXX)
trap 'stop_demos; rm -rf "$work"' EXIT

start_demo "$work/demo.log" --db "sqlite:$work/demo.db"
base="http://127.0.0.1:$dport"
body=$(curl -s -H 'X-Request-Id: sq-users-42' "$base/users/42")
echo "$body" | grep -q '"name":"Alan Turing"' && pass "GET /users/42 from a new SQLite file" ||
    fail "GET /users/42: $body"
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/users/404")
[ "$code" = 404 ] && pass "unknown user is 404" || fail "unknown user: $code"

# A slow statement (run by a worker) holds neither a lookup nor MHD's only thread: they
# used to share one connection and its lock. The statement takes the time asked.
(elapsed_ms curl -s -o /dev/null -w '%{http_code}' "$base/slow?ms=2000" >"$work/slow"
    echo "$elapsed" >"$work/slow_ms") &
spid=$!
sleep 0.3
elapsed_ms curl -s -o /dev/null -w '%{http_code}' "$base/users/7" >"$work/code"
[ "$(cat "$work/code")" = 200 ] && [ "$elapsed" -lt 1000 ] &&
    pass "GET /users/7 during a 2 s statement: 200 after $elapsed ms" ||
    fail "GET /users/7 during a 2 s statement: $(cat "$work/code") after $elapsed ms"
wait $spid
slow_ms=$(cat "$work/slow_ms")
[ "$(cat "$work/slow")" = 200 ] && [ "$slow_ms" -lt 2600 ] &&
    pass "GET /slow?ms=2000: 200 after $slow_ms ms" ||
    fail "GET /slow?ms=2000: $(cat "$work/slow") after $slow_ms ms"
stop_demos
line=$(grep '"message":"sql statement completed"' "$work/demo.log" | grep '"request_id":"sq-users-42"')
echo "statement log: $line"
echo "$line" | grep -q "request_id='sq-users-42'" && echo "$line" | grep -q '"duration_ms":' &&
    pass "statement log line: the tagged SQL, duration_ms and the request's fields" ||
    fail "no tagged statement line for sq-users-42"

# Start again on the same file: the table exists, the seed is not duplicated.
start_demo "$work/demo2.log" --db "sqlite:$work/demo.db" --deadline-ms 300
body=$(curl -s "http://127.0.0.1:$dport/users/1")
echo "$body" | grep -q '"name":"Ada Lovelace"' && pass "an existing database is reused" ||
    fail "reuse: $body"
elapsed_ms curl -s -o "$work/504.json" -w '%{http_code}' -H 'X-Request-Id: sq-deadline' \
    "http://127.0.0.1:$dport/slow?ms=5000" >"$work/code"
[ "$(cat "$work/code")" = 504 ] && [ "$elapsed" -lt 1000 ] &&
    pass "deadline 300 ms: 504 after $elapsed ms (statement interrupted)" ||
    fail "deadline: $(cat "$work/code") after $elapsed ms"
stop_demos
grep '"request_id":"sq-deadline"' "$work/demo2.log" | grep -q '"deadline_exceeded":true' &&
    grep '"request_id":"sq-deadline"' "$work/demo2.log" | grep '"message":"request completed"' |
    grep -q '"outcome":"timeout"' && pass "the access line says outcome timeout" ||
    fail "sq-deadline lines: $(grep sq-deadline "$work/demo2.log")"
finish
