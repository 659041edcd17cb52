"""
The keyframe players wait for after the way in gave packets up
(wcs/media/track.py, wcs/media/feedback.py; docs/networks.md, "`mobile`
H.264: the freeze after a give-up"), on an injected clock.
"""

from aiortc.rtp import RtcpPacket
from twisted.internet.task import Clock

from tests.media.test_feedback import SIZE, _Generator, _seqs
from tests.media.test_rtp import _Wire
from wcs.media import rtp
from wcs.media.feedback import NackGenerator
from wcs.media.track import RESTART_SKIP, IncomingTrack, Subscription


def _packet(seq: int, keyframe: bool = False, frame: int | None = None) -> bytes:
    """A VP8 packet; C{frame} (its RTP time / 3000) defaults to C{seq}."""
    payload = (b"\x10\x00\x9d" if keyframe else b"\x10\x01\x9d") + bytes(SIZE - 15)
    ts = (seq if frame is None else frame) * 3000
    return rtp.HEADER.pack(0x80, 96, seq & 0xFFFF, ts, 5) + payload


def _room(clock):
    wire = _Wire()
    wire.rtcpSsrc = 99
    track = IncomingTrack(wire, "video", "VP8", 90000, 96, 5, clock=clock)
    player = _Wire()
    subscription = Subscription(track, player, ssrc=0x1234, payloadType=100)
    subscription.attach()
    return wire, track, player, subscription


def _plis(wire) -> int:
    return sum(type(p).__name__ == "RtcpPsfbPacket"
               for data in wire.rtcp for p in RtcpPacket.parse(data))


def test_lateKeyframeStartSendsWhatCameBefore():
    """
    A waiting player starts on a keyframe's first packet that came after
    two later ones (reordered, or repaired): it gets those two right after
    it, numbered without a hole; before, it never got them (we had not sent
    them) and aiortc's buffer held every frame behind the hole.
    """
    clock = Clock()
    _, track, player, subscription = _room(clock)
    track.rtpReceived(_packet(1, keyframe=True))
    subscription.restart(skip=True)  # dropped to the next keyframe
    sent = len(player.sent)
    track.rtpReceived(_packet(11, frame=10))  # the keyframe's second and third packet
    track.rtpReceived(_packet(12, frame=10))
    assert len(player.sent) == sent and not subscription.started
    track.rtpReceived(_packet(10, keyframe=True, frame=10))  # its first, late
    track.rtpReceived(_packet(13))
    out = _seqs(player)[sent:]
    assert out == [(out[0] + i) & 0xFFFF for i in range(4)]
    assert track.lateStarts == 1
    # A player already playing gets a late packet once, as before.
    track.rtpReceived(_packet(15))
    track.rtpReceived(_packet(14))
    assert _seqs(player)[sent + 4:] == [(out[0] + 5) & 0xFFFF, (out[0] + 4) & 0xFFFF]


def test_keyframePacketsAskedForPastTheBudget():
    """
    With no budget left, a keyframe's lost packets are still NACKed, first,
    every round trip (up to MAX_TRIES); another packet is never asked for
    and is given up after MAX_WAIT.
    """
    g = _Generator(share=0.0001)
    g.receive(10)
    n = g.generator
    n.budget.credit = 0
    n.lost(10, 2)  # 9: a delta frame's
    n.lost(20, 3, keyframe=True)  # 18, 19: the keyframe's
    g.clock.advance(NackGenerator.INTERVAL)
    assert g.nacks == [[18, 19]] and n.keyframeNacks == 2
    g.clock.pump([NackGenerator.INTERVAL] * int(NackGenerator.MAX_WAIT / NackGenerator.INTERVAL))
    assert all(nack == [18, 19] for nack in g.nacks)
    assert len(g.nacks) >= NackGenerator.MAX_TRIES - 1  # one per retry (100 ms)
    assert 9 not in n.missing and n.nacksGivenUp >= 1  # the delta packet: given up
    n.lost(30, 2, keyframe=True)
    n.received(29, retransmission=True)
    assert 29 not in n.keyframe


