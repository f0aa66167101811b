#!/usr/bin/env bash
# stress_kill.sh — the crash-safety test of `make test` with more kills: a tiny training run that
# checkpoints every step is killed with SIGKILL at seeded random moments, each time resumed, and
# the finished run's losses must equal those of a run never interrupted, with no file of an
# interrupted save left behind (tests/test_crash.c, test_crash_sigkill_then_resume_continues_losses).
# Usage: scripts/stress_kill.sh [KILLS]   (default 200; `make test` runs 20)
#        ASAN=1 scripts/stress_kill.sh     (the same under AddressSanitizer + UBSan)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

kills=${1:-200}
[[ $kills =~ ^[1-9][0-9]*$ ]] || { echo "stress_kill: KILLS must be a positive integer, got '$kills'" >&2; exit 2; }
if [[ ${ASAN:-0} == 1 ]]; then
    make --no-print-directory test-asan-build >/dev/null
    runner=build-asan/run_tests
    export TRAINSHORT_BIN=build-asan
else
    make --no-print-directory all tests/run_tests >/dev/null
    runner=tests/run_tests
fi
TRAINSHORT_KILLS=$kills exec "$runner" test_crash_sigkill_then_resume_continues_losses
