"""
An RTMP encoder through a split (docs/cluster.md, "A split"): a real
redis-server, two nodes as processes, ffmpeg publishing a test pattern
into a room (rtmp://NODE/room/ROOM/obs) whose node (the origin) is
stopped (SIGSTOP) past its give-up, while a member on the other node (the
edge) joins the room again: a new room of that name on the edge. Once the
origin runs again (SIGCONT) the edge's room yields and its members are
moved into the origin's. The encoder must not be disconnected and its
stream must be live in the origin's room after the move: the members see
it PUBLISHED and a WebRTC player gets moving pictures from it.

Two cases: the encoder connected to the edge (a visitor of the origin's
room, its frames pushed there), and the encoder on the origin (the node
that keeps the older room).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time

import pytest

from tests.cluster.test_edgestall import HEAL, rejoin, roomEventsUntil, stall
from tests.cluster.test_cluster import until
from tests.media import peers
from tests.rtmp import ffmpeg
from tests.support.cluster import mediaSettings, runningCluster
from tests.support.redis import redisAvailable
from tests.support.rooms import playInRoom
from tests.support.wsclient import Client

pytestmark = pytest.mark.skipif(not redisAvailable(), reason="redis-server not installed")

ENCODER_SECONDS = 90  # the encoder outlives each test; stopped at its end


@pytest.fixture(scope="module")
def twoNodes(tmp_path_factory):
    ffmpeg.requireFFmpeg()
    with runningCluster(tmp_path_factory.mktemp("rtmpmove"), mediaSettings(("a", "b")),
                        enable=("ws", "rtmp")) as (redis, nodes):
        yield redis, nodes


def coming(event: dict, login: str) -> str | None:
    """"JOINED" or "LEFT" when a room event says C{login} joined (a STATE
    listing it: there before the client joined) or left, else None."""
    name, info = event["name"], event["info"]
    if name == "STATE" and any(e == login or isinstance(e, dict) and e.get("login") == login
                               for e in info):
        return "JOINED"
    return name if name in ("JOINED", "LEFT") and info == login else None


class Split:
    """
    A new room with a member on each node (C{alice} connected to the
    origin, C{bob} to the edge) and the encoder.
    """

    def __init__(self, redis, nodes):
        self.redis, self.nodes = redis, nodes
        self.room = f"room-{os.urandom(3).hex()}"
        self.name = f"{self.room}-obs"
        self.clients: list[Client] = []
        self.players: list = []
        self.encoder = None

    async def start(self, encoderOn: str) -> "Split":
        """C{encoderOn}: "origin" or "edge"."""
        first = await self.client("a", "m1")
        await first.join(self.room)
        self.origin = self.redis.client().get(f"wcs:room:{self.room}")
        self.edge = ({"a", "b"} - {self.origin}).pop()
        second = await self.client("b", "m2")
        assert await second.join(self.room) == ["m1"]
        assert (await first.roomEvent("JOINED"))["info"] == "m2"
        # The member connected to the origin, and the one on the edge.
        self.alice, self.bob = (first, second) if self.origin == "a" else (second, first)
        self.encoderNode = self.origin if encoderOn == "origin" else self.edge
        port = self.nodes[self.encoderNode].ports["rtmp"]
        self.encoder = await ffmpeg.publishIntoRoom(
            f"rtmp://127.0.0.1:{port}/room/{self.room}/obs", self.room, "obs",
            [self.alice, self.bob], seconds=ENCODER_SECONDS)
        return self

    async def client(self, node: str, login: str) -> Client:
        self.clients.append(await Client.open(self.nodes[node].wsURL, login))
        return self.clients[-1]

    async def splitAndHeal(self) -> dict:
        """
        The origin stalls; bob joins again meanwhile (a new room on the
        edge); the origin runs again and the edge's room yields.

        @return: the frame counts of alice and bob at SIGCONT, and timings.
        """
        key = f"wcs:room:{self.room}"

        async def bobAlone():
            await rejoin(self.bob, self.room)
            assert self.redis.client().get(key) == self.edge

        stopped = await stall(self.nodes, self.origin, self.edge, meanwhile=bobAlone)
        marks = {"alice": len(self.alice.received), "bob": len(self.bob.received)}
        resumed = time.monotonic()
        await until(lambda: f"room {self.room!r} lives here and on {self.origin}, where it "
                    "is older" in self.nodes[self.edge].log(), HEAL, "the edge's room yields")
        marks.update(stalled=stopped, yielded=time.monotonic() - resumed, resumed=resumed)
        return marks

    async def playsMoving(self, client: Client) -> None:
        """C{client} plays the encoder's stream: moving 320x240 pictures."""
        player, _ = await playInRoom(client, self.room, self.name)
        self.players.append(player)
        frames = await player.waitFrames("video", 10, timeout=20)
        assert (frames[-1].width, frames[-1].height) == (320, 240)
        assert len({peers.lumaSignature(f) for f in frames}) > 1  # the picture moves

    @staticmethod
    async def inRoom(client: Client, login: str) -> bool:
        """Whether C{login} is in the room as C{client} saw it come and go,
        its frames read until it is (bounded)."""
        deadline = time.monotonic() + HEAL
        while True:
            comings = [c for f in client.received if f["message"] == "OnDataEvent"
                       for c in [coming(f["data"][0]["payload"], login)] if c]
            if comings[-1:] == ["JOINED"] or time.monotonic() > deadline:
                return comings[-1:] == ["JOINED"]
            with contextlib.suppress(asyncio.TimeoutError):
                await client.next(0.2)

    def encoderRuns(self) -> None:
        """ffmpeg still publishing: the node did not close its connection."""
        assert self.encoder.poll() is None, self.encoder.stderr.read().decode()[-2000:]
        assert "publish refused" not in self.nodes[self.encoderNode].log()

    async def close(self) -> None:
        if self.encoder is not None:
            ffmpeg.stop(self.encoder)
        for player in self.players:
            await player.close()
        for client in self.clients:
            await client.close()


