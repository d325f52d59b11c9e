#!/usr/bin/env bash
# Start securechat: a local relay (unless one is already running) and a chat client.
#
#   ./run.sh                create a new room; the client prints the code and what the second person types
#   ./run.sh --join         join a room: asks for the code (Tab completes its words)
#   ./run.sh --join --json  any further arguments go to the client (see: ./run.sh --help)
#
# A code given as an argument (./run.sh CODE) still works, but other users of the machine can read a
# command line (ps, /proc) and the shell keeps it in its history: run.sh warns and starts again
# without it, handing the code to the client in the environment (SECURECHAT_CODE).
#
# Environment: RELAY_HOST (default 127.0.0.1; 0.0.0.0 lets other machines connect, over plain ws://),
# RELAY_PORT (8080).
# On a fresh Debian machine (as root) it first installs what is missing and builds (a few minutes once).
# Nothing is written to disk but the build itself: the relay logs to this terminal's stderr only when
# something goes wrong, and the client keeps everything in memory.
set -euo pipefail
cd "$(dirname "$0")"

if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    echo "run.sh: warning: the code was on the command line, where other users of this machine can read it" \
        "(ps, /proc), and your shell may keep it in its history; next time run ./run.sh --join and type it" >&2
    # Start again without it, so that this shell's command line (shown for as long as the chat lasts)
    # no longer holds it: the client reads it from the environment, which only this user and root see.
    export SECURECHAT_CODE=$1
    shift
    exec "./$(basename "$0")" --join "$@"
fi

relay_host=${RELAY_HOST:-127.0.0.1}
relay_port=${RELAY_PORT:-8080}

scripts/install-deps.sh
echo "run.sh: building relay and securechat (release; the first build takes a few minutes)..." >&2
# One `swift build` of the whole package (the simulator and relay-bench too, under a minute more the
# first time) rather than one per product: one plan and one SwiftPM start instead of three. And the
# same build every time, whoever starts it from wherever, so that a start on a built checkout does
# no build work (docs/RELEASE.md has the figure and the command):
# - the output goes through a pipe even on a terminal: on a terminal SwiftPM adds -color-diagnostics
#   to every compile command, and a changed command recompiles every Swift module (4 minutes here),
#   so a start from a terminal after a build from a script (or the other way round) rebuilt all;
# - the environment is PATH (swift's directory, then the system's) and HOME only: SwiftPM
#   re-evaluates the manifest and re-plans the build (2 to 14 s here) whenever any variable differs
#   from the previous build's, and every terminal has its own (TMUX_PANE, TERM, SHLVL, ...).
swift_dir=$(dirname "$(command -v swift)")
env -i PATH="$swift_dir:/usr/local/bin:/usr/bin:/bin" HOME="${HOME:-}" swift build -c release 2>&1 | cat >&2
bin=.build/release  # SwiftPM's link to .build/<triple>/release

relay_up() { (exec 3<>"/dev/tcp/${1}/${relay_port}") 2>/dev/null; }
connect_host=$relay_host
if [ "$relay_host" = "0.0.0.0" ]; then
    # Listening everywhere: connect (and tell the peer to connect) through this machine's address.
    connect_host=$(hostname -I 2>/dev/null | awk '{print $1}')
    [ -n "$connect_host" ] || connect_host=127.0.0.1
fi

relay_pid=""
if relay_up "$connect_host"; then
    echo "run.sh: using the relay already listening on ${connect_host}:${relay_port}" >&2
else
    env -u SECURECHAT_CODE "$bin/relay" --host "$relay_host" --port "$relay_port" --log-level warning >/dev/null &
    relay_pid=$!
    trap '[ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null; wait 2>/dev/null || true' EXIT
    for _ in $(seq 1 100); do
        relay_up "$connect_host" && break
        kill -0 "$relay_pid" 2>/dev/null || { echo "run.sh: the relay failed to start" >&2; exit 1; }
        sleep 0.1
    done
    echo "run.sh: relay started on ws://${relay_host}:${relay_port} (it stops when this client exits)" >&2
fi
if [ "$connect_host" != "127.0.0.1" ] && [ "$connect_host" != "localhost" ]; then
    echo "run.sh: the relay is reached over plain ws:// (no TLS): anyone on the network path sees the room," \
        "when and how much each of you sends, and your addresses (not your messages or the password, which" \
        "are end-to-end encrypted). Use it on a network you trust; across the internet run relay with" \
        "--tls-cert-file/--tls-key-file and wss:// (docs/RELAY.md)." >&2
fi

# The client prints the code and the exact command for the second person; on this machine that is
# ./run.sh --join.
SECURECHAT_PEER_COMMAND="./run.sh" "$bin/securechat" --relay "ws://${connect_host}:${relay_port}" "$@"
