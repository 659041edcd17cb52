"""
Codec choice: forwarding without decoding when codecs match, one shared
transcoder per target codec when they do not, and refusals.
"""

import asyncio
import contextlib
import fractions
import itertools

import aiortc.rtcrtpreceiver
import av
import pytest
from zope.interface import implementer

import wcs.media.transcode
from tests.media.peers import (
    WAIT, FrameSink, Player, Publisher, Request, asyncTest, lumaSignature, makeEngine, newPeer,
    offerOf, _prefer)
from tests.support.wait import waitUntil
from wcs.errors import StreamError
from wcs.frames import EncodedFrame
from wcs.interfaces import IMediaSource


@pytest.fixture
def decoders(monkeypatch):
    """Count the decoders made: by aiortc's receivers (the players) and by the engine."""
    counts = {"players": 0, "engine": 0}

    def counting(where, real):
        def make(*args, **kwargs):
            counts[where] += 1
            return real(*args, **kwargs)
        return make
    monkeypatch.setattr(aiortc.rtcrtpreceiver, "get_decoder",
                        counting("players", aiortc.rtcrtpreceiver.get_decoder))
    monkeypatch.setattr(wcs.media.transcode, "makeDecoder",
                        counting("engine", wcs.media.transcode.makeDecoder))
    return counts


@contextlib.asynccontextmanager
async def playing(count: int, video: str, audio: str):
    """
    An engine, an H.264+Opus publisher and C{count} players of C{video} and
    C{audio} playing it; all closed at the end.

    @return: (the engine, the players).
    """
    engine = makeEngine()
    publisher = Publisher(video="video/H264", audio="audio/opus")
    players = [Player(video=video, audio=audio) for _ in range(count)]
    try:
        session = await publisher.publish(engine)
        await asyncio.gather(*(p.play(engine, session.source) for p in players))
        yield engine, players
    finally:
        await asyncio.gather(*(p.close() for p in players))
        await publisher.close()
        await engine.close()


def test_noDecodingWhenCodecsMatch(decoders):
    """
    Three players of the publisher's codecs: the only decoders made are the
    players' own (one per track), the engine makes none.
    """
    @asyncTest()
    async def run():
        async with playing(3, "video/H264", "audio/opus") as (engine, players):
            for player in players:
                await player.waitFrames("video", 10)
                await player.waitFrames("audio", 10)
            assert decoders == {"players": 6, "engine": 0}
            assert engine.frameTracks == {}
    run()


def test_transcodedOncePerCodec(decoders):
    """
    Two VP8-only players of an H.264 publisher share one transcoder (one
    H.264 decoder in the engine); PCMU-only players get the Opus audio
    transcoded likewise. Both decode pictures that change.
    """
    @asyncTest()
    async def run():
        async with playing(2, "video/VP8", "audio/PCMU") as (engine, players):
            for player in players:
                frames = await player.waitFrames("video", 15)
                assert len({lumaSignature(f) for f in frames}) > 5
                audio = await player.waitFrames("audio", 10)
                assert audio[-1].sample_rate == 8000
            assert sorted(key[1:] for key in engine.frameTracks) == [
                ("audio", "PCMU"), ("video", "VP8")]
            assert decoders["engine"] == 2  # one H.264, one Opus: shared
            # The transcoder goes away with its last player.
            for player in players:
                player.session.stop()
            assert engine.frameTracks == {}
    run()


@asyncTest()
async def test_frameSink():
    """
    An IMediaSink gets H.264 as Annex-B frames, starting with a keyframe,
    and Opus frames; detaching stops the frame assembly; the publisher's
    stop ends the sinks still attached.
    """
    engine = makeEngine()
    publisher = Publisher(video="video/H264", audio="audio/opus")
    try:
        session = await publisher.publish(engine)
        source = session.source
        await asyncio.wait_for(publisher.listener.started.wait(), WAIT)
        assert all(t.frameListener is None for t in source.incoming.values())
        sink = FrameSink()
        source.attach(sink)
        await asyncio.wait_for(sink.gotKeyframe.wait(), WAIT)

        def count(kind):
            return sum(f.kind == kind for f in sink.frames)
        await waitUntil(lambda: count("video") > 5 and count("audio") > 10, WAIT,
                        lambda: f"frames: {count('video')} video, {count('audio')} audio")
        video = [f for f in sink.frames if f.kind == "video"]
        audio = [f for f in sink.frames if f.kind == "audio"]
        first = next(f for f in video if f.keyframe)
        assert first.codec == "H264" and first.data.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01"))
        assert len(video) > 5 and len(audio) > 10
        pts = [f.pts for f in video]
        assert pts == sorted(pts) and video[0].time_base.denominator == 90000
        assert audio[0].codec == "opus"
        source.detach(sink)
        assert all(t.frameListener is None for t in source.incoming.values())
        later = FrameSink()
        source.attach(later)
        session.stop()
        assert later.ended.is_set() and not sink.ended.is_set()
    finally:
        await publisher.close()
        await engine.close()


