"""
The byte-level pieces of forwarding, on packets made by aiortc's own
packetizers, and a subscription's rewriting and retransmission.
"""

import fractions

import av
import pytest
from aiortc.codecs import H264Encoder, Vp8Encoder
from twisted.internet.task import Clock

from wcs.media import rtp
from wcs.media.feedback import FeedbackPolicy
from wcs.media.ice import PortRange, PortRangeExhausted
from wcs.media.track import HISTORY, RESTART_SKIP, Subscription, Track

# The player leg without the rules for browsers' NACKs (the early copy of a
# repeat, the reserve first NACKs may not spend: tests/media/test_feedback.py):
# what a test of another rule answers a NACK with, at once.
PLAIN = FeedbackPolicy(playerEarlyCopy=False, playerNackReserve=0)


def _frame(level: int) -> av.VideoFrame:
    frame = av.VideoFrame(64, 48, "yuv420p")
    for plane in frame.planes:
        plane.update(bytes([level]) * plane.buffer_size)
    frame.pts, frame.time_base = level, fractions.Fraction(1, 30)
    return frame


@pytest.mark.parametrize("encoder, starts", [
    (Vp8Encoder, lambda payload, first: rtp.vp8StartsKeyframe(payload)),
    (H264Encoder, rtp.h264StartsKeyframe),
])
def test_keyframeStart(encoder, starts):
    """Only the first packet of a keyframe starts one."""
    codec = encoder()
    keyframe, _ = codec.encode(_frame(16), force_keyframe=True)
    delta, _ = codec.encode(_frame(40))
    assert starts(keyframe[0], True)
    assert not any(starts(p, False) for p in keyframe[1:])
    assert not starts(delta[0], True)


def test_payloadOffset():
    header = rtp.HEADER.pack(0x90 | 2, 96, 1, 2, 3)  # X set, two CSRCs
    packet = header + bytes(8) + b"\xbe\xde\x00\x01" + b"\x10\xff\x00\x00" + b"payload"
    assert packet[rtp.payloadOffset(packet):] == b"payload"


class _Wire:
    """Stands in for a MediaTransport: keeps what would be sent."""

    connected = True

    def __init__(self):
        self.sent, self.rtcp, self.senders = [], [], {}
        self.backedUp = False

    def sendRtp(self, data):
        if self.backedUp:
            return False
        self.sent.append(data)
        return True

    def sendRtpParts(self, header, payload):
        return self.sendRtp(header + payload)

    def sendRtcp(self, data):
        self.rtcp.append(data)

    readingChanges = 0

    def readingChanged(self):
        self.readingChanges += 1


class _Track(Track):
    def __init__(self, kind="video"):
        super().__init__(kind, "VP8", 90000, Clock())
        self.requests = 0

    def sendKeyframeRequest(self):
        self.requests += 1


def test_subscriptionRewritesAndResends():
    """
    A video subscription drops packets until a keyframe, then rewrites
    SSRC, payload type, sequence numbers and timestamps consistently, and
    answers NACKs from its history.
    """
    track, wire = _Track(), _Wire()
    subscription = Subscription(track, wire, ssrc=0x1234, payloadType=100, policy=PLAIN)
    subscription.attach()
    assert track.requests == 1 and wire.senders == {0x1234: subscription}
    track.fanout(0, 0, 10, 900, b"delta", False)
    assert wire.sent == []
    track.fanout(0, 0, 11, 3900, b"key", True)
    track.fanout(0, rtp.MARKER_BIT, 12, 3900, b"more", False)
    first, second = (rtp.HEADER.unpack_from(d) for d in wire.sent)
    assert first[1] == 100 and second[1] == rtp.MARKER_BIT | 100
    assert (second[2] - first[2]) & 0xFFFF == 1 and first[3] == second[3]
    assert first[4] == second[4] == 0x1234
    assert wire.sent[0].endswith(b"key")
    subscription.nackReceived([first[2], (first[2] - 5) & 0xFFFF])
    assert wire.sent[2] == wire.sent[0] and len(wire.sent) == 3
    assert track.requests == 1
    # A NACK for a packet the history no longer holds drops the player to
    # the next keyframe, asked for once its own interval since joining is
    # over; not one for a packet before the last keyframe it was sent (it
    # decodes from there: a late repeat).
    for seq in range(13, 13 + HISTORY):
        track.fanout(0, 0, seq, 6900, b"delta", False)
    wire.sent.clear()
    track.clock.advance(2.0)
    subscription.nackReceived([(first[2] - 1) & 0xFFFF])
    assert subscription.started and subscription.nacksBeforeKeyframe == 1
    assert track.requests == 1 and subscription.nacksTooOld == 0 and wire.sent == []
    subscription.nackReceived([second[2]])
    assert track.requests == 2 and wire.sent == []
    assert not subscription.started and subscription.nacksTooOld == 1
    subscription.detach()
    assert track.subscribers == () and wire.senders == {}