@contextlib.asynccontextmanager
async def split(twoNodes, encoderOn: str):
    redis, nodes = twoNodes
    it = Split(redis, nodes)
    try:
        yield await it.start(encoderOn)
    finally:
        await it.close()


def published(room: str) -> tuple:
    return ("PUBLISHED", {"login": "obs", "name": f"{room}-obs"})


async def test_an_encoder_on_the_edge_goes_on_into_the_older_room(twoNodes):
    """
    The encoder on the edge, a visitor of the origin's room (its frames
    pushed there). The edge gives the origin up; the encoder cannot join
    again by itself (ffmpeg speaks no room protocol), and its stream must
    not end: after SIGCONT it is in the origin's room, its stream pushed
    there from the edge, PUBLISHED to alice on the origin, who plays it.
    """
    async with split(twoNodes, "edge") as it:
        marks = await it.splitAndHeal()
        ours = published(it.room)
        got = await roomEventsUntil(it.alice, marks["alice"], [ours])
        # Its stream there ended with the edge's give-up (the push closed)
        # and is published again by the move; obs's visit there may have
        # lasted through the stall (the origin never gave the edge up), or
        # it left (a resync) and joined again (the move).
        assert got[-1:] == [ours], got
        assert await it.inRoom(it.alice, "obs")
        assert it.redis.client().get(f"wcs:room:{it.room}") == it.origin
        it.encoderRuns()
        await it.playsMoving(it.alice)  # on the origin, from the edge's push
        await it.playsMoving(it.bob)  # on the edge, where the encoder is
        it.encoderRuns()
        print(f"\nencoder on the edge: stalled {marks['stalled']:.1f} s, yielded "
              f"{marks['yielded']:.1f} s after SIGCONT, played on both nodes "
              f"{time.monotonic() - marks['resumed']:.1f} s after; "
              f"load {os.getloadavg()[0]:.1f}")


