#!/usr/bin/env bash
# CI check: the 60 s soak against the ASan+UBSan build (every fault kind at
# least once, every invariant checked; docs/SOAK.md), then the load-held case
# (10,000 held connections, a burst of 5,000 per second) against the release
# and the ASan builds. About a minute and a half. Exits non-zero when any of
# them finds a problem.
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
command -v node >/dev/null || need+=(nodejs)
command -v mount >/dev/null && command -v umount >/dev/null || need+=(mount)
if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "40-soak: installing ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${need[@]}"
    else
        echo "40-soak: missing ${need[*]} (install them, or run as root)" >&2
        exit 1
    fi
fi
make --no-print-directory deps >/dev/null

jobs=2
echo "== 40-soak: building (asan payguard, release payguard and connstorm)"
log=$(mktemp)
if ! { make --no-print-directory -j"$jobs" MODE=asan build &&
       make --no-print-directory -j"$jobs" MODE=release build build/release/soak/connstorm; } >"$log" 2>&1; then
    cat "$log"
    rm -f "$log"
    exit 1
fi
rm -f "$log"

# The soak mounts a small tmpfs for payguard's data under SOAK_TMP; whatever
# happens to the harness, nothing stays mounted.
SOAK_TMP=$(mktemp -d /tmp/payguard-soak-ci.XXXXXX)
export SOAK_TMP
cleanup() {
    for m in "$SOAK_TMP"/*/data; do
        grep -qs " $m tmpfs " /proc/mounts && umount -l "$m"
    done
    rm -rf "$SOAK_TMP"
}
trap cleanup EXIT

status=0
echo "== 40-soak: soak, 60 s, asan"
SOAK_SECONDS=60 SOAK_MODE=asan timeout -k 10 170 nice node tests/soak/soak.mjs || status=1
for mode in release asan; do
    echo "== 40-soak: load-held, $mode"
    LOADHELD_MODE=$mode timeout -k 10 120 nice node tests/soak/loadheld.mjs || status=1
done
[ "$status" = 0 ] && echo "40-soak: ok" || echo "40-soak: FAILED"
exit "$status"
