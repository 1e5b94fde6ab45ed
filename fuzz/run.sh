#!/bin/sh
# fuzz/run.sh [SECONDS]: builds every fuzz target with clang's libFuzzer, ASan and UBSan,
# runs each for SECONDS (default 60) from the seed corpus, prints executions per target.
# A crash fails the run; its input is left in build-fuzz/<target>/ - copy it into
# fuzz/corpus/<target>/ so that `make check` replays it from then on.
set -eu
cd "$(dirname "$0")/.."
seconds=${1:-60}
out=build-fuzz
mkdir -p "$out"
srcs=$(ls src/*.c | grep -v -e curl_adapter -e sqlite_adapter -e pq_adapter)
flags="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Iinclude -Isrc"
libs=$(pkg-config --cflags --libs libmicrohttpd jansson uuid)
status=0
printf '%-14s %14s %10s\n' target executions result
for target in request_id traceparent tracestate bearer import sql_tag json_string log_fields; do
    # shellcheck disable=SC2086
    clang $flags -o "$out/fuzz_$target" "fuzz/fuzz_$target.c" $srcs $libs -pthread
    work="$out/$target"
    mkdir -p "$work"
    if (cd "$work" && ASAN_OPTIONS=detect_leaks=1 "../fuzz_$target" -max_total_time="$seconds" \
        -print_final_stats=1 -timeout=10 -rss_limit_mb=1024 . "../../fuzz/corpus/$target" \
        >log.txt 2>&1); then
        result=ok
    else
        result=CRASH
        status=1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log.txt" | tail -n 1)
    printf '%-14s %14s %10s\n' "$target" "${runs:-?}" "$result"
    [ "$result" = ok ] || tail -n 40 "$work/log.txt"
done
exit $status
