"""
Rooms across nodes (docs/cluster.md): a real redis-server, three nodes as
real `twistd wcs` processes, WebSocket clients connected to different nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid

import pytest

from tests.support.cluster import clientsOn, runningCluster
from tests.support.redis import redisAvailable, startRedis
from tests.support.wsclient import Client
from wcs.cluster.liveness import GRACE_TTLS

pytestmark = pytest.mark.skipif(not redisAvailable(), reason="redis-server not installed")

NODES = ("a", "b", "c")
TTL = 3.0  # cluster_node_ttl's default, in seconds
BEAT = TTL / 3  # a heartbeat and a check every BEAT seconds
GRACE = GRACE_TTLS * TTL  # no node given up for that long after Redis is back
PAUSE = 5.0  # seconds Redis is paused: past the TTL, within the documented outage


def roomName() -> str:
    return f"room-{uuid.uuid4().hex[:6]}"


async def until(condition, timeout: float, what: str):
    """Poll C{condition} (bounded) until it is true; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.1)


async def roomEvents(client: Client, name: str, count: int, timeout: float) -> list:
    """The infos of the next C{count} room events C{name}, other frames skipped."""
    deadline = time.monotonic() + timeout
    infos = []
    while len(infos) < count:
        frame = await client.next(max(0.01, deadline - time.monotonic()))
        if frame["message"] != "OnDataEvent":  # a ping (data [None]) among them
            continue
        payload = frame["data"][0].get("payload", {})
        if payload.get("name") == name:
            infos.append(payload["info"])
    return infos


async def eventsUntil(client: Client, deadline: float) -> list[str]:
    """The names of the room events C{client} gets until C{deadline} (monotonic)."""
    names = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            frame = await client.next(left)
        except asyncio.TimeoutError:
            break
        if frame["message"] == "OnDataEvent":
            names.append(frame["data"][0]["payload"]["name"])
    return names


@pytest.fixture
def cluster(tmp_path):
    with runningCluster(tmp_path, {node: {"room_idle_timeout": "0"} for node in NODES}) as c:
        yield c


async def test_members_on_different_nodes_share_a_room(cluster):
    redis, nodes = cluster
    room = roomName()
    alice, bob, carol = await clientsOn(nodes, ("a", "alice"), ("b", "bob"), ("c", "carol"))
    try:
        assert await alice.join(room) == []
        owner = redis.client().get(f"wcs:room:{room}")
        assert owner in NODES
        assert await bob.join(room) == ["alice"]
        assert (await alice.roomEvent("JOINED"))["info"] == "bob"
        assert await carol.join(room) == ["alice", "bob"]
        assert (await alice.roomEvent("JOINED"))["info"] == "carol"
        assert (await bob.roomEvent("JOINED"))["info"] == "carol"

        # Chat both ways between every pair of nodes, each exactly once.
        pairs = [(alice, bob), (bob, alice), (bob, carol), (carol, alice), (alice, carol)]
        for n, (sender, recipient) in enumerate(pairs):
            text = f"hello {n} from {sender.login} ✓"
            assert (await sender.chat(room, recipient.login, text))["status"] == "ACCEPTED"
            message = await recipient.roomEvent("MESSAGE")
            assert message["info"] == {"from": sender.login, "text": text}
        for client in (alice, bob, carol):
            assert [f for f in await client.quiet(0.5)
                    if f["data"][0].get("payload", {}).get("name") == "MESSAGE"] == []

        # A chat to a login not in the room fails, from a node the room is not on.
        status = await bob.chat(room, "nobody", "hi")
        assert status["status"] == "FAILED" and "nobody" in status["info"]

        # Leaving reaches members on every node; the login is free again.
        assert (await bob.command("leave", {"name": room}))["status"] == "ACCEPTED"
        assert (await alice.roomEvent("LEFT"))["info"] == "bob"
        assert (await carol.roomEvent("LEFT"))["info"] == "bob"
        assert await bob.join(room) == ["alice", "carol"]
        assert (await alice.roomEvent("JOINED"))["info"] == "bob"

        # A disconnect too.
        await carol.close()
        assert (await alice.roomEvent("LEFT"))["info"] == "carol"
        assert (await bob.roomEvent("LEFT"))["info"] == "carol"
    finally:
        for client in (alice, bob, carol):
            await client.close()


async def test_a_login_is_unique_in_a_room_across_nodes(cluster):
    redis, nodes = cluster
    room = roomName()
    first, second, third = await clientsOn(nodes, ("a", "dana"), ("b", "dana"), ("c", "dana"))
    try:
        await first.join(room)
        for other in (second, third):
            status = await other.command("join", {"name": room})
            assert status["status"] == "FAILED", status
            assert "already has a participant with login 'dana'" in status["info"]
        # Refused, not joined: the room still has one participant.
        await first.close()
        await until(lambda: redis.client().get(f"wcs:room:{room}") is None, 10,
                    "the room's key is gone when its last member left")
        assert await second.join(room) == []
    finally:
        for client in (first, second, third):
            await client.close()


