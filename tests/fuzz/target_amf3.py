"""AMF3 values (a Flash client's objects)."""

from wcs.rtmp import amf3
from wcs.rtmp.errors import RTMPProtocolError

EXPECTED = (RTMPProtocolError,)


def fuzz(data: bytes) -> None:
    amf3.decode(data)
