"""A player's figures count new pictures: a picture decoded again is no frame."""

from tests.netlab.chromium import _Frames
from tests.netlab.media import Decoded, MeasuringPlayer, newPictures


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
