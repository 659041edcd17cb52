"""
The cluster's keys (wcs/cluster/registry.py) on a real redis-server: the
Lua scripts that place, hold and release rooms, and the heartbeat.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support.redis import redisAvailable, startRedis
from wcs.cluster.registry import NODES, Registry, nodeKey, roomKey, streamKey

pytestmark = pytest.mark.skipif(not redisAvailable(), reason="redis-server not installed")


@pytest.fixture(scope="module")
def redisServer(tmp_path_factory):
    running = startRedis(tmp_path_factory.mktemp("redis"))
    yield running
    running.stop()


@pytest.fixture
async def registries(redisServer):
    import redis.asyncio

    redisServer.client().flushall()
    client = redis.asyncio.Redis.from_url(redisServer.url, decode_responses=True)
    made = {}

    def make(node: str, ttl: float = 3.0) -> Registry:
        made[node] = Registry(client, node, f"{node}-1", ttl)
        return made[node]
    yield make
    await client.aclose()


async def wait(d):
    return await d.asFuture(asyncio.get_running_loop())


async def test_a_room_goes_to_the_least_loaded_live_node(registries, redisServer):
    a, b, c = registries("a"), registries("b"), registries("c")
    await wait(a.heartbeat(5, []))
    await wait(b.heartbeat(2, []))
    await wait(c.heartbeat(7, []))
    assert await wait(a.place("r1")) == "b"
    # Placed once: every node reads the same answer.
    assert await wait(c.place("r1")) == "b"
    db = redisServer.client()
    assert db.get(roomKey("r1")) == "b" and 0 < db.pttl(roomKey("r1")) <= 6000


async def test_a_burst_of_rooms_spreads_and_a_tie_goes_to_the_asking_node(registries):
    a, b = registries("a"), registries("b")
    await wait(a.heartbeat(0, []))
    await wait(b.heartbeat(0, []))
    assert await wait(b.place("first")) == "b"
    # Each placement counts one on its node until the next heartbeat: b is
    # at 1, a at 0; then the lower goes first, a tie to the asking node a.
    owners = [await wait(a.place(f"room{i}")) for i in range(4)]
    assert owners == ["a", "a", "b", "a"]


async def test_a_dead_nodes_rooms_are_placed_again_and_it_is_forgotten(registries, redisServer):
    a, b = registries("a", ttl=0.3), registries("b", ttl=0.3)
    await wait(a.heartbeat(0, []))
    await wait(b.heartbeat(9, []))
    assert await wait(b.place("r")) == "a"
    await asyncio.sleep(0.5)  # a's heartbeat key expires
    await wait(b.heartbeat(9, []))
    db = redisServer.client()
    assert db.zrange(NODES, 0, -1) == ["b"] and db.get(nodeKey("a")) is None
    assert await wait(b.place("r")) == "b"


async def test_claim_and_release_only_for_the_holder(registries, redisServer):
    a, b = registries("a"), registries("b")
    assert await wait(a.claim("r")) == "a"
    assert await wait(b.claim("r")) == "a"  # b sees the split
    await wait(b.release("r"))
    assert redisServer.client().get(roomKey("r")) == "a"
    await wait(a.release("r"))
    assert redisServer.client().get(roomKey("r")) is None
    # The heartbeat renews the rooms it holds and reports those held elsewhere.
    assert await wait(a.claim("mine")) == "a"
    assert await wait(b.claim("theirs")) == "b"
    assert (await wait(a.heartbeat(1, ["mine", "theirs"]))).splits == {"theirs": "b"}


async def test_incarnations_and_a_clean_leave(registries, redisServer):
    a, b = registries("a"), registries("b")
    await wait(a.heartbeat(0, []))
    assert await wait(b.incarnations(["a", "zz"])) == {"a": "a-1", "zz": None}
    await wait(a.claim("r"))
    await a.leave(["r"])
    db = redisServer.client()
    assert db.get(nodeKey("a")) is None and db.get(roomKey("r")) is None
    assert "a" not in db.zrange(NODES, 0, -1)


async def test_a_draining_node_is_live_but_takes_no_new_room(registries, redisServer):
    a, b = registries("a"), registries("b")
    await wait(a.heartbeat(0, []))
    await wait(b.heartbeat(50, []))
    assert await wait(b.place("before")) == "a"
    await wait(a.heartbeat(0, ["before"], draining=True))
    db = redisServer.client()
    assert db.zrange(NODES, 0, -1) == ["b"] and db.get(nodeKey("a")) is not None
    assert await wait(b.place("new")) == "b"
    assert await wait(b.place("before")) == "a"  # its rooms go on there


async def test_where_a_stream_is_found_by_its_room_or_outside_rooms(registries, redisServer):
    a, b = registries("a"), registries("b")
    a.relayAddress, b.relayAddress = ("127.0.0.1", 7001), ("127.0.0.1", 7002)
    await wait(a.heartbeat(0, ["r-x"]))
    await wait(b.heartbeat(0, [], streams=("obs",)))
    db = redisServer.client()
    assert db.get(streamKey("obs")) == "b" and 0 < db.pttl(streamKey("obs")) <= 6000
    # A room stream: by its room's key; a stream outside rooms: by its own.
    assert await wait(b.streamHome("r-x-alice", ["r-x", "r"])) == (
        "r-x", "a", ("127.0.0.1", 7001))
    assert await wait(a.streamHome("obs", [])) == (None, "b", ("127.0.0.1", 7002))
    assert await wait(b.streamHome("obs", [])) is None  # live on the asking node itself
    assert await wait(a.claimStream("obs")) == "b"  # another node's: not taken over
    await wait(a.releaseStream("obs"))
    assert db.get(streamKey("obs")) == "b"
    await wait(b.releaseStream("obs"))
    assert await wait(a.streamHome("obs", [])) is None


async def test_a_heartbeat_says_whether_redis_kept_the_nodes_key(registries, redisServer):
    a = registries("a")
    assert not (await wait(a.heartbeat(0, []))).kept  # the first one
    assert (await wait(a.heartbeat(0, []))).kept
    redisServer.client().flushall()  # a restart that kept nothing
    assert not (await wait(a.heartbeat(0, []))).kept
    assert (await wait(a.heartbeat(0, []))).kept
