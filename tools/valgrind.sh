#!/usr/bin/env bash
# Runs one program under valgrind memcheck: tools/valgrind.sh PROGRAM ARGS...
# `MODES=valgrind tools/test.sh` (make valgrind) runs the unit tests through it
# and points PAYGUARD_BIN/MOCKRAIL_BIN at wrappers that call it. Any error,
# a definite leak included, exits 87 and leaves VALGRIND_LOG_DIR/PID.vglog.
set -euo pipefail
dir=${VALGRIND_LOG_DIR:-/tmp}
exec valgrind --quiet --error-exitcode=87 --leak-check=full --errors-for-leak-kinds=definite \
    --show-leak-kinds=definite --num-callers=30 --log-file="$dir/%p.vglog" "$@"
