"""AMF0 values as RTMP commands and data messages carry them."""

from wcs.rtmp import amf0
from wcs.rtmp.errors import RTMPProtocolError

EXPECTED = (RTMPProtocolError,)


def fuzz(data: bytes) -> None:
    amf0.decode(data)
