"""
Bandwidth of publishers (wcs.media.bandwidth): the REMB encoder against
known bytes, the caps of a request, the answer's feedback, extension and
b= lines, and an aiortc publisher whose encoder follows our REMB cap.
"""

import asyncio
import os

from aiortc.mediastreams import VideoStreamTrack
from av import VideoFrame

from tests.media.peers import (
    Impairment,
    Listener,
    Player,
    Publisher,
    Request,
    accept,
    asyncTest,
    makeEngine,
    offerOf,
)
from tests.support.wait import waitUntil
from wcs.config import Settings
from wcs.media import bandwidth, negotiate
from wcs.media.bandwidth import remb, streamCap, withBandwidth
from wcs.media.narrow import NarrowWatch
from wcs.media.transcode import FrameTrack
from wcs.media.twcc import URI as TWCC_URI


def test_rembAsChrome():
    # pion/rtcp's receiver_estimated_maximum_bitrate_test.go: Chrome watching 6 Mbit/s.
    assert remb(1, 8927168, [1215622422]) == bytes(
        [143, 206, 0, 5, 0, 0, 0, 1, 0, 0, 0, 0, 82, 69, 77, 66,
         1, 26, 32, 223, 72, 116, 237, 22])
    # Rounded down: one bit/s less is one mantissa step (64 bit/s) less.
    assert remb(1, 8927167, [1215622422])[17:20] == bytes([26, 32, 222])
    assert remb(7, 300_000, [1, 2])[2:4] == b"\x00\x06"  # two SSRCs: 6 words after the first
    assert remb(7, 2**90, [])[16:20] == bytes([0, 255, 255, 255])


class Stream:
    def __init__(self, constraints=None, raw=None):
        self.constraints = constraints or {}
        self.raw = raw or {}


def test_streamCap():
    none, room = Settings({}), Settings({"room_max_bitrate": 800})
    assert streamCap(Stream(), none) == 0
    assert streamCap(Stream(), room) == 800
    assert streamCap(Stream({"video": {"maxBitrate": 500}}), room) == 500
    assert streamCap(Stream({"video": {"maxBitrate": 2000}}), room) == 800
    assert streamCap(Stream({"video": {"maxBitrate": "600"}}), none) == 600
    assert streamCap(Stream({}, {"maxBitrate": 700}), none) == 700
    # Nonsense is no cap, not an error (the SDK sends 0 for "none").
    for bad in (0, -5, True, "fast", [1], 1e12, 3):
        assert streamCap(Stream({"video": {"maxBitrate": bad}}), none) == 0
    assert streamCap(Stream({"video": True}), room) == 800
    assert streamCap(Request("x", ""), room) == 800  # no raw message at all


# What Chrome offers a publisher (abridged): transport-cc and goog-remb.
CHROME_OFFER = "\r\n".join([
    "v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:abcd", "a=ice-pwd:abcdefghijklmnopqrstuvwx",
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=setup:actpass", "a=mid:0",
    f"a=extmap:3 {TWCC_URI}", "a=sendonly", "a=rtcp-mux",
    "a=rtpmap:111 opus/48000/2", "a=rtcp-fb:111 transport-cc", "a=ssrc:11 cname:x",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 102", "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:abcd", "a=ice-pwd:abcdefghijklmnopqrstuvwx",
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=setup:actpass", "a=mid:1",
    "a=extmap:14 urn:ietf:params:rtp-hdrext:toffset", f"a=extmap:3 {TWCC_URI}",
    "a=sendonly", "a=rtcp-mux",
    "a=rtpmap:96 VP8/90000", "a=rtcp-fb:96 goog-remb", "a=rtcp-fb:96 transport-cc",
    "a=rtcp-fb:96 ccm fir", "a=rtcp-fb:96 nack", "a=rtcp-fb:96 nack pli",
    "a=rtpmap:102 H264/90000", "a=rtcp-fb:102 goog-remb", "a=rtcp-fb:102 transport-cc",
    "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
    "a=ssrc:22 cname:x", ""])


def plan(offer, transportCc=True):
    sections = negotiate.planPublish(negotiate.parseOffer(offer), {
        "video": ["H264", "VP8"], "audio": ["opus"]})
    bandwidth.negotiate(sections, transportCc)
    return sections


