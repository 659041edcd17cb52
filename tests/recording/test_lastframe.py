"""
A recording holds everything the server received, up to the last frame
before the unpublish (docs/recording.md, "What a recording holds at its
end"): an aiortc publisher sends numbered frames, stops, unpublishes once
they are all at the server; the recording is decoded and read back.
"""

import asyncio
import dataclasses
import fractions
import json
import itertools
import math
import subprocess
import time
import uuid

import av
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, VideoStreamTrack

from tests.media import peers
from tests.media.test_lastframe import Events
from tests.recording.test_recording import MEDIA, unpublishedRecording
from tests.support.rooms import negotiate, status, streamRequest
from tests.support.wsclient import Client
from wcs.frames import EncodedFrame
from wcs.recording.transcoding import Transcoding
from wcs.recording.mixer import MixerSettings, Part, RoomMix, ffmpegCommand
from wcs.recording.writer import StreamWriter, remuxToMP4

RATE = 15
WIDTH, HEIGHT = 320, 240
BITS = 10  # of a frame's number, one column each: 1023 frames at most
FRAMES = 45  # 3 s: the recording begins at the keyframe asked for at PUBLISHING
AUDIO_FRAMES = 40  # 20 ms each


def numbered(number: int) -> av.VideoFrame:
    """A picture whose columns are C{number}'s bits, lowest first: white 1, black 0."""
    frame = av.VideoFrame(width=WIDTH, height=HEIGHT, format="yuv420p")
    luma = frame.planes[0]
    column = WIDTH // BITS
    row = b"".join(bytes([235 if number >> bit & 1 else 16]) * column for bit in range(BITS))
    luma.update((row + bytes(luma.line_size - len(row))) * HEIGHT)
    for plane in frame.planes[1:]:
        plane.update(bytes([128]) * plane.buffer_size)
    return frame


