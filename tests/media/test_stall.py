"""
A player that cannot decode gets a keyframe (wcs/media/stall.py), through a
real L{Subscription} on an injected clock.
"""

import random
from dataclasses import replace

from twisted.internet.task import Clock

from tests.media.test_feedback import SIZE, _packet, _player, _seqs
from tests.media.test_rtp import PLAIN, _Wire
from wcs.media.feedback import FeedbackPolicy, NackGenerator, RetransmitBudget
from wcs.media.track import IncomingTrack, Subscription
from wcs.media.stall import StallWatch
from wcs.media.subscription import RESTART_SKIP

WAIT = 0.8
POLICY = replace(PLAIN, playerStall=WAIT)


def _stream(track, start: int, count: int, keyframeAt=0) -> None:
    for i in range(start, start + count):
        track.fanout(0, 0, i, i * 3000, bytes(SIZE), i == keyframeAt)


def _watched(packets=100):
    track, wire, subscription = _player(policy=POLICY)
    _stream(track, 0, packets)
    track.clock.advance(5)  # past the first keyframe request's interval
    seqs = _seqs(wire)
    wire.sent.clear()
    return track, wire, subscription, seqs


def test_filledHoleForgotten():
    """A hole left out of a later NACK while it would be listed was filled."""
    track, wire, subscription, seqs = _watched()
    subscription.nackReceived([seqs[50]])
    assert _seqs(wire) == [seqs[50]] and seqs[50] in subscription.stall.holes
    track.clock.advance(0.05)
    subscription.nackReceived([seqs[90]])  # a new gap: seqs[50] is not in the list
    assert list(subscription.stall.holes) == [seqs[90]]
    track.clock.advance(0.05)
    subscription.nackReceived([seqs[95]])
    track.clock.pump([0.1] * 110)  # past MAX_AGE: a hole is watched that long at most
    # Only the last hole, which no NACK told about, probed; no keyframe.
    assert _seqs(wire) == [seqs[50], seqs[90], seqs[95], seqs[95]]
    assert subscription.stall.stalls == 0 and subscription.stall.probes == 1
    assert track.clock.getDelayedCalls() == []


def test_tailProbe():
    """
    A resent hole no NACK mentions again is resent once more after two
    round trips and half the wait: the copy may have been lost, and the
    player will not ask before its next gap.
    """
    track, wire, subscription, seqs = _watched()
    subscription.nackReceived([seqs[80]])
    track.clock.pump([0.1] * 3)
    assert _seqs(wire) == [seqs[80]]
    track.clock.pump([0.1] * 2)  # 0.5 s: past WAIT / 2
    assert _seqs(wire) == [seqs[80]] * 2 and subscription.stall.probes == 1
    track.clock.pump([0.1] * 50)
    assert _seqs(wire) == [seqs[80]] * 2 and subscription.stall.stalls == 0


def test_noProbeFarBehind():
    """
    A hole more than MAX_BEHIND behind our newest is not probed: aiortc
    drops its whole buffer for a packet 100 behind the oldest it holds.
    """
    track, wire, subscription, seqs = _watched(200)
    subscription.nackReceived([seqs[199 - StallWatch.MAX_BEHIND - 1]])
    wire.sent.clear()
    track.clock.pump([0.1] * 10)
    assert wire.sent == [] and subscription.stall.probes == 0


