#!/bin/bash
# From a fresh Debian machine to a passing test suite:
#   ./scripts/test.sh          build with -Werror, then make check
#   ./scripts/test.sh --full   also the ASan+UBSan, ThreadSanitizer and valgrind passes (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
full=no
[ "${1:-}" = "--full" ] && full=yes
jobs=$(nproc)
[ "${SKIP_INSTALL:-}" = 1 ] || ./scripts/install-deps.sh
autoreconf -fi >/dev/null 2>&1
# The W3C suite lives beside the checkout (../shared); name it absolutely so that the
# builds below, and make distcheck's copy, all find it.
suite="$(cd .. && pwd)/shared/conformance/w3c-trace-context"
[ -d "$suite" ] && [ -z "${MHDCTX_W3C_SUITE:-}" ] && export MHDCTX_W3C_SUITE="$suite"

totals_pass=0
totals_fail=0
count_results() { # adds the PASS/FAIL/ERROR counts of a test-suite.log
    local log=$1 p f e
    p=$(sed -n 's/^# PASS: *//p' "$log"); f=$(sed -n 's/^# FAIL: *//p' "$log")
    e=$(sed -n 's/^# ERROR: *//p' "$log")
    totals_pass=$((totals_pass + ${p:-0})); totals_fail=$((totals_fail + ${f:-0} + ${e:-0}))
}
# Sanitizer reports written to files (TSAN_OPTIONS=log_path=DIR/sanitizer-reports/report),
# so that one from a process whose exit status no test looks at is seen too.
show_reports() { # dir: prints the report files there; false when there are any
    local files
    files=$(find "$1/sanitizer-reports" -type f 2>/dev/null | sort)
    [ -z "$files" ] && return 0
    for f in $files; do echo "-- $f"; head -n 300 "$f"; done
    return 1
}
run_check() { # dir, suite log name, make arguments...
    local dir=$1 suite=$2; shift 2
    if ! make -C "$dir" -j"$jobs" check TEST_SUITE_LOG="$suite" "$@"; then
        tail -n 200 "$dir/$suite"
        show_reports "$dir" || true
        count_results "$dir/$suite"
        echo "$totals_pass passed, $totals_fail failed"
        exit 1
    fi
    count_results "$dir/$suite"
}

echo "== build (gcc, -Werror) and make check"
mkdir -p build
(cd build && ../configure --enable-werror >/dev/null)
make -C build -j"$jobs" >/dev/null
run_check build test-suite.log
# Results that the issues ask to see in CI's log, not only in test logs.
for log in build/test/w3c-trace-context.log build/test/postgresql.log; do
    echo "-- $log"; tail -n 14 "$log" || true
done

if [ "$full" = yes ]; then
    echo "== style: every C file as .clang-format writes it"
    unformatted=$(find src include test demo bench examples fuzz -name '*.[ch]' | while read -r f; do
        clang-format "$f" | cmp -s - "$f" || echo "$f"; done)
    if [ -n "$unformatted" ]; then
        echo "not clang-format clean (clang-format -i them):"; echo "$unformatted"
        totals_fail=$((totals_fail + 1)); echo "$totals_pass passed, $totals_fail failed"; exit 1
    fi
    totals_pass=$((totals_pass + 1))

    echo "== AddressSanitizer + UndefinedBehaviorSanitizer: make check"
    mkdir -p build-asan
    (cd build-asan && ../configure --enable-werror --enable-sanitizers >/dev/null)
    make -C build-asan -j"$jobs" >/dev/null
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
        run_check build-asan test-suite.log

    echo "== ThreadSanitizer (clang): make check, every MHD threading mode, the demo's too"
    # Reports go to files: halt_on_error fails the test whose process raced (exit 66),
    # and show_reports fails the pass for a racing process nobody checked. Only the
    # third-party races listed in test/tsan.supp are suppressed. Check's timeouts are
    # stretched: TSan makes the daemons several times slower.
    tsan_start=$(date +%s)
    mkdir -p build-tsan
    (cd build-tsan && ../configure CC=clang --enable-werror --enable-sanitizers=thread \
        >/dev/null)
    make -C build-tsan -j"$jobs" >/dev/null
    rm -rf build-tsan/sanitizer-reports && mkdir -p build-tsan/sanitizer-reports
    TSAN_OPTIONS="halt_on_error=1 exitcode=66 suppressions=$PWD/test/tsan.supp log_path=$PWD/build-tsan/sanitizer-reports/report" \
        CK_TIMEOUT_MULTIPLIER=4 run_check build-tsan test-suite.log
    if ! show_reports build-tsan; then
        totals_fail=$((totals_fail + 1)); echo "$totals_pass passed, $totals_fail failed"; exit 1
    fi
    echo "-- ThreadSanitizer pass: $(($(date +%s) - tsan_start)) s, no reports"

    echo "== valgrind: unit tests (CK_FORK=no) and the demo in every mode"
    vg="valgrind -q --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect"
    vg="$vg --errors-for-leak-kinds=definite,indirect --track-origins=yes"
    CK_FORK=no MHDCTX_TEST_WRAPPER="$vg" run_check build test-suite-valgrind.log \
        LOG_COMPILER="$vg"

    echo "== make install + the README's integration built with pkg-config"
    if top_srcdir=. top_builddir=build sh test/install-consumer.sh; then
        totals_pass=$((totals_pass + 1))
    else
        totals_fail=$((totals_fail + 1)); echo "$totals_pass passed, $totals_fail failed"; exit 1
    fi
    echo "== fuzzing: every target ${FUZZ_SECONDS:-60} s under libFuzzer + ASan + UBSan"
    sh fuzz/run.sh "${FUZZ_SECONDS:-60}" || { echo "$totals_pass passed, $((totals_fail + 1)) failed"; exit 1; }
    echo "== benchmark smoke run (seconds, no thresholds: it must not rot)"
    make -C build bench BENCH_ROUNDS=1 BENCH_PASSES=1 BENCH_SECONDS=1 BENCH_QUICK=1 2>&1 | tail -n 60
    echo "== every optional adapter left out: the library, the demo and make check"
    mkdir -p build-minimal
    (cd build-minimal && ../configure --enable-werror --without-libcurl --without-sqlite \
        --without-libpq >/dev/null)
    make -C build-minimal -j"$jobs" >/dev/null
    MHDCTX_REQUIRE_W3C=0 MHDCTX_REQUIRE_OTEL=0 MHDCTX_REQUIRE_PG=0 \
        run_check build-minimal test-suite.log
    echo "== make distcheck"
    make -C build distcheck >build/distcheck.log 2>&1 || { tail -n 80 build/distcheck.log; exit 1; }
    grep -E "^# (TOTAL|PASS|SKIP|FAIL)" build/distcheck.log | tail -n 4
fi
echo "$totals_pass passed, $totals_fail failed"
