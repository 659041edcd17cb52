"""A Flash room client and a WebSocket participant in one room."""

import asyncio
import uuid
from fractions import Fraction

import av

from tests.rtmp.flashclient import FlashClient
from tests.support.wsclient import Client
from wcs.rtmp import chunks, flv


def h264Bodies(count=30):
    """FLV video bodies of real H.264 (PyAV's libx264, baseline)."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 320, 240, "yuv420p"
    encoder.time_base = Fraction(1, 15)
    encoder.options = {"profile": "baseline", "tune": "zerolatency", "g": "15",
                       "repeat-headers": "1"}
    encoder.open()
    toVideo = flv.FramesToVideo()
    bodies = []
    from wcs.frames import EncodedFrame

    for i in range(count):
        frame = av.VideoFrame(320, 240, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes([(i * 9) % 255]) * plane.buffer_size)
        frame.pts = i
        for packet in encoder.encode(frame):
            ms = int(packet.pts * 1000 / 15)
            bodies += toVideo.convert(EncodedFrame("video", "H264", bytes(packet), ms,
                                                   Fraction(1, 1000), packet.is_keyframe), ms)
    return bodies


async def test_flash_client_in_a_room_with_a_browser_participant(serverFactory):
    server = serverFactory(enable=("ws", "rtmp"))
    room = f"room-{uuid.uuid4().hex[:6]}"
    flash = await FlashClient.connect(server.ports["rtmp"], "flashuser")
    status = await flash.command("join", {"name": room})
    assert status["status"] == "ACCEPTED"
    assert (await flash.roomEvent("STATE"))["info"] == []

    web = await Client.open(server.wsURL, "webuser")
    assert await web.join(room) == ["flashuser"]
    assert (await flash.roomEvent("JOINED"))["info"] == "webuser"

    text = "Привет из Flash! Ёжик в тумане"
    assert (await flash.command("sendMessage", {"roomConfig": {"name": room}, "to": "webuser",
                                                "text": text}))["status"] == "ACCEPTED"
    assert (await web.roomEvent("MESSAGE"))["info"] == {"from": "flashuser", "text": text}
    await web.chat(room, "flashuser", text[::-1])
    assert (await flash.roomEvent("MESSAGE"))["info"] == {"from": "webuser", "text": text[::-1]}

    # Publish a NetStream named ROOM-LOGIN, as the Flash client does.
    await flash.publishVideo(f"{room}-flashuser", h264Bodies())
    published = await web.roomEvent("PUBLISHED")
    assert published["info"] == {"login": "flashuser", "name": f"{room}-flashuser"}
    assert any(s["code"] == "NetStream.Publish.Start" for s in flash.statuses)

    flash.close()
    assert (await web.roomEvent("UNPUBLISHED"))["info"]["name"] == f"{room}-flashuser"
    assert (await web.roomEvent("LEFT"))["info"] == "flashuser"
    await web.close()


async def test_malformed_rtmp_closes_only_that_connection(serverFactory):
    server = serverFactory(enable=("ws", "rtmp"))
    web = await Client.open(server.wsURL, "webuser")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.ports["rtmp"])
    writer.write(b"\x03" + bytes(1536))
    await reader.readexactly(1 + 2 * 1536)
    # A command message announcing 8 MB, over the 4 MB limit.
    writer.write(bytes(1536) + b"\x03\x00\x00\x00\x7f\xff\xff\x14\x00\x00\x00\x00")

    async def untilClosed():
        while await reader.read(65536):
            pass

    await asyncio.wait_for(untilClosed(), 10)  # the server closed this connection
    assert "protocol error: message of" in server.log()
    flash = await FlashClient.connect(server.ports["rtmp"], "stillworks")
    assert (await flash.command("join", {"name": "r"}))["status"] == "ACCEPTED"
    await web.send("ping", None)
    await web.expect("pong")
    flash.close()
    await web.close()


def nellymoserBodies(seconds=6):
    """FLV audio bodies of real Nellymoser at 16 kHz mono (format 4), a 440 Hz tone."""
    import math

    encoder = av.CodecContext.create("nellymoser", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 16000, "mono", "flt"
    encoder.open()
    bodies, samples = [], 0
    size = encoder.frame_size
    while samples < 16000 * seconds:
        frame = av.AudioFrame(format="flt", layout="mono", samples=size)
        import array

        frame.planes[0].update(array.array("f", (0.3 * math.sin(2 * math.pi * 440 * (samples + i) / 16000)
                                                 for i in range(size))).tobytes())
        frame.sample_rate, frame.pts = 16000, samples
        for packet in encoder.encode(frame):
            bodies.append((samples * 1000 // 16000, bytes([0x42]) + bytes(packet)))
        samples += size
    return bodies


async def test_flash_nellymoser_reaches_a_webrtc_player_as_opus(serverFactory):
    from tests.media import peers
    from tests.test_webrtc_rooms import negotiate, status, streamRequest

    server = serverFactory(enable=("ws", "rtmp"), settings={
        "media_port_from": "0", "media_port_to": "0", "ice_public_ip": "127.0.0.1"})
    room = f"room-{uuid.uuid4().hex[:6]}"
    flash = await FlashClient.connect(server.ports["rtmp"], "flashuser")
    await flash.command("join", {"name": room})
    web = await Client.open(server.wsURL, "webuser")
    await web.join(room)
    created = await flash.invoke("createStream", None)
    streamId = int(created[2])
    flash.call("publish", f"{room}-flashuser", "live", streamId=streamId)
    video, audio = h264Bodies(90), nellymoserBodies(6)
    media = sorted([(t, chunks.VIDEO, b) for t, b in video] + [(t, chunks.AUDIO, b) for t, b in audio],
                   key=lambda m: m[0])

    async def sendInRealTime():
        start = asyncio.get_running_loop().time()
        for timestamp, mtype, body in media:
            delay = start + timestamp / 1000 - asyncio.get_running_loop().time()
            if delay > 0:
                await asyncio.sleep(delay)
            flash.send(6 if mtype == chunks.VIDEO else 4, mtype, streamId, timestamp, body)

    sender = asyncio.ensure_future(sendInRealTime())
    try:
        await web.roomEvent("PUBLISHED")
        player = peers.Player(video="video/H264", audio="audio/opus")
        play = streamRequest(f"{room}-flashuser", room, await peers.offerOf(player.pc), False)
        await negotiate(web, player.pc, "playStream", play)
        await status(web, play["mediaSessionId"], "PLAYING")
        sound = await player.waitFrames("audio", 25, timeout=15)
        # Decoded Opus with the tone in it, not silence.
        import array

        loudest = max(max(abs(v) for v in array.array("h", bytes(f.planes[0])))
                      for f in sound[-10:])
        assert loudest > 1000
        await player.close()
    finally:
        sender.cancel()
        flash.close()
        await web.close()
