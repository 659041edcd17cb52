"""
Retransmission and keyframe budgets (wcs/media/feedback.py and their use in
wcs/media/track.py), on an injected clock.
"""

from dataclasses import replace

import pytest
from aiortc.rtp import RtcpPacket
from twisted.internet.task import Clock

from tests.media.test_rtp import PLAIN, _Track, _Wire
from wcs.config import Settings
from wcs.media import rtp
from wcs.media.feedback import FeedbackPolicy, NackGenerator, RetransmitBudget, RoundTrip
from wcs.media.ice import IceConnection, PortRange
from wcs.media.internals import RTCCertificate, RtcpReceiverInfo, RtcpRrPacket
from wcs.media.stall import StallWatch
from wcs.media.track import RESTART_SKIP, IncomingTrack, Subscription
from wcs.media.transport import MediaTransport

SIZE = 1000  # bytes of each test packet


class _Generator:
    """A NackGenerator fed by hand, recording its NACKs and give-ups."""

    def __init__(self, share=0.2):
        self.clock = Clock()
        self.nacks: list[list[int]] = []
        self.gaveUp = 0
        self.octets = self.packets = 0
        self.generator = NackGenerator(self.clock, self.nacks.append, self._gaveUp,
                                       RetransmitBudget(share),
                                       lambda: (self.octets, self.packets))

    def _gaveUp(self):
        self.gaveUp += 1

    def receive(self, count=1):
        self.octets += count * SIZE
        self.packets += count


def test_nackedOnceThenAfterRoundTrip():
    """
    Gaps are NACKed together on the next tick, not per gap; a packet is not
    asked for again before the default RTT (no sample yet), then again.
    """
    g = _Generator()
    g.receive(100)
    n = g.generator
    n.lost(10, 2)  # 9 missing
    n.lost(13, 3)  # 11, 12 missing
    assert g.nacks == []
    g.clock.advance(NackGenerator.INTERVAL)
    assert g.nacks == [[9, 11, 12]] and n.nacksSent == 3
    g.clock.pump([NackGenerator.INTERVAL] * 3)  # 80 ms after the NACK
    assert len(g.nacks) == 1
    g.clock.pump([NackGenerator.INTERVAL] * 2)  # 120 ms
    assert g.nacks[1:] == [[9, 11, 12]]


def test_repairMeasuresRoundTripAndStopsTimer():
    g = _Generator()
    g.receive(100)
    n = g.generator
    n.lost(10, 2)
    g.clock.advance(NackGenerator.INTERVAL)
    g.clock.advance(0.05)
    n.received(9)
    assert n.missing == {} and n.retransmitsReceived == 1
    # 1.5 RTT after a first sample
    assert (n.rtt.smoothed, n.rtt.retry) == pytest.approx((0.05, 0.075))
    g.clock.advance(NackGenerator.INTERVAL)
    assert g.clock.getDelayedCalls() == []  # no timer while nothing is missing


def test_givenUpAfterMaxTries():
    """After MAX_TRIES unanswered NACKs the packet is given up, once, and told."""
    g = _Generator()
    g.generator.lost(10, 2)
    for _ in range(200):  # 4 s of a stream that goes on, with room in the budget
        g.receive(10)
        g.clock.advance(NackGenerator.INTERVAL)
    assert g.nacks == [[9]] * NackGenerator.MAX_TRIES
    assert g.gaveUp == 1 and g.generator.nacksGivenUp == 1
    assert g.generator.missing == {} and g.clock.getDelayedCalls() == []


def test_largeGapAndBound():
    """A gap too large to repair asks for a keyframe; the missing set is bounded."""
    g = _Generator(share=0)
    n = g.generator
    assert not n.lost(100, NackGenerator.MAX_GAP + 1) and g.gaveUp == 1 and n.missing == {}
    seq = 100
    for _ in range(1000):  # every other packet lost, never repaired (no budget)
        seq = (seq + 2) & 0xFFFF
        n.lost(seq, 2)
        g.clock.advance(0.01)
        assert len(n.missing) <= NackGenerator.MAX_MISSING // 2
    assert g.nacks == [] and n.nacksOverBudget > 0


def test_publisherBudget():
    """
    With a third of the packets lost and never repaired, what we ask the
    publisher to resend stays within the share of its stream (plus the
    bucket's start), and what did not fit is counted.
    """
    g = _Generator(share=0.2)
    n = g.generator
    seq = 0
    for _ in range(500):  # 5 s at 100 packets/s: 2 received, 1 lost
        g.receive(2)
        seq += 3
        n.lost(seq, 2)
        g.clock.advance(0.01)
        n.received(seq - 2)  # not missing: no effect
    asked = sum(len(b) for b in g.nacks) * SIZE
    assert 0 < asked <= 0.2 * g.octets + RetransmitBudget.START
    assert asked > 0.15 * g.octets  # the budget is used, not starved
    assert n.nacksOverBudget > 0


