#!/usr/bin/env python3
"""Client benchmarks for BENCHMARKS.md ("Client" section).

Measures, on loopback against a real relay:
  1. time from both `securechat` processes started to both CONNECTED (JSON state events),
  2. the client's resident memory (VmRSS once CONNECTED, VmHWM after 500 messages each way),
  3. how long those 500 messages each way take to arrive (typed at once: more than the relay's
     default burst, so its rate limit, 50 frames/s per connection, sets the pace),
  4. `securechat --help` wall-clock start-up time.

Usage: for p in securechat relay; do swift build -c release --product $p; done   (one --product per build: SwiftPM keeps only the last)
       python3 scripts/bench-client.py [--runs 30] [--bin .build/release]
Only loopback is used; every loop is bounded; nothing is written to disk.
"""
import argparse
import json
import os
import selectors
import statistics
import subprocess
import time


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def summary(values, unit, scale=1.0):
    scaled = [v * scale for v in values]
    return (f"median {statistics.median(scaled):.1f} {unit}, p90 {percentile(scaled, 0.9):.1f} {unit}, "
            f"min {min(scaled):.1f} {unit}, max {max(scaled):.1f} {unit} (n={len(scaled)})")


def proc_status(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])  # kB
    return None


def start_relay(binary_dir):
    relay = subprocess.Popen([f"{binary_dir}/relay", "--port", "0", "--metrics-port=-1"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = relay.stdout.readline()
    assert line.startswith("relay listening on "), line
    return relay, line.split()[3]


class Client:
    def __init__(self, binary_dir, room, url):
        self.process = subprocess.Popen([f"{binary_dir}/securechat", room, "--relay", url, "--json"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, bufsize=0)
        self.buffer = b""
        self.events = []

    def read_available(self):
        data = os.read(self.process.stdout.fileno(), 65536)
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.events.append(json.loads(line))
        return bool(data)


def wait_for(clients, predicate, timeout_seconds=30):
    """Read until predicate(client) holds for every client; returns the time each first held."""
    selector = selectors.DefaultSelector()
    for client in clients:
        selector.register(client.process.stdout, selectors.EVENT_READ, client)
    done = {}
    deadline = time.perf_counter() + timeout_seconds
    while len(done) < len(clients):
        remaining = deadline - time.perf_counter()
        assert remaining > 0, "timed out"
        for key, _ in selector.select(remaining):
            client = key.data
            if not client.read_available():
                selector.unregister(key.fileobj)
            if client not in done and predicate(client):
                done[client] = time.perf_counter()
    selector.close()
    return [done[client] for client in clients]


def connected(client):
    return any(e.get("event") == "state" and e.get("to") == "CONNECTED" for e in client.events)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--bin", default=".build/release")
    parser.add_argument("--messages", type=int, default=500)
    arguments = parser.parse_args()

    relay, url = start_relay(arguments.bin)
    connect_seconds, rss_connected_kb, hwm_after_kb, burst_seconds = [], [], [], []
    try:
        for run in range(arguments.runs):
            room = f"BENCH{os.getpid()}X{run}"
            started = time.perf_counter()
            alice = Client(arguments.bin, room, url)
            bob = Client(arguments.bin, room, url)
            both = wait_for([alice, bob], connected)
            connect_seconds.append(max(both) - started)
            rss_connected_kb.append(proc_status(alice.process.pid, "VmRSS"))
            if run == 0:
                # Memory under traffic: messages each way, waiting for all of them to arrive.
                burst_started = time.perf_counter()
                for index in range(arguments.messages):
                    alice.process.stdin.write(f"message {index} from alice\n".encode())
                    bob.process.stdin.write(f"message {index} from bob\n".encode())
                count = arguments.messages
                wait_for([alice, bob],
                         lambda c: sum(1 for e in c.events if e.get("event") == "message") >= count, 60)
                burst_seconds.append(time.perf_counter() - burst_started)
                hwm_after_kb.append(proc_status(alice.process.pid, "VmHWM"))
            for client in (alice, bob):
                client.process.stdin.close()
            for client in (alice, bob):
                assert client.process.wait(timeout=30) == 0
    finally:
        relay.terminate()
        relay.wait(timeout=30)

    help_seconds = []
    for _ in range(50):
        started = time.perf_counter()
        subprocess.run([f"{arguments.bin}/securechat", "--help"], stdout=subprocess.DEVNULL, check=True)
        help_seconds.append(time.perf_counter() - started)

    print(f"both CONNECTED after start: {summary(connect_seconds, 'ms', 1000)}")
    print(f"client RSS when CONNECTED:  {summary(rss_connected_kb, 'MiB', 1 / 1024)}")
    print(f"client peak RSS after {arguments.messages} messages each way: {hwm_after_kb[0] / 1024:.1f} MiB")
    print(f"{arguments.messages} messages each way, typed at once, all delivered after {burst_seconds[0]:.1f} s")
    print(f"securechat --help:          {summary(help_seconds, 'ms', 1000)}")


if __name__ == "__main__":
    main()
