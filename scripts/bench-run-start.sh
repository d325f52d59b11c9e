#!/usr/bin/env bash
# How long `./run.sh` takes to show the chat's input line (the prompt) on a checkout that is
# already built: the README's two people on one machine, each in a tmux terminal. Per run, the
# first `./run.sh` creates a room (and starts the relay), the second `./run.sh --join` asks for the
# code, which is typed at once (the one the first prints). The first is timed from its start to its
# prompt on the screen (tmux polled every 20 ms); the second from its start to the code prompt, and
# from the code's Enter to its chat prompt and to CONNECTED. Then both leave (Ctrl-C) and the next
# run starts.
#
#   scripts/bench-run-start.sh [RUNS]     (default 5; RELAY_PORT defaults to a random 18xxx port)
#
# Builds first (not timed) through run.sh's own build command. Figures: docs/RELEASE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
export RELAY_PORT=${RELAY_PORT:-$((18000 + RANDOM % 1000))}
tmux_=(tmux -L "securechat-bench-$$")
cleanup() { "${tmux_[@]}" kill-server 2>/dev/null || true; }
trap cleanup EXIT

screen() { "${tmux_[@]}" capture-pane -p -t "$1" 2>/dev/null || true; }
# wait_for SESSION REGEX TIMEOUT_SECONDS STARTED: seconds since STARTED ($EPOCHREALTIME) when REGEX
# is on the screen; fails on timeout.
wait_for() {
    while ! screen "$1" | grep -qE "$2"; do
        if (( $(echo "$EPOCHREALTIME - $4 > $3" | bc) )); then
            echo "bench-run-start: timed out waiting for /$2/ in $1; its screen:" >&2
            screen "$1" >&2
            return 1
        fi
        sleep 0.02
    done
    echo "$EPOCHREALTIME - $4" | bc
}
relay_down() { ! (exec 3<>"/dev/tcp/127.0.0.1/${RELAY_PORT}") 2>/dev/null; }

env -i PATH="$(dirname "$(command -v swift)"):/usr/local/bin:/usr/bin:/bin" HOME="${HOME:-}" \
    swift build -c release 2>&1 | cat > /dev/null  # exactly run.sh's build, so that it has nothing to do
code_pattern='Your code: [0-9A-Z]+-[a-z]+-[a-z]+'
for run in $(seq 1 "$runs"); do
    started=$EPOCHREALTIME
    "${tmux_[@]}" new-session -d -s "first$run" -x 120 -y 40 "./run.sh; sleep 600"
    first=$(wait_for "first$run" '^>' 120 "$started")
    code=$(screen "first$run" | grep -oE "$code_pattern" | head -1 | cut -d' ' -f3)
    started=$EPOCHREALTIME
    "${tmux_[@]}" new-session -d -s "second$run" -x 120 -y 40 "./run.sh --join; sleep 600"
    asked=$(wait_for "second$run" '^Code \(' 120 "$started")
    started=$EPOCHREALTIME
    "${tmux_[@]}" send-keys -t "second$run" -l "$code"
    "${tmux_[@]}" send-keys -t "second$run" Enter
    second=$(wait_for "second$run" '^>' 120 "$started")
    connected=$(wait_for "second$run" '^ CONNECTED \|' 120 "$started")
    printf 'run %d: ./run.sh prompt %.2f s; ./run.sh --join code prompt %.2f s, then chat prompt %.2f s,' \
        "$run" "$first" "$asked" "$second"
    printf ' CONNECTED %.2f s\n' "$connected"
    "${tmux_[@]}" send-keys -t "second$run" C-c
    "${tmux_[@]}" send-keys -t "first$run" C-c
    for _ in $(seq 1 100); do relay_down && break; sleep 0.1; done  # the relay stops with the first client
    "${tmux_[@]}" kill-session -t "second$run"
    "${tmux_[@]}" kill-session -t "first$run"
done
