"""
The real server with ffmpeg publishing and playing over RTMP, WebSocket room
members watching, and aiortc players receiving RTMP-published media.
"""

import asyncio
import time
import uuid

import pytest

from tests.media import peers
from tests.rtmp import ffmpeg
from tests.rtmp.flashclient import waitLive
from tests.support.rooms import playInRoom, status
from tests.support.wsclient import Client

MEDIA = {"media_port_from": "0", "media_port_to": "0", "ice_public_ip": "127.0.0.1"}


@pytest.fixture
def rtmpServer(serverFactory):
    ffmpeg.requireFFmpeg()
    return serverFactory(enable=("ws", "rtmp"), settings=MEDIA)


def rtmpURL(server, path):
    return f"rtmp://127.0.0.1:{server.ports['rtmp']}/{path}"


async def test_ffmpeg_publishes_and_ffmpeg_plays(rtmpServer, tmp_path):
    encoder = ffmpeg.publish(rtmpURL(rtmpServer, "live/relay"), seconds=8)
    try:
        await waitLive(rtmpServer.ports["rtmp"], "relay")
        out = tmp_path / "played.flv"
        result = await asyncio.to_thread(ffmpeg.record, rtmpURL(rtmpServer, "live/relay"), out, 3)
        assert result.returncode == 0, result.stderr
        streams = ffmpeg.probe(out)
        assert streams["video"]["codec_name"] == "h264" and streams["video"]["width"] == 320
        assert int(streams["video"]["nb_read_frames"]) >= 30
        assert streams["audio"]["codec_name"] == "aac"
        assert int(streams["audio"]["nb_read_frames"]) >= 80
    finally:
        ffmpeg.stop(encoder)


async def test_play_of_a_missing_stream_fails(rtmpServer, tmp_path):
    result = await asyncio.to_thread(ffmpeg.record, rtmpURL(rtmpServer, "live/nothing"),
                                     tmp_path / "x.flv", 1)
    assert result.returncode != 0
    assert "Stream not found: nothing" in result.stderr


async def test_encoder_joins_a_room_by_url_and_webrtc_plays_it(rtmpServer):
    room = f"room-{uuid.uuid4().hex[:6]}"
    bob = await Client.open(rtmpServer.wsURL, "bob")
    await bob.join(room)
    encoder = await ffmpeg.publishIntoRoom(rtmpURL(rtmpServer, f"room/{room}/obs"), room, "obs",
                                           [bob], seconds=12)
    try:
        carol = await Client.open(rtmpServer.wsURL, "carol")
        assert await carol.join(room) == ["bob", {"login": "obs", "name": f"{room}-obs"}]

        # A WebRTC player gets the encoder's H.264 as it is and its AAC as Opus.
        player, play = await playInRoom(bob, room, f"{room}-obs")
        frames = await player.waitFrames("video", 10, timeout=20)
        assert (frames[-1].width, frames[-1].height) == (320, 240)
        await player.waitFrames("audio", 10, timeout=20)
        await bob.send("stopStream", {"mediaSessionId": play["mediaSessionId"],
                                      "name": play["name"]})
        await status(bob, play["mediaSessionId"], "STOPPED")
        await player.close()
    finally:
        ffmpeg.stop(encoder)
    assert (await bob.roomEvent("UNPUBLISHED", timeout=15))["info"]["login"] == "obs"
    assert (await bob.roomEvent("LEFT", timeout=15))["info"] == "obs"
    await bob.close()


async def test_encoder_login_taken_is_refused(rtmpServer):
    room = f"room-{uuid.uuid4().hex[:6]}"
    obs = await Client.open(rtmpServer.wsURL, "obs")
    await obs.join(room)
    encoder = ffmpeg.publish(rtmpURL(rtmpServer, f"room/{room}/obs"), seconds=5)
    try:
        await asyncio.to_thread(encoder.wait, 20)
        assert encoder.returncode != 0
        said = encoder.stderr.read().decode(errors="replace")
        assert "already has a participant with login 'obs'" in said, said
    finally:
        ffmpeg.stop(encoder)
        await obs.close()


@pytest.mark.parametrize("video", ["video/H264", "video/VP8"])
async def test_ffmpeg_players_of_a_webrtc_publisher_share_one_conversion(rtmpServer, tmp_path,
                                                                         video):
    room = f"room-{uuid.uuid4().hex[:6]}"
    alice = await Client.open(rtmpServer.wsURL, "alice")
    await alice.join(room)
    publisher = peers.Publisher(video=video, audio="audio/opus")
    from tests.test_webrtc_rooms import negotiate, streamRequest

    name = f"{room}-alice-abcd"
    publish = streamRequest(name, room, await peers.offerOf(publisher.pc), True)
    await negotiate(alice, publisher.pc, "publishStream", publish)
    await status(alice, publish["mediaSessionId"], "PUBLISHING")
    outs = [tmp_path / "first.flv", tmp_path / "second.flv"]
    results = await asyncio.gather(*(
        asyncio.to_thread(ffmpeg.record, rtmpURL(rtmpServer, f"live/{name}"), out, 3)
        for out in outs))
    for result, out in zip(results, outs):
        assert result.returncode == 0, result.stderr
        streams = ffmpeg.probe(out)
        assert streams["video"]["codec_name"] == "h264"
        assert int(streams["video"]["nb_read_frames"]) > 10
        assert streams["audio"]["codec_name"] == "aac"
        assert int(streams["audio"]["nb_read_frames"]) > 10
    assert rtmpServer.log().count(f"converting '{name}' to FLV for RTMP players") == 1
    await publisher.close()
    await alice.close()


