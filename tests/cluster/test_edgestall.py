"""
Edge pulls through a node stall (docs/cluster.md, "A stalled node"): a real
redis-server and two nodes as processes; a stream published on its room's
node (the origin) is played by a WebRTC player on the other node (the
edge), from the edge's pull of it. The origin, and in the other test the
edge, is stopped (SIGSTOP) past its give-up and run again: the player's
stream flows again, or it gets a clear end after which playing again
works; no pull is left on either node once the player stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
import uuid

import pytest

from tests.cluster.test_cluster import BEAT, TTL, until
from tests.cluster.test_cluster_edge import Published, metrics, newRoom
from tests.cluster.test_cluster_media import negotiate
from tests.cluster.test_nodestall import statuses
from tests.media import peers
from tests.ops.test_metrics import value
from tests.support.cluster import runningCluster
from tests.support.redis import redisAvailable
from tests.support.rooms import status, streamRequest

pytestmark = pytest.mark.skipif(not redisAvailable(), reason="redis-server not installed")

STALL = 2 * TTL + 2 * BEAT  # past the give-up (TTL + two checks), with margin
GIVEN_UP = 10.0  # seconds more the stall may last until the other node has said "gone"
HEAL = 15.0  # seconds from SIGCONT until the player's stream flows or ended
# What may come before an answer after a stall: the room's events, pings, the old play's end.
STALE = ("ping", "OnDataEvent", "notifyStreamStatusEvent")


@pytest.fixture(scope="module")
def twoNodes(tmp_path_factory):
    base = random.randrange(20000, 60000, 200)
    settings = {node: {"media_port_from": str(base + 100 * i),
                       "media_port_to": str(base + 100 * i + 99),
                       "ice_public_ip": "127.0.0.1", "room_idle_timeout": "0",
                       # Every play on the edge pulls: the pull is what is tested.
                       "cluster_edge_play_min_players": "1"}
                for i, node in enumerate(("a", "b"))}
    with runningCluster(tmp_path_factory.mktemp("edgestall"), settings,
                        enable=("ws", "http", "rest")) as (redis, nodes):
        yield redis, nodes


async def stall(nodes, staller: str, judge: str, meanwhile=None) -> float:
    """
    Stop C{staller} for STALL and until C{judge} gave it up, await
    C{meanwhile()} if given, and run it again.

    @return: how long it was stopped.
    """
    proc = nodes[staller].proc
    gone = f"node {staller} is gone"
    already = nodes[judge].log().count(gone)  # the module's earlier tests
    proc.send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        await until(lambda: time.monotonic() - stopped >= STALL
                    and nodes[judge].log().count(gone) > already,
                    STALL + GIVEN_UP, f"node {judge} gives {staller} up")
        if meanwhile is not None:
            await meanwhile()
    finally:
        proc.send_signal(signal.SIGCONT)
    return time.monotonic() - stopped


async def play(setup: Published, viewer, room: str):
    """The viewer plays the stream: (its peer, its request)."""
    player = setup.peer(peers.Player(video="video/H264", audio="audio/opus"))
    body = streamRequest(setup.name, room, await peers.offerOf(player.pc), False)
    await negotiate(viewer, player.pc, "playStream", body)
    await status(viewer, body["mediaSessionId"], "PLAYING")
    await player.waitFrames("video", 5, timeout=20)
    return player, body


async def pulls(nodes, origin: str, edge: str) -> tuple[float, float]:
    """(the edge's pulls in, the origin's pulls out) running now."""
    return (value(await metrics(nodes[edge]), "wcs_cluster_pulls_active", direction="in"),
            value(await metrics(nodes[origin]), "wcs_cluster_pulls_active", direction="out"))


async def pullsUntil(nodes, origin: str, edge: str, wanted: tuple, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        got = await pulls(nodes, origin, edge)
        if got == wanted or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.2)


async def flowsOrEnds(player, viewer, mediaSessionId: str) -> str:
    """Within HEAL: "flows" (new pictures arrive) or the play's final status."""
    seen = len(player.frames["video"])
    deadline = time.monotonic() + HEAL
    while time.monotonic() < deadline:
        final = [s for s in statuses(viewer, mediaSessionId) if s in ("STOPPED", "FAILED")]
        if final:
            return final[-1]
        if len(player.frames["video"]) >= seen + 10:
            return "flows"
        try:
            await viewer.next(0.2)
        except asyncio.TimeoutError:
            pass
    return "nothing"


async def comings(client, login: str, wanted: list[str]) -> list[str]:
    """The JOINED and LEFT of C{login} C{client} got, read until C{wanted} (bounded)."""
    deadline = time.monotonic() + HEAL
    while True:
        got = [p["name"] for f in client.received if f["message"] == "OnDataEvent"
               for p in [f["data"][0]["payload"]]
               if p["name"] in ("LEFT", "JOINED") and p["info"] == login]
        if got[-len(wanted):] == wanted or time.monotonic() > deadline:
            return got[-len(wanted):]
        try:
            await client.next(0.2)
        except asyncio.TimeoutError:
            pass


