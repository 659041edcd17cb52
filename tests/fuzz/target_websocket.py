"""
A WebSocket text frame of the browser SDK: decoded, then its arguments
through every validation function the session applies; and read by the
chat fast path (L{wcs.messages.chatFrame}), which must read exactly what
the generic path reads, or decline.
"""

from wcs import protocol
from wcs.errors import ProtocolError
from wcs.messages import chatFrame

EXPECTED = (ProtocolError,)
MAX_LEN = 16384  # a publishStream with Chromium's offer is ~7 KB
LIMITS = protocol.Limits()
UNLIMITED = protocol.Limits(roomName=MAX_LEN, login=MAX_LEN, chat=MAX_LEN)
STREAM_MESSAGES = ("publishStream", "playStream", "unPublishStream", "stopStream")


def _attempt(parse, *args, **kwargs) -> None:
    try:
        parse(*args, **kwargs)
    except ProtocolError:
        pass


def _sameAsGeneric(chat, name: str, args: list) -> None:
    request = protocol.parseSendData(args)
    assert (name, request.command) == ("sendData", "sendMessage"), (name, request)
    assert chat == (request.operationId, *protocol.parseChat(request.options, UNLIMITED)), chat


def fuzz(data: bytes) -> None:
    chat = chatFrame(data)
    try:
        name, args = protocol.decodeFrame(data)
    except ProtocolError:
        assert chat is None, chat
        raise
    if chat is not None:
        _sameAsGeneric(chat, name, args)
    protocol.streamSessionId(args)
    _attempt(protocol.parseConnection, args, LIMITS)
    for message in STREAM_MESSAGES:
        _attempt(protocol.parseStream, message, args, LIMITS,
                 needSdp=message in ("publishStream", "playStream"))
    request = protocol.parseSendData(args)
    for parse in (protocol.parseJoin, protocol.parseLeave, protocol.parseChat):
        _attempt(parse, request.options, LIMITS)
