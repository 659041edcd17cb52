"""
wcs.media.rtcpguard: the RTCP budget of a transport and the bound on what
one NACK can ask of a player's history (sans-I/O, on a Clock).
"""

import struct

from aiortc.rtp import RtcpPacket
from twisted.internet.task import Clock

from tests.media.test_rtp import _Wire
from tests.media.test_wrap import DELTA, TS_STEP, _incoming, _packet
from wcs.media.feedback import FeedbackPolicy
from wcs.media.rtcpguard import RtcpBudget, nackWindow
from wcs.media.track import HISTORY, Subscription


def test_budgetAdmitsItsRateAndASecondSavedUp():
    budget = RtcpBudget(1000)
    assert budget.admit(0.0, 600)
    assert budget.admit(0.0, 400)
    assert not budget.admit(0.0, 1)
    assert not budget.admit(0.5, 600)  # 500 earned
    assert budget.admit(0.5, 500)
    assert budget.admit(100.0, 1000)  # a quiet minute saves one second's worth
    assert not budget.admit(100.0, 1)
    assert (budget.dropped, budget.droppedOctets) == (3, 602)


def test_budgetIgnoresAClockGoingBack():
    budget = RtcpBudget(1000)
    assert budget.admit(10.0, 1000)
    assert not budget.admit(5.0, 1)
    assert budget.admit(5.5, 500)  # counts from 5.0, not 10.0


def test_nackWindow():
    # Distinct, in first-listed order, at most HISTORY behind, plus one older.
    assert nackWindow([10, 8, 10, 9, 11, 12], 10, 4) == [10, 8, 9]
    assert nackWindow([3, 2, 1, 9], 10, 4) == [9, 3]
    # Across the wrap, and aiortc's unwrapped bitmask (65536 + n).
    assert nackWindow([65534, 65536, 1, 65537], 1, 8) == [65534, 0, 1]
    assert nackWindow(list(range(65536)) * 3, 1000, 512) == \
        list(range(489, 1001)) + [0]


def _bomb(ssrc: int, fcis: int) -> list[int]:
    body = b"".join(struct.pack("!HH", (i * 17) & 0xFFFF, 0xFFFF) for i in range(fcis))
    data = struct.pack("!BBHII", 0x81, 205, (8 + len(body)) // 4, 1, ssrc) + body
    return RtcpPacket.parse(data)[0].lost


def test_aNackBombWalksTheHistoryOnly():
    """
    A NACK as long as SRTCP takes lists 5,610 numbers: the player leg reads
    at most HISTORY + 1 of them, and remembers no more (it remembered all
    65,536 numbers a few such NACKs listed).
    """
    track, _ = _incoming()
    wire = _Wire()
    player = Subscription(track, wire, ssrc=0x1234, payloadType=100,
                          policy=FeedbackPolicy(playerStall=0.5))
    player.nextSeq = 0  # the bomb's numbers are then the packets sent, the keyframe first
    player.attach()
    for i in range(600):  # one keyframe, then deltas: what is gone was sent after it
        track.rtpReceived(_packet(i, i * TS_STEP, DELTA if i else b"\x10\x00\x9d"))
    lost = _bomb(0x1234, 330)
    assert len(lost) == 5610
    for _ in range(12):
        player.nackReceived(lost)
        track.clock.advance(0.005)
    assert len(player.hold.asked) <= HISTORY + 1
    assert len(player.stall.holes) <= player.stall.MAX_HOLES
    assert player.nacksTooOld >= 1  # still read as a NACK for packets gone: a keyframe
    player.detach()


def test_aPublishersSenderReportsReachItsPlayersAtMostFourTimesASecond():
    """
    Each sender report of a publisher is one to each of its players: a
    publisher sending 500 a second (within its RTCP budget) made the server
    send 500 a second to every player. Now at most one per SR_INTERVAL goes
    on; the latest is kept for a player that starts.
    """
    from wcs.media.internals import RtcpSenderInfo, RtcpSrPacket

    track, _ = _incoming()
    wires = [_Wire() for _ in range(10)]
    players = [Subscription(track, wire, ssrc=0x100 + i, payloadType=100)
               for i, wire in enumerate(wires)]
    for player in players:
        player.attach()
    track.rtpReceived(_packet(0, 0))
    for wire in wires:
        wire.rtcp.clear()
    for i in range(500):  # one second
        track.senderReport(RtcpSrPacket(ssrc=5, sender_info=RtcpSenderInfo(
            ntp_timestamp=i << 32, rtp_timestamp=i * 90, packet_count=0, octet_count=0)))
        track.clock.advance(0.002)
    assert all(1 <= len(wire.rtcp) <= 5 for wire in wires), [len(w.rtcp) for w in wires]
    assert track.lastSenderReport == (499 << 32, 499 * 90)
    assert track.senderReportAt[0] == (499 << 16) & 0xFFFFFFFF
