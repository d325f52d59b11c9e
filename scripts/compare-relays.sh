#!/usr/bin/env bash
# Our relay against the reference relay (the original design's stack: Python 3, asyncio,
# `websockets`, Benchmarks/reference-relay/relay.py), with the same load generator in the same run,
# and the ratios the issue asks for:
#   1. throughput at 256 B (closed loop, 16 rooms, window 64), target: ours >= 20x the reference;
#   2. latency at a fixed rate both relays sustain (open loop; by default a quarter of the
#      reference's measured throughput, rounded down to a thousand: at half, the reference relay
#      fell behind and its p99 was its queue, not its latency);
#   3. idle connections held (10,000 JOINed connections held 20 s) and RSS per connection.
#
#   scripts/compare-relays.sh                                   # about 3 minutes after the builds
#   DURATION=5 IDLE_HOLD=10 scripts/compare-relays.sh           # shorter
#   RATE=2000 IDLE_CONNECTIONS=5000 scripts/compare-relays.sh   # fix the rate, fewer idle connections
#
# Both relays run on CPU 0 and the load generator on CPU 1 (PIN=0: let the kernel place them).
# Each relay is measured while the other sits idle. Our relay's rate limits are raised so they do
# not cap the measurement (the reference relay has none). Not run by CI: timings on a shared
# machine are figures to record in BENCHMARKS.md, not pass/fail.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
ROOMS="${ROOMS:-16}"
WINDOW="${WINDOW:-64}"
IDLE_CONNECTIONS="${IDLE_CONNECTIONS:-10000}"
IDLE_HOLD="${IDLE_HOLD:-20}"
RATE="${RATE:-}"
source scripts/lib/pin-cpus.sh

echo "== build (release) and install"
swift build -c release --product relay >/dev/null
swift build -c release --product relay-bench >/dev/null
BIN="$(swift build -c release --show-bin-path)"
PYTHON="$(Benchmarks/reference-relay/install.sh)"

WORK="$(mktemp -d)"
OURS_PID=""
REFERENCE_PID=""
cleanup() {
    for pid in $OURS_PID $REFERENCE_PID; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# Start a relay in the background, wait for its "listening on ws://..." line; sets STARTED_PID, STARTED_URL.
start() {
    local log="$1"
    shift
    "${RELAY_CPU[@]}" "$@" >"$log" 2>&1 &
    STARTED_PID=$!
    for _ in $(seq 1 150); do
        grep -q "listening on ws://" "$log" && break
        kill -0 "$STARTED_PID" 2>/dev/null || { cat "$log" >&2; exit 1; }
        sleep 0.1
    done
    STARTED_URL="$(grep -o 'ws://[0-9.]*:[0-9]*' "$log" | head -1)"
    [ -n "$STARTED_URL" ] || { echo "relay did not start: $*" >&2; cat "$log" >&2; exit 1; }
}

start "$WORK/ours.log" "$BIN/relay" --port 0 --metrics-port=-1 \
    --messages-per-second 1000000000 --message-burst 1000000000 \
    --bytes-per-second 4294967296 --byte-burst 4294967296 --connections-max 100000 \
    --connections-per-address-max 100000 --joins-per-address-per-minute 1000000 --rooms-max 1000000
OURS_PID=$STARTED_PID
OURS_URL=$STARTED_URL
start "$WORK/reference.log" "$PYTHON" Benchmarks/reference-relay/relay.py --port 0
REFERENCE_PID=$STARTED_PID
REFERENCE_URL=$STARTED_URL

echo "date:    $(date)"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)," \
    "$(swift --version 2>/dev/null | head -1 | sed 's/ (.*//')," \
    "$("$PYTHON" -c 'import sys, websockets; print(f"Python {sys.version.split()[0]}, websockets {websockets.__version__}")')"
