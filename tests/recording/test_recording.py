"""Per-stream recording with the real server and aiortc/ffmpeg publishers."""

import asyncio
import json
import os
import signal
import subprocess
import time
import uuid

from tests.media import peers
from tests.support.wsclient import Client

MEDIA = {"media_port_from": "0", "media_port_to": "0", "ice_public_ip": "127.0.0.1"}


def probe(path):
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries",
         "stream=codec_type,codec_name,nb_read_frames:format=duration", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=30)
    data = json.loads(result.stdout or "{}")
    return ({s["codec_type"]: s for s in data.get("streams", [])},
            float(data.get("format", {}).get("duration", 0)))


async def publishRecorded(server, seconds):
    from tests.test_webrtc_rooms import negotiate, status, streamRequest

    room = f"room-{uuid.uuid4().hex[:6]}"
    alice = await Client.open(server.wsURL, "alice")
    await alice.join(room)
    publisher = peers.Publisher(video="video/H264", audio="audio/opus")
    request = streamRequest(f"{room}-alice-abcd", room, await peers.offerOf(publisher.pc), True,
                            record=True)
    await negotiate(alice, publisher.pc, "publishStream", request)
    publishing = await status(alice, request["mediaSessionId"], "PUBLISHING")
    await asyncio.sleep(seconds)
    return alice, publisher, request, publishing


async def unpublishedRecording(server, client, request, name, timeout=15):
    """
    C{client} unpublishes C{request}: the path of its recording C{name}
    once it is written, and L{probe} of it.
    """
    await client.send("unPublishStream", {"mediaSessionId": request["mediaSessionId"],
                                          "name": request["name"]})
    path = server.workdir / "state" / "records" / name
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, server.log()[-2000:]
        await asyncio.sleep(0.1)
    return (path, *probe(path))


async def test_a_recorded_stream_becomes_a_downloadable_mp4(serverFactory):
    server = serverFactory(settings=MEDIA, enable=("ws", "http"))
    alice, publisher, request, publishing = await publishRecorded(server, 3)
    name = publishing["recordName"]
    assert name.startswith("stream-") and name.endswith(f"-{request['name']}.mp4")
    path, streams, duration = await unpublishedRecording(server, alice, request, name)
    assert streams["video"]["codec_name"] == "h264" and int(streams["video"]["nb_read_frames"]) > 30
    assert streams["audio"]["codec_name"] == "opus" and int(streams["audio"]["nb_read_frames"]) > 50
    assert 2.0 < duration < 5.0
    assert not path.with_suffix(".ts").exists()
    # Listed and downloadable, with ranges.
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=10)
    connection.request("GET", "/records/")
    assert name.encode() in connection.getresponse().read()
    connection.request("GET", f"/records/{name}", headers={"Range": "bytes=0-99"})
    response = connection.getresponse()
    assert response.status == 206 and len(response.read()) == 100
    await publisher.close()
    await alice.close()


async def test_sigkill_leaves_a_readable_recording_finished_at_next_start(serverFactory, tmp_path):
    state = tmp_path / "shared-state"
    server = serverFactory(settings=dict(MEDIA, state_dir=str(state)))
    alice, publisher, request, publishing = await publishRecorded(server, 3)
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)
    ts = state / "records" / publishing["recordName"].replace(".mp4", ".ts")
    streams, _ = probe(ts)
    assert int(streams["video"]["nb_read_frames"]) > 20  # up to about the kill
    await publisher.close()
    # The next start finishes it.
    again = serverFactory(settings=dict(MEDIA, state_dir=str(state)))
    mp4 = ts.with_suffix(".mp4")
    deadline = time.monotonic() + 15
    while not mp4.exists():
        assert time.monotonic() < deadline, again.log()[-2000:]
        await asyncio.sleep(0.1)
    streams, _ = probe(mp4)
    assert int(streams["video"]["nb_read_frames"]) > 20


async def test_rtmp_publish_with_record_true(serverFactory):
    from tests.rtmp import ffmpeg

    ffmpeg.requireFFmpeg()
    server = serverFactory(settings=MEDIA, enable=("ws", "rtmp"))
    encoder = ffmpeg.publish(f"rtmp://127.0.0.1:{server.ports['rtmp']}/live/cam?record=true",
                             seconds=4)
    try:
        await asyncio.to_thread(encoder.wait, 30)
    finally:
        ffmpeg.stop(encoder)
    records = server.workdir / "state" / "records"
    deadline = time.monotonic() + 15
    while not list(records.glob("stream-*-cam.mp4")):
        assert time.monotonic() < deadline, server.log()[-2000:]
        await asyncio.sleep(0.1)
    streams, duration = probe(next(records.glob("stream-*-cam.mp4")))
    assert streams["video"]["codec_name"] == "h264" and streams["audio"]["codec_name"] == "aac"
    assert 2.5 < duration < 5.0


