#!/usr/bin/env bash
# Runs the whole suite: unit tests (cmocka) and integration tests (real
# payguard and mockrail processes, Node's test runner and the Stripe SDK),
# first in the release build, then in the ASan+UBSan build. Ends with one line
# "N passed, N failed".
#   tools/test.sh                    both modes, unit + integration
#   tools/test.sh --unit-only MODE   unit tests of one mode
#   MODES="asan" tools/test.sh       pick the modes: release, asan, tsan, or
#                                    valgrind (the release build under memcheck)
#   IT_FILES="a.test.mjs ..."        only these integration files (tests/integration/)
set -uo pipefail
cd "$(dirname "$0")/.."

modes=${MODES:-"release asan"}
unit_only=0
if [ "${1:-}" = "--unit-only" ]; then
    unit_only=1
    modes=${2:-release}
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:exitcode=86}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

# TSan and valgrind reports go to files in here, whatever process made them
# (payguard, mockrail, a CLI verb, one killed mid-test): any file is a failure.
reports=$(mktemp -d /tmp/payguard-reports.XXXXXX)
trap 'rm -rf "$reports"' EXIT
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:exitcode=66:second_deadlock_stack=1}:suppressions=$PWD/tools/tsan.supp:log_path=$reports/tsan"
export VALGRIND_LOG_DIR=$reports

# Prints the reports left since the last call; true when there were any.
sanitizer_reports() {
    local f found=1
    for f in "$reports"/tsan.* "$reports"/*.vglog; do
        [ -s "$f" ] || continue
        found=0
        echo "--- $(basename "$f")"
        head -c 20000 "$f"
    done
    rm -f "$reports"/tsan.* "$reports"/*.vglog
    return "$found"
}

passed=0
failed=0
failures=()
jobs=$(nproc 2>/dev/null || echo 2)

if [ "$unit_only" = 0 ] && [ ! -d tests/node_modules ]; then
    echo "== installing the pinned test clients (npm ci)"
    (cd tests && npm ci --no-audit --no-fund --loglevel=error) || { echo "npm ci failed"; echo "0 passed, 1 failed"; exit 1; }
fi

for mode in $modes; do
    # valgrind runs the release build's binaries under memcheck.
    bmode=$mode
    wrap=()
    bin=$PWD/build/$mode
    if [ "$mode" = valgrind ]; then
        bmode=release
        wrap=(tools/valgrind.sh)
        bin=$reports/bin
        mkdir -p "$bin"
        for b in payguard mockrail; do
            printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$PWD/tools/valgrind.sh" "$PWD/build/release/$b" >"$bin/$b"
            chmod +x "$bin/$b"
        done
    fi
    echo "== building ($mode)"
    if ! make --no-print-directory -j"$jobs" MODE="$bmode" build >/tmp/payguard-build-$mode.log 2>&1; then
        cat /tmp/payguard-build-$mode.log
        failures+=("build ($mode)")
        failed=$((failed + 1))
        continue
    fi
    echo "== unit tests ($mode)"
    for t in build/"$bmode"/tests/test_*; do
        [ -x "$t" ] || continue
        out=$("${wrap[@]}" "$t" 2>&1)
        rc=$?
        if sanitizer_reports >"$reports/last" 2>&1; then
            out+=$'\n'$(cat "$reports/last")
            rc=1
        fi
        p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
        f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
        p=${p:-0}
        f=${f:-0}
        if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
            f=1 # crashed, leaked or sanitizer report
        fi
        passed=$((passed + p))
        failed=$((failed + f))
        if [ "$f" != 0 ]; then
            printf '%s\n' "$out"
            failures+=("$(basename "$t") ($mode)")
        else
            echo "   $(basename "$t"): $p passed"
        fi
    done
    [ "$unit_only" = 1 ] && continue
    echo "== integration tests ($mode)"
    log=/tmp/payguard-integration-$mode.log
    it_files=(tests/integration/)
    if [ -n "${IT_FILES:-}" ]; then
        it_files=()
        for f in $IT_FILES; do it_files+=("tests/integration/$f"); done
    fi
    PAYGUARD_BIN="$bin/payguard" MOCKRAIL_BIN="$bin/mockrail" \
    PAYGUARD_MODE="$mode" \
        node --test --test-reporter=tap --test-concurrency=1 "${it_files[@]}" >"$log" 2>&1
    rc=$?
    p=$(sed -n 's/^# pass \([0-9]*\)/\1/p' "$log" | tail -1)
    f=$(sed -n 's/^# fail \([0-9]*\)/\1/p' "$log" | tail -1)
    p=${p:-0}
    f=${f:-0}
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
        f=1
    fi
    # A report from a process whose exit no test checked still fails the run.
    if sanitizer_reports >"$log.reports" 2>&1; then
        cat "$log.reports" >>"$log"
        echo "   $mode reports (also in $log):"
        head -150 "$log.reports"
        f=$((f + 1))
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$f" != 0 ]; then
        grep -E "^not ok|^# Subtest|error:|expected|actual|stack|Error" "$log" | head -120
        echo "   (full log: $log)"
        failures+=("integration ($mode)")
    else
        echo "   integration: $p passed"
    fi
done

echo
[ "${#failures[@]}" -gt 0 ] && echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
