"""
Wrap-arounds of a long-lived stream: the 16-bit RTP sequence number, the
32-bit timestamp and SRTP's rollover counter, on the way in (a publisher's
numbers), on the way out (a player's offsets) and in the feedback between.
"""

import asyncio
import os
import struct

import aiortc.rtcrtpsender
import pylibsrtp
import pytest
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RTCP_RTPFB_NACK, RtcpPacket, RtpPacket
from twisted.internet.task import Clock

from tests.media.peers import asyncTest, forwarding, lumaSignature
from tests.media.test_rtp import PLAIN, _Track, _Wire
from tests.support.wait import waitUntil
from wcs.media import rtp
from wcs.media.track import HISTORY, RESTART_SKIP, IncomingTrack, Subscription

SSRC_IN = 5
TS_STEP = 3000  # 30 fps at 90 kHz


def _packet(seq: int, timestamp: int, payload: bytes = b"\x10\x00\x9d", ssrc: int = SSRC_IN) -> bytes:
    # VP8 payload descriptor with S set, PID 0, and a keyframe header:
    # every packet starts a keyframe unless told otherwise.
    return rtp.HEADER.pack(0x80, 96, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc) + payload


DELTA = b"\x10\x01\x9d"  # S set, PID 0, inverse keyframe bit set: a delta frame


def _incoming(wire=None) -> tuple[IncomingTrack, _Wire]:
    wire = wire or _Wire()
    wire.rtcpSsrc = 99
    track = IncomingTrack(wire, "video", "VP8", 90000, payloadType=96, ssrc=SSRC_IN,
                          clock=Clock())
    track.sendKeyframeRequest = lambda: None
    return track, wire


def _headers(wire: _Wire) -> list[tuple[int, int]]:
    return [rtp.SEQ_TS.unpack_from(d, 2) for d in wire.sent]


def _continuous(headers: list[tuple[int, int]]) -> bool:
    return all((b[0] - a[0]) & 0xFFFF == 1 and (b[1] - a[1]) & 0xFFFFFFFF == TS_STEP
               for a, b in zip(headers, headers[1:]))


@pytest.mark.parametrize("inSeq, inTs, outSeq, outTs", [
    (65500, 0xFFFFFFFF - 50 * TS_STEP, 1000, 1000),  # the publisher's numbers wrap
    (1000, 1000, 65500, 0xFFFFFFFF - 50 * TS_STEP),  # the player's offsets wrap
    (65000, 0xFFFF0000, 65400, 0xFFFFF000),  # both, at different packets
])
def test_forwardingAcrossWraps(inSeq, inTs, outSeq, outTs):
    """IncomingTrack to Subscription: output numbering stays continuous."""
    track, _ = _incoming()
    player = _Wire()
    subscription = Subscription(track, player, ssrc=0x1234, payloadType=100)
    subscription.nextSeq, subscription.nextTs = outSeq, outTs
    subscription.attach()
    for i in range(700):  # past both 16-bit wraps of the first case
        track.rtpReceived(_packet(inSeq + i, inTs + i * TS_STEP,
                                  b"\x10\x00\x9d" if i == 0 else DELTA))
    headers = _headers(player)
    assert len(headers) == 700 and headers[0] == (outSeq, outTs)
    assert _continuous(headers)
    # The history index is the sequence number mod HISTORY, continuous at the wrap.
    assert all(subscription.sentPacket(seq) == data
               for (seq, _), data in zip(headers[-HISTORY:], player.sent[-HISTORY:]))


def _nackBytes(mediaSsrc: int, pid: int, blp: int) -> bytes:
    # Built by hand: a browser's NACK whose bitmask spans the wrap.
    return struct.pack("!BBHII HH", 0x80 | RTCP_RTPFB_NACK, 205, 3, 1, mediaSsrc, pid, blp)


def test_nackAcrossWrap():
    """
    A player's NACK for packets on both sides of its wrap is answered from
    the history; aiortc parses a bitmask past 65535 into numbers above it,
    which must still find their packets (not be taken for ones too old).
    """
    track, wire = _Track(), _Wire()
    subscription = Subscription(track, wire, ssrc=0x1234, payloadType=100, policy=PLAIN)
    subscription.nextSeq = 65530
    subscription.attach()
    for i in range(20):
        track.fanout(0, 0, 100 + i, i * TS_STEP, b"key" if i == 0 else b"delta", i == 0)
    sent = {rtp.SEQ_TS.unpack_from(d, 2)[0]: d for d in wire.sent}
    assert 65535 in sent and 0 in sent
    requests = track.requests
    [nack] = RtcpPacket.parse(_nackBytes(0x1234, 65534, 0b111))  # 65534..1
    assert nack.lost[0] == 65534
    wire.sent.clear()
    subscription.nackReceived(nack.lost)
    assert wire.sent == [sent[65534], sent[65535], sent[0], sent[1]]
    assert track.requests == requests  # nothing was too old
    # Older than the keyframe it was sent: a late repeat, nothing to repair.
    track.clock.advance(2.0)  # the player's own keyframe interval since it joined
    subscription.nackReceived([(65530 - HISTORY) & 0xFFFF])
    assert track.requests == requests and subscription.nacksBeforeKeyframe == 1
    # Gone from the history after that keyframe really is too old, across the wrap.
    for i in range(20, 20 + HISTORY):
        track.fanout(0, 0, 100 + i, i * TS_STEP, b"delta", False)
    subscription.nackReceived([65531])
    assert track.requests == requests + 1 and subscription.nacksTooOld == 1