def test_roundTripDefaultsAndBounds():
    rtt = RoundTrip()
    assert rtt.retry == RoundTrip.DEFAULT
    rtt.sample(-1)
    rtt.sample(60)
    assert rtt.samples == 0
    for _ in range(50):
        rtt.sample(0.2)
    assert abs(rtt.smoothed - 0.2) < 1e-3 and 0.2 <= rtt.retry < 0.21
    for _ in range(50):
        rtt.sample(3.0)
    assert rtt.retry == RoundTrip.MAX_RETRY


def _packet(seq: int, keyframe: bool = False) -> bytes:
    payload = (b"\x10\x00\x9d" if keyframe else b"\x10\x01\x9d") + bytes(SIZE - 15)
    return rtp.HEADER.pack(0x80, 96, seq & 0xFFFF, seq * 3000, 5) + payload


def test_incomingTrackGivesUpToKeyframe():
    """A publisher that never answers: NACKs stop, and one PLI asks for a keyframe."""
    clock, wire = Clock(), _Wire()
    wire.rtcpSsrc = 99
    track = IncomingTrack(wire, "video", "VP8", 90000, 96, 5, clock=clock)
    for seq in [*range(1, 51), 52]:  # 51 lost
        track.rtpReceived(_packet(seq, seq == 1))
        clock.advance(0.01)
    for seq in range(53, 253):  # the stream goes on, 4 s
        track.rtpReceived(_packet(seq))
        clock.advance(0.02)
    kinds = [type(p).__name__ for data in wire.rtcp for p in RtcpPacket.parse(data)]
    assert kinds == ["RtcpRtpfbPacket"] * NackGenerator.MAX_TRIES + ["RtcpPsfbPacket"]
    assert track.nacks.nacksGivenUp == 1 and track.keyframeRequests == 1
    assert track.missing == set()


def _trackWithPlayer(policy: FeedbackPolicy = FeedbackPolicy()):
    """A publisher's video track and one player: clock, wires, track, subscription."""
    clock, wire = Clock(), _Wire()
    wire.rtcpSsrc = 99
    track = IncomingTrack(wire, "video", "VP8", 90000, 96, 5, clock=clock, policy=policy)
    player = _Wire()
    subscription = Subscription(track, player, ssrc=0x1234, payloadType=100, policy=policy)
    subscription.attach()
    return clock, wire, track, subscription, player


def test_wayInGivenUpDropsPlayersToKeyframe():
    """
    A packet lost on the way in and given up: the players' numbering jumps
    past the hole at the next keyframe (aiortc's buffer would hold every
    later frame behind it), which is asked for; nothing between is sent.
    """
    clock, wire, track, subscription, player = _trackWithPlayer()
    for seq in [*range(1, 51), 52]:  # 51 lost
        track.rtpReceived(_packet(seq, seq == 1))
        clock.advance(0.01)
    for seq in range(53, 253):  # the publisher never answers: 4 s
        track.rtpReceived(_packet(seq))
        clock.advance(0.02)
    # The player's first, then the give-up's (repeated while the player waits).
    assert track.nacks.nacksGivenUp == 1 and track.keyframeRequests >= 2
    out = _seqs(player)
    assert len(out) < 250 and not subscription.started  # waits for the keyframe
    track.rtpReceived(_packet(253, keyframe=True))
    track.rtpReceived(_packet(254))
    after = _seqs(player)[len(out):]
    assert after == [(out[-1] + 1 + RESTART_SKIP) & 0xFFFF, (out[-1] + 2 + RESTART_SKIP) & 0xFFFF]
    assert subscription.skipped == RESTART_SKIP


def _repairOnce(policy: FeedbackPolicy = FeedbackPolicy()):
    """
    A player of a track that lost packet 51 on the way in and got 52 late
    by itself (before its NACK): 51 comes as the answer to our NACK.
    Returns the clock, the track, the subscription and the player's wire.
    """
    clock, wire, track, subscription, player = _trackWithPlayer(policy)
    for seq in [*range(1, 51), 53, 52]:
        track.rtpReceived(_packet(seq, seq == 1))
    clock.advance(NackGenerator.INTERVAL)
    assert [p.lost for data in wire.rtcp for p in RtcpPacket.parse(data)
            if hasattr(p, "lost")] == [[51]]
    clock.advance(0.06)  # (later than half a round trip after the NACK: its answer)
    track.rtpReceived(_packet(51))
    clock.advance(track.REPEAT_AFTER)
    return clock, track, subscription, player


def test_repairFromTheWayInGoesTwice():
    """
    A packet our NACK repaired reached the players a round trip late: each
    gets a second copy soon after (a loss on its own link would cost a
    second round trip). One that was late by itself goes once.
    """
    clock, track, subscription, player = _repairOnce()
    out = _seqs(player)
    first = out[0]
    assert out[-3:] == [(first + 51) & 0xFFFF, (first + 50) & 0xFFFF, (first + 50) & 0xFFFF]
    assert out.count((first + 51) & 0xFFFF) == 1  # 52: late by itself
    assert track.repairsRepeated == subscription.repairsRepeated == 1
    assert subscription.retransmitted == 1  # from its budget