def numberOf(picture: av.VideoFrame) -> int:
    """The number L{numbered} drew, read from the middle of each column (any size)."""
    gray = picture.to_ndarray(format="gray")
    height, width = gray.shape
    column = width / BITS
    return sum(1 << bit for bit in range(BITS)
               if gray[height // 2, int((bit + 0.5) * column)] > 128)


class Gated(MediaStreamTrack):
    """Sends C{count} frames once C{go} is set, on a real-time schedule, then nothing."""

    def __init__(self, count: int, interval: float):
        super().__init__()
        self.go = asyncio.Event()
        self.count, self.interval = count, interval
        self.sent = 0
        self.startedAt = None

    async def _next(self) -> int:
        if self.readyState != "live":
            raise MediaStreamError
        await self.go.wait()
        if self.sent == self.count:
            await asyncio.Event().wait()  # no more: the sender waits until it is stopped
        loop = asyncio.get_running_loop()
        if self.startedAt is None:
            self.startedAt = loop.time()
        await asyncio.sleep(max(0.0, self.startedAt + self.sent * self.interval - loop.time()))
        self.sent += 1
        return self.sent - 1


class NumberedVideo(Gated, VideoStreamTrack):
    kind = "video"

    async def recv(self):
        number = await self._next()
        frame = numbered(number)
        frame.pts, frame.time_base = number * 90000 // RATE, fractions.Fraction(1, 90000)
        return frame


class GatedTone(Gated):
    kind = "audio"
    SAMPLES = 960

    async def recv(self):
        number = await self._next()
        start = number * self.SAMPLES
        frame = av.AudioFrame(format="s16", layout="mono", samples=self.SAMPLES)
        frame.planes[0].update(b"".join(
            int(8000 * math.sin(2 * math.pi * 440 * (start + i) / 48000)).to_bytes(2, "little",
                                                                                  signed=True)
            for i in range(self.SAMPLES)))
        frame.pts, frame.sample_rate = start, 48000
        frame.time_base = fractions.Fraction(1, 48000)
        return frame


async def recordNumbered(server, video: str, roomRecord: bool = False):
    """
    Publish FRAMES numbered frames and AUDIO_FRAMES of tone (starting once
    the file has, at its first keyframe), wait until the server has them,
    unpublish: the decoded recording's frame numbers and its audio
    packets' durations. With C{roomRecord} the room is recorded (joined
    with C{record: true}) and left after the unpublish.
    """
    room = f"room-{uuid.uuid4().hex[:6]}"
    client = await Client.open(server.wsURL, "alice")
    pc = peers.newPeer()
    videoTrack, audioTrack = NumberedVideo(FRAMES, 1 / RATE), GatedTone(AUDIO_FRAMES, 0.02)
    peers._prefer(pc.addTransceiver(videoTrack, direction="sendonly"), video)
    peers._prefer(pc.addTransceiver(audioTrack, direction="sendonly"), "audio/opus")
    try:
        await client.join(room, record=roomRecord)
        request = streamRequest(f"{room}-alice", room, await peers.offerOf(pc), True,
                                record=not roomRecord)
        await negotiate(client, pc, "publishStream", request)
        videoTrack.go.set()  # PUBLISHING comes with the first media
        publishing = await status(client, request["mediaSessionId"], "PUBLISHING")
        await asyncio.sleep(0.5)  # the recording starts at the first keyframe
        audioTrack.go.set()
        deadline = time.monotonic() + 15
        while videoTrack.sent < FRAMES or audioTrack.sent < AUDIO_FRAMES:
            assert time.monotonic() < deadline, (videoTrack.sent, audioTrack.sent)
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # on their way over loopback
        path, _, _ = await unpublishedRecording(server, client, request,
                                                publishing["recordName"])
        if roomRecord:
            await client.send("sendData", {"operationId": "bye", "payload": {
                "command": "leave", "options": {"name": room}}})
    finally:
        await pc.close()
        await client.close()
    with av.open(str(path)) as container:
        numbers = [numberOf(picture) for picture in container.decode(video=0)]
    with av.open(str(path)) as container:
        audio = [packet.duration * packet.time_base
                 for packet in container.demux(audio=0) if packet.size]
    return path, numbers, audio


def assertEveryFrame(numbers: list[int]) -> None:
    """From the first keyframe recorded on, every frame, the last sent last."""
    assert numbers and numbers[-1] == FRAMES - 1, numbers
    assert numbers == list(range(numbers[0], FRAMES)), numbers


@pytest.mark.parametrize("video,suffix", [("video/H264", ".mp4"), ("video/VP8", ".webm")])
async def test_the_last_video_and_audio_frames_are_recorded(serverFactory, video, suffix):
    server = serverFactory(settings=MEDIA, enable=("ws",))
    path, numbers, audio = await recordNumbered(server, video)
    assert path.suffix == suffix
    assertEveryFrame(numbers)
    assert len(audio) == AUDIO_FRAMES, audio


async def test_transcoded_recordings_end_with_the_last_frames(serverFactory):
    """VP8 to H.264 and Opus to AAC: the encoders' last frames are in the file too."""
    server = serverFactory(settings=dict(MEDIA, record_audio_codec="aac", record_vp8="h264"),
                           enable=("ws",))
    path, numbers, audio = await recordNumbered(server, "video/VP8")
    assert path.suffix == ".mp4"
    assertEveryFrame(numbers)
    # AAC frames are 1024 samples, Opus's were 960: the tone's 0.8 s, not a frame less.
    assert sum(audio) >= AUDIO_FRAMES * 0.02, (len(audio), float(sum(audio)))


async def test_a_mixed_room_recording_ends_with_the_last_frame(serverFactory, tmp_path):
    """The room's mix (one tile: the whole picture) shows every frame of its stream's recording."""
    done = tmp_path / "hook-args.txt"
    hook = tmp_path / "hook.sh"
    hook.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {done}\n')
    hook.chmod(0o755)
    mixer = tmp_path / "mixer.json"
    mixer.write_text(json.dumps({"width": WIDTH, "height": HEIGHT, "frameRate": RATE}))
    server = serverFactory(settings=dict(MEDIA, on_multiple_record_hook_script=str(hook),
                                         offline_mixer_config=str(mixer)), enable=("ws",))
    _, numbers, _ = await recordNumbered(server, "video/H264", roomRecord=True)
    assertEveryFrame(numbers)
    deadline = time.monotonic() + 60
    while not done.exists():
        assert time.monotonic() < deadline, server.log()[-3000:]
        await asyncio.sleep(0.2)
    with av.open(done.read_text().splitlines()[1]) as container:
        shown = [numberOf(picture) for picture in container.decode(video=0)]
    # Black (0, as frame 0) before the stream's first frame and after its last.
    assert [n for n in shown if n][-1] == FRAMES - 1, shown
    assert set(range(numbers[0], FRAMES)) <= set(shown), shown


def opusPackets(count: int) -> list[bytes]:
    """C{count} 20 ms Opus packets of a tone (libopus, as a browser sends)."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "stereo", "s16"
    encoder.open()
    packets = []
    for number in range(count):
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        frame.planes[0].update(bytes(range(256)) * (960 * 4 // 256) + bytes(960 * 4 % 256))
        frame.pts, frame.sample_rate = number * 960, 48000
        frame.time_base = fractions.Fraction(1, 48000)
        packets += [bytes(p) for p in encoder.encode(frame)]
    return packets + [bytes(p) for p in encoder.encode(None)]


def test_the_aac_encoders_last_frames_are_written_at_the_end():
    """
    Opus transcoded to AAC: the encoder holds its last frames (it looks
    ahead); the end writes them before the writer hears of it, and nothing
    after.
    """
    packets = opusPackets(AUDIO_FRAMES)
    for end in ("sourceEnded", "close"):
        sink = Events()
        transcoding = Transcoding(sink, {"audio": "opus"}, {"audio": "AAC"})
        for number, data in enumerate(packets):
            transcoding.writeFrame(EncodedFrame("audio", "opus", data, number * 960,
                                                fractions.Fraction(1, 48000), True))
        before = len(sink.seen)
        getattr(transcoding, end)()
        frames = len(sink.seen) - 1
        assert sink.seen[-1] == "end" and frames > before
        # Every sample sent is in the file: the frames from the encoder's priming on.
        assert frames * 1024 >= len(packets) * 960 + 1024, (before, frames)
        transcoding.writeFrame(EncodedFrame("audio", "opus", packets[0], 0,
                                            fractions.Fraction(1, 48000), True))
        assert sink.seen[-1] == "end" and not transcoding.audio.flush()


def numberedFile(path, count: int) -> None:
    """C{count} numbered pictures at RATE, losslessly (FFV1), for an encoder to read."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for number in range(count):
            frame = numbered(number)
            frame.pts = number
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


async def test_an_rtmp_encoders_last_frame_is_recorded(serverFactory, tmp_path):
    """ffmpeg publishes FRAMES numbered frames over RTMP: the recording holds them all."""
    from tests.rtmp import ffmpeg

    ffmpeg.requireFFmpeg()
    source = tmp_path / "numbered.mkv"
    numberedFile(source, FRAMES)
    server = serverFactory(settings=MEDIA, enable=("ws", "rtmp"))
    encoder = await asyncio.create_subprocess_exec(
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-i", str(source),
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={FRAMES / RATE}",
        "-pix_fmt", "yuv420p", "-c:v", "libx264", "-profile:v", "baseline", "-tune",
        "zerolatency", "-g", "15", "-c:a", "aac", "-f", "flv",
        f"rtmp://127.0.0.1:{server.ports['rtmp']}/live/numbered?record=true")
    try:
        assert await asyncio.wait_for(encoder.wait(), 30) == 0
    finally:
        if encoder.returncode is None:
            encoder.kill()
            await encoder.wait()
    records = server.workdir / "state" / "records"
    deadline = time.monotonic() + 15
    while not list(records.glob("stream-*-numbered.mp4")):
        assert time.monotonic() < deadline, server.log()[-2000:]
        await asyncio.sleep(0.1)
    with av.open(str(next(records.glob("stream-*-numbered.mp4")))) as container:
        numbers = [numberOf(picture) for picture in container.decode(video=0)]
    # From the first frame too: the recorder starts on the keyframe that
    # made the stream playable (before, on the next one, a GOP later).
    assert numbers == list(range(FRAMES)), numbers


def h264Frames(count: int, first: int = 0) -> list[EncodedFrame]:
    """C{count} pictures numbered from C{first} as H.264 (Annex-B, the first a keyframe) at RATE."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    encoder.time_base = fractions.Fraction(1, RATE)
    encoder.options = {"tune": "zerolatency", "repeat-headers": "1"}
    packets = []
    for number in range(count):
        picture = numbered(first + number)
        picture.pts = number
        packets += encoder.encode(picture)
    packets += encoder.encode(None)
    return [EncodedFrame("video", "H264", bytes(p), i * 6000, fractions.Fraction(1, 90000),
                         p.is_keyframe) for i, p in enumerate(packets)]


def test_a_stream_that_ends_before_its_audio_came_is_recorded(tmp_path):
    """
    The file waits for the first audio frame (its rate) for up to 2 s; a
    stream that ends meanwhile is written, without audio, not thrown away.
    """
    path = tmp_path / "short.ts"
    writer = StreamWriter(path, {"video": "H264", "audio": "opus"})
    for frame in h264Frames(10):
        writer.writeFrame(frame)
    assert writer.container is None  # still waiting for audio
    writer.sourceEnded()
    assert writer.frames == 10
    with av.open(str(path)) as container:
        assert [numberOf(p) for p in container.decode(video=0)] == list(range(10))


@pytest.mark.parametrize("start", [0.007, 0.1, 0.3, 0.467])
def test_a_mix_shows_every_frame_wherever_its_tile_starts(tmp_path, start):
    """
    A recording at the mix's rate, its tile starting between two of the
    mix's ticks: every frame is shown, the first too. Before, ffmpeg put
    each frame on the nearest tick: a start half-way between (0.1 s at
    15 fps) let two frames round to one tick and one was lost, and a first
    frame rounded down before its tile began (0.007 s) was never shown.
    """
    from tests.rtmp import ffmpeg

    ffmpeg.requireFFmpeg()
    first, count = 5, 45  # 0 is black, like the mix around the tile
    ts, recording = tmp_path / "alice.ts", tmp_path / "alice.mp4"
    writer = StreamWriter(ts, {"video": "H264"})
    for frame in h264Frames(count, first):
        # As from an RTP clock: far from 0 (before, float timestamps put
        # some frames a 90 kHz tick early, which is all a half-way start needs).
        writer.writeFrame(dataclasses.replace(frame, pts=3_000_000_123 + frame.pts))
    writer.close()
    remuxToMP4(ts, recording)
    part = Part("alice", recording, start, end=start + count / RATE)
    output = tmp_path / "mixed.mp4"
    settings = MixerSettings(hasAudio=False, width=WIDTH, height=HEIGHT, frameRate=RATE)
    subprocess.run(ffmpegCommand(RoomMix("room", [part]), output, settings),
                   check=True, timeout=60)
    with av.open(str(output)) as container:
        shown = [numberOf(picture) for picture in container.decode(video=0)]
    # Each frame on a tick of its own (the last may stay for the tile's margin).
    assert [n for n, _ in itertools.groupby(shown) if n] == list(range(first, first + count)), shown
    assert shown.count(first + count // 2) == 1, shown
    with av.open(str(recording)) as container:
        spacing = {b.pts - a.pts for a, b in itertools.pairwise(container.demux(video=0))
                   if b.pts is not None}
    assert spacing == {6000}, spacing  # 1/15 s in 90 kHz ticks, exactly
