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

    def __init__(self):
        self.octets = 0
        self.upstreamLost = 0

    def lost(self):
        return self.upstreamLost

    def unsubscribe(self, subscription):
        self.left = subscription


class _Rendition:
    def __init__(self, bitrate):
        self.bitrate = bitrate
        self.subscribers, self.keyframesForced = [], 0

    def subscribe(self, subscription):
        self.subscribers.append(subscription)

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
