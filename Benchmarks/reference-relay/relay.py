#!/usr/bin/env python3
"""The reference relay: the original design's relay, as it describes it (§4.3, §5.2, §7.1).

A single-process asyncio relay on the `websockets` library: JSON text frames, `JOIN` into a room of at
most two peers (the "Relay Guard"), `PEER_FOUND` to both when the second joins, and every `SIGNAL` forwarded
to the other peer. It exists only as a baseline for scripts/compare-relays.sh; it is deliberately as
simple as the original design (no limits, no TLS), so that the comparison measures the stack, not features.

Install: Benchmarks/reference-relay/install.sh (a venv with the pinned `websockets`).
Run:     .venv/bin/python relay.py --port 0    (prints the address it listens on)
"""
import argparse
import asyncio
import json
import re
import resource

import websockets

ROOM_CODE = re.compile(r"^[A-Z0-9]+$")
rooms: dict[str, list] = {}


async def handler(websocket):
    room = None
    try:
        async for raw in websocket:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            kind = message.get("type") if isinstance(message, dict) else None
            if kind == "JOIN" and room is None:
                code = message.get("room")
                if not isinstance(code, str) or not ROOM_CODE.match(code):
                    continue
                peers = rooms.setdefault(code, [])
                if len(peers) >= 2:
                    await websocket.send(json.dumps({"type": "ERROR", "code": "ROOM_FULL"}))
                    continue
                peers.append(websocket)
                room = code
                if len(peers) == 2:
                    for peer in peers:
                        await peer.send(json.dumps({"type": "PEER_FOUND"}))
            elif kind == "SIGNAL" and room is not None:
                for peer in rooms.get(room, []):
                    if peer is not websocket:
                        await peer.send(raw)
    except websockets.ConnectionClosed:
        pass
    finally:
        if room is not None:
            peers = rooms.get(room, [])
            if websocket in peers:
                peers.remove(websocket)
            if not peers:
                rooms.pop(room, None)


def raise_open_files_limit():
    """Raise the soft open-files limit to the hard one, as our relay does for itself.

    Not in the original design, but an OS setting rather than relay logic: without it the default
    soft limit (often 1024) would cap the idle-connections comparison, not the relay.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0: any free port (printed)")
    args = parser.parse_args()
    raise_open_files_limit()
    # websockets' defaults otherwise (keepalive pings every 20 s, as the original would run it).
    async with websockets.serve(handler, args.host, args.port, max_size=2**20) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"reference relay listening on ws://{args.host}:{port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