def test_gapWhilePlayersWaitIsKeyframe():
    """A gap while a player waits for a keyframe, or beside the keyframe's frame, is its."""
    clock = Clock()
    _, track, player, subscription = _room(clock)
    track.rtpReceived(_packet(1, keyframe=True))
    track.rtpReceived(_packet(2))
    track.rtpReceived(_packet(4))  # 3 lost: between delta frames, nobody waits
    assert track.nacks.keyframe == set()
    track.rtpReceived(_packet(4, keyframe=True))
    track.rtpReceived(_packet(6, frame=4))  # 5 lost inside the keyframe
    track.rtpReceived(_packet(8))  # 7 lost: the keyframe's tail or the next frame's head
    assert track.nacks.keyframe == {5, 7}
    subscription.restart(skip=True)
    track.rtpReceived(_packet(10))  # 9 lost while the player waits
    assert track.nacks.keyframe == {5, 7, 9}


def test_keyframeAskedAgainUntilItStarts():
    """
    After a give-up the keyframe asked for is asked for again every
    keyframeRetry (the PLI or the keyframe's first packet may be lost),
    and no more once it started.
    """
    clock = Clock()
    wire, track, player, subscription = _room(clock)
    track.rtpReceived(_packet(1, keyframe=True))
    clock.advance(3)  # the player's own first request is long past
    asked = _plis(wire)
    track._wayInGivenUp()
    assert _plis(wire) == asked + 1 and track.keyframeAwaited
    retry = track.keyframeRetry()
    assert retry == track.policy.keyframeInterval  # no RTT measured on the way in
    seq = 2
    for _ in range(int(retry / 0.02) - 1):  # a frame every 20 ms, no keyframe
        clock.advance(0.02)
        track.rtpReceived(_packet(seq))
        seq += 1
    assert _plis(wire) == asked + 1
    clock.advance(0.02)
    track.rtpReceived(_packet(seq))
    seq += 1
    assert _plis(wire) == asked + 2 and track.keyframeRetries == 1
    clock.advance(0.1)
    track.rtpReceived(_packet(seq, keyframe=True))
    assert not track.keyframeAwaited and subscription.started
    for _ in range(100):  # 2 s on: nothing asked for
        clock.advance(0.02)
        seq += 1
        track.rtpReceived(_packet(seq))
    assert _plis(wire) == asked + 2


def test_startedOnASecondSliceStartsAgainOnTheFirst():
    """
    A waiting player starts on a keyframe packet (an IDR's second slice
    that came first); the frame's earlier keyframe packet (its SPS, the
    first slice) comes after: the player starts again there, its numbering
    jumping past what it had, and gets the frame whole, in order.
    """
    clock = Clock()
    _, track, player, subscription = _room(clock)
    track.rtpReceived(_packet(1, keyframe=True))
    subscription.restart(skip=True)
    sent = len(player.sent)
    track.rtpReceived(_packet(14, keyframe=True, frame=10))  # slice 2 first
    track.rtpReceived(_packet(15, frame=10))
    assert subscription.started and len(player.sent) == sent + 2
    track.rtpReceived(_packet(10, keyframe=True, frame=10))  # the frame's first
    for seq in (11, 12, 13):
        track.rtpReceived(_packet(seq, frame=10))
    track.rtpReceived(_packet(16))
    out = _seqs(player)[sent + 2:]
    assert track.restarts == 1 and subscription.skipped == 2 * RESTART_SKIP
    # 10, then 14 and 15 again (caught up), then 11-13 late, then 16: one
    # numbering from the frame's first packet, no hole.
    assert sorted(out) == [(out[0] + i) & 0xFFFF for i in range(7)]
    assert (out[0] - _seqs(player)[sent + 1]) & 0xFFFF > RESTART_SKIP
    # The next keyframe of another frame starts nobody again.
    track.rtpReceived(_packet(17, keyframe=True, frame=17))
    track.rtpReceived(_packet(9, keyframe=True, frame=10))  # very late: forwarded once
    assert track.restarts == 1


