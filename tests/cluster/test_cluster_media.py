"""
WebRTC across nodes: clients on two nodes (real `twistd wcs` processes and a
real redis-server) publish and play in a room that lives on one of them,
with aiortc peers. A publisher's answer carries the room node's candidates,
a player's its own node's (edge fan-out; the room node's with
cluster_edge_play off): each node has its own media port range, so the port
says which node answered.
"""

from __future__ import annotations

import random
import re
import uuid

import pytest
from aiortc import RTCSessionDescription

from tests.media import peers
from tests.support.cluster import clientsOn, runningCluster
from tests.support.redis import redisAvailable
from tests.support.rooms import SKIP, status, streamRequest

pytestmark = pytest.mark.skipif(not redisAvailable(), reason="redis-server not installed")


@pytest.fixture(params=[True, False], ids=["edge", "forwarded"])
def twoNodes(tmp_path, request):
    base = random.randrange(20000, 60000, 200)
    ranges = {"a": (base, base + 99), "b": (base + 100, base + 199)}
    settings = {node: {"media_port_from": str(low), "media_port_to": str(high),
                       "ice_public_ip": "127.0.0.1",
                       "cluster_edge_play": str(request.param).lower(),
                       # One player of a stream on a node: pull it there anyway.
                       "cluster_edge_play_min_players": "1"}
                for node, (low, high) in ranges.items()}
    with runningCluster(tmp_path, settings) as (redis, nodes):
        yield redis, nodes, ranges, request.param


async def negotiate(client, pc, message, body) -> str:
    await client.send(message, body)
    frame = await client.expect("setRemoteSDP", lambda f: f["data"][0] == body["mediaSessionId"],
                                timeout=15, skip=SKIP)
    answer = frame["data"][1]
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return answer


def candidatePorts(sdp: str) -> set[int]:
    return {int(m.group(1)) for m in re.finditer(
        r"^a=candidate:\S+ \d+ \S+ \d+ \S+ (\d+) typ", sdp, re.M)}


async def negotiateOnOwner(client, pc, message: str, body: dict, node: str,
                           ports: tuple[int, int], becomes: str) -> None:
    """
    Send C{message} with C{body}: the answer's candidates must be in the
    port range C{ports} of C{node} (the room's, or the player's edge), and
    the stream must become C{becomes}.
    """
    low, high = ports
    answered = candidatePorts(await negotiate(client, pc, message, body))
    assert answered and all(low <= p <= high for p in answered), (node, answered)
    await status(client, body["mediaSessionId"], becomes)


async def test_publish_and_play_across_nodes(twoNodes):
    redis, nodes, ranges, edgePlay = twoNodes
    room = f"room-{uuid.uuid4().hex[:6]}"
    alice, bob = await clientsOn(nodes, ("a", "alice"), ("b", "bob"))
    publishers, players = [], []
    try:
        await alice.join(room)
        await bob.join(room)
        owner = redis.client().get(f"wcs:room:{room}")

        # Each publishes: both answers come from the room's node.
        publishes = {}
        for client in (alice, bob):
            publisher = peers.Publisher(video="video/H264", audio="audio/opus")
            publishers.append(publisher)
            body = streamRequest(f"{room}-{client.login}", room,
                                 await peers.offerOf(publisher.pc), True)
            await negotiateOnOwner(client, publisher.pc, "publishStream", body, owner,
                                   ranges[owner], "PUBLISHING")
            publishes[client.login] = body

        # Each plays the other's stream, published through another node.
        # A player negotiates on its own node (edge fan-out: the node not
        # the room's plays its one pull of the stream from the room's node).
        plays = {}
        for client, other, node in ((alice, "bob", "a"), (bob, "alice", "b")):
            player = peers.Player(video="video/H264", audio="audio/opus")
            players.append(player)
            body = streamRequest(publishes[other]["name"], room,
                                 await peers.offerOf(player.pc), False)
            answering = node if edgePlay else owner
            await negotiateOnOwner(client, player.pc, "playStream", body, answering,
                                   ranges[answering], "PLAYING")
            plays[client.login] = body
        for player in players:
            frames = await player.waitFrames("video", 10, timeout=20)
            assert len({peers.lumaSignature(f) for f in frames}) > 1  # the picture moves
            await player.waitFrames("audio", 10, timeout=20)

        # The publisher connected to the other node unpublishes: its status
        # comes back through its node, the player is stopped, the room told.
        visitor = alice if owner == "b" else bob
        host = bob if visitor is alice else alice
        body = publishes[visitor.login]
        await visitor.send("unPublishStream", {"mediaSessionId": body["mediaSessionId"],
                                               "name": body["name"]})
        await status(visitor, body["mediaSessionId"], "UNPUBLISHED")
        stopped = await status(host, plays[host.login]["mediaSessionId"], "STOPPED")
        assert stopped["info"] == "Stopped by publisher stop"
        assert (await host.roomEvent("UNPUBLISHED"))["info"] == {
            "login": visitor.login, "name": body["name"]}
    finally:
        for peer in publishers + players:
            await peer.close()
        await alice.close()
        await bob.close()
