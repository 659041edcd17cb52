"""
The pacer of a lower rendition (wcs/media/pacer.py): a keyframe's burst is
spread at the pacing rate, an idle pacer sends at once, and a backlog past
MAX_BACKLOG goes out at once rather than adding delay.
"""

from twisted.internet.task import Clock

from wcs.media.pacer import Pacer

RATE = 62_500  # bytes/s: 500 kbit/s


def _pacer():
    clock, sent = Clock(), []
    pacer = Pacer(clock, RATE, lambda *item: sent.append((clock.seconds(), item)))
    return clock, pacer, sent


def test_burstIsSpreadAtTheRate():
    clock, pacer, sent = _pacer()
    for i in range(20):  # a 25 KB keyframe in 1250-byte packets
        pacer.push(1250, "key", i)
    assert [item for _, item in sent] == [("key", 0)]  # the first goes at once
    clock.pump([0.01] * 50)
    assert [item[1] for _, item in sent] == list(range(20))  # in order, all of them
    times = [t for t, _ in sent]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(abs(g - 0.02) < 0.011 for g in gaps), gaps  # 1250 B at 62.5 KB/s: 20 ms
    assert abs(times[-1] - 19 * 0.02) < 0.011
    assert pacer.flushed == 0 and pacer.queued == 0
    # Idle again: the next packet is not held for time already past.
    clock.advance(1)
    pacer.push(100, "delta", 0)
    assert sent[-1] == (clock.seconds(), ("delta", 0))


def test_backlogPastTheLimitGoesAtOnce():
    clock, pacer, sent = _pacer()
    packets = int(RATE * Pacer.MAX_BACKLOG / 1000) + 2
    for i in range(packets):
        pacer.push(1000, i)
    assert len(sent) == packets and pacer.flushed == 1 and pacer.queued == 0
    assert not clock.getDelayedCalls()


def test_stopDropsWhatWaits():
    clock, pacer, sent = _pacer()
    for i in range(5):
        pacer.push(1250, i)
    pacer.stop()
    clock.advance(1)
    assert len(sent) == 1 and not clock.getDelayedCalls()
