# test/lib.sh - helpers shared by the shell tests (sourced, not run).
# Servers listen on 127.0.0.1, on an ephemeral port, and are stopped by their PID.

passed=0
failed=0
demo_pids=""
pass() { echo "ok - $1"; passed=$((passed + 1)); }
fail() { echo "not ok - $1"; failed=$((failed + 1)); }
finish() { # prints the closing line; exit status of the test
    echo "$passed passed, $failed failed"
    [ "$failed" = 0 ]
}

# skip REASON: 77 (skipped), or a failure when the variable named by $require is 1.
skip() {
    echo "$1"
    eval "required=\${${require:-MHDCTX_REQUIRE_NOTHING}:-0}"
    [ "$required" = 1 ] && exit 1
    exit 77
}

# free_port: a port nobody listens on right now, on 127.0.0.1.
free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_demo LOG ARGS...: starts the demo on an ephemeral port; sets $dport and $dpid.
start_demo() {
    log=$1; shift
    "${top_builddir:-.}/demo/mhdctx-demo" --port 0 "$@" >"$log" 2>&1 &
    dpid=$!
    demo_pids="$demo_pids $dpid"
    for _ in $(seq 200); do
        dport=$(head -n 1 "$log" | sed -n 's/.*"port":\([0-9]*\).*/\1/p')
        [ -n "$dport" ] && return 0
        sleep 0.05
    done
    echo "the demo did not start:"; cat "$log"; exit 1
}

stop_demos() {
    for p in $demo_pids; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    demo_pids=""
}

# elapsed_ms COMMAND...: runs it, sets $elapsed (ms).
elapsed_ms() {
    t0=$(date +%s%N)
    "$@"
    elapsed=$(( ($(date +%s%N) - t0) / 1000000 ))
}

# start_pg WORKDIR: a throwaway PostgreSQL cluster in WORKDIR (as the postgres user when
# root, since the server refuses root), on a free port, every statement logged.
# Sets $pg_uri, $pg_log, $pg_bindir; stop it with stop_pg. Skips when not installed.
start_pg() {
    pg_work=$1
    pg_bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$pg_bindir" ] && [ -x "$pg_bindir/initdb" ] || skip "PostgreSQL server not installed"
    chmod 755 "$pg_work"
    pg_as=""
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || skip "no postgres user to run the server as"
        chown postgres "$pg_work"
        pg_as="runuser -u postgres --"
    fi
    pg_port=$(free_port)
    pg_log="$pg_work/server.log"
    $pg_as "$pg_bindir/initdb" -D "$pg_work/data" -U postgres --auth=trust \
        >"$pg_work/initdb.log" 2>&1 || { cat "$pg_work/initdb.log"; exit 1; }
    $pg_as "$pg_bindir/pg_ctl" -D "$pg_work/data" -l "$pg_log" -w -o \
        "-p $pg_port -k $pg_work -c listen_addresses=127.0.0.1 -c log_min_duration_statement=0 -c log_line_prefix='%m [%p] app=%a '" \
        start >/dev/null || { cat "$pg_log"; exit 1; }
    pg_uri="postgresql://postgres@127.0.0.1:$pg_port/postgres"
}

stop_pg() {
    [ -n "${pg_work:-}" ] && $pg_as "$pg_bindir/pg_ctl" -D "$pg_work/data" -m immediate stop \
        >/dev/null 2>&1
}
