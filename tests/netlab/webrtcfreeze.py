"""
WebRTC's own freeze definition (libwebrtc video/video_quality_observer2.cc,
what Chromium's getStats() reports as C{freezeCount}), applied to the frame
times the lab measures, so that the two can be compared: a frame whose
interval from the previous one is at least max(3 x the mean, mean + 150 ms)
of the last 30 intervals, once 5 intervals are known. At 30 fps that is
any stall of about 183 ms or more: much shorter than the lab's own freeze
(no new frame for 500 ms, tests/netlab/media.py).
"""

from __future__ import annotations

from collections import deque

MIN_SAMPLES = 5
WINDOW = 30
RATIO = 3
MIN_INCREASE_MS = 150.0


def freezes(timesMs: list[float]) -> list[float]:
    """The intervals (ms) of C{timesMs} (ascending frame times) that webrtc counts as freezes."""
    intervals: deque[float] = deque(maxlen=WINDOW)
    found = []
    for before, at in zip(timesMs, timesMs[1:]):
        interval = at - before
        if len(intervals) >= MIN_SAMPLES:
            mean = sum(intervals) / len(intervals)
            if interval >= max(RATIO * mean, mean + MIN_INCREASE_MS):
                found.append(interval)
        intervals.append(interval)
    return found
