"""
Server-to-client messages, independent of the wire that carries them, and
the SDK's JSON form of a message (C{{"message": NAME, "data": [ARG, ...]}})
for the wires that carry JSON: L{decodeFrame} turns a client's text frame
into C{(name, args)} for L{wcs.interfaces.IClientSession.messageReceived},
L{encodeFrame} turns a L{ServerMessage} into frame bytes.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, TypeVar

from wcs.errors import ProtocolError

T = TypeVar("T")


class ServerMessage:
    """
    One server message: a name and its arguments, as the SDK names them
    (C{OnDataEvent}, C{DataStatusEvent}, C{notifyStreamStatusEvent}, ...).

    A room event goes to every participant: the same instance is handed to
    each channel and each wire format encodes it once (L{encoded}).
    """

    __slots__ = ("name", "args", "refusal", "jsonText", "_encoded")

    def __init__(self, name: str, *args: Any, refusal: str | None = None,
                 jsonText: str | None = None):
        self.name = name
        self.args = list(args)
        # A refusal's code (L{wcs.errors}), not on the wire: what the SDK
        # sees is the text in the message's info.
        self.refusal = refusal
        # The JSON form, when the maker of a hot message wrote it from a
        # template (L{quote}); it must equal what L{encodeFrame} would make.
        self.jsonText = jsonText
        self._encoded: dict[str, Any] = {}

    def encoded(self, wire: str, encode: Callable[["ServerMessage"], T]) -> T:
        """
        The encoding of this message for C{wire}, made on first use.
        """
        # Not try/except KeyError: most messages go to one recipient, and
        # the exception on their first (and only) use cost more than a get.
        value = self._encoded.get(wire)
        if value is None:
            value = self._encoded[wire] = encode(self)
        return value

    def __repr__(self) -> str:
        return f"ServerMessage({self.name!r}, {self.args!r})"


_ARGS = ServerMessage.args  # the slot that stores a message's args


class TemplateMessage(ServerMessage):
    """
    A hot message written from a template (C{jsonText}, which the JSON
    wires send), whose C{args} are built only when something else reads
    them (the RTMP wire's AMF, the cluster bus, a log): C{make(*fields)}.
    A chat delivery's MESSAGE and ACCEPTED are two of these per delivery,
    and their nested dicts were built for nothing on a WebSocket.
    """

    __slots__ = ("_make", "_fields")

    def __init__(self, name: str, jsonText: str, make: Callable[..., list], *fields: Any):
        self.name = name
        self.refusal = None
        self.jsonText = jsonText
        self._encoded = {}
        self._make = make
        self._fields = fields

    @property
    def args(self) -> list:
        try:
            return _ARGS.__get__(self)
        except AttributeError:
            args = self._make(*self._fields)
            _ARGS.__set__(self, args)
            return args

    @args.setter
    def args(self, value: list) -> None:
        _ARGS.__set__(self, value)


WIRE = "json"

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _notJSON(value: Any) -> Any:
    raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


# JSONEncoder.encode makes a C encoder per call, half the cost of encoding a
# chat message: this one is made once. No circular check: server messages are
# trees the server built (the encoder's markers, if it ran, would say so).
_iterencode = (json.encoder.c_make_encoder(None, _notJSON, json.encoder.encode_basestring,
                                           None, ":", ",", False, False, True)
               if json.encoder.c_make_encoder is not None else None)


# A string as JSON, escaped exactly as L{encodeFrame} escapes it (the same
# C function): for messages written from a template.
quote = json.encoder.encode_basestring

# The pieces of a chat delivery's two frames that a transport writes itself
# (L{wcs.room.events} makes the whole messages from the same pieces): the
# MESSAGE ends with CHAT_TAIL after its quoted text (L{wcs.room.events.chatHead}
# before it); the sender's answer is ACCEPTED_HEAD, the quoted operationId,
# ACCEPTED_TAIL. ACCEPTED is also what the session's chat fast path returns
# when the transport is to write that answer (L{wcs.interfaces}).
ACCEPTED = "ACCEPTED"
CHAT_TAIL = b"}}}]}"
ACCEPTED_HEAD = b'{"message":"DataStatusEvent","data":[{"operationId":'
ACCEPTED_TAIL = b',"status":"ACCEPTED"}]}'


def encodeFrame(message: ServerMessage) -> bytes:
    """
    Encode a server message as the SDK reads it: C{data} is always a list.
    Text stays as UTF-8, unescaped: clients get exactly the bytes sent.
    """
    if message.jsonText is not None:
        return message.jsonText.encode("utf-8")
    frame = {"message": message.name, "data": message.args}
    if _iterencode is None:
        return _encoder.encode(frame).encode("utf-8")
    return "".join(_iterencode(frame, 0)).encode("utf-8")


# The SDK's deepest message (publishStream constraints) nests about 6 levels.
MAX_DEPTH = 32

_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_INNERMOST = re.compile(rb"\[\]|\{\}")


def nestingExceeds(payload: bytes, maxDepth: int) -> bool:
    """
    Whether JSON text nests arrays/objects deeper than C{maxDepth}, found
    with a few linear C-speed passes: escapes and strings are cut out, only
    brackets kept, and innermost pairs removed C{maxDepth} times; whatever
    is left was deeper (or unbalanced, which json rejects anyway). Most
    frames have fewer brackets than C{maxDepth} and stop at the count.
    """
    if payload.count(b"[") + payload.count(b"{") <= maxDepth:
        return False
    brackets = _STRING.sub(b"", _ESCAPE.sub(b"", payload)).translate(None, _NOT_BRACKET)
    if brackets.count(b"[") + brackets.count(b"{") <= maxDepth:
        return False
    for _ in range(maxDepth):
        brackets, removed = _INNERMOST.subn(b"", brackets)
        if not brackets or not removed:
            break
    return bool(brackets)


def decodeFrame(payload: bytes | str, maxDepth: int = MAX_DEPTH) -> tuple[str, list[Any]]:
    """
    Decode one client frame C{{"message": NAME, "data": [ARG, ...]}}.

    A missing C{data} means no arguments and a lone object is taken as one
    argument, as lenient as the SDK's own sender requires. JSON nested deeper
    than C{maxDepth} is refused before it is decoded: Python's decoder would
    raise C{RecursionError} at about 1000 levels, and anything deep breaks
    whatever walks or re-encodes it later.
    """
    raw = payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else payload
    if nestingExceeds(raw, maxDepth):
        raise ProtocolError(f"JSON nested deeper than {maxDepth} levels")
    try:
        # Decoded here, not by json.loads: its encoding detection (UTF-16
        # and -32, BOMs: never in a WebSocket text frame, which is UTF-8)
        # was a third of the cost of decoding a chat message.
        frame = json.loads(payload if isinstance(payload, str)
                           else payload.decode("utf-8", "surrogatepass"))
    except RecursionError:  # only if maxDepth is set near Python's own limit
        raise ProtocolError(f"JSON nested deeper than {maxDepth} levels") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(f"malformed JSON: {e}") from None
    if not isinstance(frame, dict):
        raise ProtocolError("a frame must be a JSON object with 'message' and 'data'")
    name = frame.get("message")
    if not isinstance(name, str) or not name:
        raise ProtocolError("'message' must be a non-empty string")
    data = frame.get("data", [])
    if data is None:
        data = []
    elif not isinstance(data, list):
        data = [data]
    return name, data


# The frame of nearly every chat delivery, a C{sendData} C{sendMessage}, as
# the SDK (JSON.stringify) and json.dumps write it: these keys in this order,
# strings without escapes or control characters. Read by one regular
# expression, such a frame needs no JSON decoding and no walk over the
# decoded dicts (at 10 in a room those were a third of the server's Python);
# anything else, or anything unusual in it, is left to L{decodeFrame}.
CHAT_FRAME_DEPTH = 6  # objects and arrays nested in that form
_JSON_SPACE = r"[ \t\n\r]*"
_RAW_STRING = r'"([^"\\\x00-\x1f]*)"'
_CHAT_FRAME = re.compile(_JSON_SPACE.join(
    [""] + [_RAW_STRING if token == "S" else re.escape(token) for token in (
        '{ "message" : "sendData" , "data" : [ { "operationId" : S , "payload" : { '
        '"command" : "sendMessage" , "options" : { "roomConfig" : { "name" : S } , '
        '"to" : S , "text" : S } } } ] }').split()] + [""]))


def chatFrame(payload: bytes) -> tuple[str, str, str, str] | None:
    """
    C{(operationId, room, to, text)} of a C{sendData} C{sendMessage} frame
    in the common form, exactly as L{decodeFrame} and the protocol's parsers
    would read them; None for any other frame (the caller decodes it the
    ordinary way). The strings are not checked against any limit.
    """
    try:
        # Strict: an encoded surrogate is left to decodeFrame (and refused).
        match = _CHAT_FRAME.fullmatch(payload.decode("utf-8"))
    except UnicodeDecodeError:
        return None
    if match is None or not match.group(1):
        return None
    return match.groups()
