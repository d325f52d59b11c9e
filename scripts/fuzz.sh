#!/usr/bin/env bash
# Builds every libFuzzer target (FuzzTesting/) with ASan and runs each for N seconds.
#
#   scripts/fuzz.sh [seconds-per-target]          (default 60; CI runs the default)
#   FUZZ_TARGETS="FuzzSession" scripts/fuzz.sh 300 (a subset)
#
# For each target it first replays FuzzTesting/Regressions/<target> through the fuzz build, then
# fuzzes from a working corpus (FuzzTesting/.build-fuzz/corpus/<target>, seeded from the committed
# Corpus/ and Regressions/, kept between local runs, never committed) with the protocol dictionary,
# and prints execs/s and total execs. It fails on any crash, leak, timeout or out-of-memory and
# leaves the input under FuzzTesting/.build-fuzz/crashes/<target>/ with the commands that reproduce
# and minimise it. A crash becomes a regression: minimise it, commit it under
# FuzzTesting/Regressions/<target>/, add a named unit test, then fix the bug.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${1:-60}
# FuzzSessionWorld (the two-process world, ~200 execs/s) is not in the default list: FuzzSession
# fuzzes the session protocol itself far faster; run it by name.
targets=(${FUZZ_TARGETS:-FuzzRelayFrame FuzzClientFrame FuzzRelayRooms FuzzSession FuzzSessionWorld FuzzSOCKSReply FuzzProxyHeader FuzzRESP FuzzFiles})
configuration=${FUZZ_CONFIGURATION:-release}
fuzz_dir="$root/FuzzTesting"
scratch="$fuzz_dir/.build-fuzz"

# Swift's backtracer would catch the crash signal first and libFuzzer would never write the
# crash file; let the sanitizer runtime handle it.
export SWIFT_BACKTRACE=enable=no

max_len() {
    case "$1" in
        FuzzRelayFrame | FuzzClientFrame) echo 8192 ;;
        FuzzRelayRooms | FuzzSOCKSReply) echo 1024 ;;
        FuzzProxyHeader) echo 1280 ;;
        FuzzRESP) echo 4096 ;;
        FuzzSession) echo 2048 ;;
        *) echo 4096 ;;
    esac
}

build_started=$(date +%s)
for target in "${targets[@]}"; do
    echo "==> build $target ($configuration, -sanitize=fuzzer,address)"
    # `--sanitize=fuzzer` tells SwiftPM to leave `main` to libFuzzer. The sanitizers themselves go
    # in as ONE combined -Xswiftc flag: SwiftPM passes `--sanitize=fuzzer --sanitize=address` as
    # two -sanitize= flags in no fixed order and the compiler keeps only the last, so a build gets
    # either no coverage instrumentation (libFuzzer fuzzes blind) or no ASan.
    # --disable-dead-strip: SwiftPM links with --gc-sections, which discards the coverage sections.
    mkdir -p "$scratch/logs"
    if ! swift build --package-path "$fuzz_dir" --scratch-path "$scratch" -c "$configuration" \
        --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address --disable-dead-strip --product "$target" \
        >"$scratch/logs/build-$target.log" 2>&1; then
        grep -E "error:" "$scratch/logs/build-$target.log" >&2 || tail -30 "$scratch/logs/build-$target.log" >&2
        echo "error: $target did not build; see $scratch/logs/build-$target.log" >&2
        exit 1
    fi
    tail -1 "$scratch/logs/build-$target.log"
    # Refuse to fuzz blind: the binary must carry the coverage counters and the ASan runtime.
    binary="$scratch/$configuration/$target"
    sections=$(readelf -S "$binary")
    symbols=$(nm "$binary")
    if ! grep -q __sancov_cntrs <<<"$sections" || ! grep -q __asan_report_load <<<"$symbols"; then
        echo "error: $binary lacks coverage instrumentation or ASan" >&2
        exit 1
    fi
    banner=$("$binary" -runs=0 2>&1 || true)
    if ! grep -q "INFO: Seed:" <<<"$banner"; then
        echo "error: $binary does not start libFuzzer (a Swift main took over?)" >&2
        exit 1
    fi
done
build_seconds=$(( $(date +%s) - build_started ))

failures=()
summary=()
for target in "${targets[@]}"; do
    binary="$scratch/$configuration/$target"
    corpus="$scratch/corpus/$target"
    crashes="$scratch/crashes/$target"
    log="$scratch/logs/$target.log"
    mkdir -p "$corpus" "$crashes" "$(dirname "$log")"
    cp -n "$fuzz_dir/Corpus/$target"/* "$corpus"/ 2>/dev/null || true
    regressions=()
    for file in "$fuzz_dir/Regressions/$target"/*; do
        [ -f "$file" ] && [[ "$file" != *.md ]] && regressions+=("$file")
    done
    [ ${#regressions[@]} -eq 0 ] || cp -n "${regressions[@]}" "$corpus"/
    echo "==> $target: replay ${#regressions[@]} regression inputs"
    if [ ${#regressions[@]} -gt 0 ] && ! "$binary" -runs=1 "${regressions[@]}" >"$log.regressions" 2>&1; then
        echo "error: $target fails a committed regression input; see $log.regressions" >&2
        tail -20 "$log.regressions" >&2
        failures+=("$target (regression)")
        continue
    fi

    echo "==> $target: fuzz for ${seconds}s"
    status=0
    "$binary" "$corpus" -max_total_time="$seconds" -max_len="$(max_len "$target")" \
        -dict="$fuzz_dir/protocol.dict" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$crashes/" >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1 || true)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1 || true)
    coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | sed 's/cov: //' || true)
    corpus_size=$(find "$corpus" -type f | wc -l)
    line=$(printf '%-16s %10s execs/s %12s execs  cov %6s  corpus %5s' \
        "$target" "${rate:-?}" "${execs:-?}" "${coverage:-?}" "$corpus_size")
    if [ "$status" -ne 0 ]; then
        artifact=$(ls -t "$crashes" 2>/dev/null | head -1)
        line="$line  FAILED (exit $status)"
        failures+=("$target")
        echo "error: $target failed (exit $status); last lines of $log:" >&2
        grep -E "Fatal error|ERROR: |SUMMARY|Test unit written" "$log" | head -10 >&2 || tail -30 "$log" >&2
        if [ -n "$artifact" ]; then
            echo "  input:      $crashes/$artifact" >&2
            echo "  reproduce:  SWIFT_BACKTRACE=enable=no $binary $crashes/$artifact" >&2
            echo "  minimise:   SWIFT_BACKTRACE=enable=no $binary -minimize_crash=1 -runs=100000 \\" >&2
            echo "                  -exact_artifact_path=FuzzTesting/Regressions/$target/<name> $crashes/$artifact" >&2
        fi
    fi
    summary+=("$line")
done

echo
echo "fuzzing summary (${seconds}s per target, $configuration build, built in ${build_seconds}s):"
printf '  %s\n' "${summary[@]}"
if [ ${#failures[@]} -gt 0 ]; then
    echo "FAILED: ${failures[*]}" >&2
    exit 1
fi
echo "no crashes"