async def publishInRoom(server, room, logins, gap):
    """Each login joins C{room} (the first with record: true) and publishes, C{gap} s apart."""
    from tests.test_webrtc_rooms import negotiate, status, streamRequest

    clients, pcs = [], []
    for i, login in enumerate(logins):
        client = await Client.open(server.wsURL, login)
        await client.join(room, record=(i == 0))
        publisher = peers.Publisher(video="video/H264", audio="audio/opus")
        request = streamRequest(f"{room}-p{i}-abcd", room, await peers.offerOf(publisher.pc),
                                True)
        await negotiate(client, publisher.pc, "publishStream", request)
        await status(client, request["mediaSessionId"], "PUBLISHING")
        clients.append(client)
        pcs.append(publisher)
        await asyncio.sleep(gap)
    return clients, pcs


async def recordedRoom(serverFactory, tmp_path, labels: bool):
    """Three participants join a recorded room, publish 1 s apart, then all leave."""
    hook = tmp_path / f"hook-{labels}.sh"
    argsFile = tmp_path / f"hook-args-{labels}.txt"
    hook.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {argsFile}\n')
    hook.chmod(0o755)
    mixerConf = tmp_path / f"mixer-{labels}.json"
    mixerConf.write_text(json.dumps({"mixerDisplayStreamName": labels, "width": 320,
                                     "height": 240, "frameRate": 15}))
    server = serverFactory(settings=dict(MEDIA, on_multiple_record_hook_script=str(hook),
                                         offline_mixer_config=str(mixerConf)))
    room = f"room-{uuid.uuid4().hex[:6]}"
    clients, pcs = await publishInRoom(server, room, ("ann", "ben", "cat"), gap=1)
    await asyncio.sleep(1)
    for client in clients:
        await client.send("sendData", {"operationId": "bye", "payload": {
            "command": "leave", "options": {"name": room}}})
    deadline = time.monotonic() + 60
    while not argsFile.exists():
        assert time.monotonic() < deadline, server.log()[-3000:]
        await asyncio.sleep(0.2)
    for pc in pcs:
        await pc.close()
    for client in clients:
        await client.close()
    return room, argsFile.read_text().splitlines(), server


