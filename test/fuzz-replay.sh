#!/bin/sh
# Replays every fuzz target over its corpus (seeds and regression inputs), built with
# the normal compiler, so that the sanitizer and valgrind passes check them too.
set -u
top_builddir=${top_builddir:-.}
top_srcdir=${top_srcdir:-.}
. "$top_srcdir/test/lib.sh"
for target in request_id traceparent tracestate bearer import sql_tag json_string log_fields; do
    # shellcheck disable=SC2046
    if ${MHDCTX_TEST_WRAPPER:-} "$top_builddir/fuzz/replay_$target" \
        $(find "$top_srcdir/fuzz/corpus/$target" -type f | sort) >/dev/null; then
        pass "fuzz corpus of $target replays clean"
    else
        fail "fuzz corpus of $target"
    fi
done
finish
