"""
The common client frame read without Autobahn's per-frame machinery.

Profiled under the shared chat harness (one C{sendMessage} frame per
delivery), Autobahn spent about as long per incoming frame as the session
did handling it: a frame header object, a masker object (cffi) per frame,
begin/data/end callbacks per frame and per message, and a copy of the
rest of the buffer after every step. Nearly every client frame is a whole
text message in one final, masked frame with no extension bits: that one is
read here; anything else (control frames, fragments, binary, reserved bits,
a frame over the limit, a frame cut by the read) goes to Autobahn, which
then sees exactly the bytes it would have seen.
"""

from __future__ import annotations

import struct

_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")


def unmaskInPython(mask: bytes, masked: bytes) -> bytes:
    """RFC 6455 5.3: XOR with the 4-byte key repeated, as integer arithmetic."""
    size = len(masked)
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(masked, "little") ^ int.from_bytes(key, "little")).to_bytes(
        size, "little")


try:
    # websockets' C function: 0.25 against 1.6-2.0 us for a chat frame of
    # 250 bytes (time.thread_time, loaded machine), where the integer XOR
    # was the biggest single cost of a 10-participant room's Python (py-spy,
    # docs/performance.md, "Chat, fifth pass"). Without its C extension
    # (a pure-Python wheel) the integer XOR above serves.
    from websockets.speedups import apply_mask as _applyMask
except ImportError:  # pragma: no cover - depends on the installed wheel
    unmask = unmaskInPython

    def _applyMask(masked: bytes, mask: bytes) -> bytes:
        return unmaskInPython(mask, masked)
else:
    def unmask(mask: bytes, masked: bytes) -> bytes:
        """RFC 6455 5.3, in C."""
        return _applyMask(masked, mask)


def textFrame(data: bytes, offset: int, limit: int) -> tuple[bytes, int] | None:
    """
    The payload of the frame at C{data[offset:]} and the offset after it, if
    that frame is a whole, final, masked text frame without reserved bits of
    at most C{limit} bytes, complete in C{data}; else None.
    """
    end = len(data)
    if end - offset < 6 or data[offset] != 0x81:  # FIN, no RSV, opcode 1
        return None
    size = data[offset + 1]
    if not size & 0x80:  # a client frame must be masked: Autobahn fails it
        return None
    size &= 0x7F
    start = offset + 2
    if size == 126:
        if end - start < 2:
            return None
        size = _U16.unpack_from(data, start)[0]
        if size < 126:  # not the shortest encoding: Autobahn fails it
            return None
        start += 2
    elif size == 127:
        if end - start < 8:
            return None
        size = _U64.unpack_from(data, start)[0]
        if size < 1 << 16:
            return None
        start += 8
    if size > limit:
        return None
    payloadStart = start + 4
    stop = payloadStart + size
    if stop > end:
        return None
    # _applyMask, not unmask: one Python call less per frame.
    return _applyMask(data[payloadStart:stop], data[start:payloadStart]), stop
