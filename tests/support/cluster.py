"""
A cluster for tests: a real redis-server and nodes as real `twistd wcs`
processes joined to it (docs/cluster.md).
"""

from __future__ import annotations

import contextlib
import random
import time
from pathlib import Path

from tests.support.redis import startRedis
from tests.support.server import startServer
from tests.support.wsclient import Client

LIVE_TIMEOUT = 10.0


async def clientsOn(nodes: dict, *placed: tuple[str, str]) -> list[Client]:
    """One WebSocket client per (node id, login) of C{placed}, in that order."""
    return [await Client.open(nodes[node].wsURL, login) for node, login in placed]


def mediaSettings(nodes: tuple[str, ...], **extra: str) -> dict[str, dict[str, str]]:
    """
    Settings for C{nodes} playing media on loopback: each its own slice of
    100 UDP ports from a random base, rooms kept while empty; plus C{extra}.
    """
    base = random.randrange(20000, 60000, 100 * len(nodes))
    return {node: {"media_port_from": str(base + 100 * i),
                   "media_port_to": str(base + 100 * i + 99),
                   "ice_public_ip": "127.0.0.1", "room_idle_timeout": "0", **extra}
            for i, node in enumerate(nodes)}


@contextlib.contextmanager
def runningCluster(workdir: Path, nodes: dict[str, dict[str, str]],
                   enable: tuple[str, ...] = ("ws",)):
    """
    Start redis-server and one node per entry of C{nodes} (node id: its own
    settings), wait until every node is registered, stop all at the end.

    @return: (the L{RunningRedis}, {node id: L{RunningServer}}).
    """
    redis = startRedis(workdir / "redis")
    running = {}
    try:
        for node, settings in nodes.items():
            running[node] = startServer(workdir / node, settings={
                "cluster_redis_url": redis.url, "node_id": node, **settings}, enable=enable)
        db = redis.client()
        deadline = time.monotonic() + LIVE_TIMEOUT
        while set(db.zrange("wcs:nodes", 0, -1)) != set(nodes):
            if time.monotonic() > deadline:
                raise RuntimeError(f"nodes not live: {db.zrange('wcs:nodes', 0, -1)}")
            time.sleep(0.05)
        yield redis, running
    finally:
        for server in running.values():
            server.stop()
        redis.stop()


async def eventsSeen(client, names: tuple[str, ...], timeout: float) -> dict:
    """{name: info} of the room events C{names} received so far or within C{timeout}
    (whether or not a wait for another frame skipped them)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = {}
        for frame in client.received:
            if frame["message"] != "OnDataEvent":
                continue
            payload = frame["data"][0]["payload"]
            if payload.get("name") in names:
                seen[payload["name"]] = payload["info"]
        if len(seen) == len(names):
            return seen
        await client.next(max(0.01, deadline - time.monotonic()))
