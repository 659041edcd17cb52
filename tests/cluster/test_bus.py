"""
The bus between nodes (wcs/cluster/bus.py) on a real redis-server: what one
node queues for another in one reactor turn goes in one PUBLISH, and
arrives whole and in order; a bad envelope harms nothing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from tests.support.redis import redisAvailable, startRedis
from wcs.cluster.bus import MAX_QUEUED, Bus, channelOf
from wcs.messages import ServerMessage

pytestmark = pytest.mark.skipif(not redisAvailable(), reason="redis-server not installed")


@pytest.fixture
async def buses(tmp_path):
    import redis.asyncio
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    running = startRedis(tmp_path / "redis")
    client = redis.asyncio.Redis.from_url(running.url, decode_responses=True)
    reactor = AsyncioSelectorReactor(asyncio.get_running_loop())  # the bus's connections
    received = {"a": [], "b": [], "c": []}
    made = {node: Bus(running.url, node, f"{node}-1", received[node].append, reactor)
            for node in received}
    for bus in made.values():
        bus.start()
    deadline = time.monotonic() + 10
    while not all(bus.subscribed for bus in made.values()):
        assert time.monotonic() < deadline, "buses not subscribed"
        await asyncio.sleep(0.02)
    yield running, client, made, received
    for bus in made.values():
        await bus.stop()
    await client.aclose()
    running.stop()


def publishes(running) -> int:
    stats = running.client().info("commandstats")
    return stats.get("cmdstat_publish", {}).get("calls", 0)


async def until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.01)


async def test_one_turn_for_one_node_is_one_publish_in_order(buses):
    running, client, made, received = buses
    before = publishes(running)
    a = made["a"]
    event = ServerMessage("OnDataEvent", {"name": "MESSAGE"})
    for n in range(50):
        a.send("b", {"op": "chat", "n": n})
    a.deliver("b", "s1", event)
    a.deliver("b", "s2", event)  # the same broadcast: merged
    a.send("c", {"op": "chat", "n": 0})
    await until(lambda: len(received["b"]) == 51 and len(received["c"]) == 1)
    assert [p["n"] for p in received["b"][:50]] == list(range(50))
    assert received["b"][50]["to"] == ["s1", "s2"]
    assert all(p["from"] == "a" and p["inc"] == "a-1" for p in received["b"] + received["c"])
    assert publishes(running) - before == 2  # one per node
    await asyncio.sleep(0.2)
    assert len(received["b"]) == 51  # exactly once


async def test_a_bad_envelope_is_dropped_and_the_bus_goes_on(buses):
    running, client, made, received = buses
    for bad in ("not json", "[1, 2]", '{"from": "x"}', '{"from": "x", "m": [1, {"op": "y"}]}'):
        await client.publish(channelOf("b"), bad)
    made["a"].send("b", {"op": "after"})
    await until(lambda: any(p.get("op") == "after" for p in received["b"]))
    assert [p["op"] for p in received["b"]] == ["y", "after"]  # the object of the bad list


async def test_a_stuck_redis_holds_then_drops_and_the_bus_recovers(buses):
    """Redis stopped (SIGSTOP): the publishing connection's buffer fills, the
    bus holds what follows up to MAX_QUEUED and drops the rest; Redis back,
    messages flow again."""
    running, client, made, received = buses
    a, text = made["a"], "x" * 1000
    os.kill(running.proc.pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 20
        while not a.paused:
            assert time.monotonic() < deadline, "the publishing connection never filled"
            for _ in range(500):
                a.send("b", {"op": "flood", "text": text})
            await asyncio.sleep(0.01)
        for _ in range(2 * MAX_QUEUED // 500 + 2):
            for _ in range(500):
                a.send("b", {"op": "flood", "text": text})
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)
        assert a.paused and len(a.outbox) <= MAX_QUEUED + 500  # held, bounded
    finally:
        os.kill(running.proc.pid, signal.SIGCONT)
    deadline = time.monotonic() + 20
    while not any(p.get("op") == "after" for p in received["b"]):
        assert time.monotonic() < deadline, "nothing after Redis came back"
        a.send("b", {"op": "after"})
        await asyncio.sleep(0.2)
    assert not a.paused
