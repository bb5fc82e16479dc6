#!/usr/bin/env bash
# CI: the static checks. Banned functions (tools/lint.sh), a clang build with
# -Werror in build/clang/, and clang-tidy with .clang-tidy, every finding an
# error. Installs clang and clang-tidy when run as root and they are missing.
# docs/CHECKS.md says what runs where.
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
command -v clang >/dev/null || need+=(clang)
command -v clang-tidy >/dev/null || need+=(clang-tidy)
if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "missing: ${need[*]} (as root: apt-get install ${need[*]})"
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${need[@]}" >/dev/null ||
        { apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; }
fi

start=$SECONDS
make --no-print-directory static
echo "== static checks passed in $((SECONDS - start)) s"