async def test_a_stalled_player_never_holds_up_the_others(serverFactory, tmp_path):
    from tests.rtmp.flashclient import FlashClient

    rtmpServer = serverFactory(enable=("ws", "rtmp"), settings={"rtmp_player_buffer": "32768"})
    encoder = ffmpeg.publish(rtmpURL(rtmpServer, "live/busy"), seconds=14,
                             extra=["-b:v", "2M", "-x264-params", "nal-hrd=cbr",
                                    "-minrate", "2M", "-maxrate", "2M", "-bufsize", "1M"])
    try:
        await waitLive(rtmpServer.ports["rtmp"], "busy")
        stalled = await FlashClient.connect(rtmpServer.ports["rtmp"], "", app="live",
                                            receiveBuffer=4096)
        created = await stalled.invoke("createStream", None)
        stalled.call("play", "busy", streamId=int(created[2]))
        await asyncio.sleep(0.5)
        stalled.writer.transport.pause_reading()  # reads nothing more, ever
        out = tmp_path / "healthy.flv"
        result = await asyncio.to_thread(ffmpeg.record, rtmpURL(rtmpServer, "live/busy"), out, 5)
        assert result.returncode == 0, result.stderr
        streams = ffmpeg.probe(out)
        assert int(streams["video"]["nb_read_frames"]) >= 60  # 5 s at 15 fps, minus a GOP
        assert encoder.poll() is None  # the publisher is still going
        assert "player congested, dropping to the next keyframe" in rtmpServer.log()
        stalled.close()
    finally:
        ffmpeg.stop(encoder)


async def test_encoder_names_its_room_in_connect_arguments(rtmpServer):
    room = f"room-{uuid.uuid4().hex[:6]}"
    bob = await Client.open(rtmpServer.wsURL, "bob")
    await bob.join(room)
    encoder = await ffmpeg.publishIntoRoom(
        rtmpURL(rtmpServer, "live/anything"), room, "cam1", [bob], seconds=8,
        extra=["-rtmp_conn", f"O:1 NS:room:{room} NS:login:cam1 O:0"])
    ffmpeg.stop(encoder)
    assert (await bob.roomEvent("UNPUBLISHED", timeout=15))["info"]["login"] == "cam1"
    assert (await bob.roomEvent("LEFT", timeout=15))["info"] == "cam1"
    await bob.close()


async def test_a_minute_of_live_rtmp_cuts_nobody(rtmpServer, tmp_path):
    """
    Three timeouts (20 s, the default) of an encoder and a player of
    live/NAME, and of an encoder in a room with a WebSocket member: media
    and ping answers keep them all.
    """
    room = f"room-{uuid.uuid4().hex[:6]}"
    bob = await Client.open(rtmpServer.wsURL, "bob")
    await bob.join(room)
    live = ffmpeg.publish(rtmpURL(rtmpServer, "live/long"), seconds=90)
    inRoom = ffmpeg.publish(rtmpURL(rtmpServer, f"room/{room}/obs"), seconds=90)
    try:
        await waitLive(rtmpServer.ports["rtmp"], "long")
        assert (await bob.roomEvent("JOINED", timeout=15))["info"] == "obs"
        assert (await bob.roomEvent("PUBLISHED", timeout=15))["info"]["login"] == "obs"
        out = tmp_path / "long.flv"
        playing = asyncio.ensure_future(asyncio.to_thread(
            ffmpeg.record, rtmpURL(rtmpServer, "live/long"), out, 60, 120))
        seen = []
        deadline = time.monotonic() + 130
        while not playing.done() and time.monotonic() < deadline:
            try:
                frame = await bob.next(1)
            except asyncio.TimeoutError:
                continue
            if frame["message"] == "ping":
                await bob.send("pong", None)  # as the SDK does
            else:
                seen.append(frame)
        result = await playing
        assert result.returncode == 0, result.stderr
        assert ffmpeg.duration(out) >= 55
        events = [f["data"][0]["payload"]["name"] for f in seen if f["message"] == "OnDataEvent"]
        assert "LEFT" not in events and "UNPUBLISHED" not in events, seen
        assert live.poll() is None and inRoom.poll() is None  # still publishing
    finally:
        ffmpeg.stop(live)
        ffmpeg.stop(inRoom)
    await bob.close()
