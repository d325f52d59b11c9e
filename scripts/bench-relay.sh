#!/usr/bin/env bash
# Reproduces the relay figures in BENCHMARKS.md: throughput at 256 B and 4 KiB, latency at a
# fixed 10,000 messages/s, and 10,000 idle connections with the relay's RSS.
#
#   scripts/bench-relay.sh            # everything (about 2 minutes plus the release build)
#   DURATION=5 scripts/bench-relay.sh # shorter runs
#
# The relay and the load generator run on loopback on this machine; both raise their own
# open-files limit. The relay's rate limits are raised so that they do not cap the measurement.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
ROOMS="${ROOMS:-16}"
IDLE_CONNECTIONS="${IDLE_CONNECTIONS:-10000}"
IDLE_HOLD="${IDLE_HOLD:-20}"
source scripts/lib/pin-cpus.sh

swift build -c release --product relay >/dev/null
swift build -c release --product relay-bench >/dev/null
BIN="$(swift build -c release --show-bin-path)"

LIMITS=(--messages-per-second 1000000000 --message-burst 1000000000
        --bytes-per-second 4294967296 --byte-burst 4294967296
        --connections-max 100000 --connections-per-address-max 100000
        --joins-per-address-per-minute 1000000 --rooms-max 1000000)

OUT="$(mktemp)"
"${RELAY_CPU[@]}" "$BIN/relay" --port 0 --metrics-port 0 "${LIMITS[@]}" >"$OUT" 2>/dev/null &
RELAY_PID=$!
trap 'kill -TERM $RELAY_PID 2>/dev/null || true; rm -f "$OUT"' EXIT
for _ in $(seq 1 100); do
    grep -q "relay listening on" "$OUT" && break
    sleep 0.1
done
URL="$(awk '/relay listening on/ {print $4}' "$OUT")"
echo "relay pid $RELAY_PID at $URL${RELAY_CPU[*]:+ (relay pinned to CPU 0, load generator to CPU 1)}"
echo

# Milliseconds the relay's threads have spent runnable but waiting for a CPU (schedstat field 2):
# on a shared machine this shows how much of a latency figure is other tenants' load.
runqueue_wait_ms() {
    # In milliseconds inside awk: mawk's %d saturates at 2^31.
    cat /proc/"$RELAY_PID"/task/*/schedstat 2>/dev/null | awk '{sum += $2} END {printf "%d\n", sum / 1000000}'
}

run() {
    echo "\$ relay-bench $*"
    echo "  (load average before: $(cut -d' ' -f1-3 /proc/loadavg))"
    local wait_before
    wait_before="$(runqueue_wait_ms)"
    "${BENCH_CPU[@]}" "$BIN/relay-bench" "$@"
    echo "  relay run-queue wait during the run: $(( $(runqueue_wait_ms) - wait_before )) ms"
    echo
}

run load --url "$URL" --relay-pid "$RELAY_PID" --rooms "$ROOMS" --message-bytes 256 --window 64 \
    --duration-seconds "$DURATION" --warmup-seconds "$WARMUP"
run load --url "$URL" --relay-pid "$RELAY_PID" --rooms "$ROOMS" --message-bytes 4096 --window 16 \
    --duration-seconds "$DURATION" --warmup-seconds "$WARMUP"
run load --url "$URL" --relay-pid "$RELAY_PID" --rooms "$ROOMS" --message-bytes 256 --rate 10000 \
    --duration-seconds "$DURATION" --warmup-seconds "$WARMUP"
run idle --url "$URL" --connections "$IDLE_CONNECTIONS" --hold-seconds "$IDLE_HOLD" --relay-pid "$RELAY_PID"