@asyncTest()
async def test_noCommonCodecs():
    """
    Offers with nothing we can take or make (G.722 only) fail with the
    SDK's 'No common codecs', before any socket is opened.
    """
    engine = makeEngine()
    publisher = Publisher(video="video/H264", audio="audio/opus")
    g722 = newPeer()
    _prefer(g722.addTransceiver("audio", direction="sendrecv"), "audio/G722")
    try:
        session = await publisher.publish(engine)
        offer = await offerOf(g722)
        with pytest.raises(StreamError) as refused:
            engine.play(Request("stream", offer.replace("sendrecv", "recvonly")),
                        session.source, None)
        assert refused.value.info == "No common codecs"
        with pytest.raises(StreamError) as refused:
            engine.publish(Request("other", offer.replace("sendrecv", "sendonly")), None)
        assert refused.value.info == "No common codecs"
        assert len(engine.sessions) == 1
    finally:
        await g722.close()
        await publisher.close()
        await engine.close()


@implementer(IMediaSource)
class OtherSource:
    """
    A source that is not the engine's own, as an RTMP publisher's will be:
    only EncodedFrames come out of it (here, those of a WebRTC publisher).
    """

    def __init__(self, inner):
        self.inner = inner
        self.tracks = dict(inner.tracks)

    def attach(self, sink):
        self.inner.attach(sink)

    def detach(self, sink):
        self.inner.detach(sink)

    def requestKeyframe(self):
        self.inner.requestKeyframe()


def test_playOtherSource(decoders):
    """
    A player of a foreign source in its own codecs gets the frames
    packetized without any decoding; one in other codecs gets them
    transcoded.
    """
    @asyncTest()
    async def run():
        engine = makeEngine()
        publisher = Publisher(video="video/H264", audio="audio/opus")
        same = Player(video="video/H264", audio="audio/opus")
        other = Player(video="video/VP8", audio=None)
        try:
            session = await publisher.publish(engine)
            source = OtherSource(session.source)
            await same.play(engine, source)
            frames = await same.waitFrames("video", 15)
            assert len({lumaSignature(f) for f in frames}) > 5
            await same.waitFrames("audio", 10)
            assert decoders["engine"] == 0
            await other.play(engine, source)
            await other.waitFrames("video", 10)
            assert decoders["engine"] == 1
        finally:
            await same.close()
            await other.close()
            await publisher.close()
            await engine.close()
    run()


@implementer(IMediaSource)
class EncodedSource:
    """
    An RTMP publisher's kind of source: H.264 (Annex-B) and AAC frames with
    millisecond pts, made with PyAV's encoders.
    """

    def __init__(self):
        self.tracks = {"video": "H264", "audio": "AAC"}
        self.sinks = []
        self.keyframe = True
        self.video = av.CodecContext.create("libx264", "w")
        self.video.width, self.video.height, self.video.pix_fmt = 160, 120, "yuv420p"
        self.video.time_base = fractions.Fraction(1, 1000)
        self.video.options = {"tune": "zerolatency", "profile": "baseline"}
        self.audio = av.CodecContext.create("aac", "w")
        self.audio.sample_rate, self.audio.layout, self.audio.format = 44100, "stereo", "fltp"
        self.audio.time_base = fractions.Fraction(1, 44100)
        self.audio.open()
        self.task = asyncio.ensure_future(self._run())

    def attach(self, sink):
        self.sinks.append(sink)

    def detach(self, sink):
        if sink in self.sinks:
            self.sinks.remove(sink)

    def requestKeyframe(self):
        self.keyframe = True

    def _send(self, frame):
        for sink in list(self.sinks):
            sink.writeFrame(frame)

    async def _run(self):
        ms = fractions.Fraction(1, 1000)
        samples = 0
        for i in itertools.count():
            picture = av.VideoFrame(160, 120, "yuv420p")
            for plane in picture.planes:
                plane.update(bytes([(i * 9) % 200 + 20]) * plane.buffer_size)
            picture.pts = i * 33
            if self.keyframe:
                picture.pict_type = av.video.frame.PictureType.I
                self.keyframe = False
            for packet in self.video.encode(picture):
                self._send(EncodedFrame("video", "H264", bytes(packet), packet.pts, ms,
                                        packet.is_keyframe))
            while samples * 1000 < (i + 1) * 33 * 44100:
                sound = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
                for plane in sound.planes:
                    plane.update(bytes(plane.buffer_size))
                sound.sample_rate, sound.pts = 44100, samples
                for packet in self.audio.encode(sound):
                    self._send(EncodedFrame("audio", "AAC", bytes(packet),
                                            packet.pts * 1000 // 44100, ms, True,
                                            bytes(self.audio.extradata or b"")))
                samples += 1024
            await asyncio.sleep(0.033)

    def stop(self):
        self.task.cancel()


@asyncTest()
async def test_playEncodedSource():
    """
    A player of an RTMP-like source gets its H.264 packetized as it is and
    its AAC transcoded to Opus.
    """
    engine = makeEngine()
    source = EncodedSource()
    player = Player(video="video/H264", audio="audio/opus")
    try:
        await player.play(engine, source)
        frames = await player.waitFrames("video", 10)
        assert (frames[-1].width, frames[-1].height) == (160, 120)
        assert len({lumaSignature(f) for f in frames}) > 3
        audio = await player.waitFrames("audio", 10)
        assert audio[-1].sample_rate == 48000
        assert sorted(key[1:] for key in engine.frameTracks) == [
            ("audio", "opus"), ("video", "H264")]
        assert engine.frameTracks[(id(source), "video", "H264")].transcoding is False
    finally:
        source.stop()
        await player.close()
        await engine.close()
