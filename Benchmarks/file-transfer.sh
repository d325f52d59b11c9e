#!/usr/bin/env bash
# One file through a local relay between two release clients: time, MB/s, peak RSS of each side.
#
#   swift build -c release --product relay && swift build -c release --product securechat
#   Benchmarks/file-transfer.sh SIZE_MIB [relay flags...]
#   Benchmarks/file-transfer.sh 16                       # the relay's defaults
#   Benchmarks/file-transfer.sh 1024 --bytes-per-second 4294967296 --byte-burst 67108864 \
#       --messages-per-second 1000000 --message-burst 1000000
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.build/release
size_mib=${1:?size in MiB}
shift
work=$(mktemp -d)
trap 'kill $relay_pid $feeder_pid 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir "$work/in" "$work/out"
head -c $((size_mib * 1048576)) /dev/urandom >"$work/in/file.bin"
port=$((20000 + RANDOM % 20000))
"$bin/relay" --host 127.0.0.1 --port "$port" --metrics-port=-1 "$@" >"$work/relay.log" 2>&1 &
relay_pid=$!
sleep 1
room=BENCH$RANDOM$RANDOM
# The receiver keeps stdin open (a FIFO fed by sleep) until the sender is done.
mkfifo "$work/stdin"
sleep 100000 >"$work/stdin" &
feeder_pid=$!
/usr/bin/time -v "$bin/securechat" "$room" --relay "ws://127.0.0.1:$port" --json --accept-files "$work/out" \
    <"$work/stdin" >"$work/receiver.json" 2>"$work/receiver.time" &
receiver_pid=$!
sleep 0.5
start=$(date +%s.%N)
/usr/bin/time -v "$bin/securechat" "$room" --relay "ws://127.0.0.1:$port" --json --send "$work/in/file.bin" \
    --drain-timeout 600 </dev/null >"$work/sender.json" 2>"$work/sender.time"
end=$(date +%s.%N)
kill $feeder_pid
wait $receiver_pid || true
cmp "$work/in/file.bin" "$work/out/file.bin"
seconds=$(echo "$end - $start" | bc)
echo "size ${size_mib} MiB, ${seconds} s (from the sender's start, key exchange and hashing included)," \
    "$(echo "scale=1; $size_mib * 1.048576 / $seconds" | bc) MB/s"
echo "sender peak RSS $(grep 'Maximum resident' "$work/sender.time" | awk '{print $NF}') KiB," \
    "receiver peak RSS $(grep 'Maximum resident' "$work/receiver.time" | awk '{print $NF}') KiB"
grep -o '"chunks_resent":[0-9]*' "$work/sender.json"
