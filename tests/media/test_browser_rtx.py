"""
RTX with headless Chromium on both legs (the page of test_browser.py): the
server loses one in 25 of Chromium's video packets on the way in and one in
25 of what it forwards to Chromium's player. Chromium resends what we NACK
on its RTX stream, and its player takes our retransmissions on ours, as
its own getStats() reports.
"""

import asyncio

from tests.media.peers import asyncTest, makeEngine
from tests.media.test_browser import (  # noqa: F401
    CHROMIUM,
    Page,
    pytestmark,
    startChromium,
    stopChromium,
)
from wcs.media.session import PublishSession
from wcs.media.track import IncomingTrack

EVERY = 25  # one packet lost in so many
FRAMES = 120  # decoded by Chromium's player before it reports


class _Lossy:
    """
    Loses every EVERY-th packet of one SSRC as it reaches its transport,
    before the transport-wide feedback records it: so lost to Chromium's
    estimator too, which culls what that feedback acknowledged from its
    history (a packet dropped later could no longer be resent).
    """

    def __init__(self, transport, ssrc: int):
        self.ssrc, self.receive = ssrc, transport.rtpReceived
        self.count = self.dropped = 0
        transport.rtpReceived = self.rtpReceived

    def rtpReceived(self, data: bytes) -> None:
        if len(data) >= 12 and int.from_bytes(data[8:12], "big") == self.ssrc:
            self.count += 1
            if self.count % EVERY == 0:
                self.dropped += 1
                return
        self.receive(data)


def _loseOnTheWayIn(session, lossy: list) -> None:
    for transport in session.uniqueTransports:
        for ssrc, receiver in list(transport.receivers.items()):
            if isinstance(receiver, IncomingTrack) and receiver.kind == "video":
                lossy.append(_Lossy(transport, ssrc))


def _loseOnTheWayOut(session, dropped: list) -> None:
    # Only the forwarded video (its payload type), never our RTX packets.
    [video] = [s for s in session.sections if s.active and s.kind == "video"]
    transport = session.transports[id(video)]
    send, counted = transport.sendRtp, [0]

    def sendRtp(data: bytes) -> bool:
        if data[1] & 0x7F == video.codec.payloadType:
            counted[0] += 1
            if counted[0] % EVERY == 0:
                dropped.append(data)
                return True  # as if it went, and was lost on the way
        return send(data)
    transport.sendRtp = sendRtp
    # Forwarding sends header and payload apart (wcs.media.srtpout).
    transport.sendRtpParts = lambda header, payload: sendRtp(header + payload)


@asyncTest(timeout=120)
async def test_chromiumRetransmitsAndTakesRtx():
    engine = makeEngine(media_video_codecs="VP8")
    lossy, dropped = [], []
    sessions = []

    def onSession(session):
        sessions.append(session)
        if isinstance(session, PublishSession):
            _loseOnTheWayIn(session, lossy)
        else:
            _loseOnTheWayOut(session, dropped)

    page = Page(engine, onSession)
    server = await asyncio.start_server(page.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    browser, profile = await startChromium(f"http://127.0.0.1:{port}/?frames={FRAMES}")
    try:
        result = await asyncio.wait_for(page.result, 90)
        publish, play = sessions
        track = publish.source.incoming["video"]
        [video] = [s for s in publish.sections if s.active and s.kind == "video"]
        [subscription] = [s for s in play.subscriptions if s.track.kind == "video"]
        print(result, f"in: dropped {lossy[0].dropped} rtx {track.rtx.packets} padding "
              f"{track.rtx.padding} repaired {track.nacks.retransmitsReceived}; out: dropped "
              f"{len(dropped)} resent {subscription.retransmitted} as rtx "
              f"{subscription.rtx.packets}")
        assert "error" not in result, result
        assert result["video"] >= FRAMES, result
        # Publisher leg: Chromium offered RTX, we answered it; what we NACKed
        # came back on its RTX SSRC and filled the gaps.
        assert "rtx/90000" in page.offers["/publish"]
        assert result["publisher"]["rtxSsrc"] == video.rtxSsrc == track.rtx.ssrc
        assert lossy[0].dropped > 0 and result["publisher"]["nackCount"] > 0
        assert result["publisher"]["retransmittedPacketsSent"] > 0
        assert track.rtx.packets > 0 and track.nacks.retransmitsReceived > 0
        # Player leg: Chromium NACKed what we lost and took our RTX.
        assert len(dropped) > 0 and result["player"]["nackCount"] > 0
        assert result["player"]["rtxSsrc"] == subscription.rtx.ssrc
        assert subscription.rtx.packets > 0
        assert result["player"]["retransmittedPacketsReceived"] > 0
        # Chromium waits for reordering itself: its NACKs are answered at
        # once, never held (wcs.media.reorder).
        assert not subscription.hold.eager and subscription.hold.heldPackets == 0
    finally:
        await stopChromium(browser, profile)
        server.close()
        await engine.close()