def test_holeListedAfterTwoCopiesStalls():
    """
    Both copies lost: the player lists the hole again at its next gap,
    later than the wait. It drops to the next keyframe, asked for on its
    behalf; its numbering skips ahead; the skipped numbers it then NACKs
    are no holes.
    """
    track, wire, subscription, seqs = _watched()
    requests = track.requests
    subscription.nackReceived([seqs[80]])
    track.clock.pump([0.1] * 6)  # probed at 0.5 s
    assert subscription.stall.probes == 1
    _stream(track, 100, 20)
    track.clock.pump([0.1] * 3)
    subscription.nackReceived([seqs[80], (seqs[99] + 10) & 0xFFFF])
    assert subscription.stall.stalls == 1 and not subscription.started
    assert track.requests == requests + 1 and subscription.stall.holes == {}
    wire.sent.clear()
    _stream(track, 120, 5, keyframeAt=120)
    restarted = _seqs(wire)[0]
    assert (restarted - seqs[99] - 20) & 0xFFFF == RESTART_SKIP + 1
    # aiortc lists the numbers it never got, up to 128 behind its newest.
    subscription.nackReceived([(restarted - i) & 0xFFFF for i in range(128, 0, -1)])
    track.clock.advance(5)
    assert subscription.stall.stalls == 1 and subscription.stall.holes == {}


def test_resendLostOnceIsResentNotStalled():
    """One lost copy is the resend path's: resent again, no keyframe."""
    track, wire, subscription, seqs = _watched()
    requests = track.requests
    subscription.nackReceived([seqs[80]])
    track.clock.advance(0.3)
    subscription.nackReceived([seqs[80], seqs[90]])
    track.clock.advance(0.6)
    subscription.nackReceived([seqs[95]])
    track.clock.advance(5)
    assert subscription.stall.stalls == 0 and track.requests == requests
    # Resent, resent when listed again, probed once before the last NACK told.
    assert _seqs(wire).count(seqs[80]) == 3


def test_neverForwardedHoleStalls():
    """
    A packet lost on the publisher's leg and given up there leaves a hole
    we cannot fill: after the wait the player drops to a keyframe.
    """
    track, wire, subscription = _player(policy=POLICY)
    _stream(track, 0, 50)
    _stream(track, 51, 50)  # 50 never came
    track.clock.advance(5)
    requests = track.requests
    missing = (_seqs(wire)[49] + 1) & 0xFFFF
    subscription.nackReceived([missing])
    track.clock.pump([0.1] * 7)
    assert subscription.stall.stalls == 0
    track.clock.pump([0.1] * 2)
    assert subscription.stall.stalls == 1 and track.requests == requests + 1


def test_holeStillRepairedUpstreamWaits():
    """
    A hole that the publisher leg still NACKs is not the player's to act on
    until that leg gives up; then the track drops every player to the
    keyframe it asks for (IncomingTrack._wayInGivenUp), before the watch.
    """
    clock, wire = Clock(), _Wire()
    wire.rtcpSsrc = 99
    track = IncomingTrack(wire, "video", "VP8", 90000, 96, 5, clock=clock, policy=POLICY)
    player = Subscription(track, _Wire(), ssrc=0x1234, payloadType=100, policy=POLICY)
    player.attach()
    clock.advance(3)  # past its first keyframe request's interval
    for seq in [*range(1, 51), 52]:  # 51 lost on the way in
        track.rtpReceived(_packet(seq, seq == 1))
    missing = (_seqs(player.transport)[49] + 1) & 0xFFFF
    player.nackReceived([missing])
    for _ in range(NackGenerator.MAX_TRIES * 2):
        stalls = player.stall.stalls  # before this step
        clock.advance(0.1)
        if not track.nacks.missing:
            break
    assert stalls == 0 and clock.seconds() > 3 + WAIT and track.nacks.nacksGivenUp == 1
    assert not player.started and player.skipped == RESTART_SKIP
    clock.pump([0.1] * 2)
    assert player.stall.stalls == 0  # already dropped: nothing left to conclude


