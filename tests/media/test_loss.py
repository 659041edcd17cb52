"""
Loss with real aiortc peers: the client drops datagrams (peers.Impairment),
the server's retransmission and keyframe budgets keep both legs sane.
"""

import asyncio
import time

from aiortc.codecs.vpx import Vp8Encoder

from tests.media.peers import Impairment, Player, Publisher, asyncTest, forwarding, makeEngine
from tests.support.wait import waitUntil
from wcs.media.feedback import FeedbackPolicy, RetransmitBudget


@asyncTest(timeout=60)
async def test_publisherLossRetransmissionsCapped():
    """
    A publisher losing 15% of its RTP on the way up, 100 ms away: what it resends
    on our NACKs stays within media_retransmit_share of what it sends (plus
    the budget's burst), and the player keeps decoding moving video.
    """
    loop = asyncio.get_running_loop()
    async with forwarding() as (session, publisher, player):
        uplink = Impairment(publisher.pc, sendLoss=0.15, seed=7, sendDelay=0.1)
        began, frames = loop.time(), len(player.frames["video"])
        track = session.source.incoming["video"]
        # Enough losses and repairs to weigh the resending, and frames decoded.
        await waitUntil(lambda: uplink.dropped >= 50 and track.nacks.retransmitsReceived >= 20
                        and len(player.arrivals["video"]) - frames >= 25, 30,
                        lambda: f"losses ({uplink.dropped}), repairs "
                                f"({track.nacks.retransmitsReceived}) and frames decoded")
        decoded = player.arrivals["video"][frames:]
        print(f"media {uplink.mediaBytes} resent {uplink.retransmittedBytes} "
              f"dropped {uplink.dropped} decoded {len(decoded)} nacks {track.nacks.nacksSent} "
              f"repaired {track.nacks.retransmitsReceived} gaveUp {track.nacks.nacksGivenUp} "
              f"overBudget {track.nacks.nacksOverBudget} plis {track.keyframeRequests}")
        assert uplink.retransmittedBytes <= 0.2 * uplink.mediaBytes + RetransmitBudget.BURST
        gaps = [b - a for a, b in zip([began, *decoded], decoded)]
        assert max(gaps) < 2.0, max(gaps)


@asyncTest(timeout=60)
async def test_lossyPlayerCausesNoKeyframeStorm(monkeypatch):
    """
    Two VP8 players, one of which loses most of what we send it: its NACKs
    and PLIs do not reach the publisher as keyframes for everyone. aiortc's
    VP8 encoder makes a keyframe only when asked, and each one reaches the
    healthy player: in the lossy player's first seconds the publisher makes
    no more keyframes than with the healthy player alone, but for the lossy
    player's join and one repeated request (then it waits 4 s, then 8 s).
    """
    keyframes = []
    encode = Vp8Encoder.encode

    def counted(self, frame, force_keyframe=False):
        if force_keyframe:  # called in aiortc's encoder thread
            keyframes.append(time.monotonic())
        return encode(self, frame, force_keyframe)
    monkeypatch.setattr(Vp8Encoder, "encode", counted)

    engine = makeEngine(media_video_codecs="VP8")
    publisher = Publisher(video="video/VP8", audio=None)
    healthy, lossy = Player(video="video/VP8", audio=None), Player(video="video/VP8", audio=None)
    window = 4.0
    loop = asyncio.get_running_loop()
    try:
        session = await publisher.publish(engine)
        await healthy.play(engine, session.source)
        await healthy.waitFrames("video", 1)
        await asyncio.sleep(0.5)
        began = loop.time()
        await asyncio.sleep(window)
        alone = len([t for t in keyframes if t >= began])
        began, frames = loop.time(), len(healthy.frames["video"])
        await lossy.play(engine, session.source)
        Impairment(lossy.pc, receiveLoss=0.7, seed=3)
        await asyncio.sleep(window)
        together = len([t for t in keyframes if t >= began])
        [bad] = lossy.session.subscriptions
        print(f"alone {alone} together {together} all {len(keyframes)} "
              f"limited {bad.keyframeRequestsLimited} received {bad.keyframeRequestsReceived} "
              f"resent {bad.retransmitted} dropped {bad.retransmitDropped} "
              f"tooSoon {bad.retransmitTooSoon} octets {bad.octets}")
        assert bad.keyframeRequestsReceived > 3  # it did keep asking
        assert together <= alone + 2
        assert len(healthy.frames["video"]) - frames >= 20 * window
        assert (bad.retransmittedOctets
                <= FeedbackPolicy().playerShare * bad.octets + RetransmitBudget.BURST)
    finally:
        await lossy.close()
        await healthy.close()
        await publisher.close()
        await engine.close()
