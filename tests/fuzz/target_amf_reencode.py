"""
Decoded AMF encoded again and decoded once more: the first byte picks AMF0
(even) or AMF3 (odd). Encoding what was decoded must neither fail nor blow
up. (The server itself no longer re-encodes a client's values: metadata is
passed on as its bytes; the encoders must still be safe on decoded input.)

The encoders write no reference tables, so a value decoded within the
decoding budget can re-encode to as many values as the budget allows: the
first decode gets a budget of MAX_VALUES (2 000), small enough that decoding the
re-encoded bytes stays well under the 100 ms per input of the runner, even
instrumented.
"""

from wcs.rtmp import amf0, amf3
from wcs.rtmp.errors import RTMPProtocolError

EXPECTED = (RTMPProtocolError,)
MAX_VALUES = 2_000


def fuzz(data: bytes) -> None:
    if not data:
        return
    if data[0] & 1:
        values = amf3.decode(data[1:], MAX_VALUES)
        amf3.decode(b"".join(amf3.encode(value) for value in values), MAX_VALUES * 4)
    else:
        values = amf0.decode(data[1:], MAX_VALUES)
        amf0.decode(amf0.encodeAll(*values), MAX_VALUES * 4)
