#!/usr/bin/env bash
# CI: builds the libFuzzer targets with clang (build/fuzz/) and runs each on
# its seed corpus for FUZZ_SMOKE_SECONDS (15 s by default); fails on any crash,
# sanitizer report or broken invariant. About 3 minutes on 2 cores, build
# included. docs/FUZZING.md says how to replay what it finds.
set -euo pipefail
cd "$(dirname "$0")/../.."

have_fuzzer() {
    command -v clang >/dev/null 2>&1 || return 1
    # The runtime ships apart from the compiler (libclang-rt-14-dev).
    echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return (int)(d && n) * 0; }' |
        clang -x c -fsanitize=fuzzer -o /dev/null - >/dev/null 2>&1
}

if ! have_fuzzer; then
    if [ "$(id -u)" = 0 ]; then
        echo "== installing clang and its fuzzer runtime"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq clang libclang-rt-14-dev >/dev/null ||
            { apt-get update -qq && apt-get install -y -qq clang libclang-rt-14-dev >/dev/null; }
    fi
    have_fuzzer || { echo "fuzz: clang with -fsanitize=fuzzer is missing (apt-get install clang libclang-rt-14-dev)"; exit 1; }
fi

start=$(date +%s)
make --no-print-directory -j"$(nproc 2>/dev/null || echo 2)" fuzz-build >/tmp/payguard-fuzz-build.log 2>&1 ||
    { cat /tmp/payguard-fuzz-build.log; echo "fuzz: the targets do not build"; exit 1; }
echo "fuzz: targets built in $(($(date +%s) - start)) s"
make --no-print-directory fuzz-smoke
echo "fuzz: smoke run done in $(($(date +%s) - start)) s"
