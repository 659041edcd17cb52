"""
WHIP and WHEP (the drop-in in plugins/whip.py, package whipwhep) against the
real server: aiortc peers over HTTP, WebSocket room members, ffmpeg over RTMP.
"""

import asyncio
import uuid

import pytest

from tests.media import peers
from tests.rtmp import ffmpeg
from tests.support import whip
from tests.support.rooms import MEDIA, alicePublishesToBob, negotiate, status, streamRequest
from tests.support.server import startServer
from tests.support.wsclient import Client


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = startServer(tmp_path_factory.mktemp("whip"), enable=("ws", "http", "rtmp"),
                          settings=MEDIA)
    yield running
    running.stop()


def newRoom() -> str:
    return f"room-{uuid.uuid4().hex[:6]}"


async def waitFor(predicate, timeout=15.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_whip_publishes_into_a_room_played_over_websocket_rtmp_and_whep(server, tmp_path):
    room = newRoom()
    bob = await Client.open(server.wsURL, "bob")
    await bob.join(room)
    publisher = peers.Publisher(video="video/H264", audio="audio/opus")
    # A full offer, candidates included, as WHIP clients (OBS, GStreamer) send.
    created = await whip.post(server, f"/whip/{room}/obs", publisher.pc, token="secret")
    assert created.status == 201, created.text
    assert created.headers["content-type"] == "application/sdp"
    assert "a=candidate:" in created.text
    location = created.headers["location"]
    assert location.startswith(f"/whip/{room}/obs/")
    assert created.headers["access-control-allow-origin"] == "*"
    name = f"{room}-obs"
    assert (await bob.roomEvent("JOINED", timeout=10))["info"] == "obs"
    published = await bob.roomEvent("PUBLISHED", timeout=15)
    assert published["info"] == {"login": "obs", "name": name}

    # bob plays it over WebSocket.
    player = peers.Player(video="video/H264", audio="audio/opus")
    play = streamRequest(name, room, await peers.offerOf(player.pc), False)
    await negotiate(bob, player.pc, "playStream", play)
    await status(bob, play["mediaSessionId"], "PLAYING")
    frames = await player.waitFrames("video", 10, timeout=20)
    assert (frames[-1].width, frames[-1].height) == (320, 240)
    await player.waitFrames("audio", 10, timeout=20)

    # ffmpeg plays it over RTMP.
    ffmpeg.requireFFmpeg()
    out = tmp_path / "whip.flv"
    result = await asyncio.to_thread(
        ffmpeg.record, f"rtmp://127.0.0.1:{server.ports['rtmp']}/live/{name}", out, 2)
    assert result.returncode == 0, result.stderr
    streams = ffmpeg.probe(out)
    assert streams["video"]["codec_name"] == "h264" and streams["video"]["width"] == 320
    assert int(streams["video"]["nb_read_frames"]) >= 10

    # A WHEP client plays it too, with an offer stripped of candidates.
    viewer = peers.Player(video="video/H264", audio="audio/opus")
    watched = await whip.post(server, f"/whep/{name}", viewer.pc, strip=True)
    assert watched.status == 201, watched.text
    await viewer.waitFrames("video", 10, timeout=20)

    # DELETE unpublishes and leaves; the WHEP player's resource ends with it.
    deleted = await whip.request(server, "DELETE", location)
    assert deleted.status == 200, deleted.text
    unpublished = await bob.expect(
        "OnDataEvent", lambda f: f["data"][0]["payload"]["name"] == "UNPUBLISHED",
        timeout=10, skip=("ping", "notifyStreamStatusEvent"))
    assert unpublished["data"][0]["payload"]["info"]["login"] == "obs"
    assert (await bob.roomEvent("LEFT", timeout=10))["info"] == "obs"
    again = await whip.request(server, "DELETE", location)
    assert again.status == 404, again.text
    gone = await whip.request(server, "DELETE", watched.headers["location"])
    assert gone.status == 404, gone.text
    for peer in (publisher, player, viewer):
        await peer.close()
    await bob.close()
