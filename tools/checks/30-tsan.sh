#!/usr/bin/env bash
# CI: the suite under ThreadSanitizer (unit tests, then every integration
# file), so the writer thread, the notifier thread and the thread-pool jobs
# are checked against the loop on every change. A TSan report from any
# process fails the run (tools/test.sh collects them). docs/CHECKS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."

start=$SECONDS
make --no-print-directory -j"$(nproc 2>/dev/null || echo 2)" MODE=tsan build >/tmp/payguard-build-tsan.log 2>&1 ||
    { tail -40 /tmp/payguard-build-tsan.log; echo "TSan build failed"; exit 1; }

# TSan wants the address layout it knows; a kernel with more mmap
# randomness than it expects makes every program die at start. Then run
# without address randomization (setarch -R holds for every child).
run=()
probe=$(build/tsan/tests/test_outcome 2>&1 || true)
if printf '%s' "$probe" | grep -q "unexpected memory mapping"; then
    echo "TSan cannot map memory with this kernel's ASLR; running under setarch -R"
    run=(setarch "$(uname -m)" -R)
fi

"${run[@]}" env MODES=tsan tools/test.sh
echo "== TSan suite passed in $((SECONDS - start)) s"
