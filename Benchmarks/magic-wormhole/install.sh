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

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ needed"; import venv' || {
    echo "install.sh: needs $PYTHON 3.10+ with venv (Debian: apt-get install -y python3 python3-venv)" >&2
    exit 1
}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
.venv/bin/wormhole --version >&2
echo "$(pwd)/.venv/bin"