def test_repairSentOnceWhenOff():
    _, track, subscription, player = _repairOnce(FeedbackPolicy(repeatRepairs=False))
    out = _seqs(player)
    assert out.count((out[0] + 50) & 0xFFFF) == 1
    assert track.repairsRepeated == subscription.repairsRepeated == 0
    assert not FeedbackPolicy.fromSettings(
        Settings({"media_repeat_repairs": "false"})).repeatRepairs


def test_repairNotRepeatedFarBehind():
    """
    Not to a player 64 or more past it: a copy it has, that far behind,
    makes aiortc drop its buffer (StallWatch.MAX_BEHIND).
    """
    clock, wire, track, subscription, player = _trackWithPlayer()
    for seq in [*range(1, 51), *range(52, 52 + StallWatch.MAX_BEHIND)]:
        track.rtpReceived(_packet(seq, seq == 1))
    clock.advance(NackGenerator.INTERVAL)
    clock.advance(0.06)
    track.rtpReceived(_packet(51))
    track.rtpReceived(_packet(52 + StallWatch.MAX_BEHIND))
    clock.advance(track.REPEAT_AFTER)
    assert track.repairsRepeated == 1 and subscription.repairsRepeated == 0
    assert _seqs(player).count((_seqs(player)[0] + 50) & 0xFFFF) == 1


def test_noResendFromBeforeAJump():
    """
    After a drop to a keyframe (the numbering jumps), a NACK for a number
    sent before it is not answered: its copy would land 1024 behind the
    player's buffer, which aiortc answers by dropping everything it holds.
    """
    track, wire, subscription = _player()
    track.fanout(0, 0, 1, 0, b"key", True)
    for seq in range(2, 20):
        track.fanout(0, 0, seq, seq * 3000, b"delta", False)
    before = _seqs(wire)
    subscription.restart(skip=True)
    track.fanout(0, 0, 20, 60000, b"key", True)
    subscription.nackReceived([before[5]])
    assert _seqs(wire)[len(before):] == [(before[-1] + 1 + RESTART_SKIP) & 0xFFFF]
    assert subscription.retransmitted == 0


def _player(clock=None, policy=PLAIN):
    track, wire = _Track(), _Wire()
    if clock is not None:
        track.clock, track.seconds = clock, clock.seconds
    subscription = Subscription(track, wire, ssrc=0x1234, payloadType=100, policy=policy)
    subscription.attach()
    return track, wire, subscription


def _seqs(wire: _Wire) -> list[int]:
    return [rtp.SEQ_TS.unpack_from(d, 2)[0] for d in wire.sent]


def test_playerNackAnsweredOncePerRoundTrip():
    track, wire, subscription = _player()
    for i in range(50):
        track.fanout(0, 0, i, i * 3000, bytes(SIZE), i == 0)
    seq = _seqs(wire)[10]
    wire.sent.clear()
    subscription.nackReceived([seq])
    subscription.nackReceived([seq])  # the player repeats itself within an RTT
    assert _seqs(wire) == [seq] and subscription.retransmitTooSoon == 1
    track.clock.advance(RoundTrip.DEFAULT)
    subscription.nackReceived([seq])
    assert _seqs(wire) == [seq, seq] and subscription.retransmitted == 2
    assert subscription.resentEarly == 0  # the same NACK twice is no repeat of a timer


def test_playerRepeatWithinRoundTripGetsOneEarlyCopy():
    """
    With C{playerEarlyCopy} (C{media_player_early_copy}), a webrtc.org
    player's repeat before our copy could reach it (its packet was lost,
    not reordered) gets one more copy at once, charged to its budget; its
    further repeats wait our round trip from the first copy, as without.
    """
    policy = FeedbackPolicy(repeatRepairs=False, playerNackReserve=0)
    track, wire, subscription = _player(policy=policy)
    for rtt in (0.2, 0.2):
        subscription.rtt.sample(rtt)
    for i in range(50):
        track.fanout(0, 0, i, i * 3000, bytes(SIZE), i == 0)
    seq = _seqs(wire)[10]
    wire.sent.clear()
    subscription.nackReceived([seq])
    track.clock.advance(0.1)  # Chromium's repeat: 100 ms later, from its timer
    subscription.nackReceived([seq])
    assert _seqs(wire) == [seq, seq] and subscription.resentEarly == 1
    assert subscription.retransmitted == 2 and subscription.retransmitTooSoon == 0
    track.clock.advance(0.05)
    subscription.nackReceived([seq])  # once per copy: refused
    assert _seqs(wire) == [seq, seq] and subscription.retransmitTooSoon == 1
    track.clock.advance(0.06)  # past one round trip of the first copy
    subscription.nackReceived([seq])
    track.clock.advance(0.1)  # and again within that one's: one more early copy
    subscription.nackReceived([seq])
    assert _seqs(wire) == [seq] * 4 and subscription.resentEarly == 2
    assert FeedbackPolicy.fromSettings(Settings({})).playerEarlyCopy
    assert not FeedbackPolicy.fromSettings(
        Settings({"media_player_early_copy": "false"})).playerEarlyCopy