async def test_an_encoder_on_the_origin_stays_in_the_older_room(twoNodes):
    """
    The encoder on the origin, whose room is the older: stopped with its
    node, it goes on when the node runs again; bob, moved back from the
    edge's room, gets JOINED and PUBLISHED of it and plays it.
    """
    async with split(twoNodes, "origin") as it:
        marks = await it.splitAndHeal()
        ours = published(it.room)
        wanted = [("JOINED", it.alice.login), ("JOINED", "obs"), ours]
        got = await roomEventsUntil(it.bob, marks["bob"], wanted)
        assert all(w in got for w in wanted), got
        assert await it.inRoom(it.bob, "obs") and await it.inRoom(it.alice, it.bob.login)
        it.encoderRuns()
        await it.playsMoving(it.bob)  # on the edge, pulled from the origin
        await it.playsMoving(it.alice)
        it.encoderRuns()
        print(f"\nencoder on the origin: stalled {marks['stalled']:.1f} s, yielded "
              f"{marks['yielded']:.1f} s after SIGCONT, played on both nodes "
              f"{time.monotonic() - marks['resumed']:.1f} s after; "
              f"load {os.getloadavg()[0]:.1f}")


@pytest.fixture(scope="module")
def threeNodes(tmp_path_factory):
    ffmpeg.requireFFmpeg()
    with runningCluster(tmp_path_factory.mktemp("rtmpmove3"), mediaSettings(("a", "b", "c")),
                        enable=("ws", "rtmp")) as (redis, nodes):
        yield redis, nodes


async def test_an_encoders_push_to_the_yielding_node_goes_to_the_older_rooms(threeNodes):
    """
    The encoder on node E visits the origin's room. The origin stalls; E
    gives it up and joins the encoder again: the room is placed on the
    least loaded node, T (no client there, the encoder on E),
    so the encoder's frames are pushed to T. Once the origin runs again,
    T's room yields and tells E (C{moved}), which moves the encoder into
    the origin's room and pushes its frames there instead; carol, joining
    there, gets it published and plays moving pictures.
    """
    redis, nodes = threeNodes
    it = Split(redis, nodes)
    try:
        it.alice = await it.client("a", "alice")
        await it.alice.join(it.room)
        it.origin = redis.client().get(f"wcs:room:{it.room}")
        # The encoder not on the origin, and with alice when she is not there.
        it.encoderNode = "a" if it.origin != "a" else "b"
        third = ({"a", "b", "c"} - {it.origin, it.encoderNode}).pop()
        port = nodes[it.encoderNode].ports["rtmp"]
        it.encoder = await ffmpeg.publishIntoRoom(
            f"rtmp://127.0.0.1:{port}/room/{it.room}/obs", it.room, "obs", [it.alice],
            seconds=ENCODER_SECONDS)
        key = f"wcs:room:{it.room}"

        async def placedOnThird():
            await until(lambda: redis.client().get(key) == third, HEAL,
                        "the encoder joined again, its room placed on the third node")

        stopped = await stall(nodes, it.origin, it.encoderNode, meanwhile=placedOnThird)
        resumed = time.monotonic()
        await until(lambda: f"room {it.room!r} lives here and on {it.origin}, where it is "
                    "older" in nodes[third].log(), HEAL, "the third node's room yields")
        moved = re.compile(f"moved into room {it.room!r} on node {it.origin}: "
                           r"\d+ room events, 1 streams carried")
        await until(lambda: moved.search(nodes[it.encoderNode].log()), HEAL,
                    "the encoder moved, its stream carried")
        assert redis.client().get(key) == it.origin
        it.encoderRuns()
        carol = await it.client(it.origin, "carol")
        assert {"login": "obs", "name": it.name} in await carol.join(it.room)
        await it.playsMoving(carol)  # on the origin, from the encoder's node's push
        it.encoderRuns()
        print(f"\nencoder's push to a yielding node: stalled {stopped:.1f} s, moved and "
              f"played on the origin {time.monotonic() - resumed:.1f} s after SIGCONT; "
              f"load {os.getloadavg()[0]:.1f}")
    finally:
        await it.close()