def lumaOfLabelArea(path):
    """Luma of the bottom-left corner of the first tile, near the end."""
    import av

    with av.open(str(path)) as container:
        frames = [f for f in container.decode(video=0)]
    picture = frames[-5].reformat(format="gray")
    plane = bytes(picture.planes[0])
    stride = picture.planes[0].line_size
    rows = range(picture.height // 2 - 14, picture.height // 2 - 4)
    return b"".join(plane[r * stride + 4:r * stride + 60] for r in rows)


async def test_room_recording_is_mixed_and_the_hook_runs(serverFactory, tmp_path):
    room, args, server = await recordedRoom(serverFactory, tmp_path, labels=True)
    assert args[0] == room
    mixed, sources = args[1], args[2:]
    assert mixed.endswith(".mp4") and f"-{room}-mixed" in mixed
    assert len(sources) == 3 and all(s.endswith(".mp4") for s in sources)
    streams, duration = probe(mixed)
    assert streams["video"]["codec_name"] == "h264" and streams["audio"]["codec_name"] == "aac"
    assert 3.0 < duration < 6.5
    import av

    with av.open(mixed) as container:
        assert (container.streams.video[0].width, container.streams.video[0].height) == (320, 240)

    _, plainArgs, _ = await recordedRoom(serverFactory, tmp_path, labels=False)
    assert lumaOfLabelArea(mixed) != lumaOfLabelArea(plainArgs[1])


def test_recorded_opus_decodes_with_its_channels(tmp_path):
    """A recording's audio must be playable, not just present."""
    from fractions import Fraction

    import av

    from wcs.frames import EncodedFrame
    from wcs.recording.writer import StreamWriter, remuxToMP4

    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "stereo", "s16"
    encoder.open()
    writer = StreamWriter(tmp_path / "a.ts", {"audio": "opus"})
    for i in range(100):
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        frame.planes[0].update(bytes(960 * 4))
        frame.sample_rate, frame.pts = 48000, i * 960
        for packet in encoder.encode(frame):
            writer.writeFrame(EncodedFrame("audio", "opus", bytes(packet), i * 960,
                                           Fraction(1, 48000), True))
    writer.close()
    remuxToMP4(tmp_path / "a.ts", tmp_path / "a.mp4")
    with av.open(str(tmp_path / "a.mp4")) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.channels == 2
        decoded = list(container.decode(audio=0))
    assert len(decoded) > 80 and decoded[0].layout.nb_channels == 2


async def test_aligned_recordings_start_together(serverFactory):
    """Two streams 2 s apart: equal durations, the later one padded with black and silence."""
    import array

    import av

    from tests.test_webrtc_rooms import negotiate, status, streamRequest

    server = serverFactory(settings=dict(MEDIA, enable_empty_shift_writer="true"))
    room = f"room-{uuid.uuid4().hex[:6]}"
    clients, pcs, names = [], [], []
    for login in ("early", "late"):
        client = await Client.open(server.wsURL, login)
        await client.join(room, record=True)
        publisher = peers.Publisher(video="video/H264", audio="audio/opus")
        request = streamRequest(f"{room}-{login}-abcd", room, await peers.offerOf(publisher.pc),
                                True)
        await negotiate(client, publisher.pc, "publishStream", request)
        names.append((await status(client, request["mediaSessionId"], "PUBLISHING"))["recordName"])
        clients.append(client)
        pcs.append(publisher)
        if login == "early":
            await asyncio.sleep(2)
    await asyncio.sleep(2)
    for client in clients:  # both stop together
        client.ws.transport.abort()
    records = server.workdir / "state" / "records"
    deadline = time.monotonic() + 30
    while not all((records / n).exists() for n in names):
        assert time.monotonic() < deadline, server.log()[-2000:]
        await asyncio.sleep(0.1)
    (_, early), (_, late) = probe(records / names[0]), probe(records / names[1])
    # Without the padding they would differ by the 2 s between the publishes.
    # The server starts and ends the two files within a few ms of each other
    # (docs/recording.md, "Aligned recordings"); their lengths come from the
    # frames' timestamps, and a publisher of ours whose first frame left late
    # against its timestamps (its encoder opening on a loaded machine) makes
    # its file up to a few frame intervals longer.
    assert abs(early - late) < 0.15, (early, late)
    assert early > 3.5
    # The merge command of docs/recording.md lines them up side by side.
    merged = records / "side-by-side.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(records / names[0]),
                    "-i", str(records / names[1]), "-filter_complex",
                    "[0:v]pad=iw*2:ih[left];[left][1:v]overlay=w:0[v];"
                    "[0:a][1:a]amix=inputs=2:normalize=0[a]",
                    "-map", "[v]", "-map", "[a]", str(merged)], check=True, timeout=120)
    streams, mergedDuration = probe(merged)
    # The overlay and amix run to the longer input's end.
    assert abs(mergedDuration - max(early, late)) < 0.1, (mergedDuration, early, late)
    with av.open(str(records / names[1])) as container:
        first = next(container.decode(video=0)).reformat(format="gray")
    assert max(bytes(first.planes[0])) < 40  # black
    with av.open(str(records / names[1])) as container:
        sound = [f for _, f in zip(range(20), container.decode(audio=0))]
    assert max(max(abs(v) for v in array.array("f", bytes(f.planes[0]))) for f in sound) < 0.01
    for pc in pcs:
        await pc.close()


