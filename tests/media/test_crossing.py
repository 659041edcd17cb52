"""
An eager player's NACKs that crossed our copy (wcs/media/crossing.py),
alone and in a subscription (wcs/media/subscription.py).
"""

from dataclasses import replace

from tests.media.test_feedback import PLAIN, SIZE, _player, _seqs
from wcs.media.crossing import CopiesOut, StartHold
from wcs.media.stall import StallWatch
from wcs.media.subscription import RESTART_SKIP


def test_aListNoNewerThanTheCopyCrossedIt():
    copies = CopiesOut()
    copies.sent(100, 0.0, newest=180)
    assert copies.needless(100)  # no NACK since
    copies.listed([100, 170], 0.2)  # the player had nothing newer than 170
    assert copies.needless(100)
    copies.listed([100, 185], 0.25)  # 5 after it: may have come before the copy
    assert copies.needless(100)
    copies.listed([100, 180 + CopiesOut.OVERTAKEN + 1], 0.3)  # the copy had its chance
    assert not copies.needless(100)


def test_leftOutOfAListItCame():
    copies = CopiesOut()
    copies.sent(100, 0.0, newest=180)
    copies.listed([99, 170], 0.1)  # 100 left out, a newer one listed: it came
    copies.listed([100, 190], 0.3)  # a late NACK that still had it
    assert copies.needless(100)
    copies.sent(100, 0.4, newest=200)  # a new copy starts over
    assert not copies.lost(100)
    copies.listed([100, 200 + CopiesOut.OVERTAKEN + 1], 0.6)
    assert not copies.needless(100) and copies.lost(100)  # past the copy's newest


def test_copiesAreKeptASecondAcrossTheWrap():
    copies = CopiesOut()
    copies.sent(65530, 0.0, newest=65535)
    copies.listed([65530, CopiesOut.OVERTAKEN], 0.5)  # one past the margin, across the wrap
    assert not copies.needless(65530)
    copies.sent(7, 0.6, newest=20)
    copies.listed([40], 0.0 + CopiesOut.KEPT + 0.1)
    assert list(copies.copies) == [7]
    assert not copies.needless(65530)  # forgotten: nothing against a copy
    assert not copies.lost(65530)  # nor for one


def _eagerPlayerFar():
    # One copy per answer: the sent packets are NACKed a retry after they went.
    track, wire, subscription = _player(
        policy=replace(PLAIN, repeatRepairs=False, repeatOverdue=False))
    subscription.hold.reasked = subscription.hold.EAGER_AFTER  # read as eager
    subscription.hold.eager = True
    count = StallWatch.MAX_BEHIND + 40
    for i in range(count):
        track.fanout(0, 0, i, i * 3000, bytes(SIZE), i == 0)
    sent = _seqs(wire)
    wire.sent.clear()
    return track, wire, subscription, sent, count


def test_aFarRepeatWaitsForANackThatLeftAfterTheCopyCame():
    """
    Far behind the newest, an eager player's repeat NACK that may have
    left before our copy came is not answered: the copy it has would land
    100 behind aiortc's oldest packet and drop its buffer. One whose list
    shows a packet sent after the copy is.
    """
    track, wire, subscription, sent, count = _eagerPlayerFar()
    far = sent[10]
    subscription.nackReceived([far, sent[-5]])
    assert _seqs(wire) == [far, sent[-5]]
    wire.sent.clear()
    track.clock.advance(1.5 * subscription.rtt.retry)
    subscription.nackReceived([far, sent[-3]])  # crossed the copy
    assert _seqs(wire) == [sent[-3]] and subscription.farRepeats == 1
    later = CopiesOut.OVERTAKEN + 2
    for i in range(count, count + later):
        track.fanout(0, 0, i, i * 3000, bytes(SIZE), False)
    wire.sent.clear()
    track.clock.advance(1.5 * subscription.rtt.retry)
    subscription.nackReceived([far, (sent[-1] + later - 1) & 0xFFFF])  # well after the copy: lost
    assert _seqs(wire)[0] == far


def test_aFarCopyItsListsShowLostGoesAgainWithoutTheRetry():
    """
    Far behind, a copy the player's lists show lost (they list a packet
    sent well after it) is sent again at once, not a retry later: aiortc
    stops listing a hole 128 behind its newest and then holds every frame
    behind it until its buffer overflows (docs/networks.md, "The hour again").
    """
    track, wire, subscription, sent, count = _eagerPlayerFar()
    far = sent[10]
    subscription.nackReceived([far])
    assert _seqs(wire) == [far]
    wire.sent.clear()
    track.clock.advance(0.02)  # well within the retry
    assert 0.05 < subscription.rtt.retry
    subscription.nackReceived([far, sent[-2]])  # nothing after the copy: may have crossed it
    assert _seqs(wire) == [sent[-2]]
    later = CopiesOut.OVERTAKEN + 2
    for i in range(count, count + later):
        track.fanout(0, 0, i, i * 3000, bytes(SIZE), False)
    wire.sent.clear()
    track.clock.advance(0.02)  # 40 ms after the copy
    last = (sent[-1] + later - 1) & 0xFFFF
    subscription.nackReceived([far, last])  # sent after the copy, and had: the copy is lost
    assert _seqs(wire) == [far, last]
    wire.sent.clear()
    track.clock.advance(0.01)
    subscription.nackReceived([far, last])  # the same evidence again: the new copy's chance
    assert _seqs(wire) == []


