"""
Publish and play with real aiortc peers on loopback.
"""

import asyncio

from tests.media.peers import (
    WAIT, Listener, Player, Publisher, Request, accept, asyncTest, lumaSignature, makeEngine,
    offerOf)
from wcs.media.ice import PortRange


@asyncTest()
async def test_publishAndPlayH264():
    """
    An aiortc publisher whose offer has no candidates is answered with the
    server's candidates and connects (the server learns its address from its
    checks); a player decodes the forwarded video and audio, and the picture
    changes.
    """
    engine = makeEngine()
    publisher = Publisher(video="video/H264", audio="audio/opus")
    player = Player(video="video/H264", audio="audio/opus")
    try:
        session = await publisher.publish(engine)
        assert session.source.tracks == {"video": "H264", "audio": "opus"}
        await asyncio.wait_for(publisher.listener.started.wait(), WAIT)
        learned = [c for t in session.transports.values() for c in t.ice.remote_candidates]
        assert learned and all(c.type == "prflx" for c in learned)

        await player.play(engine, session.source)
        await asyncio.wait_for(player.listener.started.wait(), WAIT)
        frames = await player.waitFrames("video", 20)
        assert (frames[0].width, frames[0].height) == (320, 240)
        assert len({lumaSignature(f) for f in frames[:20]}) > 5
        audio = await player.waitFrames("audio", 10)
        assert audio[-1].sample_rate == 48000
    finally:
        await player.close()
        await publisher.close()
        await engine.close()


@asyncTest()
async def test_vp8ManyPlayers():
    """A VP8 publisher forwarded to three players, each decoding video."""
    engine = makeEngine(media_video_codecs="VP8,H264")
    publisher = Publisher(video="video/VP8", audio="audio/PCMU")
    players = [Player(video="video/VP8", audio="audio/PCMU") for _ in range(3)]
    try:
        session = await publisher.publish(engine)
        assert session.source.tracks == {"video": "VP8", "audio": "PCMU"}
        await asyncio.gather(*(p.play(engine, session.source) for p in players))
        for player in players:
            frames = await player.waitFrames("video", 15)
            assert len({lumaSignature(f) for f in frames}) > 5
            audio = await player.waitFrames("audio", 5)
            assert audio[-1].sample_rate == 8000
    finally:
        await asyncio.gather(*(p.close() for p in players))
        await publisher.close()
        await engine.close()


async def _lateJoiner(codec: str):
    engine = makeEngine(media_video_codecs="VP8,H264")
    publisher = Publisher(video=codec, audio=None)
    early, late = Player(video=codec, audio=None), Player(video=codec, audio=None)
    try:
        session = await publisher.publish(engine)
        await early.play(engine, session.source)
        await early.waitFrames("video", 5)
        # aiortc's encoders make keyframes only when asked (GOP of 250 and
        # 3000 frames): the late player's picture comes from our PLI.
        await asyncio.sleep(1.5)
        loop = asyncio.get_running_loop()
        began = loop.time()
        await late.play(engine, session.source)
        await late.waitFrames("video", 1)
        return loop.time() - began
    finally:
        await late.close()
        await early.close()
        await publisher.close()
        await engine.close()


@asyncTest()
async def test_lateJoinerGetsKeyframeH264():
    """A player joining mid-stream decodes a picture within a second."""
    assert await _lateJoiner("video/H264") < 1.0


@asyncTest()
async def test_lateJoinerGetsKeyframeVP8():
    assert await _lateJoiner("video/VP8") < 1.0


@asyncTest()
async def test_portRangeAndPublicAddress():
    """The answer's candidates use the configured range and announced address."""
    probe = PortRange(0, 0).bind("127.0.0.1")
    base = probe.getsockname()[1]
    probe.close()
    engine = makeEngine(media_port_from=base, media_port_to=base + 9)
    publisher = Publisher(video="video/VP8", audio=None)
    try:
        session = await publisher.publish(engine)
        answer = publisher.pc.remoteDescription.sdp
        candidates = [line.split() for line in answer.splitlines()
                      if line.startswith("a=candidate:")]
        assert candidates and all(c[4] == "127.0.0.1" for c in candidates)
        assert all(base <= int(c[5]) <= base + 9 for c in candidates)
        await asyncio.wait_for(publisher.listener.started.wait(), WAIT)
        assert session.source.tracks == {"video": "VP8"}
    finally:
        await publisher.close()
        await engine.close()


@asyncTest()
async def test_offerWithoutSsrcs():
    """A publisher that announces no SSRC is recognised by payload type."""
    engine = makeEngine()
    publisher = Publisher(video="video/VP8", audio="audio/opus")
    player = Player(video="video/VP8", audio="audio/opus")
    try:
        offer = await offerOf(publisher.pc)
        offer = "\r\n".join(line for line in offer.split("\r\n")
                            if not line.startswith(("a=ssrc:", "a=ssrc-group:")))
        publisher.listener = Listener()
        session = engine.publish(Request("bare", offer), publisher.listener)
        await accept(publisher.pc, session)
        await asyncio.wait_for(publisher.listener.started.wait(), WAIT)
        await player.play(engine, session.source)
        await player.waitFrames("video", 5)
        await player.waitFrames("audio", 5)
        assert all(track.ssrc is not None for track in session.source.incoming.values())
    finally:
        await player.close()
        await publisher.close()
        await engine.close()