def test_playerEarlyCopyWithinBudgetOnly():
    """An early copy over the player's budget is refused as too soon, without a keyframe ask."""
    policy = FeedbackPolicy(repeatRepairs=False, playerNackReserve=0, burst=SIZE + 100)
    track, wire, subscription = _player(policy=policy)
    for i in range(50):
        track.fanout(0, 0, i, i * 3000, bytes(SIZE), i == 0)
    seq = _seqs(wire)[10]
    wire.sent.clear()
    subscription.nackReceived([seq])  # spends the bucket
    track.clock.advance(0.05)
    subscription.nackReceived([seq])
    assert _seqs(wire) == [seq] and subscription.resentEarly == 0
    assert subscription.retransmitTooSoon == 1 and subscription.keyframesForRefused == 0


def test_playerNackReserveKeptForRepeats():
    """
    With C{playerNackReserve} (C{media_player_nack_reserve}), a packet's
    first NACK from a webrtc.org player may not spend the reserve: it is
    left for its repeat (no keyframe asked), which may.
    """
    policy = FeedbackPolicy(repeatRepairs=False, burst=4 * (SIZE + 12))
    track, wire, subscription = _player(policy=policy)
    for i in range(50):
        track.fanout(0, 0, i, i * 3000, bytes(SIZE), i == 0)
    sent = _seqs(wire)
    wire.sent.clear()
    track.clock.advance(1)
    subscription.nackReceived(sent[10:14])  # 4 packets: 2 fit beside the reserve
    assert _seqs(wire) == sent[10:12] and subscription.nacksDeferred == 2
    assert subscription.retransmitDropped == 0 and subscription.keyframesForRefused == 0
    track.clock.advance(0.1)  # its repeat: real losses, the reserve pays
    subscription.nackReceived(sent[12:14])
    assert _seqs(wire) == sent[10:14] and subscription.nacksDeferred == 2
    assert FeedbackPolicy.fromSettings(Settings({})).playerNackReserve == 0.5
    assert FeedbackPolicy.fromSettings(
        Settings({"media_player_nack_reserve": "0"})).playerNackReserve == 0


def test_eagerPlayerGetsNoEarlyCopy():
    """aiortc (eager: it re-asks within tens of ms) keeps the round-trip rule."""
    policy = FeedbackPolicy(repeatRepairs=False, playerNackReserve=0)
    track, wire, subscription = _player(policy=policy)
    subscription.hold.eager = True
    for i in range(50):
        track.fanout(0, 0, i, i * 3000, bytes(SIZE), i == 0)
    seq = _seqs(wire)[10]
    wire.sent.clear()
    subscription.resend([seq])
    track.clock.advance(0.05)
    subscription.resend([seq])
    assert _seqs(wire) == [seq] and subscription.resentEarly == 0


def test_farBehindASecondCopyWaitsTheRetry():
    """
    A packet StallWatch.MAX_BEHIND or more behind the newest sent is sent again only
    after the retry (RTT + 2 variations): a NACK that crossed the copy the
    player got would land a duplicate 100 behind the oldest packet aiortc
    holds, which drops its whole jitter buffer (the lab's 4.5 s freezes on
    `mobile`, docs/networks.md). Nearer the newest, one RTT as before.
    """
    track, wire, subscription = _player(policy=replace(PLAIN, repeatRepairs=False))
    for rtt in (0.3, 0.1, 0.3, 0.1):  # smoothed ~0.2, retry ~0.36
        subscription.rtt.sample(rtt)
    smoothed, retry = subscription.rtt.smoothed, subscription.rtt.retry
    for i in range(StallWatch.MAX_BEHIND + 20):
        track.fanout(0, 0, i, i * 3000, bytes(SIZE), i == 0)
    sent = _seqs(wire)
    far, near = sent[10], sent[-10]
    assert (sent[-1] - far) & 0xFFFF >= StallWatch.MAX_BEHIND > (sent[-1] - near) & 0xFFFF
    wire.sent.clear()
    subscription.nackReceived([far, near])
    track.clock.advance(smoothed * 1.1)  # past one RTT, before the retry
    subscription.nackReceived([far, near])
    assert _seqs(wire) == [far, near, near] and subscription.retransmitTooSoon == 1
    track.clock.advance(retry - smoothed * 1.1 + 0.001)
    subscription.nackReceived([far])
    assert _seqs(wire) == [far, near, near, far]


