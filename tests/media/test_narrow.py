"""
NarrowWatch (wcs/media/narrow.py) on an injected clock: when it moves a
player, and the bitrate it asks the lower rendition for: the share of the
stream, or less when the player's link delivered less.
"""

import pytest
from twisted.internet.task import Clock

from wcs.media.narrow import NarrowWatch, RenditionRefused


class _Incoming:
    ended = False
    lastSilence = float("-inf")

    def __init__(self):
        self.octets = 0
        self.upstreamLost = 0
        self.keyframesAsked = []  # force, per ask

    def lost(self):
        return self.upstreamLost

    def subscribe(self, subscription):
        self.joined = subscription

    def unsubscribe(self, subscription):
        self.left = subscription

    def requestKeyframe(self, force=False):
        self.keyframesAsked.append(force)


class _Rendition:
    def __init__(self, bitrate):
        self.bitrate = bitrate
        self.subscribers, self.keyframesForced = [], 0

    def subscribe(self, subscription):
        self.subscribers.append(subscription)

    def unsubscribe(self, subscription):
        self.subscribers.remove(subscription)

    def requestKeyframe(self, force=False):
        self.keyframesForced += force


class _Subscription:
    """What NarrowWatch reads of a Subscription: its counters."""

    def __init__(self):
        self.track = _Incoming()
        self.packets = self.reportedLost = self.skipped = 0
        self.restarts = []

    def restart(self, skip=False):
        self.restarts.append(skip)


def _run(lossShare: float, checks: int = 4, skipped: int = 0):
    clock, subscription, asked = Clock(), _Subscription(), []

    def lower(bitrate):
        asked.append(bitrate)
        return _Rendition(bitrate)
    watch = NarrowWatch(clock, subscription, lower, loss=0.1, share=0.5)
    incoming = subscription.track
    for _ in range(checks):
        # 2 s of a 1 Mbit/s stream in 1000-byte packets.
        subscription.packets += 250
        incoming.octets += 250_000
        subscription.reportedLost += int(250 * lossShare)
        subscription.reportedLost += skipped
        subscription.skipped += skipped
        clock.advance(NarrowWatch.INTERVAL)
    return watch, asked


def test_healthyPlayerStays():
    watch, asked = _run(0.02)
    assert not watch.moved and asked == []


@pytest.mark.parametrize("lossShare, kbps", [
    (0.15, 500),  # the link delivered 85%: the share (50%) fits
    (0.4, 450),  # it delivered 60%: 0.75 of that, 45%
    (0.6, 300),
])
def test_renditionFitsWhatTheLinkDelivered(lossShare, kbps):
    watch, asked = _run(lossShare)
    assert watch.moved and len(asked) == 1
    assert abs(asked[0] / 1000 - kbps) < 2
    # Moved: onto the rendition, numbering skipped ahead, its keyframe forced.
    subscription = watch.subscription
    assert subscription.restarts == [True] and subscription.track.bitrate == asked[0]
    assert subscription.track.subscribers == [subscription]
    assert subscription.track.keyframesForced == 1


def test_numbersSkippedAtARestartAreNotLoss():
    # A drop to a keyframe skips 1024 numbers, which the player reports lost.
    watch, asked = _run(0.02, skipped=1024)
    assert not watch.moved and asked == []


def test_noRenditionFreeKeepsThePlayerOnTheStreamAndChecksAgain():
    """
    lower() refuses when no rendition may be made (a limit of the engine):
    the player stays, and is moved at a later check when one is free.
    """
    clock, subscription, free = Clock(), _Subscription(), []

    def lower(bitrate):
        if not free:
            raise RenditionRefused("all player_narrow_renditions are in use")
        return _Rendition(bitrate)
    watch = NarrowWatch(clock, subscription, lower, loss=0.1, share=0.5)
    incoming = subscription.track

    def lossyCheck():
        subscription.packets += 250
        incoming.octets += 250_000
        subscription.reportedLost += 100
        clock.advance(NarrowWatch.INTERVAL)
    for _ in range(4):
        lossyCheck()
    assert not watch.moved and subscription.restarts == [] and subscription.track is incoming
    free.append(True)
    lossyCheck()
    assert watch.moved and subscription.restarts == [True]
    assert isinstance(subscription.track, _Rendition)


class _MovingSubscription(_Subscription):
    """A move skips 1024 numbers at once; the player reports them lost later."""

    def __init__(self):
        super().__init__()
        self.incoming = self.track
        self.unreported = 0

    def restart(self, skip=False):
        super().restart(skip)
        self.skipped += 1024
        self.unreported += 1024


def _interval(clock, subscription, lossShare):
    """2 s of a 1 Mbit/s stream in 1000-byte packets, C{lossShare} of them reported lost."""
    subscription.packets += 250
    subscription.incoming.octets += 250_000
    subscription.reportedLost += int(250 * lossShare) + subscription.unreported
    subscription.unreported = 0
    clock.advance(NarrowWatch.INTERVAL)


