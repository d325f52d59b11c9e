#!/bin/bash
# CPU time of each process of one file transfer (BENCHMARKS.md, "File transfer"): a local relay with
# its default settings, a securechat sender (--send) and receiver (--accept-files), release builds.
# Prints user and system seconds for the sender and receiver (/usr/bin/time) and the relay
# (/proc/PID/stat before it is stopped). Wall times here include start-up; use bench-files.py for
# throughput.
#
# Usage: for p in securechat relay; do swift build -c release --product $p; done
#        scripts/cpu-files.sh [SIZE_MIB (default 1024)] [BIN_DIR (default .build/release)]
set -euo pipefail
size_mib=${1:-1024}
bin=$(cd "${2:-.build/release}" && pwd)
work=$(mktemp -d)
trap 'kill "$relay" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
head -c $((size_mib << 20)) /dev/urandom > file.bin
mkdir in
"$bin/relay" --port 0 --metrics-port=-1 > relay.out 2>&1 &
relay=$!
for _ in $(seq 50); do grep -q "^relay listening on " relay.out && break; sleep 0.1; done
url=$(sed -n 's/^relay listening on \([^ ]*\).*/\1/p' relay.out)
export SECURECHAT_CODE="CPU$RANDOM-apple-banana"
# The receiver's input ends once it reports the file done (bounded: 600 s).
( /usr/bin/time -f "receiver user %U s, sys %S s" "$bin/securechat" --join --relay "$url" --json \
    --accept-files in < <(timeout 600 bash -c 'until grep -q file_done recv.json 2>/dev/null; do sleep 0.1; done') \
    > recv.json 2> recv.err ) &
receiver=$!
/usr/bin/time -f "sender user %U s, sys %S s" "$bin/securechat" --join --relay "$url" --send file.bin \
    < /dev/null > send.out 2> send.err
wait "$receiver"
read -r -a stat < "/proc/$relay/stat"
ticks=$(getconf CLK_TCK)
echo "relay user $(echo "scale=2; ${stat[13]} / $ticks" | bc) s, sys $(echo "scale=2; ${stat[14]} / $ticks" | bc) s"
tail -n 1 send.err
tail -n 1 recv.err
cmp -s file.bin in/file.bin && echo "received file identical ($size_mib MiB)"
