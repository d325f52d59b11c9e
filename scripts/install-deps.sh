#!/usr/bin/env bash
# Installs the Debian packages securechat needs to build, run and test, if any are missing.
# Needs root (CI runs as root; on a workstation run it with sudo). Swift itself (6.x) must already be
# on PATH: https://www.swift.org/install/linux/
set -euo pipefail

packages=(
    libsodium-dev   # libsodium 1.0.18: all the cryptography (CSodium system-library target)
    libedit-dev     # BSD libedit: the client's non-blocking input line (CEditline target)
    pkg-config      # SwiftPM finds libsodium and libedit through it
    openssl         # integration tests make a self-signed certificate for wss://
    strace          # integration tests prove the client writes no file
    tmux            # integration tests drive the interactive terminal like a person
    procps          # ps/pgrep for the tests' process handling
    binutils        # ld.gold links the Swift binaries; nm for the isolation test; readelf for the release test
    util-linux      # prlimit and setpriv: tests run a client as another user and limit locked memory
    microsocks      # a real SOCKS5 proxy: the client's --proxy tests (ClientProxyTests)
    tor             # checks docs/RELAY.md's onion-service torrc (networking off; RelayTorrcTests)
    debootstrap     # scripts/make-debian-root.sh: a Debian 12 without Swift for the release-binary test
    debian-archive-keyring  # ... and the keys that debootstrap checks the Debian packages against
    diffoscope-minimal  # scripts/check-reproducible.sh: shows what differs between two builds
    redis-server    # a real Redis for the cluster relay's tests (RelayClusterTests start their own)
    redis-tools     # redis-cli: the cluster tests read what Redis holds and watch what it sees
)

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: need root to apt-get install ${missing[*]} (try: sudo $0)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # tor is here for its binary only (RelayTorrcTests runs it offline). On a machine with systemd,
    # Debian starts the daemon on install: it would reach out to the Tor network from this machine
    # and hold 127.0.0.1:9050, which ClientProxyTests needs free. Stop what this script started.
    if [[ " ${missing[*]} " == *" tor "* ]] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        echo "install-deps: stopping and disabling the tor service Debian started (the tests run tor themselves)"
        systemctl disable --now tor.service >/dev/null 2>&1 || true
    fi
    # redis-server likewise: Debian starts a daemon on 127.0.0.1:6379. The tests start their own
    # on free ports with persistence off; a system one would only hold memory and a port.
    if [[ " ${missing[*]} " == *" redis-server "* ]] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        echo "install-deps: stopping and disabling the redis-server service Debian started (the tests run their own)"
        systemctl disable --now redis-server.service >/dev/null 2>&1 || true
    fi
fi

if ! command -v swift >/dev/null 2>&1; then
    echo "install-deps: no 'swift' on PATH; install Swift 6 from https://www.swift.org/install/linux/" >&2
    exit 1
fi
