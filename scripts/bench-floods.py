#!/usr/bin/env python3
"""Memory under floods, for BENCHMARKS.md ("Floods: memory and latency under attack", issue 14).

Against release builds on loopback:
  1. relay, one attacker: a client that never reads (4 KiB receive buffer) sends 1,000,000 empty
     pings, then 1,000,000 empty binary frames, then JOIN + SIGNALs at full speed (each phase at
     most --phase-seconds; a connection the relay closes is replaced), while `relay-bench load`
     runs one other room at 20 msg/s. Reports the relay's RSS growth (VmHWM minus VmRSS before the
     floods), the other room's latency and errors, and the relay's rejection counts.
  2. relay, many attackers: --connections non-reading connections at once, each JOINs its own room
     and floods SIGNALs, pings and 60 KiB text frames (the caps per address raised so that one
     machine can open them). Reports the RSS growth per connection (the per-connection bound).
  3. client: a hostile relay (here, in Python) answers the client's JOIN, reads nothing more and
     pushes 48 KiB SIGNALs, 60 KiB binary frames and pings as fast as the socket takes them.
     Reports the client's peak RSS (VmHWM) and what was pushed.

Usage: for p in relay relay-bench securechat; do swift build -c release --product $p; done   (SwiftPM keeps only the last --product)
       python3 scripts/bench-floods.py [--bin .build/release] [--phase-seconds 8] [--connections 100]
Only loopback is used; every loop is bounded by a deadline; nothing is written to disk.
"""
import argparse
import base64
import hashlib
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.request

