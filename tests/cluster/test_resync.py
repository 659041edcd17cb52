"""
The resync after a Redis outage (docs/cluster.md, "Resync after an outage"):
a real redis-server and three nodes as processes. While Redis is away a
visitor leaves and a member joins on the room's node; what the nodes relayed
meanwhile is lost, and when Redis is back every member's participant list
is right again (no ghost, the newcomer present) and chat flows.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from tests.cluster.test_cluster import NODES, roomName, until
from tests.support.cluster import runningCluster
from tests.support.redis import redisAvailable, startRedis
from tests.support.wsclient import Client
from wcs.cluster.resync import missed, rosterOf

pytestmark = pytest.mark.skipif(not redisAvailable(), reason="redis-server not installed")

OUTAGE = 5.0  # seconds Redis is away: past the nodes' TTL (3 s)
RESYNCED = 10.0  # seconds from Redis's return until every list is right


class Roster:
    """A client's participant list as the SDK keeps it: STATE, then JOINED and LEFT."""

    def __init__(self, client: Client, state: list):
        self.client = client
        self.logins = set(rosterOf(state))
        self.seen = len(client.received)

    def pump(self) -> set[str]:
        for frame in self.client.received[self.seen:]:
            if frame["message"] == "OnDataEvent":
                payload = frame["data"][0]["payload"]
                if payload.get("name") == "JOINED":
                    self.logins.add(payload["info"])
                elif payload.get("name") == "LEFT":
                    self.logins.discard(payload["info"])
        self.seen = len(self.client.received)
        return self.logins

    async def settle(self, expected: set[str]) -> None:
        async def matches():
            await self.client.quiet(0.2, limit=1.0)
            return self.pump() == expected
        deadline = time.monotonic() + RESYNCED
        while not await matches():
            assert time.monotonic() < deadline, \
                f"{self.client.login} lists {sorted(self.logins)}, not {sorted(expected)}"


async def joined(node, login: str, room: str) -> Roster:
    client = await Client.open(node.wsURL, login)
    return Roster(client, await client.join(room))


def pause(redis):
    redis.proc.send_signal(signal.SIGSTOP)

    def resume():
        redis.proc.send_signal(signal.SIGCONT)
        return redis
    return resume


def restart(redis):
    redis.stop()

    def resume():
        again = startRedis(redis.logPath.parent / "again", port=redis.port)
        redis.proc = again.proc
        return again
    return resume


@pytest.mark.parametrize("outage", [pause, restart])
async def test_lists_are_right_after_an_outage(tmp_path, outage):
    with runningCluster(tmp_path, {n: {"room_idle_timeout": "0"} for n in NODES}) as (
            redis, nodes):
        room = roomName()
        # One member per node; the room lives where the first join placed it.
        members = {"a": await joined(nodes["a"], "user-a", room)}
        owner = redis.client().get(f"wcs:room:{room}")
        for node in NODES[1:]:
            members[node] = await joined(nodes[node], f"user-{node}", room)
        stayer, leaver = [n for n in NODES if n != owner]
        everyone = {f"user-{n}" for n in NODES}
        for node, roster in members.items():
            await roster.settle(everyone - {f"user-{node}"})
        carol = None
        try:
            resume = outage(redis)
            try:
                # The visitor's leave is relayed to the room's node over Redis:
                # lost. The newcomer joins on the room's node itself (no Redis
                # needed); its JOINED to the visitors is relayed: lost.
                status = await members[leaver].client.command("leave", {"name": room})
                assert status["status"] == "ACCEPTED", status
                carol = await joined(nodes[owner], "carol", room)
                await asyncio.sleep(OUTAGE)  # the outage itself, not a wait for a condition
            finally:
                back = resume()
                returned = time.monotonic()
            expected = {f"user-{owner}", f"user-{stayer}", "carol"}
            await carol.settle(expected - {"carol"})
            for node in (owner, stayer):
                await members[node].settle(expected - {f"user-{node}"})
            # The figure (pytest -s): polled every ~0.2 s, so within that.
            print(f"\nresync ({outage.__name__}): every list right within "
                  f"{time.monotonic() - returned:.1f} s after Redis's return, "
                  f"load {os.getloadavg()[0]:.1f}")
            # Chat flows both ways between the visitor and the newcomer.
            await until(lambda: back.client().ping(), 5, "Redis answers")
            stay = members[stayer].client
            assert (await stay.chat(room, "carol", "hi"))["status"] == "ACCEPTED"
            await carol.client.expect("OnDataEvent", lambda f: f["data"][0]["payload"]
                                      ["name"] == "MESSAGE", skip=("ping", "OnDataEvent"))
            assert (await carol.client.chat(room, f"user-{stayer}", "hello"))["status"] \
                == "ACCEPTED"
            # The room's node no longer holds the visitor who left: its login is free.
            state = await members[leaver].client.join(room)
            assert set(rosterOf(state)) == expected, state
        finally:
            for roster in [*members.values(), carol]:
                if roster is not None:
                    await roster.client.close()


def test_missed_events():
    old = {"me": {}, "gone": {"g1": None}, "kept": {"k1": None, "k2": None}}
    new = {"me": {}, "kept": {"k2": None, "k3": None}, "new": {"n1": None}}
    assert missed(old, new, "me") == [
        ("UNPUBLISHED", {"login": "gone", "name": "g1"}), ("LEFT", "gone"),
        ("UNPUBLISHED", {"login": "kept", "name": "k1"}),
        ("PUBLISHED", {"login": "kept", "name": "k3"}),
        ("JOINED", "new"), ("PUBLISHED", {"login": "new", "name": "n1"})]
    assert missed(new, new, "me") == []  # a repeated resync changes nothing
