#!/usr/bin/env bash
# The one test command: installs what is missing, then runs every test securechat has.
#   1. a clean build of every target, failing on any compiler warning from our code;
#   2. `swift test`: Tests/Unit, Tests/Property, Tests/Fuzz (corpus replay), Tests/Integration
#      (real relay and client processes), Tests/Simulation;
#   3. the simulator sweep (20 seeds x 1000 peers, every fault kind) and its determinism check;
#   4. every libFuzzer target for FUZZ_SECONDS (default 60) seconds each.
# Usage: scripts/test.sh            (CI: .ci/run calls exactly this)
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
step() { printf '\n==> %s (%ss)\n' "$1" "$(( $(date +%s) - started ))"; }

step "install dependencies"
scripts/install-deps.sh

step "build (warnings are errors for our code)"
log=$(mktemp)
swift build --build-tests 2>&1 | tee "$log"
# Warnings from our own sources (dependencies are built with warnings suppressed by SwiftPM).
if grep -E "^(/[^:]*/)?(Sources|Tests|Package\.swift)[^:]*:[0-9]+:[0-9]+: warning:|^warning: " "$log" \
    | grep -v "/.build/" >/dev/null; then
    echo "error: the build printed warnings:" >&2
    grep -E "warning:" "$log" | grep -v "/.build/" | sort -u >&2
    exit 1
fi
echo "warnings: 0"

step "swift test"
swift test 2>&1 | tee "$log"
grep -E "Test run with [0-9]+ tests" "$log" | tail -1

step "simulator sweep and determinism check"
scripts/sim-sweep.sh

step "fuzz every target for ${FUZZ_SECONDS:-60} s"
scripts/fuzz.sh "${FUZZ_SECONDS:-60}"

step "done: every test passed"
