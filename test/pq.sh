#!/bin/sh
# Runs test/check_pq (the libpq adapter) against a throwaway PostgreSQL cluster.
# Skips (77) without PostgreSQL or libpq, unless MHDCTX_REQUIRE_PG=1 (CI).
set -u
top_builddir=${top_builddir:-.}
. "${top_srcdir:-.}/test/lib.sh"
require=MHDCTX_REQUIRE_PG
[ -x "$top_builddir/test/check_pq" ] || skip "built without libpq or Check"
work=$(mktemp -d /tmp/mhdctx-pq.XXXXXX)
trap 'stop_pg; rm -rf "$work"' EXIT
start_pg "$work"
MHDCTX_TEST_PG_URI=$pg_uri "$top_builddir/test/check_pq"
