"""
Decoded AMF encoded again, as the server does with a publisher's
C{onMetaData} (sent on to players): the first byte picks AMF0 (even) or
AMF3 (odd). Encoding what was decoded must neither fail nor blow up.
"""

from wcs.rtmp import amf0, amf3
from wcs.rtmp.errors import RTMPProtocolError

EXPECTED = (RTMPProtocolError,)


def fuzz(data: bytes) -> None:
    if not data:
        return
    if data[0] & 1:
        for value in amf3.decode(data[1:]):
            amf3.decode(amf3.encode(value))
    else:
        amf0.decode(amf0.encodeAll(*amf0.decode(data[1:])))