def test_historySharesPayloads():
    """
    Players of one track keep their own headers for NACKs but the same
    payload objects: the history costs a player pointers, not a copy of
    the last HISTORY packets (bench/memory.py measures the RSS slope).
    """
    track = _Track()
    players = [Subscription(track, _Wire(), ssrc=0x1000 + i, payloadType=100)
               for i in range(3)]
    for player in players:
        player.attach()
    payload = b"k" * 1000
    track.fanout(0, 0, 11, 3900, payload, True)
    sent = [player.transport.sent[0] for player in players]
    seqs = [rtp.SEQ_TS.unpack_from(data, 2)[0] for data in sent]
    assert all(p.payloads[s % HISTORY] is payload for p, s in zip(players, seqs))
    assert [p.sentPacket(s) for p, s in zip(players, seqs)] == sent
    assert players[0].sentPacket((seqs[0] + 1) & 0xFFFF) is None  # not sent yet


def test_slowPlayerDropsToKeyframe():
    """
    A player whose socket is backed up loses packets up to the next
    keyframe, which is asked for; numbering goes on forward, past the
    lost packet by RESTART_SKIP (the player's buffer gives up on it).
    """
    track, wire = _Track(), _Wire()
    subscription = Subscription(track, wire, ssrc=7, payloadType=96)
    subscription.attach()
    track.fanout(0, 0, 100, 0, b"key", True)
    track.clock.advance(2.0)  # the player's own keyframe interval since it joined
    wire.backedUp = True
    track.fanout(0, 0, 101, 3000, b"lost", False)
    assert not subscription.started and track.requests == 2
    wire.backedUp = False
    track.fanout(0, 0, 102, 6000, b"delta", False)
    track.fanout(0, 0, 103, 9000, b"key again", True)
    assert [d[12:] for d in wire.sent] == [b"key", b"key again"]
    before, after = (rtp.HEADER.unpack_from(d)[2] for d in wire.sent)
    assert (after - before) & 0xFFFF == 2 + RESTART_SKIP


def test_keyframeRequestsShared():
    """Players joining together cause one request, not one each."""
    track = _Track()
    for _ in range(5):
        Subscription(track, _Wire(), ssrc=1, payloadType=96).attach()
    assert track.requests == 1


def test_portRange():
    """Sockets come from the range, round robin; a full range is an error."""
    probe = PortRange(0, 0).bind("127.0.0.1")
    base = probe.getsockname()[1]
    probe.close()
    ports = PortRange(base, base + 1)
    first, second = ports.bind("127.0.0.1"), ports.bind("127.0.0.1")
    try:
        assert {first.getsockname()[1], second.getsockname()[1]} == {base, base + 1}
        with pytest.raises(PortRangeExhausted):
            ports.bind("127.0.0.1")
    finally:
        first.close()
        second.close()


def test_ingestLossIsNacked():
    """
    A gap in a publisher's video is NACKed to it at once, the
    retransmission is forwarded like any packet, and the receiver report
    counts what is still missing.
    """
    from types import SimpleNamespace

    from aiortc.rtp import RtcpPacket

    from wcs.media.track import IncomingTrack

    wire = _Wire()
    wire.rtcpSsrc = 99
    clock = Clock()
    track = IncomingTrack(wire, "video", "VP8", 90000, payloadType=96, ssrc=5, clock=clock)
    forwarded = []
    track.fanout = lambda padding, marker, seq, *rest: forwarded.append(seq)
    track.subscribers = (SimpleNamespace(started=True),)  # a player already playing
    track.keepWaitersServed = lambda now: None

    def packet(seq):
        return rtp.HEADER.pack(0x80, 96, seq, seq * 3000, 5) + b"\x10\x00\x9d"

    for seq in (65533, 65534, 1, 2):  # 65535 and 0 lost, across the wrap
        track.rtpReceived(packet(seq))
    assert wire.rtcp == []  # NACKs go in batches, on a timer
    clock.advance(0.02)
    [nack] = RtcpPacket.parse(wire.rtcp[-1])
    assert (nack.ssrc, nack.media_ssrc, nack.lost) == (99, 5, [0, 65535])
    track.rtpReceived(packet(65535))  # retransmitted
    assert forwarded == [65533, 65534, 1, 2, 65535]
    report = track.receptionReport()
    assert report.packets_lost == 1 and report.highest_sequence == (1 << 16) + 2
