"""
A frame counter and a send time painted into the picture, read back after
the encoder, the network and the decoder: glass-to-glass delay per frame.

48 bits (16 of counter, 24 of milliseconds of the monotonic clock, 8 of
check) as 16x16 blocks, black or white, in three rows of 16 at the top left
of the luma plane: blocks that big survive H.264 and VP8 at ~1 Mbit/s, and
the reader looks only at each block's centre.
"""

from __future__ import annotations

import numpy as np

BLOCK = 16
COLUMNS, ROWS = 16, 3
BITS = COLUMNS * ROWS
WIDTH, HEIGHT = COLUMNS * BLOCK, ROWS * BLOCK
TIME_MODULO = 1 << 24  # ms: 4.6 hours


def _check(counter: int, ms: int) -> int:
    # Not 0 for an all-black stamp: a grey or black picture is never read as one.
    return (counter + (counter >> 8) + ms + (ms >> 8) + (ms >> 16)) & 0xFF ^ 0xA5


def paint(luma: np.ndarray, counter: int, ms: int) -> None:
    """Paint the stamp into C{luma} (a writable height x width uint8 array)."""
    counter &= 0xFFFF
    ms %= TIME_MODULO
    value = (counter << 32) | (ms << 8) | _check(counter, ms)
    bits = np.array([(value >> (BITS - 1 - i)) & 1 for i in range(BITS)], dtype=np.uint8)
    blocks = np.where(bits.reshape(ROWS, COLUMNS), 235, 16).astype(np.uint8)
    luma[:HEIGHT, :WIDTH] = np.kron(blocks, np.ones((BLOCK, BLOCK), dtype=np.uint8))


def read(luma: np.ndarray) -> tuple[int, int] | None:
    """(counter, ms) from a decoded luma plane, or None when the stamp is damaged."""
    if luma.shape[0] < HEIGHT or luma.shape[1] < WIDTH:
        return None
    area = luma[:HEIGHT, :WIDTH].reshape(ROWS, BLOCK, COLUMNS, BLOCK)
    centres = area[:, 4:12, :, 4:12].mean(axis=(1, 3))
    value = 0
    for bit in (centres > 128).reshape(-1):
        value = (value << 1) | int(bit)
    counter, ms, check = value >> 32, (value >> 8) & 0xFFFFFF, value & 0xFF
    return (counter, ms) if check == _check(counter, ms) else None


def delayMs(sentMs: int, nowMs: int) -> int:
    return (nowMs - sentMs) % TIME_MODULO
