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

. ../../scripts/lib/venv.sh
make_venv
.venv/bin/python -c 'import websockets, sys; print(f"reference relay: Python {sys.version.split()[0]}, websockets {websockets.__version__}")' >&2
echo "$(pwd)/.venv/bin/python"
