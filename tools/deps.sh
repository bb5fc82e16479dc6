#!/usr/bin/env bash
# Checks for (and, as root, installs) the Debian packages payguard builds and
# tests with. `deps.sh check` only reports; `deps.sh install` installs.
set -euo pipefail

BUILD_PKGS=(build-essential pkg-config libuv1-dev node-llhttp libssl-dev liblmdb-dev
            lmdb-utils libyaml-dev libjansson-dev libcrypt-dev)
TEST_PKGS=(libcmocka-dev nodejs npm openssl curl ca-certificates)

missing=()
for p in "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A node from elsewhere on PATH is fine for the tests.
if command -v node >/dev/null && command -v npm >/dev/null; then
    filtered=()
    for p in "${missing[@]}"; do
        case "$p" in nodejs|npm) ;; *) filtered+=("$p") ;; esac
    done
    missing=("${filtered[@]+"${filtered[@]}"}")
fi

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if [ "${1:-check}" = install ] && [ "$(id -u)" = 0 ]; then
    echo "payguard: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
    exit 0
fi
echo "payguard: missing Debian packages: ${missing[*]}" >&2
echo "payguard: install them with: sudo apt-get install -y ${missing[*]}" >&2
[ "${1:-check}" = install ] && exit 1
# Building needs only the build packages.
for p in "${missing[@]}"; do
    for b in "${BUILD_PKGS[@]}"; do [ "$p" = "$b" ] && exit 1; done
done
exit 0