def test_aFarCopyItsListsShowLostGoesTwice():
    """
    The copy sent at once for a far hole its lists show open goes twice,
    20 ms apart (media_repeat_repairs): a hole that far has lost three
    copies, and aiortc forgets it soon. A far copy sent on the retry, with
    no such evidence (a browser's), goes once.
    """
    track, wire, subscription, sent, count = _eagerPlayerFar()
    subscription.policy = replace(subscription.policy, repeatRepairs=True)
    far = sent[10]
    subscription.nackReceived([far])
    assert _seqs(wire) == [far]
    later = CopiesOut.OVERTAKEN + 2
    for i in range(count, count + later):
        track.fanout(0, 0, i, i * 3000, bytes(SIZE), False)
    wire.sent.clear()
    track.clock.advance(0.04)
    last = (sent[-1] + later - 1) & 0xFFFF
    subscription.nackReceived([far, last])  # the copy is lost
    track.clock.advance(subscription.REPEAT_AFTER)
    assert _seqs(wire) == [far, last, far] and subscription.repairsRepeated == 1
    wire.sent.clear()
    subscription.hold.eager = False
    other = sent[20]
    subscription.resend([other])
    track.clock.advance(1.5 * subscription.rtt.retry)
    subscription.resend([other])  # no evidence: on the retry, once
    track.clock.advance(subscription.REPEAT_AFTER)
    assert _seqs(wire) == [other, other] and subscription.repairsRepeated == 1


def test_aBrowserIsNotAskedForEvidence():
    track, wire, subscription, sent, count = _eagerPlayerFar()
    subscription.hold.eager = False
    far = sent[10]
    subscription.resend([far])
    track.clock.advance(1.5 * subscription.rtt.retry)
    subscription.resend([far])
    assert _seqs(wire) == [far, far] and subscription.farRepeats == 0


def _jumpAfterACopy(eager: bool):
    """A copy resent, then at once a restart with the skip and a keyframe already coming."""
    track, wire, subscription, sent, count = _eagerPlayerFar()
    subscription.hold.eager = eager
    subscription.resend([sent[-3]])
    assert _seqs(wire) == [sent[-3]]
    wire.sent.clear()
    track.clock.advance(0.002)
    subscription.restart(skip=True)  # the publisher leg gave a packet up
    track.clock.advance(0.002)
    for i in range(count, count + 3):
        track.fanout(0, 0, i, i * 3000, bytes(SIZE), i == count)
    return track, wire, subscription, sent


def test_theKeyframeAJumpStartsOnWaitsForACopyOnItsWay():
    """
    An eager player's keyframe after the numbering's jump waits until a
    copy sent just before the jump has had its time (StartHold.AFTER_COPY),
    then goes with the packets that came meanwhile, in order: had the copy
    come after the keyframe's first packets, aiortc would have dropped them.
    """
    track, wire, subscription, sent = _jumpAfterACopy(eager=True)
    assert _seqs(wire) == [] and subscription.startHold.starts == 1
    track.clock.advance(StartHold.AFTER_COPY - 0.004 - 0.001)
    assert _seqs(wire) == []
    track.clock.advance(0.002)
    jumped = (sent[-1] + 1 + RESTART_SKIP) & 0xFFFF
    assert _seqs(wire) == [jumped, (jumped + 1) & 0xFFFF, (jumped + 2) & 0xFFFF]
    assert subscription.started
    wire.sent.clear()
    later = len(sent) + 3  # the track's next number (_eagerPlayerFar's count + 3)
    track.fanout(0, 0, later, later * 3000, bytes(SIZE), False)  # then as usual
    assert _seqs(wire) == [(jumped + 3) & 0xFFFF]


def test_aKeyframeLongAfterTheLastCopyOrToABrowserIsNotHeld():
    track, wire, subscription, sent = _jumpAfterACopy(eager=False)
    assert len(_seqs(wire)) == 3 and subscription.startHold.starts == 0
    track, wire, subscription, sent, count = _eagerPlayerFar()
    subscription.resend([sent[-3]])
    track.clock.advance(StartHold.AFTER_COPY)
    subscription.restart(skip=True)
    wire.sent.clear()
    track.fanout(0, 0, count, count * 3000, bytes(SIZE), True)
    assert len(_seqs(wire)) == 1 and subscription.startHold.starts == 0


def test_aRestartDropsTheHeldStart():
    track, wire, subscription, sent = _jumpAfterACopy(eager=True)
    subscription.restart(skip=False)  # the publisher's new stream: not these packets
    track.clock.advance(1.0)
    assert _seqs(wire) == []
