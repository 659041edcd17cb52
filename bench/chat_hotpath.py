"""
CPU of the chat delivery path alone, in-process: N clients of one room on
Twisted's StringTransport (no sockets, no system calls), each burst one
client's C{sendMessage} frame to every other, read in one C{dataReceived} as
the shared harness's clients send it. Prints microseconds of Python per
delivery (frame in, MESSAGE out, ACCEPTED back), the best of several rounds:
the part of the server's cost that Python code changes move, measurable on a
busy machine. Run against another checkout with --root to compare:

    .venv/bin/python bench/chat_hotpath.py [--root DIR] [--players 10,200]

C{--gap MS}: wait that long between bursts (a busy wait, so the thread
stays on its core), as the harness's clients send them (at 10 in a room a
burst every 22 ms), and print the median CPU of a burst per delivery
instead of the best round: the same Python on cold caches (docs/
performance.md, "Chat, seventh pass").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--players", default="10,200")
    parser.add_argument("--deliveries", type=int, default=20000, help="per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--gap", type=float, default=0,
                        help="ms between bursts (busy wait): the median burst's CPU")
    args = parser.parse_args()
    sys.path.insert(0, args.root)
    sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

    from twisted.internet.address import IPv4Address
    from twisted.internet.task import Clock
    from twisted.internet.testing import MemoryReactorClock, StringTransport

    from tests.test_websocket_protocol import UPGRADE, clientFrame
    from wcs.config import Settings
    from wcs.server import RoomServer
    from wcs.transports.websocket import SignallingFactory

    import wcs
    print(f"wcs from {Path(wcs.__file__).parent}")
    for n in [int(x) for x in args.players.split(",")]:
        settings = Settings()
        settings.set("ws_ping_interval", 0)
        settings.set("ws_max_connections_per_address", 0)
        settings.set("room_max_participants", 0)
        factory = SignallingFactory(RoomServer(settings, Clock()))
        factory.reactor = MemoryReactorClock()
        peers = []
        for i in range(n):
            transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000 + i))
            protocol = factory.buildProtocol(transport.getPeer())
            protocol.makeConnection(transport)
            protocol.dataReceived(UPGRADE)
            for message in ({"message": "connection",
                             "data": [{"appKey": "roomApp", "custom": {"login": f"u{i}"}}]},
                            {"message": "sendData", "data": [{
                                "operationId": "j", "payload": {
                                    "command": "join", "options": {"name": "bench"}}}]}):
                protocol.dataReceived(clientFrame(json.dumps(message).encode()))
            peers.append((protocol, transport))
        for _, transport in peers:
            transport.clear()

        def burst(i: int, op: int) -> bytes:
            return b"".join(clientFrame(json.dumps({"message": "sendData", "data": [{
                "operationId": f"u{i}-{op}-{j}", "payload": {"command": "sendMessage", "options": {
                    "roomConfig": {"name": "bench"}, "to": f"u{j}",
                    "text": f"{time.time():.6f} hello from u{i}"}}}]}).encode())
                for j in range(n) if j != i)

        bursts = max(1, args.deliveries // (n - 1))
        data = [burst(k % n, k) for k in range(bursts)]
        if args.gap > 0:
            spaced(peers, data, n, args.gap / 1000.0)
            continue
        best = None
        for _ in range(args.rounds):
            start = time.process_time()
            for k, chunk in enumerate(data):
                peers[k % n][0].dataReceived(chunk)
            spent = time.process_time() - start
            got = sum(t.value().count(b'"MESSAGE"') for _, t in peers)
            if got != bursts * (n - 1):
                raise SystemExit(f"{got} of {bursts * (n - 1)} delivered: the bench is broken")
            for _, transport in peers:
                transport.clear()
            perDelivery = spent / (bursts * (n - 1)) * 1e6
            best = perDelivery if best is None else min(best, perDelivery)
        print(f"N={n}: {best:.2f} µs of Python per delivery (best of {args.rounds}, "
              f"{bursts * (n - 1)} deliveries a round), load {os.getloadavg()[0]:.1f}")


def spaced(peers: list, data: list[bytes], n: int, gap: float) -> None:
    """Each burst after C{gap} seconds of busy waiting: its own CPU, median."""
    import statistics

    spent = []
    for k, chunk in enumerate(data):
        until = time.perf_counter() + gap
        while time.perf_counter() < until:
            pass
        start = time.thread_time_ns()
        peers[k % n][0].dataReceived(chunk)
        spent.append(time.thread_time_ns() - start)
        if k % 50 == 49:
            for _, transport in peers:
                transport.clear()
    perDelivery = statistics.median(spent) / (n - 1) / 1000
    print(f"N={n}: {perDelivery:.2f} µs of Python per delivery (median of {len(spent)} bursts "
          f"{gap * 1000:g} ms apart), load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
