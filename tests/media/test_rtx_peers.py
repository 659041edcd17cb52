"""
RTX with real aiortc peers (aiortc offers rtx when asked to, sends its
retransmissions as RTX when the answer has it, and unwraps RTX it
receives): a publisher losing packets on its uplink resends them as RTX
and the server fills its gaps; an RTX-capable player's NACKs are answered
as RTX, a player without RTX gets plain retransmissions on the media SSRC.
"""

from tests.media.peers import Impairment, Player, Publisher, asyncTest, makeEngine
from tests.support.wait import waitUntil


class _SsrcCount:
    """Datagrams an aiortc peer receives, by SSRC (in the clear in SRTP)."""

    def __init__(self, pc):
        # aiortc's private path to its aioice connection (test client only).
        ice = pc.getTransceivers()[0].sender.transport.transport._connection
        receive = ice.data_received
        self.bySsrc: dict[int, int] = {}

        def counted(data: bytes, component: int) -> None:
            if len(data) >= 12 and 128 <= data[0] <= 191 and not 192 <= data[1] <= 223:
                ssrc = int.from_bytes(data[8:12], "big")
                self.bySsrc[ssrc] = self.bySsrc.get(ssrc, 0) + 1
            receive(data, component)
        ice.data_received = counted


@asyncTest(timeout=90)
async def test_rtxOnBothLegs():
    engine = makeEngine()
    publisher = Publisher(video="video/H264", audio=None, rtx=True)
    rtxPlayer = Player(video="video/H264", audio=None, rtx=True)
    plainPlayer = Player(video="video/H264", audio=None)
    try:
        session = await publisher.publish(engine)
        track = session.source.incoming["video"]
        [section] = [s for s in session.sections if s.active]
        sender = publisher.pc.getTransceivers()[0].sender
        # Negotiated with the publisher: its FID group's RTX SSRC is ours to receive.
        assert track.rtx is not None and track.rtx.ssrc == sender._rtx_ssrc == section.rtxSsrc
        await rtxPlayer.play(engine, session.source)
        await plainPlayer.play(engine, session.source)
        await rtxPlayer.waitFrames("video", 1)
        await plainPlayer.waitFrames("video", 1)
        [withRtx] = rtxPlayer.session.subscriptions
        [plain] = plainPlayer.session.subscriptions
        assert withRtx.rtx is not None and plain.rtx is None
        # The RTX player's aiortc receiver maps our RTX SSRC to the media SSRC.
        receiver = rtxPlayer.pc.getTransceivers()[0].receiver
        assert receiver._RTCRtpReceiver__rtx_ssrc == {withRtx.rtx.ssrc: withRtx.ssrc}

        Impairment(publisher.pc, sendLoss=0.1, seed=5, sendDelay=0.05)
        Impairment(rtxPlayer.pc, receiveLoss=0.1, seed=6)
        Impairment(plainPlayer.pc, receiveLoss=0.1, seed=7)
        rtxSeen, plainSeen = _SsrcCount(rtxPlayer.pc), _SsrcCount(plainPlayer.pc)
        frames = len(rtxPlayer.frames["video"]), len(plainPlayer.frames["video"])

        def decoded():
            return (len(rtxPlayer.frames["video"]) - frames[0],
                    len(plainPlayer.frames["video"]) - frames[1])
        # Repairs on each leg, and frames decoded meanwhile.
        await waitUntil(lambda: track.rtx.packets >= 5 and track.nacks.retransmitsReceived >= 5
                        and withRtx.retransmitted >= 5 and plain.retransmitted >= 5
                        and min(decoded()) >= 40, 30,
                        lambda: f"repairs (publisher RTX {track.rtx.packets}, to players "
                                f"{withRtx.retransmitted} and {plain.retransmitted}) and "
                                f"frames decoded {decoded()}")
        print(f"publisher rtx {track.rtx.packets} repaired {track.nacks.retransmitsReceived} "
              f"nacks {track.nacks.nacksSent}; rtx player resent {withRtx.retransmitted} "
              f"as rtx {withRtx.rtx.packets} seen {rtxSeen.bySsrc}; plain player resent "
              f"{plain.retransmitted} seen {plainSeen.bySsrc}")

        # Publisher leg: its retransmissions came as RTX and filled gaps.
        assert track.rtx.packets > 0 and track.rtx.padding == 0
        assert track.nacks.retransmitsReceived > 0
        # Player legs: RTX to the one that offered it, plain to the other.
        assert withRtx.retransmitted > 0 and withRtx.rtx.packets == withRtx.retransmitted
        assert rtxSeen.bySsrc.get(withRtx.rtx.ssrc, 0) > 0
        assert plain.retransmitted > 0
        assert set(plainSeen.bySsrc) == {plain.ssrc}
    finally:
        await plainPlayer.close()
        await rtxPlayer.close()
        await publisher.close()
        await engine.close()
