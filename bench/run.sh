#!/bin/sh
# make bench: builds and runs the benchmarks, printing their tables.
# SQL tagging: SQLite in process, PostgreSQL on a throwaway local cluster when the
# server is installed.
set -u
top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
. "$top_srcdir/test/lib.sh"
work=$(mktemp -d /tmp/mhdctx-bench.XXXXXX)
trap 'stop_pg; rm -rf "$work"' EXIT
if grep -q "define MHDCTX_HAVE_LIBPQ 1" "$top_builddir/config.h" &&
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    ( skip() { echo "$1"; exit 0; }; start_pg "$work" >/dev/null; echo "$pg_uri" >"$work/uri" )
    [ -s "$work/uri" ] && MHDCTX_BENCH_PG=$(cat "$work/uri") && export MHDCTX_BENCH_PG
    pg_work=$work pg_bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    [ "$(id -u)" = 0 ] && pg_as="runuser -u postgres --" || pg_as=""
fi
"$top_builddir/bench/sql_bench"
