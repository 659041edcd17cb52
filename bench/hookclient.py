"""
CPU of the REST hook client alone (wcs.access.hooks.RestHook): 200
C{joinRoom} asks at once against nginx on localhost (bench/signalling.py's
backend), 40 times; prints the reactor's CPU per request.

    .venv/bin/python bench/hookclient.py [--asks 200] [--storms 40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import asyncioreactor  # noqa: E402

asyncioreactor.install(asyncio.new_event_loop())

from twisted.internet import defer, reactor  # noqa: E402

from bench.signalling import NGINX, startHookBackend  # noqa: E402
from wcs.access.hooks import RestHook  # noqa: E402


def storm(hook: RestHook, asks: int) -> defer.Deferred:
    def check(decisions):
        assert all(d.allowed for d in decisions), decisions[:3]
    return defer.gatherResults([hook.ask("joinRoom", {
        "login": f"j{i}", "sessionId": "0f5c1e2a-4b7d", "address": "127.0.0.1",
        "transport": "ws", "room": "storm", "record": False}) for i in range(asks)]
    ).addCallback(check)


@defer.inlineCallbacks
def main(args):
    if not NGINX:
        raise SystemExit("no nginx binary (apt-get install nginx-light)")
    backend, url = startHookBackend("nginx")
    hook = RestHook(url, 3.0, reactor, args.connections)
    try:
        for _ in range(3):  # warm up: the connections
            yield storm(hook, args.asks)
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(args.storms):
            yield storm(hook, args.asks)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        requests = args.asks * args.storms
        print(f"hook client: {1e6 * cpu / requests:.0f} us of CPU per request, "
              f"{requests / wall:.0f} requests/s, load average {os.getloadavg()[0]:.1f}")
    finally:
        yield hook.close()
        backend.terminate()
        backend.wait(10)
        reactor.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--asks", type=int, default=200)
    parser.add_argument("--storms", type=int, default=40)
    parser.add_argument("--connections", type=int, default=64)
    reactor.callWhenRunning(main, parser.parse_args())
    reactor.run()
