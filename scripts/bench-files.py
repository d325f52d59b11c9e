#!/usr/bin/env python3
"""File-transfer benchmark for BENCHMARKS.md ("File transfer"): securechat and magic-wormhole, side by side.

In one run, for each round and each tool, one file of --size-mib MiB of random bytes goes from a sender to a
receiver on loopback:
  - securechat: a local `relay` with its default settings and two `securechat` processes in pipe mode
    (`--send FILE` and `--accept-files DIR`, the code from SECURECHAT_CODE with `--join`);
  - magic-wormhole 0.24: a local mailbox server and transit relay (Benchmarks/magic-wormhole/install.sh),
    `wormhole send --code` and `wormhole receive --accept-file`.
It prints the wall time from both processes started to the receiver's exit, MB/s (10^6 bytes per second of that
time, so the key exchange is included for both), and the peak RSS of sender and receiver (ru_maxrss from wait4).
The received file is compared with the sent one byte for byte; a mismatch fails the run. The tools alternate
within a round so that both see the same machine load.

Usage: for p in securechat relay; do swift build -c release --product $p; done   (one --product per build: SwiftPM keeps only the last)
       Benchmarks/magic-wormhole/install.sh
       python3 scripts/bench-files.py [--size-mib 1024] [--rounds 3] [--bin .build/release] [--only securechat]
Only loopback is used; every wait is bounded; the files live in a temporary directory removed at the end.
"""
import argparse
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORMHOLE_BIN = os.path.join(ROOT, "Benchmarks", "magic-wormhole", ".venv", "bin")
TIMEOUT_SECONDS = 900


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port, timeout_seconds=20):
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {timeout_seconds} s")


def reap(process, name, deadline):
    """Waits for `process` (until the monotonic `deadline`); returns its peak RSS in KiB (ru_maxrss)."""
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid == process.pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            if process.returncode != 0:
                raise RuntimeError(f"{name} exited with {process.returncode}")
            return usage.ru_maxrss
        time.sleep(0.01)
    process.kill()
    raise RuntimeError(f"{name} did not finish within {TIMEOUT_SECONDS} s")


def transfer(sender_command, receiver_command, environment, received_path, sent_path):
    """Starts both, waits for both; returns (seconds to the receiver's exit, sender KiB, receiver KiB)."""
    started = time.monotonic()
    deadline = started + TIMEOUT_SECONDS
    quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sender = subprocess.Popen(sender_command, env=environment, **quiet)
    receiver = subprocess.Popen(receiver_command, env=environment, **quiet)
    receiver_kib = reap(receiver, "receiver", deadline)
    seconds = time.monotonic() - started
    sender_kib = reap(sender, "sender", deadline)
    if not files_equal(sent_path, received_path):
        raise RuntimeError(f"{received_path} differs from {sent_path}")
    return seconds, sender_kib, receiver_kib


def files_equal(left, right, block_bytes=1 << 20):
    with open(left, "rb") as a, open(right, "rb") as b:
        while True:
            x, y = a.read(block_bytes), b.read(block_bytes)
            if x != y:
                return False
            if not x:
                return True


def securechat_round(binary_dir, sent_path, work):
    relay = subprocess.Popen([f"{binary_dir}/relay", "--port", "0", "--metrics-port=-1"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = relay.stdout.readline()
        if not line.startswith("relay listening on "):
            raise RuntimeError(f"relay: {line!r}")
        url = line.split()[3]
        inbox = tempfile.mkdtemp(dir=work, prefix="inbox-")
        environment = dict(os.environ, SECURECHAT_CODE=f"FILES{secrets.randbelow(10**9)}-apple-banana")
        client = [f"{binary_dir}/securechat", "--join", "--relay", url]
        result = transfer(client + ["--send", sent_path], client + ["--accept-files", inbox], environment,
                          os.path.join(inbox, os.path.basename(sent_path)), sent_path)
        shutil.rmtree(inbox)
        return result
    finally:
        relay.kill()
        relay.wait()


class Wormhole:
    """A local mailbox server and transit relay, so that wormhole never leaves loopback."""

    def __init__(self, work):
        self.mailbox_port, self.transit_port = free_port(), free_port()
        twist = os.path.join(WORMHOLE_BIN, "twist")
        log = open(os.path.join(work, "twist.log"), "wb")
        self.servers = [
            subprocess.Popen([twist, "wormhole-mailbox", f"--port=tcp:{self.mailbox_port}:interface=127.0.0.1"],
                             cwd=work, stdout=log, stderr=log),
            subprocess.Popen([twist, "transitrelay", f"--port=tcp:{self.transit_port}:interface=127.0.0.1"],
                             cwd=work, stdout=log, stderr=log),
        ]
        wait_for_port(self.mailbox_port)
        wait_for_port(self.transit_port)

    def round(self, sent_path, work):
        wormhole = [os.path.join(WORMHOLE_BIN, "wormhole"), "--relay-url", f"ws://127.0.0.1:{self.mailbox_port}/v1",
                    "--transit-helper", f"tcp:127.0.0.1:{self.transit_port}"]
        code = f"{secrets.randbelow(1000)}-apple-banana"
        received = os.path.join(work, "wormhole-received")
        result = transfer(wormhole + ["send", "--code", code, sent_path],
                          wormhole + ["receive", "--accept-file", "--output-file", received, code],
                          dict(os.environ), received, sent_path)
        os.remove(received)
        return result

    def close(self):
        for server in self.servers:
            server.terminate()
            server.wait()


def report(name, results, size_bytes):
    seconds = [r[0] for r in results]
    rates = [size_bytes / s / 1e6 for s in seconds]
    print(f"{name:12} time median {statistics.median(seconds):6.2f} s (min {min(seconds):.2f}, max {max(seconds):.2f})"
          f"  MB/s median {statistics.median(rates):6.1f} (min {min(rates):.1f}, max {max(rates):.1f})"
          f"  peak RSS sender {max(r[1] for r in results) / 1024:.1f} MiB,"
          f" receiver {max(r[2] for r in results) / 1024:.1f} MiB  (n={len(results)})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bin", default=os.path.join(ROOT, ".build", "release"))
    parser.add_argument("--only", choices=["securechat", "wormhole"])
    arguments = parser.parse_args()
    tools = [arguments.only] if arguments.only else ["securechat", "wormhole"]
    if "wormhole" in tools and not os.access(os.path.join(WORMHOLE_BIN, "wormhole"), os.X_OK):
        sys.exit("bench-files: run Benchmarks/magic-wormhole/install.sh first")
    work = tempfile.mkdtemp(prefix="bench-files-")
    wormhole = None
    try:
        sent = os.path.join(work, "payload.bin")
        with open(sent, "wb") as out:
            for _ in range(arguments.size_mib):
                out.write(os.urandom(1 << 20))
        size_bytes = arguments.size_mib << 20
        wormhole = Wormhole(work) if "wormhole" in tools else None
        results = {tool: [] for tool in tools}
        for _ in range(arguments.rounds):
            for tool in tools:
                if tool == "securechat":
                    results[tool].append(securechat_round(arguments.bin, sent, work))
                else:
                    results[tool].append(wormhole.round(sent, work))
        print(f"{arguments.size_mib} MiB on loopback, {arguments.rounds} rounds, tools alternating:")
        for tool in tools:
            report(tool, results[tool], size_bytes)
    finally:
        if wormhole:
            wormhole.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