MASK = bytes([0x1F, 0x2E, 0x3D, 0x4C])
UPGRADE = ("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


def frame(opcode, payload=b"", masked=True):
    """One WebSocket frame (RFC 6455 5.2), masked as a client's must be."""
    head = bytes([0x80 | opcode])
    bit = 0x80 if masked else 0
    if len(payload) < 126:
        head += bytes([bit | len(payload)])
    else:
        head += bytes([bit | 126, len(payload) >> 8, len(payload) & 0xFF])
    if not masked:
        return head + payload
    return head + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def text(value):
    return frame(0x1, value.encode())


def memory_kib(pid):
    """(VmRSS, VmHWM) in KiB."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(rest.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def start_relay(binary, extra=()):
    relay = subprocess.Popen([f"{binary}/relay", "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0",
                              *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = relay.stdout.readline()
    match = re.match(r"relay listening on (ws://127\.0\.0\.1:(\d+)) metrics on (http://\S+)", line)
    if not match:
        relay.kill()
        raise SystemExit(f"relay did not start: {line!r}")
    return relay, match.group(1), int(match.group(2)), match.group(3)


def rejections(metrics_url):
    try:
        body = urllib.request.urlopen(metrics_url + "/metrics", timeout=30).read().decode()
    except OSError as error:
        return {"unavailable": str(error)}
    return {m.group(1): int(float(m.group(2)))
            for m in re.finditer(r'relay_rejections_total\{reason="(\w+)"\} (\S+)', body) if float(m.group(2)) > 0}


def non_reader(port, prefix=b""):
    """A connection with a 4 KiB receive buffer that reads the 101 answer and nothing after it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(prefix + UPGRADE)
    answer = b""
    sock.settimeout(10)
    while not answer.endswith(b"\r\n\r\n") and len(answer) < 4096:
        byte = sock.recv(1)
        if not byte:
            break
        answer += byte
    if not answer.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(f"no 101: {answer[:80]!r}")
    sock.setblocking(False)
    return sock


def flood(sock, unit, frames_per_unit, count, deadline, stall_seconds=2.0):
    """Send `unit` (frames_per_unit frames) over and over, `count` frames in all, until the
    deadline, a stall (the relay stopped reading) or the relay closing. Returns (frames, closed)."""
    batch = unit * max(1, 65536 // len(unit))
    total = count // frames_per_unit * len(unit)
    written, offset, progress = 0, 0, time.monotonic()
    while written < total and time.monotonic() < deadline:
        chunk = batch[offset:offset + min(len(batch) - offset, total - written)]
        try:
            sent = sock.send(chunk)
        except BlockingIOError:
            if time.monotonic() - progress > stall_seconds:
                break
            time.sleep(0.001)
            continue
        except OSError:
            return written // len(unit) * frames_per_unit, True
        written += sent
        offset = (offset + sent) % len(batch)
        progress = time.monotonic()
    return written // len(unit) * frames_per_unit, False


def one_attacker(binary, phase_seconds):
    relay, url, port, metrics = start_relay(binary)
    try:
        bench = subprocess.Popen([f"{binary}/relay-bench", "load", "--url", url, "--rooms", "1", "--rate", "20",
                                  "--message-bytes", "256", "--duration-seconds", str(3 * phase_seconds + 2),
                                  "--warmup-seconds", "1", "--json"], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True)
        time.sleep(2)
        baseline, _ = memory_kib(relay.pid)
        signal = text('{"type":"SIGNAL","kind":"MSG","payload":"QUJD"}')
        phases = [("pings", frame(0x9), 1, 1_000_000), ("binary", frame(0x2), 1, 1_000_000),
                  ("text", signal * 100, 100, 10 ** 9)]
        sent = {}
        for name, unit, per_unit, count in phases:
            deadline = time.monotonic() + phase_seconds
            frames, connections = 0, 0
            while frames < count and time.monotonic() < deadline:
                sock = non_reader(port)
                connections += 1
                if name == "text":
                    sock.setblocking(True)
                    sock.sendall(text('{"type":"JOIN","room":"FLOODED"}'))
                    sock.setblocking(False)
                done, closed = flood(sock, unit, per_unit, count - frames, deadline)
                frames += done
                sock.close()
                if not closed:
                    break
            sent[name] = {"frames": frames, "connections": connections}
        _, peak = memory_kib(relay.pid)
        result = json.loads(bench.communicate(timeout=120)[0])
        return {"relay_rss_before_mib": round(baseline / 1024, 1),
                "relay_rss_growth_mib": round((peak - baseline) / 1024, 2),
                "other_room_latency_us": result["latency_us"], "other_room_errors": result["errors"],
                "other_room_messages_received": result["messages_received"], "floods": sent,
                "relay_rejections": rejections(metrics)}
    finally:
        relay.terminate()
        relay.wait(timeout=30)


def many_attackers(binary, connections, seconds):
    caps = ["--connections-per-address-max", str(connections + 10), "--roomless-connections-per-address-max",
            str(connections + 10), "--joins-per-address-per-minute", str(10 * connections)]
    relay, _, port, metrics = start_relay(binary, caps)
    try:
        time.sleep(1)
        baseline, _ = memory_kib(relay.pid)
        big = text('{"type":"SIGNAL","kind":"MSG","payload":"' + "A" * 60000 + '"}')
        unit = text('{"type":"SIGNAL","kind":"MSG","payload":"QUJD"}') * 20 + frame(0x9, b"x" * 125) * 20 + big
        socks = []
        for index in range(connections):
            sock = non_reader(port)
            sock.setblocking(True)
            sock.sendall(text('{"type":"JOIN","room":"MANY%d"}' % index))
            sock.setblocking(False)
            socks.append(sock)
        deadline = time.monotonic() + seconds
        counts = [0] * connections

        def run(index):
            counts[index], _ = flood(socks[index], unit, 41, 10 ** 9, deadline, stall_seconds=seconds)
        threads = [threading.Thread(target=run, args=(i,)) for i in range(connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        _, peak = memory_kib(relay.pid)
        growth = peak - baseline
        for sock in socks:
            sock.close()
        time.sleep(1)
        return {"connections": connections, "relay_rss_before_mib": round(baseline / 1024, 1),
                "relay_rss_growth_mib": round(growth / 1024, 2),
                "growth_per_connection_kib": round(growth / connections, 1),
                "frames_sent": sum(counts), "relay_rejections": rejections(metrics)}
    finally:
        relay.terminate()
        relay.wait(timeout=30)


class HostileRelay:
    """Answers the client's upgrade and first JOIN, then reads nothing and pushes frames."""

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.port = self.listener.getsockname()[1]
        self.pushed = 0
        self.pings = 0
        self.stop = threading.Event()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        conn, _ = self.listener.accept()
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(4096)
        key = re.search(rb"Sec-WebSocket-Key: (\S+)", request, re.IGNORECASE).group(1)
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        join = conn.recv(4096)
        # The JOIN is masked: unmask it to echo the room.
        length, key4 = join[1] & 0x7F, join[2:6]
        payload = bytes(b ^ key4[i % 4] for i, b in enumerate(join[6:6 + length])).decode(errors="replace")
        room = (re.search(r'"room":"(\w+)"', payload) or re.search(r"(\w+)", "ROOM")).group(1)
        conn.sendall(frame(0x1, ('{"type":"JOINED","room":"%s","peers":1}' % room).encode(), masked=False))
        signal = frame(0x1, b'{"type":"SIGNAL","kind":"MSG","payload":"' + b"A" * 49152 + b'"}', masked=False)
        junk = frame(0x2, b"\xff" * 61440, masked=False)
        ping = frame(0x9, b"p" * 125, masked=False)
        unit = signal + junk + junk + ping
        try:
            while not self.stop.is_set():
                conn.sendall(unit)
                self.pushed += len(unit)
                self.pings += 1
        except OSError:
            pass  # The client went away.
        conn.close()


def client_under_flood(binary, seconds):
    hostile = HostileRelay()
    client = subprocess.Popen([f"{binary}/securechat", "BENCHFLOOD", "--relay", f"ws://127.0.0.1:{hostile.port}",
                               "--json"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        rss_before, _ = memory_kib(client.pid)
        time.sleep(seconds)
        _, peak = memory_kib(client.pid)
        alive = client.poll() is None
        return {"client_rss_before_flood_mib": round(rss_before / 1024, 1), "client_peak_rss_mib": round(peak / 1024, 1),
                "pushed_mib": hostile.pushed >> 20, "pings": hostile.pings, "client_still_running": alive}
    finally:
        hostile.stop.set()
        client.kill()
        client.wait(timeout=10)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=".build/release")
    parser.add_argument("--phase-seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--client-seconds", type=int, default=10)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    print("1. one client that never reads floods the relay:")
    print(json.dumps(one_attacker(args.bin, args.phase_seconds), indent=2))
    print(f"2. {args.connections} such clients at once:")
    print(json.dumps(many_attackers(args.bin, args.connections, args.phase_seconds), indent=2))
    print("3. a relay floods the client:")
    print(json.dumps(client_under_flood(args.bin, args.client_seconds), indent=2))


if __name__ == "__main__":
    main()