def test_recording_creates_no_decoder(tmp_path, monkeypatch):
    """H.264 + AAC frames to TS to MP4: no decoder context is ever made."""
    from fractions import Fraction

    import av

    from tests.rtmp.test_flash import h264Bodies
    from wcs.frames import EncodedFrame
    from wcs.rtmp import flv
    from wcs.recording.writer import StreamWriter, remuxToMP4

    videoFrames = flv.VideoToFrames()
    frames = [f for t, b in h264Bodies(45) if (f := videoFrames.convert(t, b)) is not None]
    aac = av.CodecContext.create("aac", "w")
    aac.sample_rate, aac.layout, aac.format = 44100, "stereo", "fltp"
    aac.open()
    config = bytes(aac.extradata)
    audio = []
    for i in range(130):
        frame = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate, frame.pts = 44100, i * 1024
        for packet in aac.encode(frame):
            audio.append(EncodedFrame("audio", "AAC", bytes(packet), i * 1024 * 1000 // 44100,
                                      Fraction(1, 1000), True, config, sample_rate=44100))

    created = []
    real = av.CodecContext.create

    def counting(codec, mode="r", *args, **kwargs):
        created.append((getattr(codec, "name", codec), mode))
        return real(codec, mode, *args, **kwargs)

    monkeypatch.setattr(av.CodecContext, "create", staticmethod(counting))
    writer = StreamWriter(tmp_path / "r.ts", {"video": "H264", "audio": "AAC"})
    for frame in sorted(frames + audio, key=lambda f: f.pts * f.time_base):
        writer.writeFrame(frame)
    writer.close()
    remuxToMP4(tmp_path / "r.ts", tmp_path / "r.mp4")
    assert [c for c in created if c[1] == "r"] == []
    streams, duration = probe(tmp_path / "r.mp4")
    assert streams["video"]["codec_name"] == "h264" and int(streams["video"]["nb_read_frames"]) >= 40
    assert streams["audio"]["codec_name"] == "aac"


async def publishVp8Recorded(server, stream):
    """
    alice publishes VP8 + Opus as C{stream}, recorded, outside any room,
    for 3 s.

    @return: (alice, the publisher, the publishStream request, the record name).
    """
    from tests.test_webrtc_rooms import negotiate, status, streamRequest

    alice = await Client.open(server.wsURL, "alice")
    publisher = peers.Publisher(video="video/VP8", audio="audio/opus")
    request = streamRequest(stream, None, await peers.offerOf(publisher.pc), True,
                            record=True, custom={})
    await negotiate(alice, publisher.pc, "publishStream", request)
    name = (await status(alice, request["mediaSessionId"], "PUBLISHING"))["recordName"]
    await asyncio.sleep(3)
    return alice, publisher, request, name


async def test_vp8_streams_record_to_webm(serverFactory):
    from tests.test_webrtc_rooms import status

    server = serverFactory(settings=dict(MEDIA, media_video_codecs="VP8"))
    alice, publisher, request, name = await publishVp8Recorded(server, "vp8-stream")
    assert name.endswith("-vp8-stream.webm")
    await alice.send("unPublishStream", {"mediaSessionId": request["mediaSessionId"],
                                         "name": request["name"]})
    await status(alice, request["mediaSessionId"], "UNPUBLISHED")
    streams, duration = probe(server.workdir / "state" / "records" / name)
    assert streams["video"]["codec_name"] == "vp8" and int(streams["video"]["nb_read_frames"]) > 30
    assert streams["audio"]["codec_name"] == "opus"
    await publisher.close()
    await alice.close()


async def test_configured_transcodes_vp8_to_h264_and_opus_to_aac(serverFactory):
    server = serverFactory(settings=dict(MEDIA, media_video_codecs="VP8", record_vp8="h264",
                                         record_audio_codec="aac"))
    alice, publisher, request, name = await publishVp8Recorded(server, "old-players")
    assert name.endswith("-old-players.mp4")
    _, streams, _ = await unpublishedRecording(server, alice, request, name, timeout=20)
    assert streams["video"]["codec_name"] == "h264" and int(streams["video"]["nb_read_frames"]) > 30
    assert streams["audio"]["codec_name"] == "aac" and int(streams["audio"]["nb_read_frames"]) > 30
    await publisher.close()
    await alice.close()


async def test_shutdown_finishes_recordings(serverFactory):
    server = serverFactory(settings=MEDIA, enable=("ws", "http"))
    alice, publisher, request, publishing = await publishRecorded(server, 2)
    from tests.web.test_site import rawGet

    response = rawGet(server, "/records/../../../etc/passwd")
    assert int(response.split(b" ", 2)[1]) in (403, 404) and b"root:" not in response
    assert server.stop() in (0, -2)  # SIGINT: at once, then twistd re-raises it
    path = server.workdir / "state" / "records" / publishing["recordName"]
    assert path.exists() and not path.with_suffix(".ts").exists()
    streams, duration = probe(path)
    assert streams["video"]["codec_name"] == "h264" and duration > 1.0
    await publisher.close()