def test_receiverReportAcrossWraps():
    """cycles and the extended highest sequence count each wrap once."""
    track, _ = _incoming()
    first, ts = 65530, 0xFFFFFF00
    count = 2 * 65536 - 100  # two wraps, ending at 65429
    for i in range(count):
        if i == 65536 + 3:
            continue  # one packet lost
        track.rtpReceived(_packet(first + i, ts + i * TS_STEP, DELTA))
        if i == 20:
            # Just after the first wrap, a late duplicate from before it
            # counts no cycle.
            track.rtpReceived(_packet(65534, ts, DELTA))
            assert track.cycles == 1 << 16 and track.maxSeq == 14
    report = track.receptionReport()
    assert track.cycles == 2 << 16
    assert report.highest_sequence == first + count - 1 == (2 << 16) + 65429
    assert report.packets_lost == 0  # the duplicate made up for the lost one (RFC 3550 A.3)


def test_missingAcrossWrap():
    """Gaps across the wrap are NACKed once each and forgotten when repaired."""
    track, wire = _incoming()
    for seq in (65530, 65531, 65534, 2, 3):  # 65532-3, 65535, 0, 1 lost
        track.rtpReceived(_packet(seq, seq * TS_STEP, DELTA))
    assert track.missing == {65532, 65533, 65535, 0, 1}
    track.clock.advance(0.02)
    [nack] = RtcpPacket.parse(wire.rtcp[-1])
    assert sorted(s & 0xFFFF for s in nack.lost) == sorted(track.missing)
    for seq in (65535, 0):  # retransmitted
        track.rtpReceived(_packet(seq, seq * TS_STEP, DELTA))
    assert track.missing == {65532, 65533, 1}
    # Far past the wrap, what is older than MISSING_MAX is forgotten.
    track.rtpReceived(_packet(400, 400 * TS_STEP, DELTA))
    assert 65532 not in track.missing and 1 not in track.missing
    assert all(rtp.seqNewer(s, 3) for s in track.missing)


def test_keyframeRestartAcrossWrap():
    """
    A player that restarts at its wrap (dropped to the next keyframe) and a
    publisher that restarts its stream (new SSRC, numbers from scratch)
    both leave the player's numbering continuous, and the new stream's
    receive statistics start over.
    """
    track, wire = _incoming()
    player = _Wire()
    subscription = Subscription(track, player, ssrc=0x1234, payloadType=100)
    subscription.nextSeq, subscription.nextTs = 65534, 0xFFFFFFFF - TS_STEP
    subscription.attach()
    track.rtpReceived(_packet(65535, 0xFFFFFFFF, b"\x10\x00\x9d"))  # keyframe at the wrap
    player.backedUp = True
    track.rtpReceived(_packet(0, TS_STEP - 1, DELTA))  # lost: wait for a keyframe
    assert not subscription.started
    player.backedUp = False
    track.rtpReceived(_packet(1, 2 * TS_STEP - 1, DELTA))
    track.rtpReceived(_packet(2, 3 * TS_STEP - 1, b"\x10\x00\x9d"))
    # The publisher restarts: a new SSRC, its numbers start elsewhere.
    track.ssrc = 77
    track.rtpReceived(_packet(30000, 5, DELTA, ssrc=77))  # not a keyframe: dropped
    track.rtpReceived(_packet(30001, 5 + TS_STEP, b"\x10\x00\x9d", ssrc=77))
    # 65535 went to the backed-up socket and stays in the history (the
    # player may NACK it); the player lost it, so its numbering skips ahead
    # at the keyframe (RESTART_SKIP past 0); at the publisher's restart it
    # goes on by one.
    seqs = [seq for seq, ts in _headers(player)]
    assert seqs == [65534, RESTART_SKIP, RESTART_SKIP + 1]
    stamps = [ts for seq, ts in _headers(player)]
    assert all(0 < (b - a) & 0xFFFFFFFF < 90000 for a, b in zip(stamps, stamps[1:]))
    report = track.receptionReport()
    assert (report.ssrc, report.highest_sequence, report.packets_lost) == (77, 30001, 0)
    assert track.missing == set()


