#!/usr/bin/env bash
# The one test command: installs what is missing, then runs every test securechat has.
#   1. a clean build of every target, failing on any compiler warning from our code;
#   2. the release binaries (scripts/release.sh) and a Debian 12 root without Swift for them
#      (scripts/make-debian-root.sh, in the background from the start: it is mostly a download);
#   3. `swift test`: Tests/Unit, Tests/Property, Tests/Fuzz (corpus replay), Tests/Integration
#      (real relay and client processes, and the release binaries in the Debian root), Tests/Simulation;
#   4. reproducibility of securechat: a fresh clone at another path builds it again, byte for byte
#      (scripts/check-reproducible.sh --against; the full check of all three is a separate script);
#   5. the simulator sweep (20 seeds x 1000 peers, every fault kind) and its determinism check;
#   6. every libFuzzer target for FUZZ_SECONDS (default 30) seconds each.
# Usage: scripts/test.sh            (CI: .ci/run calls exactly this)
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
cpu_log=$(mktemp)
# Wall time since the start, and the CPU time (user, system) of every command finished so far: on
# CI's 2 cores the CPU time is what the budget is spent on, and unlike the wall time it does not
# depend on what else the machine runs.
step() {
    times > "$cpu_log"  # a builtin, redirected without a subshell (one would count only itself)
    printf '\n==> %s (%ss; CPU so far: %s)\n' "$1" "$(( $(date +%s) - started ))" "$(tail -1 "$cpu_log")"
}

step "install dependencies"
scripts/install-deps.sh

# The Debian root for the release-binary test is mostly a download from the Debian mirror (minutes
# of network, little CPU), so it runs in the background, behind the build, on every run: no cache,
# so a fresh machine does exactly what this one does. Its own session, so that a failing test.sh
# stops it (debootstrap included) rather than leaving it running.
setsid scripts/make-debian-root.sh .build-release/debian12-root &
root_pid=$!
trap '[ -z "$root_pid" ] || kill -- "-$root_pid" 2>/dev/null || true' EXIT

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

step "release binaries"
scripts/release.sh .build-release/dist
step "the Debian 12 root without Swift (started in the background after install dependencies)"
if ! wait "$root_pid"; then
    root_pid=""
    echo "error: scripts/make-debian-root.sh failed (debootstrap's log: .build-release/debian12-root.log)" >&2
    exit 1
fi
root_pid=""
# Tests/Integration/ReleaseBinaryTests runs these; without the two variables it is skipped.
export SECURECHAT_RELEASE_DIR="$PWD/.build-release/dist" SECURECHAT_DEBIAN_ROOT="$PWD/.build-release/debian12-root"

step "swift test"
swift test 2>&1 | tee "$log"
grep -E "Test run with [0-9]+ tests" "$log" | tail -1
if grep -q "Release binaries on Debian 12 without Swift.*skipped" "$log"; then
    echo "error: the release-binary tests were skipped" >&2
    exit 1
fi

step "reproducibility: securechat rebuilt in a fresh clone at another path"
if [ -n "$(git status --porcelain -- Package.swift VERSION Sources)" ]; then
    # The release build above is of the modified tree; a clone of HEAD cannot match it.
    echo "SKIPPED: uncommitted changes under Sources/ or Package.swift (CI's checkout has none)"
else
    RELEASE_PRODUCTS=securechat scripts/check-reproducible.sh --against .build-release/dist
fi

step "simulator sweep and determinism check"
scripts/sim-sweep.sh

step "fuzz every target for ${FUZZ_SECONDS:-30} s"
scripts/fuzz.sh "${FUZZ_SECONDS:-30}"

step "done: every test passed"
