#!/usr/bin/env bash
# Runs the whole test suite with coverage and prints ChatCore's line coverage (llvm-cov), per file
# and in total. Only Sources/ChatCore counts: tests, FuzzHarness and dependencies are left out.
#
#   scripts/coverage.sh            fails if ChatCore's line coverage is below 90%
#   COVERAGE_MIN=0 scripts/coverage.sh   only report
#   scripts/coverage.sh --filter X       extra arguments go to `swift test`
set -euo pipefail
cd "$(dirname "$0")/.."
minimum=${COVERAGE_MIN:-90}

SWIFT_BACKTRACE=enable=no swift test --enable-code-coverage "$@"

bin_path=$(swift build --show-bin-path)
profdata="$bin_path/codecov/default.profdata"
tests_binary=$(find "$bin_path" -maxdepth 1 -name '*PackageTests.xctest' | head -1)
# The llvm-cov that ships with the Swift toolchain reads the profile format swift test writes.
toolchain_bin=$(dirname "$(readlink -f "$(command -v swift)")")
llvm_cov="$toolchain_bin/llvm-cov"
[ -x "$llvm_cov" ] || llvm_cov=$(command -v llvm-cov)

echo
echo "ChatCore line coverage ($llvm_cov report, Sources/ChatCore only):"
report=$("$llvm_cov" report "$tests_binary" -instr-profile "$profdata" "$(pwd)/Sources/ChatCore")
echo "$report" | awk '$8 ~ /^[0-9]+$/ { printf "  %-36s %6s lines %5s missed %8s\n", $1, $8, $9, $10 }'
total=$(echo "$report" | awk '$1 == "TOTAL" { print $8, $9, $10 }')
read -r lines missed percent <<<"$total"
echo "ChatCore: $((lines - missed)) of $lines lines covered = $percent (minimum ${minimum}%)"
awk -v p="${percent%\%}" -v m="$minimum" 'BEGIN { exit !(p + 0 >= m + 0) }' || {
    echo "error: ChatCore line coverage $percent is below ${minimum}%" >&2
    exit 1
}