def test_negotiateTransportCcAndRemb():
    audio, video = plan(CHROME_OFFER)
    assert video.name == "H264"
    feedback = {(f.type, f.parameter) for f in video.codec.rtcpFeedback}
    assert {("goog-remb", None), ("transport-cc", None)} <= feedback
    assert [(e.id, e.uri) for e in video.extensions] == [(3, TWCC_URI)]
    assert [(e.id, e.uri) for e in audio.extensions] == [(3, TWCC_URI)]
    assert ("goog-remb", None) not in {(f.type, f.parameter) for f in audio.codec.rtcpFeedback}
    assert bandwidth.transportCcId([audio, video]) == 3
    # The answer says so.
    off = plan(CHROME_OFFER, transportCc=False)
    assert all(not s.extensions for s in off)
    assert ("transport-cc", None) not in {(f.type, f.parameter) for f in off[1].codec.rtcpFeedback}
    # Not offered, not answered: aiortc offers goog-remb only.
    noTwcc = CHROME_OFFER.replace(f"a=extmap:3 {TWCC_URI}\r\n", "")
    assert bandwidth.transportCcId(plan(noTwcc)) is None


def test_withBandwidth():
    answer = "\r\n".join(["v=0", "m=audio 5 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 1.2.3.4",
                          "a=x", "m=video 5 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 1.2.3.4", "a=y",
                          "m=video 0 UDP/TLS/RTP/SAVPF 97", "c=IN IP4 1.2.3.4", ""])
    lines = withBandwidth(answer, 500).split("\r\n")
    assert lines[5:8] == ["c=IN IP4 1.2.3.4", "b=AS:500", "b=TIAS:500000"]
    assert lines.count("b=AS:500") == 1  # not on audio, not on a refused m-line
    assert withBandwidth(answer, 0) == answer


class NoiseVideo(VideoStreamTrack):
    """Faint noise: an encoder spends all the bitrate it is given on it, and can
    make do with less."""

    # A few pictures, made once: noise per frame costs the test's CPU.
    NOISE = [bytes(100 + (b & 0x1F) for b in os.urandom(320 * 240)) for _ in range(7)]

    def __init__(self):
        super().__init__()
        self.count = 0

    async def recv(self):
        pts, timeBase = await self.next_timestamp()
        frame = VideoFrame(width=320, height=240, format="yuv420p")
        frame.planes[0].update(self.NOISE[self.count % len(self.NOISE)])
        self.count += 1
        for plane in frame.planes[1:]:
            plane.update(bytes([128]) * plane.buffer_size)
        frame.pts, frame.time_base = pts, timeBase
        return frame


async def publishNoise(engine, name, constraints):
    publisher = Publisher(video="video/VP8", audio=None)
    publisher.pc.getTransceivers()[0].sender.replaceTrack(NoiseVideo())
    session = engine.publish(Request(name, await offerOf(publisher.pc),
                                     constraints=constraints), Listener())
    answer = await accept(publisher.pc, session)
    return publisher, session, answer


@asyncTest(timeout=60)
async def test_aiortcPublisherFollowsCap():
    """
    Two VP8 publishers of noise (aiortc's encoder starts at 500 kbit/s): the
    one whose SDK constraints say maxBitrate 300 gets b=AS:300 in its answer
    and REMB of 300 kbit/s, and what it sends drops to that; the other, with
    no cap and no transport-cc (aiortc offers goog-remb only), gets REMB of
    media_remb_uncapped and what it sends rises above its start rate.
    """
    engine = makeEngine()
    loop = asyncio.get_running_loop()
    capped = free = None
    try:
        capped, cappedSession, answer = await publishNoise(
            engine, "capped", {"video": {"maxBitrate": 300}})
        free, freeSession, freeAnswer = await publishNoise(engine, "free", {})
        assert "b=AS:300\r\nb=TIAS:300000" in answer and "b=AS" not in freeAnswer
        assert "goog-remb" in answer and "goog-remb" in freeAnswer
        await asyncio.sleep(3)  # REMB applied, the encoder settled
        tracks = [s.source.incoming["video"] for s in (cappedSession, freeSession)]
        before, began = [t.octets for t in tracks], loop.time()
        await asyncio.sleep(4)
        seconds = loop.time() - began
        kbps = [(t.octets - b) * 8 / seconds / 1000 for t, b in zip(tracks, before)]
        print(f"capped {kbps[0]:.0f} kbit/s, free {kbps[1]:.0f} kbit/s, "
              f"REMB sent {cappedSession.bandwidth.rembSent}, {freeSession.bandwidth.rembSent}")
        assert cappedSession.bandwidth.rembSent >= 3 and freeSession.bandwidth.rembSent >= 3
        # libvpx overshoots a little on noise; without REMB the free one runs at ~500.
        assert kbps[0] <= 300 * 1.25, kbps
        assert kbps[1] >= 650, kbps
    finally:
        for publisher in (capped, free):
            if publisher is not None:
                await publisher.close()
        await engine.close()


def test_lossBasedRate():
    """REMB-only publishers without a cap: GCC's loss rule under the setting's ceiling."""
    rate = bandwidth.LossBasedRate(1500)
    assert rate.update(0) == 1500  # never above the ceiling
    assert rate.update(64) == 1312  # 25 % lost: times 1 - 0.125
    assert rate.update(13) == 1312  # 5 %: held (a lossy link, not congestion)
    assert rate.update(2) == 1378  # under 2 %: 5 % more
    for _ in range(50):
        rate.update(255)
    assert rate.kbps == bandwidth.LossBasedRate.FLOOR
    for _ in range(100):
        rate.update(0)
    assert rate.kbps == 1500


