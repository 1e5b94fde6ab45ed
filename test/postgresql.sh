#!/bin/sh
# The demo against a real PostgreSQL server: a throwaway cluster in a temporary
# directory, run as a non-root user on a free port with log_min_duration_statement=0.
# Shows from the server's side that the request id reached it (statement log and
# pg_stat_activity during pg_sleep), and that the server cancels a statement at the
# request's deadline. Skips (77) without PostgreSQL unless MHDCTX_REQUIRE_PG=1 (CI).
set -u
top_builddir=${top_builddir:-.}
. "${top_srcdir:-.}/test/lib.sh"
require=MHDCTX_REQUIRE_PG
grep -q "define MHDCTX_HAVE_LIBPQ 1" "$top_builddir/config.h" || skip "built without libpq"
work=$(mktemp -d /tmp/mhdctx-pg.XXXXXX)
trap 'stop_demos; stop_pg; rm -rf "$work"' EXIT
start_pg "$work"
uri=$pg_uri
psql() { "$pg_bindir/psql" -X -q -t -A -d "$uri" -c "$1"; }

# 1. A tagged query: the statement log names the request.
start_demo "$work/demo.log" --db "$uri"
body=$(curl -s -H 'X-Request-Id: pg-req-users-7' "http://127.0.0.1:$dport/users/7")
echo "$body" | grep -q '"name":"Grace Hopper"' && pass "GET /users/7 from PostgreSQL" ||
    fail "GET /users/7 from PostgreSQL: $body"
sleep 0.3
line=$(grep "request_id='pg-req-users-7'" "$pg_log" | head -n 1)
[ -n "$line" ] && pass "the server's statement log carries the request's tag" ||
    fail "no statement log line with request_id='pg-req-users-7'"
echo "server log: $line"
echo "$line" | grep -q "route='%2Fusers%2F%7Bid%7D'" && echo "$line" | grep -q "traceparent='00-" &&
    echo "$line" | grep -q "framework='mhdctx%2F" &&
    pass "the tag has framework, route and traceparent" || fail "tag keys missing: $line"

# 2. pg_stat_activity shows the tag while the statement runs.
curl -s -o /dev/null -H 'X-Request-Id: pg-req-sleep' "http://127.0.0.1:$dport/slow?ms=3000" &
cpid=$!
seen=""
for _ in $(seq 40); do
    seen=$(psql "SELECT query FROM pg_stat_activity WHERE query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()")
    case "$seen" in *"request_id='pg-req-sleep'"*) break ;; esac
    sleep 0.05
done
echo "pg_stat_activity.query: $seen"
case "$seen" in
*"request_id='pg-req-sleep'"*) pass "pg_stat_activity.query carries the tag during pg_sleep" ;;
*) fail "pg_stat_activity did not show the tag: $seen" ;;
esac
# The lookup has a connection of its own: the sleep holds up neither it nor MHD's thread.
elapsed_ms curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$dport/users/7" >"$work/code"
[ "$(cat "$work/code")" = 200 ] && [ "$elapsed" -lt 1000 ] &&
    pass "GET /users/7 during pg_sleep: 200 after $elapsed ms" ||
    fail "GET /users/7 during pg_sleep: $(cat "$work/code") after $elapsed ms"
wait $cpid

# A stop during a long statement cancels it (the request's deadline was sent with it):
# the demo exits at once instead of waiting for the statement to end.
curl -s -o /dev/null -H 'X-Request-Id: pg-req-stop' "http://127.0.0.1:$dport/slow?ms=20000" &
cpid=$!
sleep 0.5
elapsed_ms stop_demos
wait $cpid
[ "$elapsed" -lt 3000 ] && pass "SIGTERM during a 10 s statement: the demo exits after $elapsed ms" ||
    fail "SIGTERM during a 10 s statement: the demo exits after $elapsed ms"

# 3. Deadline: the server cancels the statement; the demo answers 504 well under a second.
start_demo "$work/demo-deadline.log" --db "$uri" --deadline-ms 300
elapsed_ms curl -s -o "$work/504.json" -w '%{http_code}' -H 'X-Request-Id: pg-req-deadline' \
    "http://127.0.0.1:$dport/slow?ms=5000" >"$work/code"
code=$(cat "$work/code")
[ "$code" = 504 ] && [ "$elapsed" -lt 1000 ] &&
    pass "deadline 300 ms: 504 after $elapsed ms" || fail "deadline: $code after $elapsed ms"
grep -q '"request_id":"pg-req-deadline"' "$work/504.json" && pass "504 body has the request id" ||
    fail "504 body: $(cat "$work/504.json")"
sleep 0.3
grep -q "canceling statement due to statement timeout" "$pg_log" &&
    grep "canceling statement due to statement timeout" -A1 "$pg_log" | grep -q "pg-req-deadline" &&
    pass "PostgreSQL itself canceled the statement at the deadline" ||
    fail "no statement_timeout cancel for pg-req-deadline in the server log"
grep '"request_id":"pg-req-deadline"' "$work/demo-deadline.log" | grep '"message":"request completed"' |
    grep -q '"outcome":"timeout"' && pass "access line says outcome timeout" ||
    fail "access line of pg-req-deadline has no outcome timeout"
finish