async def test_room_max_participants_holds_across_nodes(tmp_path):
    limit = {"room_max_participants": "2"}
    with runningCluster(tmp_path, {"a": limit, "b": limit}) as (redis, nodes):
        room = roomName()
        clients = [await Client.open(nodes["ab"[i % 2]].wsURL, f"user{i}") for i in range(3)]
        try:
            await clients[0].join(room)
            await clients[1].join(room)
            status = await clients[2].command("join", {"name": room})
            assert status["status"] == "FAILED" and "is full" in status["info"], status
            # A node that stops cleanly takes itself out of the registry at once.
            nodes["b"].stop()
            db = redis.client()
            assert db.get("wcs:node:b") is None and db.zrange("wcs:nodes", 0, -1) == ["a"]
        finally:
            for client in clients:
                await client.close()


async def test_a_killed_room_node_is_survived(cluster):
    redis, nodes = cluster
    db = redis.client()
    room = roomName()
    clients = {node: await Client.open(nodes[node].wsURL, f"user-{node}") for node in NODES}
    try:
        for client in clients.values():
            await client.join(room)
        owner = db.get(f"wcs:room:{room}")
        nodes[owner].proc.send_signal(signal.SIGKILL)
        nodes[owner].proc.wait(10)
        survivors = {node: c for node, c in clients.items() if node != owner}
        started = time.monotonic()
        for node, client in survivors.items():
            left = set(await roomEvents(client, "LEFT", len(NODES) - 1, 10))
            assert left == {c.login for c in clients.values()} - {client.login}
        assert time.monotonic() - started < 10

        # They may rejoin: the room is made again on a live node.
        first, second = survivors.values()
        assert await first.join(room) == []
        assert await second.join(room) == [first.login]
        assert (await first.roomEvent("JOINED"))["info"] == second.login
        assert db.get(f"wcs:room:{room}") in set(survivors)
        text = "still here"
        await first.chat(room, second.login, text)
        assert (await second.roomEvent("MESSAGE"))["info"]["text"] == text

        # No ghost: the dead node's keys expire and the others forget it.
        def clean():
            keys = [k for k in db.scan_iter("wcs:*")]
            values = [db.get(k) for k in keys if k.startswith("wcs:room:")]
            return (f"wcs:node:{owner}" not in keys and owner not in values
                    and owner not in db.zrange("wcs:nodes", 0, -1))
        await until(clean, 10, f"keys of the killed node {owner} gone")
    finally:
        for client in clients.values():
            await client.close()


async def stillTogether(nodes: dict, db, back: float, room: str, alice: Client,
                        bob: Client):
    """
    After Redis came back (at C{back}, monotonic): the nodes registered again, the room's node holds
    it again, a chat relays, nobody was given up, and a new member on the
    third node sees both.
    """
    await until(lambda: set(db.zrange("wcs:nodes", 0, -1)) == set(NODES), 10,
                "every node registered again")
    await until(lambda: db.get(f"wcs:room:{room}") is not None, 10,
                "the room's node holds it again")
    # Resubscribed: a chat arrives (retried: the subscription comes back
    # within a second of Redis; a message published before is lost).
    deadline = time.monotonic() + 10
    while True:
        await alice.chat(room, "bob", "are you there?")
        frames = await bob.quiet(0.5)
        names = [f["data"][0]["payload"]["name"] for f in frames
                 if f["message"] == "OnDataEvent"]
        assert "LEFT" not in names
        if "MESSAGE" in names:
            break
        assert time.monotonic() < deadline, "no chat after Redis came back"
    # Past the grace after Redis came back (2 TTLs) and two checks more: a
    # node that was to be given up wrongly would have been by now.
    until_ = back + GRACE + 2 * BEAT
    for client in (alice, bob):
        assert "LEFT" not in await eventsUntil(client, until_), client.login
    for node in nodes.values():
        assert "is gone" not in node.log()
    carol = await Client.open(nodes["c"].wsURL, "carol")
    assert await carol.join(room) == ["alice", "bob"]
    await carol.close()


@contextlib.asynccontextmanager
async def aliceAndBob(nodes: dict):
    """alice on node a and bob on node b in a new room: (room, alice, bob)."""
    room = roomName()
    alice, bob = await clientsOn(nodes, ("a", "alice"), ("b", "bob"))
    try:
        await alice.join(room)
        await bob.join(room)
        await alice.roomEvent("JOINED")
        yield room, alice, bob
    finally:
        await alice.close()
        await bob.close()


async def test_redis_restart_is_survived(cluster):
    redis, nodes = cluster
    async with aliceAndBob(nodes) as (room, alice, bob):
        redis.stop()

        # A room that would need placing fails with a clear reason meanwhile.
        status = await alice.command("join", {"name": roomName()})
        assert status["status"] == "FAILED" and "Redis" in status["info"], status

        # Redis back (empty: it saves nothing): the nodes register again,
        # nobody was given up, and the room relays as before.
        restarted = startRedis(redis.logPath.parent / "again", port=redis.port)
        redis.proc = restarted.proc
        await stillTogether(nodes, restarted.client(), time.monotonic(), room, alice, bob)


async def test_a_paused_redis_is_survived(cluster):
    # Redis stopped (SIGSTOP: a stalled host, a slow disk) past the nodes'
    # TTL: every node's key expires meanwhile, and each node's heartbeat,
    # blocked until then, goes through when Redis resumes.
    redis, nodes = cluster
    async with aliceAndBob(nodes) as (room, alice, bob):
        redis.proc.send_signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(PAUSE)  # the outage itself, not a wait for a condition
        finally:
            redis.proc.send_signal(signal.SIGCONT)
        await stillTogether(nodes, redis.client(), time.monotonic(), room, alice, bob)