def test_rembOnly():
    """Who gets the uncapped REMB: goog-remb on video and no transport-cc."""
    assert not bandwidth.rembOnly(plan(CHROME_OFFER))  # a browser estimates on its own
    assert bandwidth.rembOnly(plan(CHROME_OFFER, transportCc=False))
    noRemb = CHROME_OFFER.replace("a=rtcp-fb:96 goog-remb\r\n", "").replace(
        "a=rtcp-fb:102 goog-remb\r\n", "")
    assert not bandwidth.rembOnly(plan(noRemb, transportCc=False))


@asyncTest(timeout=60)
async def test_roomMaxBitrate():
    """room_max_bitrate caps every publisher, and a lower SDK maxBitrate lowers it."""
    engine = makeEngine(room_max_bitrate=400)
    publishers = []
    try:
        for name, constraints, expected in (("a", {}, 400),
                                            ("b", {"video": {"maxBitrate": 350}}, 350),
                                            ("c", {"video": {"maxBitrate": 5000}}, 400)):
            publisher, session, answer = await publishNoise(engine, name, constraints)
            publishers.append(publisher)
            assert f"b=AS:{expected}\r\n" in answer and session.bandwidth.cap == expected
    finally:
        for publisher in publishers:
            await publisher.close()
        await engine.close()


# The narrow link's stand-in in the tests below: random loss on the player's
# side. At 40 % its reports (60 packets an interval, after the resends that
# got through) read 12-48 % lost, now and then 10 % or less, which starts
# NarrowWatch's three lossy intervals in a row over again.
NARROW_LOSS = 0.5


@asyncTest(timeout=90)
async def test_narrowPlayerTranscoded():
    """
    player_narrow_link=transcode: a player losing half of what we send it is
    moved to the shared lower rendition and keeps decoding; the healthy
    player keeps the publisher's packets. With drop nobody moves, nor with
    transcode when player_narrow_renditions are in use (none here).
    """
    for policy, renditions in (("transcode", 1), ("drop", 1), ("transcode", 0)):
        # Random loss stands in for a narrow link here, but it has no rate
        # limit: resends at the player's default share would repair most of
        # it, which a link narrower than its stream cannot carry. The lab's
        # `narrow` profile (tests/netlab, bench/network.py) has the real one.
        engine = makeEngine(player_narrow_link=policy, media_player_retransmit_share=20,
                            player_narrow_renditions=renditions)
        publisher = Publisher(video="video/VP8", audio=None)
        narrow, healthy = Player(video="video/VP8", audio=None), Player(video="video/VP8",
                                                                         audio=None)
        try:
            session = await publisher.publish(engine)
            plays = [await p.play(engine, session.source) for p in (narrow, healthy)]
            await narrow.waitFrames("video", 5)
            link = Impairment(narrow.pc, receiveLoss=NARROW_LOSS, seed=3)
            # Lossy in each interval of a window: the first one the loss
            # began in may not be (receiver reports come a second late).
            waited = NarrowWatch.INTERVAL * (NarrowWatch.LOSSY + 2.5)
            if policy == "transcode" and renditions:
                await waitUntil(lambda: plays[0].narrowWatches[0].moved, waited,
                                "the narrow player moved", every=0.25)
            else:
                await asyncio.sleep(waited)
            tracks = [p.subscriptions[0].track for p in plays]
            if policy == "drop":
                assert not any(isinstance(t, FrameTrack) for t in tracks)
                assert not plays[0].narrowWatches
                continue
            if not renditions:
                assert not any(isinstance(t, FrameTrack) for t in tracks)
                assert plays[0].narrowWatches and not plays[0].narrowWatches[0].moved
                assert not engine.frameTracks
                continue
            assert isinstance(tracks[0], FrameTrack) and tracks[0].transcoding, tracks
            assert tracks[1] is session.source.incoming["video"]
            assert plays[0].narrowWatches[0].moved and not plays[1].narrowWatches[0].moved
            # Paced at player_narrow_pace (150%) of the rendition's bitrate.
            bitrate = tracks[0].encoder.target_bitrate
            assert abs(tracks[0].pacer.rate - 1.5 * bitrate / 8) < 1
            # The link heals: the rendition alone feeds the player from now on
            # (aiortc's jitter buffer first waits out the holes of the lossy
            # seconds, up to 128 packets, and then a keyframe).
            link.receiveLoss = 0
            frames = len(narrow.frames["video"])
            await narrow.waitFrames("video", frames + 30, timeout=20)
            assert tracks[0].frames >= 30 and plays[0].subscriptions[0].track is tracks[0]
        finally:
            for peer in (narrow, healthy, publisher):
                await peer.close()
            await engine.close()


