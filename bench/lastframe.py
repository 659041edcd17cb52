"""
What a stream's end costs the reactor for the frames its jitter buffer
still holds (wcs/media/source.py, heldFrames; docs/performance.md,
"lastframe"): the time of one look at a buffer of each shape, the usual one
(the last frame, 5 packets) and a hostile publisher's worst ones (512
packets of one frame without a marker bit; 511 one-packet frames held
behind a hole filled last). Prints figures; asserts nothing.

    PYTHONPATH=. .venv/bin/python bench/lastframe.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import time

from wcs.media.internals import JitterBuffer, jitterPacket
from wcs.media.source import heldFrames

CAPACITY = 512
PAYLOAD = bytes(1100)


def lastFrame() -> JitterBuffer:
    jitter = JitterBuffer(capacity=CAPACITY, is_video=True)
    jitter.add(jitterPacket(1, 0, PAYLOAD, True))
    for seq in range(2, 7):
        jitter.add(jitterPacket(seq, 6000, PAYLOAD, seq == 6))
    return jitter


def oneFrameNoMarker() -> JitterBuffer:
    jitter = JitterBuffer(capacity=CAPACITY, is_video=True)
    for seq in range(1, 1 + CAPACITY):
        jitter.add(jitterPacket(seq, 6000, PAYLOAD))
    return jitter


def framesBehindAHole() -> JitterBuffer:
    jitter = JitterBuffer(capacity=CAPACITY, is_video=True)
    jitter.add(jitterPacket(1, 0, PAYLOAD, True))
    for seq in range(3, 1 + CAPACITY):
        jitter.add(jitterPacket(seq, seq * 6000, PAYLOAD, True))
    jitter.add(jitterPacket(2, 2 * 6000, PAYLOAD, True))  # the hole, filled last
    return jitter


SHAPES = {"last frame, 5 packets": lastFrame,
          "hostile: 512 packets, no marker": oneFrameNoMarker,
          "hostile: 511 frames behind a filled hole": framesBehindAHole}


def measure(make, repeat: int = 200) -> tuple[float, tuple[int, int, int]]:
    """Microseconds per heldFrames call (the median of C{repeat}) and what it found."""
    times, found = [], None
    for _ in range(repeat):
        jitter = make()
        start = time.perf_counter()
        frames, dropped, packets = heldFrames(jitter)
        times.append(time.perf_counter() - start)
        found = (len(frames), dropped, packets)
    times.sort()
    return times[len(times) // 2] * 1e6, found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for name, make in SHAPES.items():
        figures = []
        for _ in range(args.rounds):
            figures.append(measure(make))
        us = sorted(f[0] for f in figures)
        frames, dropped, packets = figures[-1][1]
        print(f"{name}: {us[0]:.0f}-{us[-1]:.0f} us per look (median of 200, "
              f"{args.rounds} rounds); {frames} frames given, {dropped} dropped "
              f"({packets} packets); load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