def test_noRepairFromBeforeTheStart():
    """
    A repair of the way in older than the keyframe a player started on is
    not sent to it (100 or more behind, aiortc would drop all it holds); a
    late packet after the start still is.
    """
    clock = Clock()
    _, track, player, subscription = _room(clock)
    track.rtpReceived(_packet(1, keyframe=True))
    subscription.restart(skip=True)
    for seq in range(3, 150):  # 2 lost; the player waits for a keyframe
        track.rtpReceived(_packet(seq))
    track.rtpReceived(_packet(150, keyframe=True))
    track.rtpReceived(_packet(152))
    sent = len(player.sent)
    track.rtpReceived(_packet(2))  # repaired, 148 before the start
    assert len(player.sent) == sent and subscription.beforeStart == 1
    track.rtpReceived(_packet(151))
    assert len(player.sent) == sent + 1


def test_numbersRunPastHalfTheSpaceAfterTheStart():
    """
    Numbers run on past packets lost on the way in: 0x8000 and more after
    the start, packets still go out (a check by packets sent dropped every
    packet there, in the model's 300 s runs).
    """
    clock = Clock()
    _, track, player, subscription = _room(clock)
    track.fanout(0, 0, 0, 0, b"key", True)
    for seq in range(2, 0x10000 + 400, 3):  # two of three lost
        track.fanout(0, 0, seq & 0xFFFF, seq * 3000, b"delta", False)
    assert len(player.sent) == 1 + len(range(2, 0x10000 + 400, 3))
    assert subscription.beforeStart == 0


def test_aLatePacketGoesAfterALapOfNumbers():
    """
    65 536 numbers after the start, a repair from the way in still goes
    out: the distance to the start is not read modulo the number space
    (it was, and every player lost its late packets for a moment once per
    lap: a 3-4 s stall every ~8 minutes in the lab's hour).
    """
    clock = Clock()
    _, track, player, subscription = _room(clock)
    track.fanout(0, 0, 0, 0, b"key", True)
    late, last = 0x10000 - 15, 0x10000 + 5
    for seq in range(1, last + 1):
        if seq != late:
            track.fanout(0, 0, seq & 0xFFFF, seq * 3000, b"delta", False)
    sent = len(player.sent)
    track.fanout(0, 0, late & 0xFFFF, late * 3000, b"repair", False)
    assert len(player.sent) == sent + 1
    assert subscription.beforeStart == 0


def test_packetsLeftBehindAreGivenUp():
    """
    A missing packet that falls MAX_MISSING behind the newest before its
    tries ran out (the timer ran late) is given up like any: the players
    drop to a keyframe instead of waiting on its hole.
    """
    g = _Generator()
    g.receive(10)
    n = g.generator
    n.lost(10, 2)  # 9
    n.lost(10 + NackGenerator.MAX_MISSING + 2, 2)  # 9 is now too far behind
    assert 9 not in n.missing and n.nacksGivenUp == 1 and g.gaveUp == 1


def test_giveUpBeforeAPlayersStartDoesNotDropIt():
    """
    Packets given up from before the keyframe a player started on: it
    needs none of them, so it is not dropped again (nor a keyframe asked
    for); a player that was already playing before them is.
    """
    clock = Clock()
    wire, track, player, subscription = _room(clock)
    old = Subscription(track, _Wire(), ssrc=0x4321, payloadType=100)
    track.rtpReceived(_packet(1, keyframe=True))
    old.attach()  # waits for the next keyframe
    track.rtpReceived(_packet(2))
    track.rtpReceived(_packet(4))  # 3 lost: only `subscription` plays
    track.rtpReceived(_packet(5, keyframe=True))  # `old` starts here
    for seq in range(6, 40):
        track.rtpReceived(_packet(seq))
        clock.advance(0.02)
    asked = _plis(wire)
    track.nacks.lastGivenUp = [3]
    track._wayInGivenUp()
    assert old.started and not subscription.started  # only the one that needs 3 drops
    assert _plis(wire) == asked + 1
    subscription.restart()  # now nobody needs 3
    track.rtpReceived(_packet(40, keyframe=True))
    track.rtpReceived(_packet(41))
    clock.advance(1)
    asked = _plis(wire)
    track._wayInGivenUp()
    assert old.started and subscription.started and _plis(wire) == asked
    assert not track.keyframeAwaited
