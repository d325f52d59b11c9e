#!/usr/bin/env bash
# Installs magic-wormhole, its mailbox server and its transit relay into
# Benchmarks/magic-wormhole/.venv (gitignored), pinned in requirements.txt; used by
# scripts/bench-files.py to measure `wormhole send` beside `securechat --send` in the same run.
#
#   Benchmarks/magic-wormhole/install.sh          # idempotent; prints the venv's bin directory
#
# Needs python3 (3.10+) with venv (Debian: apt-get install -y python3 python3-venv) and PyPI.
set -euo pipefail
cd "$(dirname "$0")"

. ../../scripts/lib/venv.sh
make_venv
.venv/bin/wormhole --version >&2
echo "$(pwd)/.venv/bin"