def _watched(hold):
    clock, subscription = Clock(), _MovingSubscription()
    watch = NarrowWatch(clock, subscription, _Rendition, loss=0.1, share=0.5, hold=hold)
    return clock, subscription, watch


def _untilMoved(clock, subscription, watch):
    for _ in range(3):
        _interval(clock, subscription, 0.4)
        if watch.moved:
            break
    assert watch.moved and isinstance(subscription.track, _Rendition)


def test_movedPlayerGoesBackAfterItsHoldClean():
    """
    A burst of loss moved it; clean reports on the rendition for the hold
    take it back to the publisher's stream, whose keyframe is asked for
    within the stream's interval (not forced: one more for everyone).
    """
    clock, subscription, watch = _watched(hold=10)
    incoming = subscription.incoming
    _untilMoved(clock, subscription, watch)
    # The first window on the rendition has the move's lossy interval; 10 s
    # clean after it.
    for _ in range(5):
        _interval(clock, subscription, 0.0)
    assert watch.moved and isinstance(subscription.track, _Rendition)
    _interval(clock, subscription, 0.0)
    assert not watch.moved and subscription.track is incoming
    assert subscription.restarts == [True, True] and incoming.keyframesAsked == [False]
    # Watched again from there: healthy, it stays.
    for _ in range(5):
        _interval(clock, subscription, 0.02)
    assert not watch.moved and subscription.track is incoming


def _backAfter(clock, subscription, watch, intervals, lossShare=0.0):
    """Clean intervals: still moved after all but the last, back on the stream after it."""
    for _ in range(intervals - 1):
        _interval(clock, subscription, lossShare)
    assert watch.moved
    _interval(clock, subscription, lossShare)
    assert not watch.moved


def test_lossOnTheRenditionStartsTheHoldAgain():
    clock, subscription, watch = _watched(hold=10)
    _untilMoved(clock, subscription, watch)
    for share in (0, 0, 0, 0.4):  # 6 s clean, then a window with 20% lost
        _interval(clock, subscription, share)
    _interval(clock, subscription, 0.0)  # that window still has it
    _backAfter(clock, subscription, watch, 5)


def test_randomLossUnderTheThresholdIsClean():
    clock, subscription, watch = _watched(hold=10)
    _untilMoved(clock, subscription, watch)
    _backAfter(clock, subscription, watch, 6, 0.08)


def test_holdDoublesAtEachMove():
    clock, subscription, watch = _watched(hold=10)
    _untilMoved(clock, subscription, watch)
    _backAfter(clock, subscription, watch, 6)
    _untilMoved(clock, subscription, watch)  # narrow after all: moved again
    assert watch.holdFor() == 20
    _backAfter(clock, subscription, watch, 11)


def test_noHoldStaysMoved():
    clock, subscription, watch = _watched(hold=0)
    _untilMoved(clock, subscription, watch)
    assert not clock.getDelayedCalls()  # no longer checked


def test_lossAfterABurstOfTheStreamIsNotNarrow():
    """
    The publisher's packets came in a burst after a silence (our stall, its
    pause): the loss of the next windows is every link's, not this one's.
    """
    clock, subscription, watch = _watched(hold=10)
    subscription.incoming.lastSilence = clock.seconds() + NarrowWatch.INTERVAL
    for _ in range(3):
        _interval(clock, subscription, 0.4)
    assert not watch.moved
    _untilMoved(clock, subscription, watch)  # still lossy, long after it: narrow


def test_aBurstInOneIntervalIsNoNarrowLink():
    """
    A window lossy over the whole (14 % of it) but clean in one of its two
    intervals: a burst (a healthy `mobile` player was moved at 10.3 %), not
    a narrow link, which loses in each.
    """
    clock, subscription, watch = _watched(hold=60)
    _interval(clock, subscription, 0.02)
    _interval(clock, subscription, 0.26)  # the window: 28 % of 250 + 2 % of 250
    assert not watch.moved
    _interval(clock, subscription, 0.02)  # the burst in the window's first interval now
    assert not watch.moved


def test_twoLossyIntervalsInARowAreNoNarrowLinkThreeAre():
    """
    A healthy `mobile` player (7 % lost at random) reads over 10 % in about
    3 % of its intervals, and two in a row moved one about once per half
    hour (docs/networks.md): moved only when lossy in three in a row.
    """
    clock, subscription, watch = _watched(hold=60)
    for share in (0.02, 0.12, 0.12, 0.02, 0.12, 0.12):
        _interval(clock, subscription, share)
        assert not watch.moved
    _interval(clock, subscription, 0.12)
    assert watch.moved and isinstance(subscription.track, _Rendition)
