"""
Signalling across the nodes of a cluster (docs/cluster.md): a real
redis-server and two `twistd wcs` nodes on loopback. Prints the join time of
a client on the room's node against one on the other node, and the latency
of chat between members on different nodes at a given rate. No assertion:
figures only (docs/performance.md keeps the latest).

    .venv/bin/python bench/cluster.py [--rooms 50] [--size 10] [--rate 1000] [--seconds 5]
        [--trace] [--even-only]

--trace adds, per chat run, where the time went (bench/clustertrace.py):
both halves of a message's latency around Redis, the bench's own loop lag
and CPU, and each node's loop lag.

With --media, the media capacity of one node against two instead
(bench/clustermedia.py):

    .venv/bin/python bench/cluster.py --media --seconds 8 [--repeat 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import clustermedia, clustertrace  # noqa: E402
from bench.signalling import Peer, cpuSeconds, percentile  # noqa: E402
from tests.support.cluster import runningCluster  # noqa: E402

QUIET = {"ws_ping_interval": "0", "log_level": "warn"}


async def timedJoin(peer: Peer, room: str) -> float:
    started = time.perf_counter()
    await peer.command(f"join-{room}", "join", {"name": room})
    return time.perf_counter() - started


async def joins(redis, nodes, rooms: int) -> dict:
    """Per room: a first member makes it, then one member joins from each node."""
    db = redis.client()
    local, remote = [], []
    for i in range(rooms):
        room = f"join{i}"
        first = await Peer.open(nodes["a"].wsURL, "first")
        await timedJoin(first, room)
        owner = db.get(f"wcs:room:{room}")
        here = await Peer.open(nodes[owner].wsURL, "here")
        there = await Peer.open(nodes["b" if owner == "a" else "a"].wsURL, "there")
        local.append(await timedJoin(here, room))
        remote.append(await timedJoin(there, room))
        for peer in (first, here, there):
            await peer.close()
    ms = lambda values, p: 1000 * percentile(values, p)  # noqa: E731
    return {"room node p50 ms": ms(local, 50), "p90": ms(local, 90),
            "other node p50 ms": ms(remote, 50), "p90 ": ms(remote, 90),
            "added p50 ms": ms(remote, 50) - ms(local, 50)}


async def chat(nodes, size: int, rate: float, seconds: float, even: bool = False,
               trace=None) -> dict:
    """Half the members on each node; each sends to every member of the other.

    By default a round (one message per pair) is sent at once, then the
    bench sleeps; with `even` the messages are spread over the round, so
    the latency is not that of the last of a burst of len(pairs).
    """
    room = "chat"
    peers = [await Peer.open(nodes["ab"[i % 2]].wsURL, f"c{i}") for i in range(size)]
    for peer in peers:
        await peer.command("join", "join", {"name": room})
    await asyncio.sleep(0.5)
    pairs = [(p, q) for i, p in enumerate(peers) for j, q in enumerate(peers) if i % 2 != j % 2]
    interval = len(pairs) / rate
    pids = [nodes["a"].proc.pid, nodes["b"].proc.pid]
    if trace is not None:
        tap = clustertrace.Tap(trace.port, Path(tempfile.mkdtemp()))
        logs = {n: len(nodes[n].logPath.read_text(errors="replace")) for n in "ab"}
        lag = clustertrace.LoopLag()
        sched = clustertrace.Sched({"bench": os.getpid(), "node a": pids[0], "node b": pids[1],
                                    "redis": trace.proc.pid, "tap": tap.pid})
    cpu0 = [cpuSeconds(pid) for pid in pids]
    wall0 = time.perf_counter()
    rounds = 0
    while time.perf_counter() < wall0 + seconds:
        roundStart = time.perf_counter()
        for k, (sender, recipient) in enumerate(pairs):
            if even:
                await asyncio.sleep(max(0, roundStart + k * interval / len(pairs)
                                        - time.perf_counter()))
            text = f"{time.perf_counter():.6f} hello"
            await sender.ws.send(json.dumps({"message": "sendData", "data": [{
                "operationId": "m", "payload": {"command": "sendMessage", "options": {
                    "roomConfig": {"name": room}, "to": recipient.login, "text": text}}}]}))
        rounds += 1
        await asyncio.sleep(max(0, interval - (time.perf_counter() - roundStart)))
    expected = rounds * len(pairs)
    settle = time.perf_counter() + 5
    while sum(p.delivered for p in peers) < expected and time.perf_counter() < settle:
        await asyncio.sleep(0.05)
    wall = time.perf_counter() - wall0
    cpu = [cpuSeconds(pid) - c for pid, c in zip(pids, cpu0)]
    delivered = sum(p.delivered for p in peers)
    latencies = [value for p in peers for value in p.latencies]
    traced = {}
    if trace is not None:
        waits = sched.stop()  # before the tap exits
        traced = {**clustertrace.split(peers, tap.stop(), percentile), **lag.stop(), **waits}
        for n in "ab":
            for i, (p50, p99, top) in enumerate(clustertrace.nodeLag(nodes[n], logs[n])):
                traced[f"node {n} lag{i} p99 ms"] = p99
                traced[f"max{i}{n}"] = top
            for line in clustertrace.nodeGC(nodes[n], logs[n]):
                print(f"  node {n}: {line}")
    for peer in peers:
        await peer.close()
    return traced | {"delivered/s": delivered / wall, "lost": expected - delivered,
            "node CPU ms/1000": 1e6 * sum(cpu) / max(1, delivered),
            "p50 ms": 1000 * percentile(latencies, 50),
            "p99 ms": 1000 * percentile(latencies, 99)}


def show(title: str, figures: dict) -> None:
    print(f"  {title:<10}" + "  ".join(f"{k} {v:.1f}" for k, v in figures.items()))


async def run(args) -> None:
    settings = QUIET | (clustertrace.NODE_SETTINGS if args.trace else {})
    with runningCluster(Path(tempfile.mkdtemp()), {"a": settings, "b": settings}) as (
            redis, nodes):
        trace = redis if args.trace else None
        bursts = None
        if not args.even_only:
            print(f"join: {args.rooms} rooms, a client on the room's node and one on the other")
            show("join", await joins(redis, nodes, args.rooms))
            print(f"chat: {args.size} members on two nodes, each to every member of the other "
                  f"node, ~{args.rate:.0f} deliveries/s for {args.seconds:.0f} s")
            bursts = await chat(nodes, args.size, args.rate, args.seconds, trace=trace)
            show("chat", bursts)
        print("chat again, the same rate sent evenly (not in bursts of one per pair)")
        even = await chat(nodes, args.size, args.rate, args.seconds, even=True, trace=trace)
        show("chat even", even)
        print(f"p99 of chat between nodes at ~{args.rate:.0f} deliveries/s (issue 17: under "
              f"30 ms): {even['p99 ms']:.1f} ms sent evenly"
              + (f", {bursts['p99 ms']:.1f} ms in bursts" if bursts else "")
              + f"; load average {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--size", type=int, default=10)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--trace", action="store_true",
                        help="where each chat message's time went (bench/clustertrace.py)")
    parser.add_argument("--even-only", action="store_true",
                        help="only the chat sent evenly (no joins, no bursts)")
    parser.add_argument("--media", action="store_true",
                        help="media capacity of one node and of two (no signalling figures)")
    clustermedia.addArguments(parser)
    args = parser.parse_args()
    if args.media:
        clustermedia.run(args, out=lambda line: print(line, flush=True))
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
