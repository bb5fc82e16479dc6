#!/usr/bin/env bash
# Runs libFuzzer targets one after another and prints a table: executions per
# second and coverage (libFuzzer's final "cov:", edges reached) per target.
#   tests/fuzz/run.sh SECONDS TARGET...           make fuzz
#   tests/fuzz/run.sh --smoke SECONDS TARGET...   make fuzz-smoke (CI)
# A target's seeds are tests/fuzz/corpus/TARGET; what it finds goes to
# build/fuzz/corpus/TARGET (a fresh temporary folder under --smoke), crashes
# to build/fuzz/crashes/. Exits 1 when any target crashed or broke an
# invariant; the table says which, and how to replay the input.
set -uo pipefail
cd "$(dirname "$0")/../.."

smoke=0
if [ "${1:-}" = "--smoke" ]; then
    smoke=1
    shift
fi
seconds=${1:?usage: run.sh [--smoke] SECONDS TARGET...}
shift
[ $# -gt 0 ] || { echo "run.sh: no targets"; exit 2; }

out=build/fuzz
mkdir -p "$out/crashes" "$out/logs"
tmp=""
if [ "$smoke" = 1 ]; then
    tmp=$(mktemp -d /tmp/payguard-fuzz.XXXXXX)
    trap 'rm -rf "$tmp"' EXIT
fi

# Inputs longer than this are never tried: requests and configs get room for
# a body or a whole file, the small parsers less.
max_len() {
    case "$1" in
    http | config) echo 16384 ;;
    *) echo 4096 ;;
    esac
}

rows=()
failed=()
for t in "$@"; do
    bin=$out/fuzz_$t
    [ -x "$bin" ] || { echo "run.sh: $bin is not built (make fuzz-build)"; exit 2; }
    seeds=tests/fuzz/corpus/$t
    work=${tmp:-$out/corpus}/$t
    mkdir -p "$work"
    log=$out/logs/$t.log
    args=(-max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048
          -max_len="$(max_len "$t")" -artifact_prefix="$out/crashes/$t-")
    [ -f "tests/fuzz/$t.dict" ] && args+=(-dict="tests/fuzz/$t.dict")
    dirs=("$work")
    [ -d "$seeds" ] && dirs+=("$seeds")
    echo "== fuzz $t (${seconds}s)"
    nice -n 10 "$bin" "${args[@]}" "${dirs[@]}" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1)
    cov=$(printf '%s\n' "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    ft=$(printf '%s\n' "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
    corp=$(printf '%s\n' "$last" | sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p')
    result=ok
    if [ "$rc" != 0 ]; then
        result=FAILED
        failed+=("$t")
        grep -E '^(== invariant|==[0-9]+==ERROR|SUMMARY|artifact_prefix)' "$log" | head -8
        echo "   replay: $bin $(sed -n "s/.*Test unit written to \(.*\)/\1/p" "$log" | tail -1)"
        echo "   log: $log"
    fi
    rows+=("$(printf '| %-7s | %5s | %10s | %8s | %6s | %7s | %6s | %-6s |' \
        "$t" "$seconds" "${runs:-?}" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result")")
done

echo
echo "| target  | secs  |       runs |   exec/s |    cov |      ft | corpus | result |"
echo "|---------|-------|------------|----------|--------|---------|--------|--------|"
printf '%s\n' "${rows[@]}"
echo "(cov: edges covered; ft: libFuzzer features; corpus: inputs kept)"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: ${#failed[@]} of $# targets FAILED: ${failed[*]}"
    exit 1
fi
echo "fuzz: all $# targets ran clean"