def test_playerNackAnsweredAgainAfterOneRoundTrip():
    """
    A copy we resent is waited for one smoothed round trip, not the retry
    (RTT + 2 variations): a NACK later than the RTT left the player after
    the copy should have come, so the copy was lost (issue 16's `mobile`
    freezes: an eager player re-asks at once, and the variations' margin
    was added to every twice-lost packet).
    """
    track, wire, subscription = _player(policy=replace(PLAIN, repeatRepairs=False))
    for rtt in (0.3, 0.1, 0.3, 0.1):  # a jittery link: smoothed ~0.2, retry ~0.36
        subscription.rtt.sample(rtt)
    smoothed, retry = subscription.rtt.smoothed, subscription.rtt.retry
    assert retry - smoothed > 0.1
    for i in range(50):
        track.fanout(0, 0, i, i * 3000, bytes(SIZE), i == 0)
    seq = _seqs(wire)[10]
    wire.sent.clear()
    subscription.nackReceived([seq])
    track.clock.advance(smoothed * 0.9)
    subscription.nackReceived([seq])  # may have crossed the copy: not answered
    assert _seqs(wire) == [seq] and subscription.retransmitTooSoon == 1
    track.clock.advance(smoothed * 0.2)  # past one RTT, well before the retry
    subscription.nackReceived([seq])
    assert _seqs(wire) == [seq, seq] and subscription.retransmitted == 2
    # A round trip read longer than the retry's cap (a loaded player's
    # reports): the cap still bounds the wait.
    for _ in range(20):
        subscription.rtt.sample(1.5)
    assert subscription.rtt.smoothed > RoundTrip.MAX_RETRY == subscription.rtt.retry
    track.clock.advance(RoundTrip.MAX_RETRY + 0.01)
    subscription.nackReceived([seq])
    assert _seqs(wire) == [seq, seq, seq]


def test_aSecondCopyGoesTwice():
    """
    A packet resent again (its first copy lost) is a round trip later
    still: it goes twice, REPEAT_AFTER apart, within the spare budget; a
    first copy goes once. Far behind the newest, once (StallWatch.MAX_BEHIND).
    """
    track, wire, subscription = _player()
    for i in range(StallWatch.MAX_BEHIND + 20):
        track.fanout(0, 0, i, i * 3000, bytes(SIZE), i == 0)
    sent = _seqs(wire)
    far, near = sent[10], sent[-10]
    wire.sent.clear()
    subscription.nackReceived([far, near])
    track.clock.advance(Subscription.REPEAT_AFTER)
    assert _seqs(wire) == [far, near]  # first copies: once
    track.clock.advance(0.3)  # past the retry: no round trip measured yet
    subscription.nackReceived([far, near])
    assert _seqs(wire) == [far, near, far, near]
    track.clock.advance(Subscription.REPEAT_AFTER)
    assert _seqs(wire) == [far, near, far, near, near]
    assert subscription.repairsRepeated == 1 and subscription.retransmitted == 5


def test_playerRetransmitBudget():
    """
    A player that NACKs every packet it got (a narrow link) gets at most the
    share of its stream resent; the rest is dropped and counted.
    """
    track, wire, subscription = _player()
    for i in range(1000):
        track.fanout(0, 0, i, i * 3000, bytes(SIZE), i == 0)
        if i % 10 == 9:
            subscription.nackReceived(_seqs(wire)[-10:])
            track.clock.advance(0.1)
    resent = subscription.retransmitted * (SIZE + 12)
    share = FeedbackPolicy().playerShare
    assert share < 1
    assert resent <= share * subscription.octets + RetransmitBudget.BURST
    assert resent > 0.75 * share * subscription.octets
    assert subscription.retransmitDropped > 1000 * (1 - share) * 0.75


