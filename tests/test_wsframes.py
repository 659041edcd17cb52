"""
The WebSocket transport's own reader of whole client text frames
(wcs/transports/wsframes.py): what it reads, and what it leaves to Autobahn.
"""

from __future__ import annotations

import os
import struct

from tests.test_websocket_protocol import clientFrame
from wcs.transports.wsframes import textFrame, unmask, unmaskInPython


def test_unmask_matches_the_rfc_definition():
    """Both ways: websockets' C function where installed, the integer XOR."""
    for size in (0, 1, 3, 4, 5, 125, 126, 1000, 70000):
        mask, payload = os.urandom(4), os.urandom(size)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert unmask(mask, masked) == payload
        assert unmaskInPython(mask, masked) == payload


def test_consecutive_text_frames_are_read_in_order():
    payloads = [b"a", "é".encode() * 100, b"x" * 70000, b""]
    data = b"".join(clientFrame(p) for p in payloads) + b"\x81"
    offset, got = 0, []
    while (frame := textFrame(data, offset, 1 << 20)) is not None:
        payload, offset = frame
        got.append(payload)
    assert got == payloads
    assert data[offset:] == b"\x81"  # a frame cut by the read: Autobahn buffers it


def frameWith(first: int, second: int, extended: bytes = b"", payload: bytes = b"hi"):
    return bytes([first, second]) + extended + b"\0\0\0\0" + payload


def test_everything_else_is_left_to_autobahn():
    whole = clientFrame(b"hello")
    assert textFrame(whole, 0, 1 << 20) == (b"hello", len(whole))
    left = {
        "binary": clientFrame(b"hello", opcode=2),
        "ping": clientFrame(b"hello", opcode=9),
        "close": clientFrame(b"", opcode=8),
        "fragment": bytes([0x01]) + whole[1:],
        "reserved bit": bytes([0xC1]) + whole[1:],
        "unmasked": bytes([0x81, 5]) + b"hello",
        "over the limit": clientFrame(b"x" * 200),
        "cut": whole[:-1],
        "long length for a short frame": frameWith(0x81, 0x80 | 126, struct.pack("!H", 2)),
        "huge length for a short frame": frameWith(0x81, 0x80 | 127, struct.pack("!Q", 2)),
    }
    for name, data in left.items():
        assert textFrame(data, 0, 100) is None, name
