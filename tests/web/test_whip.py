"""
WHIP and WHEP (the drop-in in wcs_plugins/whip.py, package whipwhep) against the
real server: aiortc peers over HTTP, WebSocket room members, ffmpeg over RTMP.
"""

import asyncio
import uuid

import pytest

from tests.media import peers
from tests.rtmp import ffmpeg
from tests.rtmp.flashclient import waitLive
from tests.support import whip
from tests.support.rooms import MEDIA, alicePublishesToBob, negotiate, status, streamRequest
from tests.support.server import startServer
from tests.support.wsclient import Client


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = startServer(tmp_path_factory.mktemp("whip"), enable=("ws", "http", "https", "rtmp"),
                          settings=dict(MEDIA, media_inactivity_timeout="3000"))
    yield running
    running.stop()


def newRoom() -> str:
    return f"room-{uuid.uuid4().hex[:6]}"


async def whipIntoRoom(server, member: str = "bob", **post):
    """
    A new room with C{member} in it over WebSocket, and an aiortc publisher
    (H.264 + Opus) POSTed to /whip/ROOM/obs: (room, member, publisher, answer).
    """
    room = newRoom()
    client = await Client.open(server.wsURL, member)
    await client.join(room)
    publisher = peers.Publisher(video="video/H264", audio="audio/opus")
    return room, client, publisher, await whip.post(server, f"/whip/{room}/obs", publisher.pc,
                                                    **post)


async def whepViewer(server, name: str, **post):
    """An aiortc player of C{name} over WHEP, created: (player, answer)."""
    viewer = peers.Player(video="video/H264", audio="audio/opus")
    watched = await whip.post(server, f"/whep/{name}", viewer.pc, **post)
    assert watched.status == 201, watched.text
    return viewer, watched


async def test_whip_publishes_into_a_room_played_over_websocket_rtmp_and_whep(server, tmp_path):
    # A full offer, candidates included, as WHIP clients (OBS, GStreamer) send.
    room, bob, publisher, created = await whipIntoRoom(server, token="secret")
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
    viewer, watched = await whepViewer(server, name, strip=True)
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


async def test_a_whip_publisher_whose_media_ends_leaves_the_room(server):
    room, bob, publisher, created = await whipIntoRoom(server)
    assert created.status == 201, created.text
    assert (await bob.roomEvent("JOINED", timeout=10))["info"] == "obs"
    assert (await bob.roomEvent("PUBLISHED", timeout=15))["info"]["login"] == "obs"
    await publisher.close()  # no DELETE: the media ends (DTLS close, or silence)
    left = await bob.expect("OnDataEvent", lambda f: f["data"][0]["payload"]["name"] == "LEFT",
                            timeout=20, skip=("ping", "OnDataEvent"))
    assert left["data"][0]["payload"]["info"] == "obs"
    assert (await whip.request(server, "DELETE", created.headers["location"])).status == 404
    await bob.close()


async def test_whep_plays_a_websocket_publisher(server):
    room, alice, bob, publisher, publish = await alicePublishesToBob(server)
    viewer, watched = await whepViewer(server, publish["name"])
    assert watched.headers["content-type"] == "application/sdp"
    assert "a=candidate:" in watched.text
    frames = await viewer.waitFrames("video", 10, timeout=20)
    assert (frames[-1].width, frames[-1].height) == (320, 240)
    assert peers.lumaSignature(frames[-1]) != peers.lumaSignature(frames[0])  # it moves
    await viewer.waitFrames("audio", 10, timeout=20)
    deleted = await whip.request(server, "DELETE", watched.headers["location"])
    assert deleted.status == 200, deleted.text
    # The publisher is untouched: bob still sees the stream in the room.
    assert await alice.quiet(0.5) == []
    for peer in (viewer, publisher):
        await peer.close()
    await alice.close()
    await bob.close()


async def test_whep_plays_an_rtmp_publisher(server):
    ffmpeg.requireFFmpeg()
    name = f"rtmp-{uuid.uuid4().hex[:6]}"
    encoder = ffmpeg.publish(f"rtmp://127.0.0.1:{server.ports['rtmp']}/live/{name}", seconds=15)
    try:
        await waitLive(server.ports["rtmp"], name)
        viewer, watched = await whepViewer(server, name, strip=True)
        frames = await viewer.waitFrames("video", 10, timeout=20)
        assert (frames[-1].width, frames[-1].height) == (320, 240)
        await viewer.close()
    finally:
        ffmpeg.stop(encoder)