class Playing:
    """A stream of a room on the origin played by a viewer on the edge."""

    def __init__(self, nodes, room, origin, edge, setup, player, body):
        self.nodes, self.room, self.origin, self.edge = nodes, room, origin, edge
        self.setup, self.viewer = setup, setup.viewers[0]
        self.player, self.body = player, body

    def statuses(self, since: int = 0) -> list:
        return [(f["data"][0]["status"], f["data"][0].get("info"))
                for f in self.viewer.received[since:]
                if f["message"] == "notifyStreamStatusEvent"
                and f["data"][0]["mediaSessionId"] == self.body["mediaSessionId"]]


@contextlib.asynccontextmanager
async def playing(twoNodes):
    """
    L{Playing}, from the edge's pull; whatever it opened is closed after,
    and then no pull may be left on either node.
    """
    redis, nodes = twoNodes
    room, host, *_ = await newRoom(redis, nodes, "host")
    origin = redis.client().get(f"wcs:room:{room}")
    edge = ({"a", "b"} - {origin}).pop()
    setup = Published()
    setup.clients.append(host)
    try:
        await setup.start(nodes[origin], nodes[edge], room, 1)
        player, body = await play(setup, setup.viewers[0], room)
        assert await pulls(nodes, origin, edge) == (1, 1)
        yield Playing(nodes, room, origin, edge, setup, player, body)
    finally:
        await setup.close()
    assert await pullsUntil(nodes, origin, edge, (0, 0)) == (0, 0)


async def stalled(it: Playing, role: str) -> str:
    """The node of C{role} ("origin", "edge") stalls: what the player got (L{flowsOrEnds})."""
    mark = len(it.viewer.received)
    staller, judge = (it.origin, it.edge) if role == "origin" else (it.edge, it.origin)
    stopped = await stall(it.nodes, staller, judge)
    resumed = time.monotonic()
    outcome = await flowsOrEnds(it.player, it.viewer, it.body["mediaSessionId"])
    print(f"\n{role} {staller} stalled {stopped:.1f} s: the player: {outcome} "
          f"{time.monotonic() - resumed:.1f} s after SIGCONT, statuses {it.statuses(mark)}; "
          f"load {os.getloadavg()[0]:.1f}")
    return outcome


async def rejoin(viewer, room: str, timeout: float = HEAL) -> tuple[list, list]:
    """Join C{room} again until accepted (bounded): (the refusals before, STATE's list)."""
    refused = []
    deadline = time.monotonic() + timeout
    while True:
        operationId = str(uuid.uuid4())
        await viewer.send("sendData", {"operationId": operationId, "payload": {
            "command": "join", "options": {"name": room, "record": False}}})
        answer = (await viewer.expect(
            "DataStatusEvent", lambda f: f["data"][0]["operationId"] == operationId,
            skip=STALE))["data"][0]
        if answer["status"] == "ACCEPTED":
            break
        refused.append(answer.get("info"))
        assert time.monotonic() < deadline, refused
        await asyncio.sleep(0.5)
    state = await viewer.expect(
        "OnDataEvent", lambda f: f["data"][0]["payload"]["name"] == "STATE", skip=STALE)
    return refused, state["data"][0]["payload"]["info"]


async def test_origin_stalls(twoNodes):
    """
    The edge gives the origin up: the player gets FAILED (the stream's node
    is gone) and is out of the room, as every member of a room whose node
    is gone; once the origin runs again, the viewer joins again and plays.
    """
    async with playing(twoNodes) as it:
        assert await stalled(it, "origin") == "FAILED"
        assert it.statuses()[-1] == ("FAILED", f"the stream's node {it.origin} is gone")
        # No ghost: the origin, running again, reads the edge's close of the pull.
        assert await pullsUntil(it.nodes, it.origin, it.edge, (0, 0)) == (0, 0)
        refused, _ = await rejoin(it.viewer, it.room)
        await play(it.setup, it.viewer, it.room)
        print(f"joined again after {len(refused)} refusals {refused}, played again")
        assert await pulls(it.nodes, it.origin, it.edge) == (1, 1)