@pytest.mark.parametrize("skip, released", [(RESTART_SKIP, True), (0, False)])
def test_dropToKeyframeSkipsThePlayersHoles(monkeypatch, skip, released):
    """
    A player that lost a packet and dropped to the next keyframe decodes
    that keyframe at once in aiortc's own jitter buffer, because its
    numbering skipped ahead; gap-free (skip 0, as before) the buffer holds
    the keyframe and everything after it behind the hole it never sees
    filled (until 512 packets passed: 4-8 s of video).
    """
    monkeypatch.setattr("wcs.media.subscription.RESTART_SKIP", skip)
    track, _ = _incoming()
    player = _Wire()
    subscription = Subscription(track, player, ssrc=0x1234, payloadType=100)
    subscription.attach()
    buffer = JitterBuffer(capacity=512, is_video=True)
    out = []

    def deliver(seq, payload=DELTA, lost=False):
        player.backedUp = lost
        before = len(player.sent)
        track.rtpReceived(_packet(seq, seq * TS_STEP, payload))
        for data in player.sent[before:]:
            packet = RtpPacket.parse(data)
            packet._data = packet.payload
            frame = buffer.add(packet)[1]
            if frame is not None:
                out.append(frame.timestamp)

    deliver(1, b"\x10\x00\x9d")
    for seq in range(2, 6):
        deliver(seq)
    deliver(6, lost=True)  # the player never gets it: wait for a keyframe
    deliver(7)  # dropped by the subscription
    deliver(8, b"\x10\x00\x9d")
    for seq in range(9, 13):
        deliver(seq)
    keyframeTs = (8 * TS_STEP + subscription.tsDelta) & 0xFFFFFFFF
    assert subscription.skipped == skip
    assert (keyframeTs in out) is released
    # Frames 1-4 (5 went out only when 6 came, which never did); skipped:
    # then the keyframe and 9-11 (12 waits for 13).
    assert len(out) == (8 if released else 4)


def _srtpPair() -> tuple[pylibsrtp.Session, pylibsrtp.Session]:
    """Two ends keyed alike, with the policy MediaTransport gets from aiortc."""
    key = os.urandom(30)
    sessions = []
    for ssrcType in (pylibsrtp.Policy.SSRC_ANY_OUTBOUND, pylibsrtp.Policy.SSRC_ANY_INBOUND):
        policy = pylibsrtp.Policy(key=key, ssrc_type=ssrcType,
                                  srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
        policy.allow_repeat_tx = True
        policy.window_size = 1024
        sessions.append(pylibsrtp.Session(policy))
    return sessions[0], sessions[1]


def test_srtpRolloverCounter():
    """
    SRTP across 65535 -> 0 (the rollover counter goes to 1) on both ends:
    packets, losses repaired after the wrap by resending from before it
    (as a player's NACK makes Subscription do), and a second wrap.
    """
    sender, receiver = _srtpPair()
    packets = {}
    for i in range(65500, 65536 * 2 + 100):
        seq = i & 0xFFFF
        packets[i] = _packet(seq, i * TS_STEP, b"payload %d" % i)
        protected = sender.protect(packets[i])
        if i in (65530, 65535, 65536 + 2):
            continue  # lost on the way
        assert receiver.unprotect(protected) == packets[i]
        if i == 65536 + 10:
            # Resent from the history after the wrap: the sender's libsrtp
            # guesses rollover counter 0 again for these, the receiver too.
            for lost in (65530, 65535, 65536 + 2):
                assert receiver.unprotect(sender.protect(packets[lost])) == packets[lost]
    # A replayed packet is refused, wrapped or not.
    with pytest.raises(pylibsrtp.Error):
        receiver.unprotect(sender.protect(packets[65536 * 2 + 99]))


PLAYER_FIRST = 65480


@asyncTest(timeout=90)
async def test_forwardedVideoAcrossWraps(monkeypatch):
    """
    A real aiortc publisher starting at sequence number 65450 and a player
    whose numbering starts at 65480: both wrap (and with them both ends'
    SRTP rollover counters) within seconds, and the decoding player sees
    continuous, moving video across both. (The test pattern is about one
    packet per frame: 65000 would take 18 s to wrap.)
    """
    # aiortc 1.16's RTCRtpSender keeps its sequence number in a local of
    # _run_rtp, drawn from this module function: the test replaces the
    # function to force the first number (an aiortc internal, test only).
    monkeypatch.setattr(aiortc.rtcrtpsender, "random_sequence_number", lambda: 65450)
    # Our own first number, forced the same way so that the player's side
    # wraps at another moment than the publisher's.
    monkeypatch.setattr(rtp, "firstSequence", lambda: PLAYER_FIRST)
    loop = asyncio.get_running_loop()
    async with forwarding() as (session, publisher, player):
        incoming = session.source.incoming["video"]
        [subscription] = player.session.subscriptions
        assert incoming.baseSeq >= 65450 and subscription.lastSeq >= PLAYER_FIRST

        await waitUntil(lambda: incoming.cycles and subscription.lastSeq < PLAYER_FIRST, 30,
                        "both sequence numbers to wrap")
        wrappedAt = loop.time()
        frames, arrivals = player.frames["video"], player.arrivals["video"]

        def after():
            return [i for i, t in enumerate(arrivals) if t > wrappedAt]
        await waitUntil(lambda: len(after()) >= 10, 10,
                        lambda: f"10 frames after the wraps, got {len(after())}")
        after = after()
        gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
        assert max(gaps) < 0.5, max(gaps)
        # The picture moves on both sides of the wraps.
        signatures = [lumaSignature(frames[i]) for i in after]
        assert len(set(signatures)) > len(signatures) // 2
        assert not player.listener.failed.is_set() and not publisher.listener.failed.is_set()
