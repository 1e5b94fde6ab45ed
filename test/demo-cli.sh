#!/bin/sh
# The demo's command line: --help, bad flags (usage on stderr, exit 2), and a clean stop
# on SIGINT as on SIGTERM.
set -u
top_builddir=${top_builddir:-.}
. "${top_srcdir:-.}/test/lib.sh"
demo="$top_builddir/demo/mhdctx-demo"
work=$(mktemp -d /tmp/mhdctx-cli.XXXXXX)
trap 'stop_demos; rm -rf "$work"' EXIT

"$demo" --help >"$work/out" 2>"$work/err"
[ $? = 0 ] && grep -q "^usage: mhdctx-demo" "$work/out" && [ ! -s "$work/err" ] &&
    pass "--help: usage on stdout, exit 0" || fail "--help"
for args in "--bogus" "--port 70000" "--port -1" "--port abc" "--mode nope" "--threads 0" \
    "--log-level loud" "--upstream ftp://x" "--deadline-ms x" "--db mysql://x" "extra"; do
    # shellcheck disable=SC2086
    "$demo" $args >"$work/out" 2>"$work/err"
    code=$?
    if [ "$args" = "--db mysql://x" ]; then # a flag that parses, a store that does not open
        [ $code = 1 ] && grep -q '"cannot open the database"' "$work/out" &&
            pass "$args: an error line, exit 1" || fail "$args: exit $code"
        continue
    fi
    [ $code = 2 ] && grep -q "usage: mhdctx-demo" "$work/err" && [ ! -s "$work/out" ] &&
        pass "$args: usage on stderr, exit 2" || fail "$args: exit $code"
done
start_demo "$work/demo.log"
# A second demo on the same port cannot listen: an error line, exit 1, and (under
# valgrind, when it is there and the build has no sanitizer) its worker threads stopped
# and everything freed first.
vg=""
command -v valgrind >/dev/null 2>&1 && ! grep -qa "__asan_init\|__tsan_init" "$demo" &&
    vg="valgrind -q --error-exitcode=99 --leak-check=full --show-leak-kinds=all --errors-for-leak-kinds=all"
# shellcheck disable=SC2086
$vg "$demo" --port "$dport" >"$work/out" 2>"$work/err"
code=$?
[ $code = 1 ] && grep -q '"cannot start the server"' "$work/out" &&
    pass "a port in use: an error line, exit 1${vg:+, nothing left (valgrind)}" ||
    { cat "$work/err"; fail "a port in use: exit $code"; }
kill -INT "$dpid"
wait "$dpid"
code=$?
demo_pids=""
[ $code = 0 ] && tail -n 1 "$work/demo.log" | grep -q '"message":"stopped"' &&
    pass "SIGINT stops the demo cleanly" || fail "SIGINT: exit $code"
finish