async def roomEventsUntil(client, since: int, wanted: list, timeout: float = HEAL) -> list:
    """The room events (name, info) C{client} got after frame C{since}, read
    until they include every one of C{wanted} (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        got = [(p["name"], p["info"]) for f in client.received[since:]
               if f["message"] == "OnDataEvent" for p in [f["data"][0]["payload"]]]
        if all(w in got for w in wanted) or time.monotonic() > deadline:
            return got
        try:
            await client.next(0.2)
        except asyncio.TimeoutError:
            pass


async def test_a_viewer_joining_again_during_the_origins_stall_is_moved_back(twoNodes):
    """
    The viewer joins again while the origin still stalls (its FAILED came
    when the edge gave the origin up): the origin's key is gone, so the
    room is placed on the edge, a new room of that name: a split, where the
    viewer publishes a stream of its own. When the origin runs again the
    newer room yields (wcs/cluster/splits.py) and moves its member
    (wcs/cluster/moves.py): the room's key names the origin again, the
    viewer is in the origin's room without asking (JOINED and PUBLISHED of
    what it did not see there, no join answer), the others see it join and
    its stream published, which they play there (its media pushed from the
    edge, where it was negotiated: its publisher sees no status), chat
    flows, and it plays the origin's stream again. (Before: it was taken
    out of the edge's room and had to join again; before that, both rooms
    went on apart.)
    """
    async with playing(twoNodes) as it:
        redis = twoNodes[0].client()
        viewer, host, alice = it.viewer, it.setup.clients[0], it.setup.alice
        mine = f"{it.room}-viewer0"
        publisher = it.setup.peer(peers.Publisher(video="video/H264", audio="audio/opus"))
        publish: dict = {}
        await alice.quiet(0.3)  # the setup's events, read before the stall
        marks = {"host": len(host.received), "alice": len(alice.received)}

        async def alone():
            _, state = await rejoin(viewer, it.room)
            assert state == [] and redis.get(f"wcs:room:{it.room}") == it.edge
            body = streamRequest(mine, it.room, await peers.offerOf(publisher.pc), True)
            await negotiate(viewer, publisher.pc, "publishStream", body)
            await status(viewer, body["mediaSessionId"], "PUBLISHING")
            publish.update(body)

        await stall(it.nodes, it.origin, it.edge, meanwhile=alone)
        mark = len(viewer.received)
        resumed = time.monotonic()
        await until(lambda: f"room {it.room!r} lives here and on {it.origin}, where it is "
                    "older" in it.nodes[it.edge].log(), HEAL, "the edge's room yields")
        healed = time.monotonic() - resumed
        theirs = ("PUBLISHED", {"login": "alice", "name": it.setup.name})
        # The members on the origin: alice, and host when the room was placed
        # on its node (a); host on the edge was given up with the origin too.
        others = [("alice", alice)] + ([("host", host)] if it.origin == "a" else [])
        wanted = [("JOINED", login) for login, _ in others] + [theirs]
        got = await roomEventsUntil(viewer, mark, wanted)
        moved = time.monotonic() - resumed
        assert all(w in got for w in wanted), got
        assert redis.get(f"wcs:room:{it.room}") == it.origin
        # No join answer, and its publisher saw nothing: the stream went on.
        assert [f for f in viewer.received[mark:] if f["message"] in
                ("DataStatusEvent", "notifyStreamStatusEvent")
                and f["data"][0].get("mediaSessionId", publish["mediaSessionId"])
                == publish["mediaSessionId"]] == []
        ours = ("PUBLISHED", {"login": "viewer0", "name": mine})
        for login, client in others:
            assert ours in await roomEventsUntil(client, marks[login], [ours]), login
            # viewer0 is in the room as they see it: its visit there may have
            # lasted through the stall (the origin never gave the edge up),
            # else it left (a resync) and joined again (the move).
            comings = [n for n, i in await roomEventsUntil(client, 0, [])
                       if n in ("JOINED", "LEFT") and i == "viewer0"]
            assert comings[-1:] == ["JOINED"], (login, comings)
        # Chat flows in the room it is in now.
        chatted = len(alice.received)
        assert (await viewer.chat(it.room, "alice", "back"))["status"] == "ACCEPTED"
        message = ("MESSAGE", {"from": "viewer0", "text": "back"})
        assert message in await roomEventsUntil(alice, chatted, [message])
        # alice, on the origin, plays the viewer's stream there.
        player = it.setup.peer(peers.Player(video="video/H264", audio="audio/opus"))
        body = streamRequest(mine, it.room, await peers.offerOf(player.pc), False)
        await negotiate(alice, player.pc, "playStream", body)
        await status(alice, body["mediaSessionId"], "PLAYING")
        frames = await player.waitFrames("video", 10, timeout=20)
        assert len({peers.lumaSignature(f) for f in frames}) > 1  # it moves
        # And the viewer plays the origin's stream again.
        await play(it.setup, viewer, it.room)
        print(f"\nsplit healed: the edge's room yielded {healed:.1f} s after SIGCONT, the "
              f"viewer was moved {moved:.1f} s after, its stream played on the origin; "
              f"load {os.getloadavg()[0]:.1f}")


async def test_edge_stalls(twoNodes):
    """
    The origin gives the edge up (its member there leaves: LEFT to the
    others) but the pull's connection stays: when the edge runs again, the
    resync joins its member again (JOINED) and the player's stream flows
    on, fresh pictures, with no status; still one pull on each end.
    """
    async with playing(twoNodes) as it:
        assert await stalled(it, "edge") == "flows"
        await asyncio.sleep(2)  # what the sockets held meanwhile is played by now
        seen = len(it.player.frames["video"])
        frames = await it.player.waitFrames("video", seen + 10, timeout=HEAL)
        assert len({peers.lumaSignature(f) for f in frames[seen:]}) > 1  # it moves
        assert it.statuses() == [("PLAYING", None)]
        assert await comings(it.setup.alice, "viewer0", ["LEFT", "JOINED"]) \
            == ["LEFT", "JOINED"]
        assert await pulls(it.nodes, it.origin, it.edge) == (1, 1)
