#!/usr/bin/env bash
# Reproduces the cluster relay figures in BENCHMARKS.md ("Cluster relay"), every row in one run:
# a single relay without --redis beside one Redis and three relay --redis nodes on loopback;
# closed-loop throughput at 256 B and open-loop latency at a fixed rate (5,000 msg/s) for the
# single relay, one cluster node with both peers of every room on it, and rooms split over two
# and three nodes; relay and redis-server CPU and times woken (put on a CPU) per message (/proc,
# over the measured seconds only); JOIN-to-PEER_FOUND latency; Redis memory per room (idle
# connections joined pairwise, the pair's two connections on two nodes). Ends with a summary, one
# line per row.
#
#   scripts/bench-cluster.sh              # about 3 minutes plus the release build
#   DURATION=5 scripts/bench-cluster.sh   # shorter runs
#   MEMORY_ONLY=1 scripts/bench-cluster.sh # Redis memory per room only
#   RESULTS=DIR scripts/bench-cluster.sh  # also keep every row's relay-bench JSON in DIR
#   BIN=DIR scripts/bench-cluster.sh      # the relay and relay-bench in DIR, no build
#
# Everything runs on this machine (2 cores here): Redis, four relays and the load generator
# share them, so the split runs measure the cost of the extra hop on a shared CPU, not scaling.
# The load average is printed before every row: other tenants' load shows in the tail latency.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
ROOMS="${ROOMS:-16}"
RATE="${RATE:-5000}"
JOIN_ROOMS="${JOIN_ROOMS:-200}"
IDLE_CONNECTIONS="${IDLE_CONNECTIONS:-4000}"

if [ -z "${BIN:-}" ]; then   # BIN=DIR: use the relay and relay-bench in DIR (an A/B of two builds)
    swift build -c release --product relay >/dev/null
    swift build -c release --product relay-bench >/dev/null
    BIN="$(swift build -c release --show-bin-path)"
fi

LIMITS=(--messages-per-second 1000000000 --message-burst 1000000000
        --bytes-per-second 4294967296 --byte-burst 4294967296
        --connections-max 100000 --connections-per-address-max 100000
        --roomless-connections-per-address-max 100000
        --joins-per-address-per-minute 1000000 --rooms-max 1000000)

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
if [ -n "${RESULTS:-}" ]; then mkdir -p "$RESULTS"; fi

REDIS_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
for _ in $(seq 1 100); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
done

# start_relay NAME [flags]: sets URL and PID of a relay listening on a free port.
start_relay() {
    local name="$1"
    shift
    "$BIN/relay" --port 0 --metrics-port 0 "$@" "${LIMITS[@]}" >"$WORK/$name.out" 2>/dev/null &
    PID=$!
    PIDS+=("$PID")
    for _ in $(seq 1 100); do
        grep -q "relay listening on" "$WORK/$name.out" && break
        sleep 0.1
    done
    URL="$(awk '/relay listening on/ {print $4}' "$WORK/$name.out")"
}

start_relay single
SINGLE_URL="$URL"
SINGLE_PID="$PID"
URLS=()
NODE_PIDS=()
for node in a b c; do
    start_relay "$node" --redis "redis://127.0.0.1:$REDIS_PORT" --node-id "$node"
    URLS+=("$URL")
    NODE_PIDS+=("$PID")
