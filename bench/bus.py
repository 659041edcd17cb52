"""
The cluster bus alone (wcs/cluster/bus.py): CPU per message between two
nodes, both buses in this process on a real redis-server. Node a sends
node b `--burst` chat-sized messages per reactor turn, `--messages` in all,
a turn every `--interval` ms; prints this process's CPU (both buses: the
publish and the receive side) per message, and redis-server's, which a
bus change leaves alone. Independent of how busy the machine is, unlike the
latencies of bench/cluster.py (CPU time, not wall time). Also the latency
from send to dispatch on node b (wall time: one process and redis-server,
not the four of a chat).

    .venv/bin/python bench/bus.py [--messages 20000] [--burst 10] [--interval 10]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sfu import cpuSeconds  # noqa: E402
from tests.support.redis import startRedis  # noqa: E402
from wcs.cluster.bus import Bus  # noqa: E402


def makeBus(url: str, node: str, dispatch, reactor):
    """The bus of this tree; also the first slice's (a redis client, not a URL)."""
    if "url" in inspect.signature(Bus).parameters:
        return Bus(url, node, f"{node}-1", dispatch, reactor)
    import redis.asyncio
    return Bus(redis.asyncio.Redis.from_url(url, decode_responses=True), node, f"{node}-1",
               dispatch)


async def run(args) -> None:
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    redis = startRedis(Path(tempfile.mkdtemp()) / "redis")
    reactor = AsyncioSelectorReactor(asyncio.get_running_loop())
    got = []
    a = makeBus(redis.url, "a", lambda m: None, reactor)
    b = makeBus(redis.url, "b", lambda m: got.append(
        time.perf_counter() - float(m["text"].split(" ", 1)[0])), reactor)
    try:
        for bus in (a, b):
            bus.start()
        deadline = time.monotonic() + 10
        while not (a.subscribed and b.subscribed):
            assert time.monotonic() < deadline, "not subscribed"
            await asyncio.sleep(0.01)
        cpu0, redis0 = time.process_time(), cpuSeconds(redis.proc.pid)
        sent = 0
        while sent < args.messages:
            for _ in range(args.burst):
                a.send("b", {"op": "chat", "session": "s1", "room": "room",
                             "to": "bob", "text": f"{time.perf_counter():.6f} hello"})
                sent += 1
            await asyncio.sleep(args.interval / 1000)
        deadline = time.monotonic() + 30
        while len(got) < sent and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        cpu = time.process_time() - cpu0
        redisCpu = cpuSeconds(redis.proc.pid) - redis0
        print(f"bus: {len(got)} of {sent} messages, {args.burst} a turn: "
              f"{1e6 * cpu / max(1, len(got)):.1f} us of CPU per message (both buses), "
              f"redis-server {1e6 * redisCpu / max(1, len(got)):.1f} us; "
              f"load {os.getloadavg()[0]:.1f}")
        ordered = sorted(got) or [float("nan")]
        at = lambda p: 1000 * ordered[min(len(ordered) - 1, int(p * len(ordered)))]  # noqa: E731
        print(f"bus: latency p50 {at(0.5):.2f} ms, p99 {at(0.99):.2f} ms, max "
              f"{1000 * ordered[-1]:.1f} ms; {sum(t >= 0.03 for t in got)} of {len(got)} "
              f"at 30 ms or more")
    finally:
        for bus in (a, b):
            await bus.stop()
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--burst", type=int, default=10)
    parser.add_argument("--interval", type=float, default=10.0, help="ms between turns")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