def test_playerBurstAnswersOneBatch():
    """
    One NACK listing 20 packets (what Chromium asks at once on a jittery
    link): cut at a bucket of 8 KiB (the rest refused), answered whole with
    the default C{media_retransmit_burst}; the long-run share unchanged.
    """
    batch = 20
    assert batch * (SIZE + 12) <= FeedbackPolicy().burst
    answered = []
    for burst in (8192, FeedbackPolicy().burst):
        track, wire, subscription = _player(policy=replace(PLAIN, burst=burst))
        for i in range(200):  # earns more than either burst at the 60 % share
            track.fanout(0, 0, i, i * 3000, bytes(SIZE), i == 0)
        sent = _seqs(wire)
        wire.sent.clear()
        subscription.nackReceived(sent[-batch:])
        answered.append(len(wire.sent))
        assert subscription.retransmitDropped == batch - answered[-1]
    assert answered == [8192 // (SIZE + 12), batch]


def test_refusedNackAsksKeyframeForPlayer():
    """
    A NACK over the budget leaves the player's frame unrepairable and aiortc
    asks for a keyframe only much later: we ask for it, within its limit.
    """
    clock = Clock()
    track, wire, subscription = _player(clock, replace(PLAIN, playerShare=0.01))
    for i in range(50):
        track.fanout(0, 0, i, i * 3000, bytes(SIZE), i == 0)
    clock.advance(FeedbackPolicy().playerKeyframeInterval)  # past its first ask
    asked = track.requests
    subscription.budget.credit = 0
    subscription.nackReceived(_seqs(wire)[10:12])
    assert subscription.retransmitDropped == 2 and subscription.keyframesForRefused == 1
    assert track.requests == asked + 1
    subscription.nackReceived(_seqs(wire)[12:13])  # within its limit: not passed on
    assert track.requests == asked + 1 and subscription.keyframeRequestsLimited == 1


def test_roundTripFromReceiverReports():
    """
    The player's receiver report names our last sender report (LSR) and how
    long it held it (DLSR): what is left of the time since we sent it is
    the round trip. The block reaches the subscription through the transport.
    """
    clock = Clock()
    track, _, subscription = _player(clock)
    track.fanout(0, 0, 1, 0, b"key", True)
    subscription.sendSenderReport(0x1122334455667788, 0)
    transport = MediaTransport(IceConnection(PortRange(0, 0), [("127.0.0.1", "127.0.0.1")]),
                               RTCCertificate.generateCertificate())
    transport.senders[0x1234] = subscription
    clock.advance(0.3)
    transport.rtcpReceived(bytes(RtcpRrPacket(ssrc=9, reports=[RtcpReceiverInfo(
        ssrc=0x1234, fraction_lost=0, packets_lost=0, highest_sequence=1, jitter=0,
        lsr=0x33445566, dlsr=int(0.1 * 65536))])))
    assert subscription.rtt.samples == 1 and abs(subscription.rtt.smoothed - 0.2) < 1e-3


def test_keyframeRequestsToPublisherLimited():
    """
    Ten players asking all the time cause one keyframe request per interval;
    one asked for within the interval waits for its end, and is dropped
    when a keyframe started meanwhile.
    """
    track = _Track()
    players = [Subscription(track, _Wire(), ssrc=i, payloadType=96) for i in range(10)]
    for player in players:
        player.attach()
    assert track.requests == 1
    for _ in range(40):  # 2 s, every player asking every 50 ms
        for player in players:
            player.keyframeAllowedAt = float("-inf")  # as if each had its own reason
            player.askKeyframe(track.seconds())
        track.clock.advance(0.05)
    assert track.requests == 4  # at 0, 0.5, 1, 1.5 s
    track.clock.pump([0.05] * 20)
    assert track.requests == 5  # the one held at the end, at 2 s
    players[0].keyframeAllowedAt = float("-inf")
    players[0].askKeyframe(track.seconds())  # sent at once, the interval is over
    players[1].keyframeAllowedAt = float("-inf")
    players[1].askKeyframe(track.seconds())  # held
    assert track.requests == 6
    track.lastKeyframe = track.seconds() + 0.1  # the keyframe comes
    track.clock.advance(0.5)
    assert track.requests == 6 and track.keyframeRequestsServed == 1


def test_heldKeyframeRequestServesOnlyAsksBeforeTheKeyframe():
    """
    A request that joins a held one after a keyframe came (an RTMP feed
    attaching just then) is still sent when the interval ends: that keyframe
    started before it asked.
    """
    track = _Track()
    track.requestKeyframe()  # sent
    track.clock.advance(0.1)
    track.requestKeyframe()  # held until 0.5 s
    track.clock.advance(0.1)
    track.lastKeyframe = track.seconds()  # the answer to the first ask
    track.clock.advance(0.1)
    track.requestKeyframe()  # joins the held one, after the keyframe
    track.clock.advance(0.3)
    assert track.requests == 2 and track.keyframeRequestsServed == 0


def test_playerThatKeepsAskingIsLimited():
    """
    A player asking for keyframes every 100 ms for 30 s reaches the
    publisher a few times (its interval doubling up to 4 times), not 300;
    a healthy player's single request goes through at once.
    """
    track, _, narrow = _player()
    for _ in range(300):
        narrow.keyframeRequested()
        track.clock.advance(0.1)
    # At 0 (joining), 2, 6, 14, 22, 30 s.
    assert track.requests == 5 and narrow.keyframeRequestsLimited == 300 - 4
    healthy = Subscription(track, _Wire(), ssrc=2, payloadType=96)
    healthy.attach()
    track.clock.advance(0.5)
    assert track.requests == 6
    track.clock.advance(10)
    healthy.keyframeRequested()
    assert track.requests == 7
    # A narrow player that calms down is back to the normal interval.
    track.clock.advance(20)
    narrow.keyframeRequested()
    assert narrow.keyframeAllowedAt == track.seconds() + 2.0


def test_pliHeldWhileRepairing():
    """
    A PLI right after we resent what the player NACKed waits one RTT: if a
    keyframe came meanwhile nothing is asked; otherwise it is asked then.
    """
    track, wire, subscription = _player()
    for i in range(20):
        track.fanout(0, 0, i, i * 3000, bytes(SIZE), i == 0)
    track.clock.advance(5)
    requests = track.requests
    for keyframeComes in (True, False):
        subscription.nackReceived([_seqs(wire)[-3]])
        subscription.keyframeRequested()
        assert track.requests == requests
        if keyframeComes:
            track.lastKeyframe = track.seconds() + 0.05
        track.clock.advance(RoundTrip.DEFAULT)
        assert track.requests == requests + (not keyframeComes)
        track.clock.advance(5)


def test_reorderedPacketsWaitBeforeFirstNack():
    """
    Packets that come late by themselves set how long a missing packet
    waits before its first NACK: on a link that reorders by 60 ms, packets
    up to 60 ms late are not asked for; RTX tells a late original (on the
    media SSRC) from the retransmission.
    """
    g = _Generator()
    g.receive(100)
    n = g.generator
    n.lost(10, 2)  # 9 missing
    g.clock.advance(0.005)
    n.received(9)  # by itself, before any NACK: 5 ms late
    assert n.reordered == 1 and n.reorderWait == pytest.approx(0.005)
    n.lost(20, 2)  # 19 missing, at 5 ms
    g.clock.advance(0.015)
    assert g.nacks == [[19]]
    g.clock.advance(0.045)
    n.received(19, retransmission=False)  # the original, 60 ms late: not our answer
    assert n.reorderWait == pytest.approx(0.06) and n.rtt.samples == 0
    n.lost(30, 2)  # 29 missing, at 65 ms
    g.clock.advance(0.055)
    assert g.nacks == [[19]]  # 55 ms: it may still come
    g.clock.advance(0.02)
    assert g.nacks == [[19], [29]]
    g.clock.advance(0.05)
    n.received(29, retransmission=True)  # the answer: a round-trip sample
    assert n.rtt.samples == 1 and n.reordered == 2
    # Packets only a little late do not lower it; time does (the samples of
    # the last REORDER_WINDOW count), even when nothing comes late.
    n.lost(40, 2)
    g.clock.advance(0.005)
    n.received(39)
    assert n.reorderWait == pytest.approx(0.06, rel=0.05)
    g.clock.advance(n.REORDER_WINDOW + 0.1)
    n.lost(50, 2)
    assert n.reorderWait == 0


def test_reorderWaitIsAQuantileOfTheLatePackets():
    """
    Many late packets: the wait is what 95 % of them came within, not the
    latest (one packet 80 ms late among a hundred 10 ms late does not make
    every repair of the way in wait 80 ms).
    """
    g = _Generator()
    g.receive(1000)
    n = g.generator
    for i in range(100):
        seq = 10 + 2 * i
        n.lost(seq + 1, 2)  # seq missing
        g.clock.advance(0.08 if i == 50 else 0.01)
        n.received(seq)
    assert n.reordered == 100 and n.reorderWait == pytest.approx(0.01)


def test_firstNackWhenTheWaitIsOver():
    """
    The first NACK of a missing packet goes when the reordering wait is
    over, not on the next 20 ms tick after it (a repair of the way in
    delays every player); gaps a burst opens at once share one NACK.
    """
    g = _Generator()
    g.receive(100)
    n = g.generator
    n.lateSamples.append((g.clock.seconds(), 0.025))
    n.reorderWait = 0.025
    n.lost(10, 2)  # 9 missing
    n.lost(12, 2)  # and 11, in the same burst
    g.clock.advance(0.025 - n.BATCH - 0.001)  # (up to BATCH early: one NACK, not two)
    assert g.nacks == []
    g.clock.advance(0.002)
    assert g.nacks == [[9, 11]]
    # No wait (no reordering seen): still not sooner than SOONEST.
    n.reorderWait = 0.0
    n.lost(20, 2)
    g.clock.advance(n.SOONEST - n.BATCH - 0.001)
    assert g.nacks == [[9, 11]]
    g.clock.advance(0.002)
    assert g.nacks == [[9, 11], [19]]


def test_lateOriginalWithoutRtx():
    """
    Plain retransmissions: a packet that comes sooner than half a round
    trip after its NACK cannot be the answer; it was late. The wait is bounded.
    """
    g = _Generator()
    g.receive(100)
    n = g.generator
    n.lost(10, 2)
    g.clock.advance(NackGenerator.INTERVAL)
    assert g.nacks == [[9]]
    g.clock.advance(0.01)
    n.received(9)
    assert n.reordered == 1 and n.rtt.samples == 0
    n.lost(20, 2)
    g.clock.advance(0.5)  # NACKed, then comes half a second late: the wait is bounded
    n.received(19, retransmission=False)
    assert n.reorderWait == NackGenerator.MAX_REORDER_WAIT


def test_nackSentTwiceToRtxPublisher():
    """
    With C{copies} (C{media_nack_twice}, for a publisher that resends on
    RTX), each NACK goes again COPY_AFTER later with what is still missing,
    and the copy is charged to the budget like the first.
    """
    g = _Generator(share=0.2)
    g.receive(100)
    n = g.generator
    n.copies = True
    n.lost(105, 4)  # 102..104 missing
    g.clock.advance(n.INTERVAL)
    assert g.nacks == [[102, 103, 104]]
    credit = n.budget.credit
    n.received(103, retransmission=True)  # answered before the copy
    g.clock.advance(n.COPY_AFTER)
    assert g.nacks[1:] == [[102, 104]] and n.nacksCopied == 2
    assert n.budget.credit == credit - 2 * SIZE
    # Not past the budget: a copy the bucket cannot pay is not sent.
    n.lost(110, 2)  # 109 missing
    n.budget.credit = SIZE + 0.5
    g.clock.advance(n.INTERVAL)
    assert g.nacks[-1] == [109] and n.budget.credit < SIZE
    g.clock.advance(n.COPY_AFTER)
    assert g.nacks[-1] == [109] and len(g.nacks) == 3 and n.nacksCopied == 2
    # Copies go where C{sendCopy} says (the track traces them apart).
    copies = []
    n.sendCopy = copies.append
    n.lost(115, 2)  # 114 missing
    n.budget.credit = 10 * SIZE
    g.clock.advance(n.INTERVAL)
    g.clock.advance(n.COPY_AFTER)
    assert g.nacks[-1] == [114] and copies == [[114]]
    # Stopped: no copy pending.
    n.lost(120, 2)
    g.clock.advance(n.INTERVAL)
    n.stop()
    assert g.clock.getDelayedCalls() == []


def test_nackSentOnceWithoutCopies():
    """
    Without C{copies} (a publisher without RTX, or C{media_nack_twice}
    false) a NACK goes once; the setting is on by default.
    """
    g = _Generator()
    g.receive(100)
    g.generator.lost(105, 2)
    g.clock.advance(NackGenerator.INTERVAL + NackGenerator.COPY_AFTER)
    assert g.nacks == [[104]] and g.generator.nacksCopied == 0
    assert FeedbackPolicy.fromSettings(Settings({})).nackTwice
    assert not FeedbackPolicy.fromSettings(Settings({"media_nack_twice": "false"})).nackTwice


def test_unansweredNacksRefundedWithRtx():
    """
    With C{answered} (the RTX octets received; C{media_retransmit_refund}, on
    by default),
    NACK entries the publisher did not answer within REFUND_AFTER are paid
    back to the budget: it is charged for what the uplink carried.
    """
    g = _Generator(share=0.2)
    g.receive(100)  # 100 000 octets: credit START (4 096) + 20 000, capped at the burst
    n = g.generator
    rtx = [0]
    n.answered = lambda: rtx[0]
    n.lost(110, 11)  # 100..109 missing
    g.clock.advance(n.INTERVAL)
    assert g.nacks == [list(range(100, 110))]
    assert n.budget.credit == RetransmitBudget.START + 0.2 * 100 * SIZE - 10 * SIZE
    rtx[0] = 4 * SIZE  # four answers came, six did not
    for seq in range(100, 104):
        n.received(seq, retransmission=True)
    g.clock.advance(n.REFUND_AFTER)  # (the other six asked again meanwhile)
    assert n.refunded == 6 * SIZE
    # Without it nothing is paid back.
    g2 = _Generator(share=0.2)
    g2.receive(100)
    g2.generator.lost(110, 11)
    g2.clock.advance(1.5)
    assert g2.generator.refunded == 0
    assert FeedbackPolicy.fromSettings(Settings({})).refund
    assert not FeedbackPolicy.fromSettings(Settings({"media_retransmit_refund": "false"})).refund


def test_aLatePacketLeavesTheNewestAsItWas():
    """
    A packet late on the way in is sent, but the newest sent stays the
    newest: a restart numbers on from it, and the distances to it (the
    history's, StallWatch's, far behind) are measured from it.
    """
    track, wire, subscription = _player(policy=replace(PLAIN, repeatRepairs=False))
    for i in [*range(0, 10), *range(11, 40)]:
        track.fanout(0, 0, i, i * 3000, bytes(SIZE), i == 0)
    newest, newestTs = subscription.lastSeq, subscription.lastTs
    wire.sent.clear()
    track.fanout(0, 0, 10, 10 * 3000, bytes(SIZE), False)
    assert len(wire.sent) == 1
    assert (subscription.lastSeq, subscription.lastTs) == (newest, newestTs)
    track.fanout(0, 0, 40, 40 * 3000, bytes(SIZE), False)
    assert subscription.lastSeq == (newest + 1) & 0xFFFF


def test_packetsAfterASilenceAreMarked():
    """IncomingTrack.lastSilence: packets read after SILENCE without any (a stall, a pause)."""
    clock, wire = Clock(), _Wire()
    wire.rtcpSsrc = 99
    track = IncomingTrack(wire, "video", "VP8", 90000, 96, 5, clock=clock)
    for seq in range(1, 20):
        track.rtpReceived(_packet(seq, seq == 1))
        clock.advance(0.2 if seq == 10 else 0.02)  # 0.2 s: a pause of a few frames
    assert track.lastSilence == float("-inf")
    clock.advance(IncomingTrack.SILENCE)
    track.rtpReceived(_packet(20))
    assert track.lastSilence == clock.seconds()