@asyncTest(timeout=120)
async def test_renditionsPerAddress():
    """
    player_narrow_renditions_per_address=1: a narrow player of address A is
    moved to a rendition; A's narrow player of a second stream is refused
    one and stays; a player of address B on that stream gets it made, and
    A's player then joins it at a later check (joining costs nothing).
    """
    # A small credit, so that a player's random loss (a narrow link's stand-in,
    # as in test_narrowPlayerTranscoded) is not repaired from saved-up credit.
    engine = makeEngine(player_narrow_link="transcode", media_player_retransmit_share=20,
                        media_retransmit_burst=2, player_narrow_renditions=2,
                        player_narrow_renditions_per_address=1)
    publishers = [Publisher(video="video/VP8", audio=None) for _ in range(2)]
    players = {name: Player(video="video/VP8", audio=None) for name in ("a1", "a2", "b")}
    plays, links = {}, []
    wait = NarrowWatch.INTERVAL * (NarrowWatch.LOSSY + 1.5)

    def lowerRenditions():
        return {k: engine.renditionMakers.get(k) for k, t in engine.frameTracks.items()
                if k[-1] == "lower" and not t.ended}
    try:
        sessions = [await p.publish(engine) for p in publishers]
        for name, session in (("a1", sessions[0]), ("a2", sessions[1]), ("b", sessions[1])):
            listener = Listener()
            listener.address = "10.0.0.2" if name.startswith("a") else "10.0.0.3"
            plays[name] = await players[name].play(engine, session.source, listener)
            await players[name].waitFrames("video", 5)

        def narrow(name):
            links.append(Impairment(players[name].pc, receiveLoss=NARROW_LOSS,
                                    seed=len(links) + 3))

        def moved(name):
            return plays[name].narrowWatches[0].moved

        narrow("a1")
        await waitUntil(lambda: moved("a1"), wait + NarrowWatch.INTERVAL,
                        "a1 moved", every=0.25)  # an interval later if the loss began mid-one
        assert moved("a1") and list(lowerRenditions().values()) == ["10.0.0.2"]
        narrow("a2")
        await asyncio.sleep(wait)
        assert not moved("a2") and len(lowerRenditions()) == 1
        assert plays["a2"].subscriptions[0].track is sessions[1].source.incoming["video"]
        narrow("b")
        # b's move, then a2's at its next check (each of its intervals lossy).
        await waitUntil(lambda: moved("b") and moved("a2"), wait + 2 * NarrowWatch.INTERVAL,
                        "b and a2 moved", every=0.25)
        assert moved("b") and moved("a2")
        assert sorted(lowerRenditions().values()) == ["10.0.0.2", "10.0.0.3"]
        assert plays["a2"].subscriptions[0].track is plays["b"].subscriptions[0].track
    finally:
        for peer in (*players.values(), *publishers):
            await peer.close()
        await engine.close()


@asyncTest(timeout=120)
async def test_narrowPlayerGoesBackWhenClean():
    """
    player_narrow_hold: a player moved to the rendition by a burst of loss
    goes back to the publisher's stream once its reports stay clean for
    the hold, decodes it, and the rendition (its last player gone) stops.
    """
    engine = makeEngine(player_narrow_link="transcode", media_player_retransmit_share=20,
                        media_retransmit_burst=2, player_narrow_hold=4)
    publisher = Publisher(video="video/VP8", audio=None)
    player = Player(video="video/VP8", audio=None)
    try:
        session = await publisher.publish(engine)
        play = await player.play(engine, session.source)
        await player.waitFrames("video", 5)
        link = Impairment(player.pc, receiveLoss=NARROW_LOSS, seed=3)
        watch = play.narrowWatches[0]
        await waitUntil(lambda: watch.moved, NarrowWatch.INTERVAL * (NarrowWatch.LOSSY + 2.5),
                        "the move to the rendition", every=0.25)
        rendition = play.subscriptions[0].track
        assert isinstance(rendition, FrameTrack)
        link.receiveLoss = 0
        await waitUntil(lambda: not watch.moved, 30, "the way back", every=0.25)
        assert play.subscriptions[0].track is session.source.incoming["video"]
        assert not any(k[-1] == "lower" for k in engine.frameTracks) and rendition.worker is None
        # Its codecs released in the codec thread (and their memory trimmed).
        await waitUntil(lambda: rendition.encoder is None and rendition.decoder is None, 5,
                        "the rendition's codecs released", every=0.1)
        frames = len(player.frames["video"])
        await player.waitFrames("video", frames + 30, timeout=20)
        assert not watch.moved and watch.moves == 1
    finally:
        for peer in (player, publisher):
            await peer.close()
        await engine.close()