def test_overBudgetHoleForgottenStalls():
    """
    A hole the budget would not resend is asked a keyframe for at once
    (within the player's limit) and is resent when the budget allows; one
    the player stops listing (it gave up on it, aiortc after 128 packets)
    before we ever sent it never will be filled: when the player's limit
    lets it ask again, it drops to a keyframe. Before, it keeps what it
    gets: dropped to a keyframe nobody asked for, it would see nothing for
    seconds.
    """
    track, wire, subscription, seqs = _watched(400)
    budget = subscription.budget
    budget.credit, budget.share = 0, 0
    hole = seqs[200]
    subscription.nackReceived([hole])
    assert wire.sent == [] and subscription.keyframesForRefused == 1
    requests = track.requests
    track.clock.pump([0.1] * 10)
    assert subscription.stall.stalls == 0 and wire.sent == []  # still over the budget
    subscription.nackReceived([hole, seqs[399]])
    assert subscription.stall.stalls == 0
    subscription.nackReceived([seqs[399]])  # left out, 199 behind: forgotten
    assert subscription.stall.stalls == 0 and subscription.started  # its limit: 2 s
    track.clock.pump([0.1] * 12)
    subscription.nackReceived([seqs[399]])
    assert subscription.stall.stalls == 1 and not subscription.started
    assert track.requests == requests + 1
    assert subscription.stall.causes == {"forgotten unsent": 1}


def test_probeLeavesCreditForWhatIsAsked():
    """A probe is sent only from spare credit: half the bucket stays for NACKs."""
    track, wire, subscription, seqs = _watched()
    subscription.nackReceived([seqs[80]])
    subscription.budget.share = 0
    subscription.budget.credit = RetransmitBudget.BURST / 2 + 2 * SIZE  # a probe and an answer
    track.clock.pump([0.1] * 6)
    assert _seqs(wire) == [seqs[80]] * 2
    subscription.nackReceived([seqs[81]])
    track.clock.pump([0.1] * 6)
    assert _seqs(wire) == [seqs[80]] * 2 + [seqs[81]]  # answered, not probed
    assert subscription.stall.probes == 1


def test_deniedKeyframeRequestAskedAgain():
    """
    A player's keyframe request held back by its own limit is asked again
    when the limit allows, unless a keyframe started meanwhile.
    """
    track, wire, subscription, seqs = _watched()
    subscription.keyframeRequested()  # passed on
    requests = track.requests
    track.clock.advance(0.5)
    subscription.keyframeRequested()  # within its interval: held back
    assert track.requests == requests
    track.clock.pump([0.1] * 20)
    assert track.requests == requests + 1
    track.clock.advance(5)
    subscription.keyframeRequested()
    track.clock.advance(0.5)
    subscription.keyframeRequested()  # held back, then a keyframe comes
    track.lastKeyframe = track.seconds() + 0.1
    track.clock.pump([0.1] * 20)
    assert track.requests == requests + 2


def test_healthyLossyPlayerNeverStalls():
    """
    3% loss for 60 s at 100 packets a second, every repair landing and the
    player listing what is missing at each new gap (aiortc): no stall, no
    keyframe request; what was probed is a small share of what was sent.
    """
    rng = random.Random(7)
    track, wire, subscription = _player(policy=POLICY)
    track.clock.advance(5)
    requests = track.requests
    missing: dict[int, float] = {}  # seq -> when it lands
    for i in range(6000):
        track.fanout(0, 0, i, i * 3000, bytes(SIZE), i == 0)
        seq = _seqs(wire)[-1]
        wire.sent.clear()
        now = track.seconds()
        for s, at in list(missing.items()):
            if at <= now:
                del missing[s]
        if i and rng.random() < 0.03:
            missing[seq] = now + 0.1  # its resend lands a round trip later
            subscription.nackReceived(sorted(missing))
        track.clock.advance(0.01)
    assert subscription.stall.stalls == 0 and track.requests == requests
    assert subscription.retransmitted > 100
    assert subscription.stall.probes < 0.5 * subscription.retransmitted
    assert len(subscription.stall.holes) <= StallWatch.MAX_HOLES


def test_stoppedWithTheSubscription():
    track, wire, subscription, seqs = _watched()
    subscription.nackReceived([seqs[80]])
    subscription.detach()
    assert track.clock.getDelayedCalls() == [] and subscription.stall.holes == {}
