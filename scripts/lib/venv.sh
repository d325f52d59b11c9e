# Sourced by the Benchmarks/*/install.sh scripts: make_venv creates (once) a Python 3.10+ virtual
# environment in ./.venv and installs ./requirements.txt into it (pinned; idempotent).
make_venv() {
    local python="${PYTHON:-python3}"
    "$python" -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ needed"; import venv' || {
        echo "install.sh: needs $python 3.10+ with venv (Debian: apt-get install -y python3 python3-venv)" >&2
        exit 1
    }
    if [ ! -x .venv/bin/python ]; then
        "$python" -m venv .venv
    fi
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
}
