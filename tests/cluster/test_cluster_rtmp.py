"""
RTMP across nodes: an ffmpeg encoder connected to a node the room does not
live on publishes into the room (its join is placed like a WebSocket join,
its frames relayed to the room's node); members on the other two nodes see
JOINED and PUBLISHED, and a WebRTC player connected to a node that is not
the room's plays it, and an ffmpeg RTMP player on the third node (neither
the room's nor the encoder's) plays it too. Real redis-server, three `twistd wcs` processes.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.media import peers
from tests.rtmp import ffmpeg
from tests.support.cluster import eventsSeen, mediaSettings, runningCluster
from tests.support.redis import redisAvailable
from tests.support.rooms import playInRoom, status
from tests.support.wsclient import Client

pytestmark = pytest.mark.skipif(not redisAvailable(), reason="redis-server not installed")

NODES = ("a", "b", "c")


@pytest.fixture
def threeNodes(tmp_path):
    ffmpeg.requireFFmpeg()
    with runningCluster(tmp_path, mediaSettings(NODES), enable=("ws", "rtmp")) as cluster:
        yield cluster


async def test_rtmp_encoder_on_a_third_node_publishes_into_the_room(threeNodes, tmp_path):
    redis, nodes = threeNodes
    room = f"room-{uuid.uuid4().hex[:6]}"
    alice = await Client.open(nodes["a"].wsURL, "alice")
    await alice.join(room)
    owner = redis.client().get(f"wcs:room:{room}")
    # bob on another node than alice's, the encoder on the third: whichever
    # the room was placed on, one of the three is not the room's node.
    bobNode = "b" if owner in ("a", "b") else "c"
    encoderNode = ({"a", "b", "c"} - {"a", bobNode}).pop()
    assert encoderNode != owner
    bob = await Client.open(nodes[bobNode].wsURL, "bob")
    assert await bob.join(room) == ["alice"]
    assert (await alice.roomEvent("JOINED"))["info"] == "bob"

    url = f"rtmp://127.0.0.1:{nodes[encoderNode].ports['rtmp']}/room/{room}/obs"
    encoder = await ffmpeg.publishIntoRoom(url, room, "obs", [alice, bob], seconds=40)
    player = None
    try:
        published = {"login": "obs", "name": f"{room}-obs"}
        # The room runs once, on its node: the encoder's node made no copy.
        assert "lives here and on" not in nodes[encoderNode].log()
        assert "media relay of node" in nodes[owner].log()

        # A WebRTC player on a node that is not the room's plays it there.
        viewer = alice if owner != "a" else bob
        player, play = await playInRoom(viewer, room, f"{room}-obs")
        frames = await player.waitFrames("video", 10, timeout=20)
        assert (frames[-1].width, frames[-1].height) == (320, 240)
        assert len({peers.lumaSignature(f) for f in frames}) > 1  # the picture moves
        await player.waitFrames("audio", 10, timeout=20)

        # An ffmpeg RTMP player on the node that is neither the room's nor
        # the encoder's plays it: that node pulls it from the room's node.
        edge = ({"a", "b", "c"} - {owner, encoderNode}).pop()
        out = tmp_path / "edge.flv"
        played = await asyncio.to_thread(
            ffmpeg.record, f"rtmp://127.0.0.1:{nodes[edge].ports['rtmp']}/live/{room}-obs",
            out, 3)
        assert played.returncode == 0, played.stderr
        streams = ffmpeg.probe(out)
        assert streams["video"]["codec_name"] == "h264" and streams["video"]["width"] == 320
        assert int(streams["video"]["nb_read_frames"]) >= 30
        assert streams["audio"]["codec_name"] == "aac"
        assert int(streams["audio"]["nb_read_frames"]) >= 80
        assert f"relaying '{room}-obs'" in nodes[owner].log()

        # The encoder stops: the room's node ends the stream, everyone hears.
        # The viewer's STOPPED comes from its own node (its pull ended) and
        # the room events from the room's node: in either order.
        ffmpeg.stop(encoder)
        stopped = await status(viewer, play["mediaSessionId"], "STOPPED")
        assert stopped["info"] == "Stopped by publisher stop"
        for client in (alice, bob):
            events = await eventsSeen(client, ("UNPUBLISHED", "LEFT"), timeout=15)
            assert events == {"UNPUBLISHED": published, "LEFT": "obs"}, client.login
    finally:
        ffmpeg.stop(encoder)
        if player is not None:
            await player.close()
        await alice.close()
        await bob.close()


async def test_flash_client_on_another_node_joins_and_publishes_into_the_room(threeNodes):
    from tests.rtmp.flashclient import FlashClient
    from tests.rtmp.test_flash import h264Bodies

    redis, nodes = threeNodes
    room = f"room-{uuid.uuid4().hex[:6]}"
    alice = await Client.open(nodes["a"].wsURL, "alice")
    await alice.join(room)
    owner = redis.client().get(f"wcs:room:{room}")
    flashNode = "b" if owner != "b" else "c"
    flash = await FlashClient.connect(nodes[flashNode].ports["rtmp"], "flashuser")
    try:
        status = await flash.command("join", {"name": room})
        assert status["status"] == "ACCEPTED"
        assert (await flash.roomEvent("STATE"))["info"] == ["alice"]
        assert (await alice.roomEvent("JOINED"))["info"] == "flashuser"

        await flash.publishVideo(f"{room}-flashuser", h264Bodies())
        published = await alice.roomEvent("PUBLISHED", timeout=15)
        assert published["info"] == {"login": "flashuser", "name": f"{room}-flashuser"}
        # Published on the room's node by the Flash client's visitor session
        # there, its frames relayed: not only announced.
        assert f"{room}-flashuser" in nodes[owner].log()
        assert "lives here and on" not in nodes[flashNode].log()
    finally:
        flash.close()
        await alice.close()
