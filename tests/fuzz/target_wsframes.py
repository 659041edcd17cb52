"""
The fast reader of a client's WebSocket text frames
(L{wcs.transports.wsframes.textFrame}), against a reference reading of RFC
6455 written here the plain way: the fast path must take exactly the frames
that are whole, final, masked, unextended text frames in their shortest
length encoding within the limit (the ones Autobahn would deliver as one
message), with the same payload and end, and leave every other byte to
Autobahn. It never raises.
"""

import struct

from wcs.transports.wsframes import textFrame

EXPECTED = ()
MAX_LEN = 4096


def reference(data: bytes, offset: int, limit: int):
    """RFC 6455 5.2, byte by byte."""
    header = data[offset:offset + 2]
    if len(header) < 2:
        return None
    fin, rsv, opcode = header[0] >> 7, header[0] >> 4 & 7, header[0] & 0x0F
    masked, size = header[1] >> 7, header[1] & 0x7F
    if not (fin and rsv == 0 and opcode == 1 and masked):
        return None
    start = offset + 2
    if size == 126:
        if len(data) < start + 2:
            return None
        size = struct.unpack("!H", data[start:start + 2])[0]
        if size <= 125:
            return None  # Autobahn: not the minimal encoding
        start += 2
    elif size == 127:
        if len(data) < start + 8:
            return None
        size = struct.unpack("!Q", data[start:start + 8])[0]
        if size <= 0xFFFF or size >> 63:
            return None
        start += 8
    if size > limit or len(data) < start + 4 + size:
        return None
    key = data[start:start + 4]
    payload = bytes(b ^ key[i % 4] for i, b in enumerate(data[start + 4:start + 4 + size]))
    return payload, start + 4 + size


def fuzz(data: bytes) -> None:
    if len(data) < 3:
        return
    # The first two bytes choose the limit (as ws_max_message_size * 16 would)
    # and where in the buffer the reader starts (a frame after others).
    limit = data[0] << 4 | data[1] >> 4
    buffer = data[2:]
    offset = (data[1] & 0x0F) % (len(buffer) + 1)
    while True:
        got = textFrame(buffer, offset, limit)
        want = reference(buffer, offset, limit)
        if got != want:
            raise AssertionError(f"at {offset} with limit {limit}: {got!r} != {want!r}")
        if got is None:
            return
        payload, end = got
        if len(payload) > limit or not offset < end <= len(buffer):
            raise AssertionError(f"frame of {len(payload)} bytes ending at {end}")
        offset = end
