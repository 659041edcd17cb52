"""
A player's RTCP feedback (L{wcs.media.transport.MediaTransport}'s routing,
L{wcs.media.subscription.Subscription}: the NACK window, the reorder hold,
the stall watch, the budgets) on a clock: whatever a player sends, nothing
raises, nothing is resent beyond the player's budget, and what is kept per
player stays within its bounds (docs/security.md, "Long sessions and
hostile feedback").

Input: records C{[u8 op][u16 length][bytes]}. op % 4: 0 forwards
C{bytes[0]} packets (2 ms apart, a keyframe every 64), 1 advances the
clock C{bytes[0]} * 10 ms, 2 is an RTCP compound packet from the player
(every SSRC it names is this player's), 3 a NACK of the u16 numbers in
C{bytes}, taken as offsets behind the newest packet sent.
"""

import struct

from twisted.internet.task import Clock

from wcs.media import rtp
from wcs.media.feedback import FeedbackPolicy, RetransmitBudget
from wcs.media.internals import RtcpPacket
from wcs.media.track import HISTORY, Subscription, Track
from wcs.media.transport import MediaTransport

EXPECTED = ()
MAX_LEN = 8192
POLICY = FeedbackPolicy(playerStall=0.5)


class _Wire:
    connected = True

    def __init__(self):
        self.sent = 0
        self.senders = {}

    def sendRtp(self, data):
        self.sent += 1
        return True

    def sendRtpParts(self, header, payload):
        return self.sendRtp(header)

    def sendRtcp(self, data):
        pass

    def readingChanged(self):
        pass


class _Track(Track):
    def sendKeyframeRequest(self):
        pass


class _Everyone(dict):
    """Every SSRC is the one player's: the fuzzer need not find it."""

    def __init__(self, player):
        super().__init__()
        self.player = player

    def get(self, ssrc, default=None):
        return self.player


class _Router:
    """What MediaTransport._route reads of its transport."""

    def __init__(self, player):
        self.senders = _Everyone(player)
        self.receivers = {}

    def _keyframe(self, ssrc):
        MediaTransport._keyframe(self, ssrc)


def records(data: bytes):
    pos = 0
    while pos + 3 <= len(data):
        op, size = data[pos], struct.unpack_from("!H", data, pos + 1)[0]
        pos += 3
        yield op % 4, data[pos:pos + size]
        pos += size


def fuzz(data: bytes) -> None:
    clock = Clock()
    track = _Track("video", "VP8", 90000, clock)
    wire = _Wire()
    player = Subscription(track, wire, ssrc=0x1234, payloadType=100, policy=POLICY)
    player.attach()
    router = _Router(player)
    seq = 0
    for op, body in records(data):
        if op == 0:
            for _ in range(body[0] if body else 1):
                track.fanout(0, 0, seq & 0xFFFF, (seq * 3000) & 0xFFFFFFFF, b"\0" * 100,
                             seq % 64 == 0)
                seq += 1
                clock.advance(0.002)
        elif op == 1:
            clock.advance((body[0] if body else 1) * 0.01)
        elif op == 2:
            try:
                packets = RtcpPacket.parse(body)
            except ValueError:
                continue
            for packet in packets:
                MediaTransport._route(router, packet)
        else:
            behind = struct.unpack(f"!{len(body) // 2}H", body[:len(body) // 2 * 2])
            player.nackReceived([(player.lastSeq - b) & 0xFFFF for b in behind])
        _check(player)
    player.detach()


def _check(player: Subscription) -> None:
    # Resent bytes never exceed what the budget earned (a START to begin with).
    earned = RetransmitBudget.START + player.budget.share * player.octets
    if player.retransmittedOctets > earned + 1:
        raise AssertionError(f"resent {player.retransmittedOctets} of {earned:.0f} earned")
    hold = player.hold
    if not hold.held.keys() <= hold.asked.keys() or len(hold.previous) > HISTORY + 1:
        raise AssertionError(f"hold: {len(hold.held)} held, {len(hold.asked)} asked, "
                             f"{len(hold.previous)} listed")
    if player.stall is not None and len(player.stall.holes) > player.stall.MAX_HOLES:
        raise AssertionError(f"{len(player.stall.holes)} holes")
    if not all(0 <= s <= 0xFFFF for s in hold.asked):
        raise AssertionError("a number past 16 bits")
    rtp.seqNewer(player.lastSeq, 0)  # still a number
