"""A player's figures count new pictures: a picture decoded again is no frame."""

from tests.netlab.chromium import _Frames
from tests.netlab.media import Decoded, MeasuringPlayer, SentCounter, newPictures, slices


def frames(*shown):
    """Decoded frames at the given (time, counter) pairs, 100 ms late each."""
    return [Decoded(at, counter, 100, False) for at, counter in shown]


def test_aPictureDecodedAgainIsARepeatNotAFrame():
    decoded = frames((0.0, 1), (0.1, 2), (0.2, 1), (0.3, 3))
    window, repeats = newPictures(decoded, 0.0, 1.0)
    assert [d.counter for d in window] == [1, 2, 3]
    assert repeats == 1


def test_aPictureShownBeforeTheWindowIsARepeatInIt():
    decoded = frames((0.0, 1), (1.5, 1), (1.6, 2))
    window, repeats = newPictures(decoded, 1.0, 2.0)
    assert [d.counter for d in window] == [2]
    assert repeats == 1


def test_anUnreadableStampCountsAsNew():
    decoded = frames((0.0, None), (0.1, None), (0.2, 1))
    window, repeats = newPictures(decoded, 0.0, 1.0)
    assert len(window) == 3
    assert repeats == 0


def test_aRepeatDoesNotEndAFreeze():
    # New pictures at 0 and 1.0 s, the first one again at 0.5 s: the
    # picture stood still for a second, one freeze, and two frames.
    decoded = frames((0.0, 1), (0.5, 1), (1.0, 2))
    figures = MeasuringPlayer.figures(_Frames(decoded), 0.0, 1.2)
    assert figures["fps"] == round(2 / 1.2, 1)
    assert figures["repeats"] == 1
    assert figures["freezesPerMin"] == 50.0  # one in 1.2 s
    assert figures["longestFreezeS"] == 1.0


def test_theCounterOnItsSecondLapIsNewPictures():
    # The painted counter wraps at 65 536 (36 min at 30 fps): the second
    # lap shows new pictures, not the first lap's again.
    lap = 1 << 16
    decoded = frames(*[(k / 30, k % lap) for k in range(lap + 3)])
    decoded += frames(((lap + 3) / 30, 1))  # a real repeat on the second lap
    window, repeats = newPictures(decoded, lap / 30, (lap + 4) / 30)
    assert [d.counter for d in window] == [0, 1, 2]
    assert repeats == 1


def test_sentMediaIsCountedOnceAcrossTheSequenceNumbersWrap():
    counter = SentCounter.__new__(SentCounter)  # no peer: the counting alone
    counter.reset()
    numbers = [n & 0xFFFF for n in range(3 * (1 << 16))]
    assert all(counter.firstTime(n) for n in numbers)  # three laps, all media
    assert not counter.firstTime(numbers[-5])  # a retransmission of a recent one
    assert len(counter.seen) <= 2 * SentCounter.KEPT  # bounded over an hour


def test_slicesGiveEachPlayersFiguresPerSlice():
    steady = _Frames(frames(*[(i / 30, i) for i in range(30 * 4)]))  # 30 fps for 4 s
    stalled = _Frames(frames(*[(i / 30, i) for i in range(30 * 2)]))  # 2 s, then nothing
    got = slices([steady, stalled], 0.0, 4.0, 2.0)
    assert [s["from"] for s in got] == [0, 2]
    assert [p["fps"] for p in got[0]["perPlayer"]] == [30.0, 30.0]
    assert [p["fps"] for p in got[1]["perPlayer"]] == [30.0, 0.0]
    assert got[1]["perPlayer"][1]["longestFreezeS"] == 2.0