async def test_the_publisher_leaving_ends_a_whep_session(server):
    room, alice, bob, publisher, publish = await alicePublishesToBob(server)
    viewer, watched = await whepViewer(server, publish["name"])
    await viewer.waitFrames("video", 3, timeout=20)
    await alice.close()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while (await whip.request(server, "PATCH", watched.headers["location"])).status != 404:
        assert loop.time() < deadline, "the WHEP session outlived its stream"
        await asyncio.sleep(0.2)
    for peer in (viewer, publisher):
        await peer.close()
    await bob.close()


SDP = {"Content-Type": "application/sdp"}


async def test_whep_over_https(server):
    room, alice, bob, publisher, publish = await alicePublishesToBob(server)
    viewer, watched = await whepViewer(server, publish["name"], secure=True)
    await viewer.waitFrames("video", 5, timeout=20)
    deleted = await whip.request(server, "DELETE", watched.headers["location"], secure=True)
    assert deleted.status == 200, deleted.text
    for peer in (viewer, publisher):
        await peer.close()
    await alice.close()
    await bob.close()


async def test_wrong_content_type_is_415(server):
    response = await whip.request(server, "POST", f"/whip/{newRoom()}/x", "v=0\r\nm=video 9\r\n",
                                  {"Content-Type": "text/plain"})
    assert response.status == 415
    assert "application/sdp" in response.text


async def test_not_sdp_is_400(server):
    response = await whip.request(server, "POST", f"/whip/{newRoom()}/x", "hello", SDP)
    assert response.status == 400
    assert "not an SDP offer" in response.text


async def test_an_offer_the_engine_cannot_take_is_400_and_nobody_joins(server):
    room = newRoom()
    bob = await Client.open(server.wsURL, "bob")
    await bob.join(room)
    response = await whip.request(server, "POST", f"/whip/{room}/x",
                                  "v=0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", SDP)
    assert response.status == 400
    assert "Invalid SDP offer" in response.text
    # x joined, was refused and left: the room saw both, and x is free again.
    frames = [f["data"][0]["payload"] for f in await bob.quiet(0.5)
              if f["message"] == "OnDataEvent"]
    assert [(f["name"], f["info"]) for f in frames] == [("JOINED", "x"), ("LEFT", "x")]
    await bob.close()


async def test_unknown_stream_is_404(server):
    player = peers.Player()
    response = await whip.post(server, "/whep/no-such-stream", player.pc, strip=True)
    assert response.status == 404
    assert "Stream not found" in response.text
    await player.close()


async def test_login_taken_is_409(server):
    _, obs, publisher, response = await whipIntoRoom(server, "obs", strip=True)
    assert response.status == 409
    assert "already has a participant with login 'obs'" in response.text
    await publisher.close()
    await obs.close()


async def test_unknown_session_patch_and_paths(server):
    assert (await whip.request(server, "DELETE", "/whip/r/l/nothing")).status == 404
    assert (await whip.request(server, "DELETE", "/whep/s/nothing")).status == 404
    assert (await whip.request(server, "POST", "/whip/only-room", "v=0", SDP)).status == 404
    assert (await whip.request(server, "GET", "/whep/s")).status == 405


async def test_trickle_is_405_with_allow(server):
    room, alice, bob, publisher, publish = await alicePublishesToBob(server)
    viewer = peers.Player()
    watched = await whip.post(server, f"/whep/{publish['name']}", viewer.pc)
    assert watched.status == 201
    patch = await whip.request(server, "PATCH", watched.headers["location"],
                               "a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n",
                               {"Content-Type": "application/trickle-ice-sdpfrag"})
    assert patch.status == 405
    assert "DELETE" in patch.headers["allow"] and "PATCH" not in patch.headers["allow"]
    assert (await whip.request(server, "DELETE", watched.headers["location"])).status == 200
    for peer in (viewer, publisher):
        await peer.close()
    await alice.close()
    await bob.close()


async def test_cors_preflight(server):
    response = await whip.request(server, "OPTIONS", "/whip/room/login", headers={
        "Origin": "https://example.test", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, authorization"})
    assert response.status == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "location" in response.headers["access-control-expose-headers"].lower()
    assert response.headers["accept-post"] == "application/sdp"


async def test_bodies_bounded_on_whip_paths_and_refused_elsewhere(server):
    big = "v=0\r\n" + "a=x\r\n" * 20000  # over ws_max_message_size (64 KiB)
    response = await whip.request(server, "POST", "/whip/r/l", big, SDP)
    assert response.status == 413
    assert "over 65536 bytes" in response.text
    response = await whip.request(server, "POST", "/client2/x", "v=0\r\n", SDP)
    assert response.status == 413
    assert "no request bodies" in response.text


async def test_chunked_body_is_411(server):
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", server.ports["http"]), 5)
    try:
        writer.write(b"POST /whip/r/l HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n5\r\nv=0\r\n\r\n0\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 411 ")
    finally:
        writer.close()
