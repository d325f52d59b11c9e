#!/usr/bin/env bash
# This checkout's relay against another checkout's (a worktree at an older commit), alternating,
# under the same load: the 256 B closed-loop measurement of scripts/bench-relay.sh, ROUNDS times
# each, with the relay's CPU per message, the figure to compare when the machine is shared (its
# throughput moves with the other tenants' load; alternating spreads that load over both).
#
#   git worktree add ../relay-base 3f1afd2 && (cd ../relay-base && swift build -c release)
#   scripts/ab-relays.sh ../relay-base            # 6 rounds of 5 s each, about 2 minutes
#   ROUNDS=10 DURATION=10 scripts/ab-relays.sh ../relay-base
#
# Both relays use the same load generator (this checkout's) and the rate limits raised as in
# bench-relay.sh. Prints one line per run and the mean and median of each side.
set -euo pipefail
cd "$(dirname "$0")/.."
OTHER="$(cd "${1:?usage: scripts/ab-relays.sh OTHER_CHECKOUT}" && pwd)"
ROUNDS="${ROUNDS:-6}"
DURATION="${DURATION:-5}"
source scripts/lib/pin-cpus.sh

swift build -c release --product relay >/dev/null
swift build -c release --product relay-bench >/dev/null
THIS_BIN="$(swift build -c release --show-bin-path)"
OTHER_BIN="$(cd "$OTHER" && swift build -c release --show-bin-path)"
[ -x "$OTHER_BIN/relay" ] || { echo "build the other checkout first: (cd $OTHER && swift build -c release)" >&2; exit 1; }

LIMITS=(--messages-per-second 1000000000 --message-burst 1000000000
        --bytes-per-second 4294967296 --byte-burst 4294967296
        --connections-max 100000 --connections-per-address-max 100000
        --joins-per-address-per-minute 1000000 --rooms-max 1000000)
RESULTS="$(mktemp)"
RELAY_PID=""
cleanup() {
    [ -n "$RELAY_PID" ] && kill -TERM "$RELAY_PID" 2>/dev/null || true
    rm -f "$RESULTS"
}
trap cleanup EXIT

echo "date: $(date -u), this: $(git rev-parse --short HEAD), other: $(git -C "$OTHER" rev-parse --short HEAD)"
for round in $(seq 1 "$ROUNDS"); do
    for side in other this; do
        bin="$THIS_BIN"
        [ "$side" = other ] && bin="$OTHER_BIN"
        log="$(mktemp)"
        "${RELAY_CPU[@]}" "$bin/relay" --port 0 --metrics-port=-1 "${LIMITS[@]}" >"$log" 2>/dev/null &
        RELAY_PID=$!
        for _ in $(seq 1 100); do
            grep -q "relay listening on" "$log" && break
            sleep 0.1
        done
        url="$(awk '/relay listening on/ {print $4}' "$log")"
        load="$(cut -d' ' -f1 /proc/loadavg)"
        json="$("${BENCH_CPU[@]}" "$THIS_BIN/relay-bench" load --url "$url" --relay-pid "$RELAY_PID" --rooms 16 \
            --message-bytes 256 --window 64 --duration-seconds "$DURATION" --warmup-seconds 2 --json)"
        kill -TERM "$RELAY_PID"
        wait "$RELAY_PID" 2>/dev/null || true
        RELAY_PID=""
        rm -f "$log"
        echo "$side $json" >>"$RESULTS"
        echo "$json" | python3 -c "import json, sys; d = json.load(sys.stdin); print(
            f'round $round $side: load {\"$load\"}, {d[\"messages_per_second\"]:.0f} msg/s,',
            f'relay {d[\"relay_cpu_us_per_message\"]:.2f} us/msg, run-queue wait {d[\"relay_run_queue_wait_ms\"]:.0f} ms')"
    done
done
python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
sides = {}
for line in open(sys.argv[1]):
    side, text = line.split(" ", 1)
    sides.setdefault(side, []).append(json.loads(text)["relay_cpu_us_per_message"])
for side in ("other", "this"):
    values = sides[side]
    print(f"{side}: relay CPU per message mean {statistics.mean(values):.2f} us, "
          f"median {statistics.median(values):.2f} us (n={len(values)})")
ratio = statistics.mean(sides["this"]) / statistics.mean(sides["other"])
print(f"this / other (means): {ratio:.3f}")
EOF
