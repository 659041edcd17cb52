"""Wrapping counters read back as monotonic numbers, for the lab and its trace readers."""

from __future__ import annotations


class Unwrap:
    """
    16-bit numbers (RTP sequence numbers, the painted frame counter) made
    monotonic: each is read as the one nearest to the newest so far, so a
    run longer than a lap does not take the second lap for the first.
    """

    def __init__(self):
        self.last: int | None = None

    def __call__(self, seq: int) -> int:
        if self.last is None:
            self.last = seq
            return seq
        delta = (seq - self.last) & 0xFFFF
        if delta >= 0x8000:
            delta -= 0x10000
        value = self.last + delta
        self.last = max(self.last, value)
        return value
