#!/usr/bin/env bash
# Reproduces the cluster relay figures in BENCHMARKS.md ("Cluster relay"): one Redis and three
# relay nodes on loopback; throughput at 256 B and JOIN-to-PEER_FOUND latency with every room on
# one node (cluster mode, peers together) against rooms split over two and three nodes; then Redis
# memory per room (idle connections joined pairwise, the pair's two connections on two nodes).
#
#   scripts/bench-cluster.sh              # about 2 minutes plus the release build
#   DURATION=5 scripts/bench-cluster.sh   # shorter runs
#   MEMORY_ONLY=1 scripts/bench-cluster.sh # Redis memory per room only
#
# Everything runs on this machine (2 cores here): Redis, three relays and the load generator
# share them, so the split runs measure the cost of the extra hop on a shared CPU, not scaling.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
ROOMS="${ROOMS:-16}"
JOIN_ROOMS="${JOIN_ROOMS:-200}"
IDLE_CONNECTIONS="${IDLE_CONNECTIONS:-4000}"

swift build -c release --product relay >/dev/null
swift build -c release --product relay-bench >/dev/null
BIN="$(swift build -c release --show-bin-path)"

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

REDIS_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
done

URLS=()
for node in a b c; do
    "$BIN/relay" --port 0 --metrics-port 0 --redis "redis://127.0.0.1:$REDIS_PORT" --node-id "$node" \
        "${LIMITS[@]}" >"$WORK/$node.out" 2>/dev/null &
    PIDS+=($!)
    for _ in $(seq 1 100); do
        grep -q "relay listening on" "$WORK/$node.out" && break
        sleep 0.1
    done
    URLS+=("$(awk '/relay listening on/ {print $4}' "$WORK/$node.out")")
done
sleep 2  # every node's first heartbeat
echo "redis on $REDIS_PORT; nodes ${URLS[*]}"

# Memory first, on an empty Redis (the load runs leave rooms behind for a while).
memory() {
    before="$(redis-cli -p "$REDIS_PORT" info memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r')"
    rooms=$((IDLE_CONNECTIONS / 2))
    echo "== Redis memory: $IDLE_CONNECTIONS idle connections, $rooms rooms, peers on two nodes"
    "$BIN/relay-bench" idle --url "${URLS[0]}" --url "${URLS[1]}" --connections "$IDLE_CONNECTIONS" \
        --hold-seconds 10 --connect-concurrency 200 >"$WORK/idle.out" &
    IDLE_PID=$!
    keys=0
    for _ in $(seq 1 300); do   # until every room is in Redis (at most 30 s)
        keys="$(redis-cli -p "$REDIS_PORT" --scan --pattern 'sc:{*' | wc -l)"
        [ "$keys" -ge "$rooms" ] && break
        sleep 0.1
    done
    during="$(redis-cli -p "$REDIS_PORT" info memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r')"
    sample="$(redis-cli -p "$REDIS_PORT" --scan --pattern 'sc:{*' | head -1 || true)"
    wait "$IDLE_PID" || true
    grep -E "opened|still" "$WORK/idle.out" || cat "$WORK/idle.out"
    echo "room keys in redis: $keys"
    echo "used_memory: $before -> $during bytes: $(( (during - before) / (keys > 0 ? keys : 1) )) bytes per room"
    echo "MEMORY USAGE of one room key: $(redis-cli -p "$REDIS_PORT" memory usage "$sample" 2>/dev/null || echo n/a) bytes"
}
memory
echo

run() {
    local label="$1"
    shift
    echo "== $label"
    "$BIN/relay-bench" load "$@" --rooms "$ROOMS" --message-bytes 256 --window 64 \
        --duration-seconds "$DURATION" --warmup-seconds "$WARMUP"
    echo
}
if [ -z "${MEMORY_ONLY:-}" ]; then
run "one node (cluster mode, both peers on it)" --url "${URLS[0]}"
run "two nodes (the peers of every room split)" --url "${URLS[0]}" --url "${URLS[1]}"
run "three nodes (the peers of every room split)" --url "${URLS[0]}" --url "${URLS[1]}" --url "${URLS[2]}"

rate() {
    echo "== open loop at 5,000 msg/s: $1"
    shift
    "$BIN/relay-bench" load "$@" --rooms "$ROOMS" --message-bytes 256 --rate 5000 \
        --duration-seconds "$DURATION" --warmup-seconds "$WARMUP" | grep -E "messages/s|latency|errors"
    echo
}
rate "one node" --url "${URLS[0]}"
rate "peers on two nodes" --url "${URLS[0]}" --url "${URLS[1]}"

join() {
    echo "== JOIN to PEER_FOUND, $JOIN_ROOMS rooms: $1"
    shift
    "$BIN/relay-bench" load "$@" --rooms "$JOIN_ROOMS" --window 1 --duration-seconds 1 --warmup-seconds 0 \
        | grep -E "JOIN us|errors"
    echo
}
join "one node" --url "${URLS[0]}"
join "peers on two nodes" --url "${URLS[0]}" --url "${URLS[1]}"
fi

