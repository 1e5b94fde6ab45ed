#!/bin/sh
# make bench: builds and runs the benchmarks, printing their tables.
# SQL tagging: SQLite in process, PostgreSQL on a throwaway local cluster when the
# server is installed.
set -eu # a step that fails fails make bench: a table left out must not pass unseen
top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
. "$top_srcdir/test/lib.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/mhdctx-bench.XXXXXX")
trap 'stop_pg; rm -rf "$work"' EXIT
if grep -q "define MHDCTX_HAVE_LIBPQ 1" "$top_builddir/config.h" &&
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    ( skip() { echo "$1"; exit 0; }; start_pg "$work" >/dev/null; echo "$pg_uri" >"$work/uri" )
    [ -s "$work/uri" ] && MHDCTX_BENCH_PG=$(cat "$work/uri") && export MHDCTX_BENCH_PG
    pg_work=$work pg_bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    [ "$(id -u)" = 0 ] && pg_as="runuser -u postgres --" || pg_as=""
fi
"$top_builddir/bench/sql_bench"
# The Node peers (Express + AsyncLocalStorage, pino) from the npm registry, pinned by
# bench/node/package-lock.json; without node or the registry their rows are left out.
sh "$top_srcdir/bench/node/install.sh"
export top_builddir top_srcdir
quick=""
[ "${BENCH_QUICK:-0}" = 1 ] && quick=--quick
/usr/bin/python3 "$top_srcdir/bench/micro.py" $quick
# Instructions per request, counted by callgrind: the figure no neighbour can move.
if command -v valgrind >/dev/null 2>&1; then
    requests=1000,3000
    [ -n "$quick" ] && requests=100,300
    /usr/bin/python3 "$top_srcdir/bench/instructions.py" --requests "$requests"
else
    echo "instructions: valgrind missing (apt-get install valgrind)"
fi
# Request overhead against bare MHD (needs wrk and two cores: wrk on CPU 0, servers on 1).
if [ "$(nproc)" -lt 2 ]; then
    echo "load: needs two CPUs (this machine has $(nproc))"
elif command -v wrk >/dev/null 2>&1 && command -v taskset >/dev/null 2>&1; then
    /usr/bin/python3 "$top_srcdir/bench/load.py" \
        --rounds "${BENCH_ROUNDS:-3}" --passes "${BENCH_PASSES:-6}" \
        --seconds "${BENCH_SECONDS:-1}"
    # The same pairs in pool mode below saturation: each connection pauses 1 ms after
    # every answer. Saturated, the pool rows keep their CPU 87-97% busy and p99 follows
    # any added work steeply; this shows the tail a client sees under a lighter load.
    /usr/bin/python3 "$top_srcdir/bench/load.py" --modes pool --think-ms 1 \
        --servers bare-again,bare-spin,none,echo,access,app \
        --rounds "${BENCH_ROUNDS:-3}" --passes "${BENCH_PASSES:-6}" \
        --seconds "${BENCH_SECONDS:-1}"
else
    echo "load: wrk or taskset missing (apt-get install wrk)"
fi
