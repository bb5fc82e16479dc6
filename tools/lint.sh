#!/usr/bin/env bash
# Fails when the tree calls a banned libc function or prints a secret-bearing
# field. The compiler's poison (common/pg.h) catches most; this catches the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=$(git grep -nE '\b(strcpy|strcat|sprintf|vsprintf|gets|strtok|strncpy|atoi|atol)\s*\(' -- '*.c' '*.h' \
      | grep -v 'pragma GCC poison' || true)
if [ -n "$bad" ]; then
    echo "banned functions:"
    echo "$bad"
    exit 1
fi
echo "lint: ok"
