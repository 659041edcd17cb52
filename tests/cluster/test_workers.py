"""
`twistd wcs --workers 2`: two processes share the public ports with
SO_REUSEPORT, as nodes of a cluster on a private redis-server.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from pathlib import Path

import pytest

from tests.cluster.test_cluster import roomEvents, until
from tests.support.redis import redisAvailable
from tests.support.server import startServer
from tests.support.wsclient import Client

pytestmark = pytest.mark.skipif(not redisAvailable(), reason="redis-server not installed")

CLIENTS = 16


def processesUnder(workdir: Path) -> list[str]:
    """Command lines of the processes that name C{workdir} (workers, redis)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(workdir) in cmdline:
            found.append(cmdline)
    return found


async def test_two_workers_share_the_ports_and_the_rooms(tmp_path):
    import redis

    server = startServer(tmp_path, settings={"media_port_from": "0", "media_port_to": "0"},
                         enable=("ws", "http"), extraArgs=["--workers", "2"])
    clients = []
    try:
        await until(lambda: "started a private redis-server" in server.log(), 10,
                    "worker 0 says it started Redis")
        db = redis.Redis(unix_socket_path=str(tmp_path / "state" / "redis.sock"),
                         decode_responses=True)
        await until(lambda: len(db.zrange("wcs:nodes", 0, -1)) == 2, 20, "both workers live")

        page = urllib.request.urlopen(
            f"http://127.0.0.1:{server.ports['http']}/client2/examples/demo/streaming/"
            "conference/", timeout=10).read()
        assert b"<html" in page.lower()

        for i in range(CLIENTS):
            client = await Client.open(server.wsURL, f"user{i}")
            clients.append(client)
            state = await client.join("r")
            assert sorted(state) == sorted(f"user{j}" for j in range(i))

        # The kernel spread the connections: each worker carries some.
        # The loads come with the heartbeats: wait until both have counted
        # every client, not for the first report that names both.
        def loads():
            values = [json.loads(db.get(k))["load"] for k in db.scan_iter("wcs:node:*")]
            return values if len(values) == 2 and all(values) and sum(values) >= CLIENTS \
                else None
        assert sum(await until(loads, 10, "both workers loaded")) >= CLIENTS

        # A chat from the last to the first, whichever workers they are on.
        await clients[-1].chat("r", "user0", "across workers")
        assert (await roomEvents(clients[0], "MESSAGE", 1, 5)) == [
            {"from": f"user{CLIENTS - 1}", "text": "across workers"}]
    finally:
        for client in clients:
            await client.close()
        server.stop()
    deadline = time.monotonic() + 10
    while processesUnder(tmp_path):
        assert time.monotonic() < deadline, processesUnder(tmp_path)
        await asyncio.sleep(0.1)
