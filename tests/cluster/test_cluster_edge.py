"""
Streams played on other nodes than their room's (docs/cluster.md, "Edge
fan-out"), with a real redis-server and three `twistd wcs` processes: a WHIP
publisher connected to a node the room does not live on publishes into the
room and a member on the third node plays it; several WebRTC players of one
stream on a node that is not the room's (an edge) negotiate there and play
that node's one pull of the stream, counted in both nodes' /metrics; a stream outside rooms (RTMP
`live/NAME`) published on one node is played on the two others over
WebSocket, WHEP and RTMP.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import pytest

from tests.cluster.test_cluster import roomEvents
from tests.cluster.test_cluster_media import candidatePorts, negotiate
from tests.media import peers
from tests.rtmp import ffmpeg
from tests.ops.test_metrics import scrape, value
from tests.support import whip
from tests.support.cluster import eventsSeen, runningCluster
from tests.support.redis import redisAvailable
from tests.support.rooms import status, streamRequest
from tests.support.wsclient import Client

pytestmark = pytest.mark.skipif(not redisAvailable(), reason="redis-server not installed")

NODES = ("a", "b", "c")
PLAYERS = 3


@pytest.fixture(scope="module")
def threeNodes(tmp_path_factory):
    base = random.randrange(20000, 60000, 300)
    ranges = {node: (base + 100 * i, base + 100 * i + 99) for i, node in enumerate(NODES)}
    settings = {node: {"media_port_from": str(low), "media_port_to": str(high),
                       "ice_public_ip": "127.0.0.1", "room_idle_timeout": "0",
                       "media_inactivity_timeout": "5000",
                       # Every play on an edge pulls: the fan-out itself is
                       # tested here, the rule in test_edge_rule.py.
                       "cluster_edge_play_min_players": "1"}
                for node, (low, high) in ranges.items()}
    with runningCluster(tmp_path_factory.mktemp("edge"), settings,
                        enable=("ws", "http", "rest", "rtmp")) as (redis, nodes):
        yield redis, nodes, ranges


async def metrics(node) -> dict:
    return await asyncio.to_thread(scrape, node)


async def metricUntil(node, wanted, name, timeout=15, **labels) -> float:
    """Scrape C{node} (bounded) until C{name} is C{wanted}; the last value."""
    deadline = time.monotonic() + timeout
    while True:
        got = value(await metrics(node), name, **labels)
        if got == wanted or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.2)


def roles(redis, room: str) -> tuple[str, str, str]:
    """(the room's node, and the two others)."""
    owner = redis.client().get(f"wcs:room:{room}")
    others = sorted(set(NODES) - {owner})
    return owner, others[0], others[1]


async def seesMoving(player, audio: bool = True) -> None:
    """The player decodes a moving 320x240 picture (and sound)."""
    frames = await player.waitFrames("video", 10, timeout=20)
    assert (frames[-1].width, frames[-1].height) == (320, 240)
    assert len({peers.lumaSignature(f) for f in frames}) > 1  # the picture moves
    if audio:
        await player.waitFrames("audio", 10, timeout=20)


async def newRoom(redis, nodes, login: str) -> tuple[str, Client, str, str, str]:
    """A room joined by C{login} on node a: (room, its client, the room's node,
    the two others)."""
    room = f"room-{uuid.uuid4().hex[:6]}"
    host = await Client.open(nodes["a"].wsURL, login)
    await host.join(room)
    return (room, host, *roles(redis, room))


async def test_whip_on_another_node_publishes_into_the_room_played_on_a_third(threeNodes):
    redis, nodes, ranges = threeNodes
    room, alice, owner, memberNode, whipNode = await newRoom(redis, nodes, "alice")
    bob = await Client.open(nodes[memberNode].wsURL, "bob")
    publisher = peers.Publisher(video="video/H264", audio="audio/opus")
    player = peers.Player(video="video/H264", audio="audio/opus")
    try:
        assert await bob.join(room) == ["alice"]
        assert (await alice.roomEvent("JOINED"))["info"] == "bob"
        created = await whip.post(nodes[whipNode], f"/whip/{room}/obs", publisher.pc)
        assert created.status == 201, created.text
        # The WHIP publisher negotiated on the room's node: its candidates.
        ports = candidatePorts(created.text)
        low, high = ranges[owner]
        assert ports and all(low <= p <= high for p in ports), (owner, ports)
        published = {"login": "obs", "name": f"{room}-obs"}
        for client in (alice, bob):
            assert (await client.roomEvent("JOINED", timeout=15))["info"] == "obs"
            assert (await client.roomEvent("PUBLISHED", timeout=15))["info"] == published
        assert "lives here and on" not in nodes[whipNode].log()

        # bob, on the third node, plays it.
        play = streamRequest(f"{room}-obs", room, await peers.offerOf(player.pc), False)
        await negotiate(bob, player.pc, "playStream", play)
        await status(bob, play["mediaSessionId"], "PLAYING")
        await seesMoving(player)

        # DELETE: the room hears UNPUBLISHED and LEFT, bob's player stops.
        deleted = await whip.request(nodes[whipNode], "DELETE", created.headers["location"])
        assert deleted.status == 200, deleted.text
        assert (await alice.roomEvent("UNPUBLISHED", timeout=15))["info"] == published
        assert (await alice.roomEvent("LEFT", timeout=15))["info"] == "obs"
        # bob's status and room events may come in either order.
        stopped = await status(bob, play["mediaSessionId"], "STOPPED")
        assert stopped["info"] == "Stopped by publisher stop"
        events = await eventsSeen(bob, ("UNPUBLISHED", "LEFT"), timeout=15)
        assert events == {"UNPUBLISHED": published, "LEFT": "obs"}
    finally:
        await publisher.close()
        await player.close()
        await alice.close()
        await bob.close()


class Published:
    """
    alice, on the room's node, publishes C{ROOM-alice}; viewers on another
    node joined the room and saw it published. Whatever it opened is closed
    by L{close}, also when it failed half way.
    """

    def __init__(self):
        self.peers: list = []
        self.clients: list = []

    async def start(self, origin, edge, room: str, viewers: int) -> "Published":
        self.alice = await self.client(origin, "alice")
        self.viewers = [await self.client(edge, f"viewer{i}") for i in range(viewers)]
        self.publisher = self.peer(peers.Publisher(video="video/H264", audio="audio/opus"))
        await self.alice.join(room)
        for viewer in self.viewers:
            await viewer.join(room)
        self.name = name = f"{room}-alice"
        self.publish = streamRequest(name, room, await peers.offerOf(self.publisher.pc), True)
        await negotiate(self.alice, self.publisher.pc, "publishStream", self.publish)
        await status(self.alice, self.publish["mediaSessionId"], "PUBLISHING")
        for viewer in self.viewers:  # (JOINED of the later viewers skipped)
            assert await roomEvents(viewer, "PUBLISHED", 1, timeout=15) == [
                {"login": "alice", "name": name}]
        return self

    async def client(self, node, login: str) -> Client:
        self.clients.append(await Client.open(node.wsURL, login))
        return self.clients[-1]

    def peer(self, peer):
        self.peers.append(peer)
        return peer

    async def close(self) -> None:
        for peer in self.peers:
            await peer.close()
        for client in self.clients:
            await client.close()


async def test_players_on_an_edge_share_one_relay_of_the_stream(threeNodes):
    redis, nodes, ranges = threeNodes
    room, host, owner, edge, _ = await newRoom(redis, nodes, "host")
    origin = nodes[owner]
    setup = Published()
    try:
        served = value(await metrics(origin), "wcs_cluster_pulls_total", direction="out")
        await setup.start(origin, nodes[edge], room, PLAYERS)
        alice, viewers, name, publish = setup.alice, setup.viewers, setup.name, setup.publish
        players = []

        # Each viewer plays it on the edge: the answers carry the edge's
        # candidates, not the origin's.
        plays = []
        low, high = ranges[edge]
        started = time.monotonic()
        asked = value(await metrics(nodes[edge]), "wcs_cluster_pull_keyframe_requests_total")
        for viewer in viewers:
            player = setup.peer(peers.Player(video="video/H264", audio="audio/opus"))
            players.append(player)
            play = streamRequest(name, room, await peers.offerOf(player.pc), False)
            answer = await negotiate(viewer, player.pc, "playStream", play)
            ports = candidatePorts(answer)
            assert ports and all(low <= p <= high for p in ports), (edge, ports)
            await status(viewer, play["mediaSessionId"], "PLAYING")
            plays.append(play)
        for player in players:
            await seesMoving(player)

        # The origin sends the stream to the edge once, and has no player of it.
        atOrigin, atEdge = await metrics(origin), await metrics(nodes[edge])
        assert value(atOrigin, "wcs_cluster_pulls_active", direction="out") == 1
        assert value(atOrigin, "wcs_cluster_pulls_total", direction="out") == served + 1
        assert value(atOrigin, "wcs_streams", direction="play", provider="WebRTC",
                     codec="H264+opus") == 0
        assert value(atEdge, "wcs_cluster_pulls_active", direction="in") == 1
        assert value(atEdge, "wcs_cluster_edge_players") == PLAYERS
        assert value(atEdge, "wcs_streams", direction="play", provider="WebRTC",
                     codec="H264+opus") == PLAYERS
        assert f"relaying '{name}'" in origin.log()
        # Keyframe requests of the players (each new one asks) reach the
        # origin at most once per media_keyframe_interval (0.5 s) of the pull.
        asks = value(atEdge, "wcs_cluster_pull_keyframe_requests_total") - asked
        assert 1 <= asks <= 1 + (time.monotonic() - started) / 0.5, asks

        # Two players stop: the relay stays for the third; the last one
        # stops: the relay is torn down on both ends.
        for viewer, play in zip(viewers, plays):
            await viewer.send("stopStream", {"mediaSessionId": play["mediaSessionId"],
                                             "name": name})
            await status(viewer, play["mediaSessionId"], "STOPPED")
            if viewer is not viewers[-1]:
                assert value(await metrics(origin), "wcs_cluster_pulls_active",
                             direction="out") == 1
        assert await metricUntil(origin, 0, "wcs_cluster_pulls_active", direction="out") == 0
        assert await metricUntil(nodes[edge], 0, "wcs_cluster_pulls_active", direction="in") == 0

        # A new player after that: a new pull, and the publisher's stop
        # stops it as a local publisher's would.
        player = setup.peer(peers.Player(video="video/H264", audio="audio/opus"))
        play = streamRequest(name, room, await peers.offerOf(player.pc), False)
        await negotiate(viewers[0], player.pc, "playStream", play)
        await status(viewers[0], play["mediaSessionId"], "PLAYING")
        await player.waitFrames("video", 5, timeout=20)
        await alice.send("unPublishStream", {"mediaSessionId": publish["mediaSessionId"],
                                             "name": name})
        stopped = await status(viewers[0], play["mediaSessionId"], "STOPPED")
        assert stopped["info"] == "Stopped by publisher stop"
        assert value(await metrics(origin), "wcs_cluster_pulls_total",
                     direction="out") == served + 2
        assert await metricUntil(nodes[edge], 0, "wcs_cluster_pulls_active", direction="in") == 0
    finally:
        await setup.close()
        await host.close()


async def test_a_stream_outside_rooms_is_played_on_the_other_nodes(threeNodes, tmp_path):
    redis, nodes, ranges = threeNodes
    ffmpeg.requireFFmpeg()
    name = f"obs{uuid.uuid4().hex[:6]}"
    origin, edge, third = nodes["a"], nodes["b"], nodes["c"]
    before = value(await metrics(origin), "wcs_cluster_pulls_total", direction="out")
    encoder = ffmpeg.publish(f"rtmp://127.0.0.1:{origin.ports['rtmp']}/live/{name}", seconds=40)
    viewer = await Client.open(edge.wsURL, "viewer")
    players = []
    try:
        deadline = time.monotonic() + 15
        while redis.client().get(f"wcs:stream:{name}") != "a":
            assert time.monotonic() < deadline, "the stream is not held in Redis"
            await asyncio.sleep(0.1)

        # On node b: a WebSocket player and a WHEP player, one pull.
        player = peers.Player(video="video/H264", audio="audio/opus")
        players.append(player)
        play = streamRequest(name, None, await peers.offerOf(player.pc), False, custom={})
        answer = await negotiate(viewer, player.pc, "playStream", play)
        low, high = ranges["b"]
        assert all(low <= p <= high for p in candidatePorts(answer))
        await status(viewer, play["mediaSessionId"], "PLAYING")
        whep = peers.Player(video="video/H264", audio="audio/opus")
        players.append(whep)
        watched = await whip.post(edge, f"/whep/{name}", whep.pc)
        assert watched.status == 201, watched.text
        await seesMoving(player)
        await seesMoving(whep, audio=False)

        # On node c: an ffmpeg RTMP player.
        out = tmp_path / "outside.flv"
        played = await asyncio.to_thread(
            ffmpeg.record, f"rtmp://127.0.0.1:{third.ports['rtmp']}/live/{name}", out, 3)
        assert played.returncode == 0, played.stderr
        streams = ffmpeg.probe(out)
        assert streams["video"]["codec_name"] == "h264"
        assert int(streams["video"]["nb_read_frames"]) >= 30

        atOrigin = await metrics(origin)
        assert value(atOrigin, "wcs_cluster_pulls_total", direction="out") == before + 2
        assert await metricUntil(origin, 1, "wcs_cluster_pulls_active",
                                 direction="out") == 1  # b's; c's ended with its player
        assert value(await metrics(edge), "wcs_cluster_edge_players") == 2

        # The encoder stops: b's players are stopped, the key is gone.
        ffmpeg.stop(encoder)
        stopped = await status(viewer, play["mediaSessionId"], "STOPPED")
        assert stopped["info"] == "Stopped by publisher stop"
        assert await metricUntil(origin, 0, "wcs_cluster_pulls_active", direction="out") == 0
        deadline = time.monotonic() + 10
        while redis.client().get(f"wcs:stream:{name}") is not None:
            assert time.monotonic() < deadline, "the stream's key stayed"
            await asyncio.sleep(0.1)
    finally:
        ffmpeg.stop(encoder)
        for peer in players:
            await peer.close()
        await viewer.close()