done
sleep 2  # every node's first heartbeat
echo "redis pid $REDIS_PID on $REDIS_PORT; single relay $SINGLE_URL; nodes ${URLS[*]}"
echo "$(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# Memory first, on an empty Redis (the load runs leave rooms behind for a while).
# Room keys are every key but the nodes' (`sc:node:*`): main's `sc:{hex}` and today's `sc:<base64url>`
# alike, so BIN= runs of an older build count the same way.
rooms_in_redis() {
    local all nodes
    all="$(redis-cli -p "$REDIS_PORT" dbsize)"
    nodes="$(redis-cli -p "$REDIS_PORT" --scan --pattern 'sc:node:*' | wc -l)"
    echo $((all - nodes))
}
# memory_stat NAME: one field of MEMORY STATS (bytes).
memory_stat() {
    redis-cli -p "$REDIS_PORT" memory stats | awk -v k="$1" 'prev == k {print; exit} {prev = $0}' | tr -d '\r'
}
used_memory() { redis-cli -p "$REDIS_PORT" info memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r'; }
# idle_batch COUNT SECONDS: COUNT idle connections joined pairwise (each pair's two on two nodes),
# held SECONDS once open; sets IDLE_PID. Returns once every room is in Redis and settled.
idle_batch() {
    local count="$1" hold="$2" target
    target=$(( $(rooms_in_redis) + count / 2 ))
    "$BIN/relay-bench" idle --url "${URLS[0]}" --url "${URLS[1]}" --connections "$count" \
        --hold-seconds "$hold" --connect-concurrency 200 >>"$WORK/idle.out" &
    IDLE_PID=$!
    for _ in $(seq 1 300); do   # until every room is in Redis (at most 30 s)
        [ "$(rooms_in_redis)" -ge "$target" ] && break
        sleep 0.1
    done
    # The last rooms' second JOINs and notices settle (connections go 200 at a time).
    sleep 3
}
# Two batches of rooms: the whole growth over the rooms (as measured before), and the second
# batch's growth over its own rooms, the marginal cost of a room: what Redis allocates once (about
# 175 KB for the scripts' first runs here, kept after FLUSHALL too) falls in the first batch.
memory() {
    local half=$((IDLE_CONNECTIONS / 2))
    before="$(used_memory)"
    dataset_before="$(memory_stat dataset.bytes)"
    dict_before="$(memory_stat overhead.hashtable.main)"
    clients_before="$(memory_stat clients.normal)"
    echo "== Redis memory: $IDLE_CONNECTIONS idle connections, $((IDLE_CONNECTIONS / 2)) rooms in two batches," \
        "peers on two nodes"
    idle_batch "$half" 40
    FIRST_PID=$IDLE_PID
    first_keys="$(rooms_in_redis)"
    first="$(used_memory)"
    idle_batch "$half" 12
    keys="$(rooms_in_redis)"
    during="$(used_memory)"
    dataset="$(memory_stat dataset.bytes)"
    dict="$(memory_stat overhead.hashtable.main)"
    clients="$(memory_stat clients.normal)"
    local usage="local k = redis.call('SCAN', 0, 'MATCH', 'sc:[^n]*', 'COUNT', 100000)[2][1]
        if k then return redis.call('MEMORY', 'USAGE', k) end return 'n/a'"
    sample="$(redis-cli -p "$REDIS_PORT" eval "$usage" 0)"
    wait "$IDLE_PID" || true
    kill -TERM "$FIRST_PID" 2>/dev/null || true
    wait "$FIRST_PID" 2>/dev/null || true
    grep -E "opened|still" "$WORK/idle.out" || cat "$WORK/idle.out"
    local per=$((keys > 0 ? keys : 1)) second=$((keys - first_keys > 0 ? keys - first_keys : 1))
    echo "room keys in redis: $first_keys, then $keys"
    echo "used_memory: $before -> $during bytes: $(( (during - before) / per )) bytes per room;" \
        "second batch: $(( (during - first) / second )) bytes per room (marginal)"
    echo "  per room overall: keys and values $(( (dataset - dataset_before) / per )) bytes (MEMORY STATS" \
        "dataset.bytes), the keyspace dictionary $(( (dict - dict_before) / per )) (overhead.hashtable.main)," \
        "clients' buffers $(( (clients - clients_before) / per )) (clients.normal)"
    echo "MEMORY USAGE of one room key: $sample bytes"
}
memory
echo
if [ -n "${MEMORY_ONLY:-}" ]; then exit 0; fi

# The relay-bench arguments of each setup: its URLs and the PIDs whose CPU it reports.
SINGLE=(--url "$SINGLE_URL" --relay-pid "$SINGLE_PID")
ONE=(--url "${URLS[0]}" --relay-pid "${NODE_PIDS[0]}" --redis-pid "$REDIS_PID")
TWO=(--url "${URLS[0]}" --url "${URLS[1]}" --relay-pid "${NODE_PIDS[0]}" --relay-pid "${NODE_PIDS[1]}"
     --redis-pid "$REDIS_PID")
THREE=(--url "${URLS[0]}" --url "${URLS[1]}" --url "${URLS[2]}" --relay-pid "${NODE_PIDS[0]}"
       --relay-pid "${NODE_PIDS[1]}" --relay-pid "${NODE_PIDS[2]}" --redis-pid "$REDIS_PID")

# bench KEY LABEL ARGS...: one relay-bench load run; prints its report and keeps its JSON.
bench() {
    local key="$1" label="$2"
    shift 2
    echo "== $label (load average before: $(cut -d' ' -f1-3 /proc/loadavg))"
    "$BIN/relay-bench" load "$@" --rooms "$ROOMS" --message-bytes 256 --duration-seconds "$DURATION" \
        --warmup-seconds "$WARMUP" --json >"$WORK/$key.json"
    cut -d' ' -f1-3 /proc/loadavg >"$WORK/$key.load"
    python3 - "$WORK/$key.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
l = r["latency_us"]
e = r["errors"]
print(f'  {r["messages_per_second"]:,.0f} msg/s; latency p50 {l["p50"] / 1000:.2f} ms, p99 {l["p99"] / 1000:.2f} ms, '
      f'p99.9 {l["p99_9"] / 1000:.2f} ms, max {l["max"] / 1000:.2f} ms')
redis = r["redis_cpu_us_per_message"]
print(f'  CPU per message: relays {r["relay_cpu_us_per_message"]:.2f} us, '
      + (f'redis-server {redis:.2f} us, ' if redis >= 0 else '')
      + f'load generator {r["load_generator_cpu_us_per_message"]:.2f} us; '
      f'relays waited {r["relay_run_queue_wait_ms"]:.0f} ms for a core')
woken, redis_woken = r.get("relay_scheduled_per_message", -1), r.get("redis_scheduled_per_message", -1)
if woken >= 0:
    print(f'  put on a CPU per message: relays {woken:.2f}' + (f', redis-server {redis_woken:.2f}' if redis_woken >= 0 else ''))
print(f'  errors: {sum(e.values())} {e}')
EOF
    if [ -n "${RESULTS:-}" ]; then cp "$WORK/$key.json" "$RESULTS/$key.json"; fi
    echo
}

CLOSED=(--window 64)
OPEN=(--rate "$RATE")
bench closed-single "closed loop (window 64): single relay, no --redis" "${SINGLE[@]}" "${CLOSED[@]}"
bench closed-one "closed loop (window 64): one node (cluster mode, both peers on it)" "${ONE[@]}" "${CLOSED[@]}"
bench closed-two "closed loop (window 64): two nodes (the peers of every room split)" "${TWO[@]}" "${CLOSED[@]}"
bench closed-three "closed loop (window 64): three nodes (the peers of every room split)" "${THREE[@]}" "${CLOSED[@]}"
bench open-single "open loop at $RATE msg/s: single relay, no --redis" "${SINGLE[@]}" "${OPEN[@]}"
bench open-one "open loop at $RATE msg/s: one node (cluster mode)" "${ONE[@]}" "${OPEN[@]}"
bench open-two "open loop at $RATE msg/s: two nodes, peers split" "${TWO[@]}" "${OPEN[@]}"
bench open-three "open loop at $RATE msg/s: three nodes, peers split" "${THREE[@]}" "${OPEN[@]}"

join() {
    echo "== JOIN to PEER_FOUND, $JOIN_ROOMS rooms: $1"
    shift
    "$BIN/relay-bench" load "$@" --rooms "$JOIN_ROOMS" --window 1 --duration-seconds 1 --warmup-seconds 0 \
        | grep -E "JOIN us|errors"
    echo
}
join "one node" --url "${URLS[0]}"
join "peers on two nodes" --url "${URLS[0]}" --url "${URLS[1]}"

echo "== summary ($(date -u '+%H:%M:%S UTC'); load average after each row; % of the single relay and of one node)"
python3 - "$WORK" <<'EOF'
import json, os, sys
work = sys.argv[1]
def row(key):
    return json.load(open(os.path.join(work, key + ".json"))), open(os.path.join(work, key + ".load")).read().strip()
single = row("closed-single")[0]["messages_per_second"]
one = row("closed-one")[0]["messages_per_second"]
for key in ["closed-single", "closed-one", "closed-two", "closed-three"]:
    r, load = row(key)
    m = r["messages_per_second"]
    redis = r["redis_cpu_us_per_message"]
    print(f'{key:13} {m:9,.0f} msg/s  {100 * m / single:4.0f}% {100 * m / one:4.0f}%  '
          f'p99 {r["latency_us"]["p99"] / 1000:7.2f} ms  relays {r["relay_cpu_us_per_message"]:5.2f} us/msg  '
          + (f'redis {redis:5.2f} us/msg' if redis >= 0 else ' ' * 19) + f'  load {load}')
for key in ["open-single", "open-one", "open-two", "open-three"]:
    r, load = row(key)
    l = r["latency_us"]
    redis = r["redis_cpu_us_per_message"]
    woken, redis_woken = r.get("relay_scheduled_per_message", -1), r.get("redis_scheduled_per_message", -1)
    print(f'{key:13} {r["messages_per_second"]:9,.0f} msg/s  p50 {l["p50"] / 1000:6.2f}  p99 {l["p99"] / 1000:6.2f}  '
          f'p99.9 {l["p99_9"] / 1000:6.2f} ms  relays {r["relay_cpu_us_per_message"]:5.2f} us/msg  '
          + (f'redis {redis:5.2f} us/msg' if redis >= 0 else ' ' * 19)
          + (f'  woken/msg relays {woken:.2f}' if woken >= 0 else '')
          + (f' redis {redis_woken:.2f}' if redis_woken >= 0 else '') + f'  load {load}')
EOF
