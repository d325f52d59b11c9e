#!/usr/bin/env bash
# Installs what the reference relay needs into Benchmarks/reference-relay/.venv (gitignored):
# a Python 3 virtual environment with the pinned `websockets` from requirements.txt.
#
#   Benchmarks/reference-relay/install.sh          # idempotent; prints the interpreter to use
#
# Needs python3 (3.10+, as the original design says) with the venv module; on Debian:
# apt-get install -y python3 python3-venv.
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
.venv/bin/python -c 'import websockets, sys; print(f"reference relay: Python {sys.version.split()[0]}, websockets {websockets.__version__}")' >&2
echo "$(pwd)/.venv/bin/python"
