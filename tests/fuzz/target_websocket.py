"""
A WebSocket text frame of the browser SDK: decoded, then its arguments
through every validation function the session applies.
"""

from wcs import protocol
from wcs.errors import ProtocolError

EXPECTED = (ProtocolError,)
MAX_LEN = 16384  # a publishStream with Chromium's offer is ~7 KB
LIMITS = protocol.Limits()
STREAM_MESSAGES = ("publishStream", "playStream", "unPublishStream", "stopStream")


def _attempt(parse, *args, **kwargs) -> None:
    try:
        parse(*args, **kwargs)
    except ProtocolError:
        pass


def fuzz(data: bytes) -> None:
    name, args = protocol.decodeFrame(data)
    protocol.streamSessionId(args)
    _attempt(protocol.parseConnection, args, LIMITS)
    for message in STREAM_MESSAGES:
        _attempt(protocol.parseStream, message, args, LIMITS,
                 needSdp=message in ("publishStream", "playStream"))
    request = protocol.parseSendData(args)
    for parse in (protocol.parseJoin, protocol.parseLeave, protocol.parseChat):
        _attempt(parse, request.options, LIMITS)
