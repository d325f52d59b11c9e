#!/usr/bin/env bash
# The cost of our Swift crypto layer, as a ratio: MessageRatchet's seal + open loop in Swift
# (Benchmarks/Sources/CryptoThroughput) against the same libsodium calls written in C
# (Benchmarks/c-baseline/ratchet_bench.c), built and run in the same run, alternating, at 64 B,
# 1 KiB and 64 KiB. Target: Swift >= 0.9x C's throughput at 1 KiB.
#
#   scripts/bench-crypto.sh                       # 5 rounds x 2 s per size and program (~2 minutes)
#   ROUNDS=3 SECONDS_PER_SIZE=1 scripts/bench-crypto.sh
#
# Throughput is plaintext MB/s (10^6 bytes) of one seal plus one open, per CPU second of the
# process (user + system), so that other tenants of a shared machine disturb it less than wall
# time would; the median of the rounds is reported. Three programs run in each round: C, Swift
# with the open lending the plaintext from the ratchet's guarded buffer (what the C loop does with
# its buffer), and Swift with `openRecord -> SecureBytes` (a fresh guarded allocation per record).
# PIN=1 (default) runs all of them on CPU 1. Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-5}"
SECONDS_PER_SIZE="${SECONDS_PER_SIZE:-2}"
SIZES=(64 1024 65536)
PIN="${PIN:-1}"
CPU=()
if [ "$PIN" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    CPU=(taskset -c 1)
fi

echo "== build"
mkdir -p Benchmarks/.build/c-baseline
C_BIN=Benchmarks/.build/c-baseline/ratchet-bench
# shellcheck disable=SC2046  # pkg-config's output is meant to split into flags
cc -O2 -Wall -Wextra -o "$C_BIN" Benchmarks/c-baseline/ratchet_bench.c $(pkg-config --cflags --libs libsodium)
(cd Benchmarks && swift build -c release --product crypto-throughput >/dev/null)
SWIFT_BIN="$(cd Benchmarks && swift build -c release --show-bin-path)/crypto-throughput"

OUT="$(mktemp)"
trap 'rm -f "$OUT"' EXIT
echo "date:    $(date)"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)," \
    "$(swift --version 2>/dev/null | head -1 | sed 's/ (.*//'), libsodium $(pkg-config --modversion libsodium)," \
    "$(cc --version | head -1)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)${CPU[*]:+; pinned to CPU 1}"
echo
for round in $(seq 1 "$ROUNDS"); do
    echo "== round $round of $ROUNDS"
    for program in c swift swift-allocating; do
        case "$program" in
            c) command=("$C_BIN") ;;
            swift) command=("$SWIFT_BIN") ;;
            swift-allocating) command=("$SWIFT_BIN" --allocating) ;;
        esac
        "${CPU[@]}" "${command[@]}" "$SECONDS_PER_SIZE" "${SIZES[@]}" | sed "s/^/program=$program /" | tee -a "$OUT"
    done
done
echo

echo "== median of $ROUNDS rounds (MB/s of plaintext per CPU second; ns per seal + open)"
python3 - "$OUT" <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    fields = dict(field.split("=", 1) for field in line.split())
    runs.setdefault((fields["program"], int(fields["size"])), []).append(
        (float(fields["mb_per_s_cpu"]), float(fields["ns_per_message_cpu"])))
sizes = sorted({size for _, size in runs})
header = f'  {"size":>8}  {"C MB/s":>9}  {"Swift MB/s":>10}  {"Swift/C":>7}  {"C ns":>8}  {"Swift ns":>9}  ' \
         f'{"alloc MB/s":>10}  {"alloc/C":>7}'
print(header)
for size in sizes:
    c = statistics.median(m for m, _ in runs[("c", size)])
    s = statistics.median(m for m, _ in runs[("swift", size)])
    a = statistics.median(m for m, _ in runs[("swift-allocating", size)])
    c_ns = statistics.median(n for _, n in runs[("c", size)])
    s_ns = statistics.median(n for _, n in runs[("swift", size)])
    print(f"  {size:>8}  {c:>9.2f}  {s:>10.2f}  {s / c:>7.3f}  {c_ns:>8.0f}  {s_ns:>9.0f}  {a:>10.2f}  {a / c:>7.3f}")
print("  target: Swift/C >= 0.9 at 1024 B (Swift = lent open; alloc = openRecord -> SecureBytes)")
EOF