echo "ours:      pid $OURS_PID at $OURS_URL"
echo "reference: pid $REFERENCE_PID at $REFERENCE_URL"
if [ ${#RELAY_CPU[@]} -gt 0 ]; then
    echo "pinning:   relays on CPU 0, load generator on CPU 1"
else
    echo "pinning:   none"
fi
echo

# bench NAME RELAY-bench-arguments...: run relay-bench with --json, keep the result, print one line.
bench() {
    local name="$1"
    shift
    echo "\$ relay-bench $* (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    "${BENCH_CPU[@]}" "$BIN/relay-bench" "$@" --json >"$WORK/$name.json"
    python3 - "$WORK/$name.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
if "messages_per_second" in r:
    e = r["errors"]
    print(f'  {r["messages_per_second"]:,.0f} msg/s, {r["megabytes_per_second"]:.2f} MB/s, '
          f'p50 {r["latency_us"]["p50"] / 1000:.2f} ms, p99 {r["latency_us"]["p99"] / 1000:.2f} ms, '
          f'CPU us/msg relay {r["relay_cpu_us_per_message"]:.1f} load generator {r["load_generator_cpu_us_per_message"]:.1f}, '
          f'waiting for a CPU: relay {r["relay_run_queue_wait_ms"]:.0f} ms load generator '
          f'{r["load_generator_run_queue_wait_ms"]:.0f} ms, errors {sum(e.values())}')
else:
    print(f'  {r["still_up"]:,} of {r["requested"]:,} up after {r["hold_seconds"]} s '
          f'(opened in {r["connect_seconds"]} s, closed early {r["closed_early"]}, failed {r["failed"]}), '
          f'RSS {r["relay_rss_kib_before"] / 1024:.1f} -> {r["relay_rss_kib_held"] / 1024:.1f} MiB')
EOF
}

LOAD=(--rooms "$ROOMS" --message-bytes 256 --duration-seconds "$DURATION" --warmup-seconds "$WARMUP")

echo "== 1. throughput, 256 B frames, closed loop (window $WINDOW per client)"
bench ours-throughput load --url "$OURS_URL" --relay-pid "$OURS_PID" "${LOAD[@]}" --window "$WINDOW"
bench reference-throughput load --url "$REFERENCE_URL" --relay-pid "$REFERENCE_PID" "${LOAD[@]}" --window "$WINDOW"
echo

if [ -z "$RATE" ]; then
    # A quarter of what the reference relay forwarded at saturation: a rate it keeps up with.
    RATE="$(python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))
print(max(1000, int(r["messages_per_second"] * 0.25) // 1000 * 1000))' "$WORK/reference-throughput.json")"
fi
echo "== 2. latency at a fixed $RATE msg/s, 256 B frames, open loop"
bench ours-latency load --url "$OURS_URL" --relay-pid "$OURS_PID" "${LOAD[@]}" --rate "$RATE"
bench reference-latency load --url "$REFERENCE_URL" --relay-pid "$REFERENCE_PID" "${LOAD[@]}" --rate "$RATE"
echo

echo "== 3. $IDLE_CONNECTIONS idle connections (JOINed pairwise), held $IDLE_HOLD s"
bench ours-idle idle --url "$OURS_URL" --relay-pid "$OURS_PID" --connections "$IDLE_CONNECTIONS" \
    --hold-seconds "$IDLE_HOLD"
bench reference-idle idle --url "$REFERENCE_URL" --relay-pid "$REFERENCE_PID" --connections "$IDLE_CONNECTIONS" \
    --hold-seconds "$IDLE_HOLD"
echo

echo "== ratios (ours / reference unless said otherwise)"
python3 - "$WORK" "$RATE" <<'EOF'
import json, os, sys
work, rate = sys.argv[1], int(sys.argv[2])
load = lambda name: json.load(open(os.path.join(work, name + ".json")))
ours_t, ref_t = load("ours-throughput"), load("reference-throughput")
ours_l, ref_l = load("ours-latency"), load("reference-latency")
ours_i, ref_i = load("ours-idle"), load("reference-idle")

def sustained(r):
    # Kept up: delivered at least 98% of the scheduled rate, with no errors.
    return r["messages_per_second"] >= 0.98 * rate and sum(r["errors"].values()) == 0

def per_connection_kib(r):
    up = r["still_up"]
    return (r["relay_rss_kib_held"] - r["relay_rss_kib_before"]) / up if up else float("nan")

rows = [
    ("throughput, 256 B (msg/s)", f'{ours_t["messages_per_second"]:,.0f}', f'{ref_t["messages_per_second"]:,.0f}',
     f'{ours_t["messages_per_second"] / ref_t["messages_per_second"]:.1f}x (target >= 20x)'),
    ("relay CPU per message (us)", f'{ours_t["relay_cpu_us_per_message"]:.1f}', f'{ref_t["relay_cpu_us_per_message"]:.1f}',
     f'reference / ours {ref_t["relay_cpu_us_per_message"] / ours_t["relay_cpu_us_per_message"]:.1f}x'),
    (f"p50 at {rate:,} msg/s (ms)", f'{ours_l["latency_us"]["p50"] / 1000:.2f}', f'{ref_l["latency_us"]["p50"] / 1000:.2f}',
     f'reference / ours {ref_l["latency_us"]["p50"] / ours_l["latency_us"]["p50"]:.1f}x'),
    (f"p99 at {rate:,} msg/s (ms)", f'{ours_l["latency_us"]["p99"] / 1000:.2f}', f'{ref_l["latency_us"]["p99"] / 1000:.2f}',
     f'reference / ours {ref_l["latency_us"]["p99"] / ours_l["latency_us"]["p99"]:.1f}x'),
    ("rate sustained (>= 98%, no errors)", "yes" if sustained(ours_l) else "NO",
     "yes" if sustained(ref_l) else "NO", "" if sustained(ref_l) else "the reference's p99 is its backlog: set RATE lower"),
    ("idle connections held", f'{ours_i["still_up"]:,} of {ours_i["requested"]:,}',
     f'{ref_i["still_up"]:,} of {ref_i["requested"]:,}',
     f'{ours_i["still_up"] / max(ref_i["still_up"], 1):.2f}x'),
    ("RSS per idle connection (KiB)", f"{per_connection_kib(ours_i):.1f}", f"{per_connection_kib(ref_i):.1f}",
     f"reference / ours {per_connection_kib(ref_i) / per_connection_kib(ours_i):.1f}x"),
    ("RSS holding them (MiB)", f'{ours_i["relay_rss_kib_held"] / 1024:.1f}', f'{ref_i["relay_rss_kib_held"] / 1024:.1f}', ""),
]
width = [max(len(row[i]) for row in rows + [("", "ours", "reference", "ratio")]) for i in range(4)]
for row in [("", "ours", "reference", "ratio")] + rows:
    print("  " + "  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)))
EOF
