"""
The room protocol of the browser SDK, without I/O.

The C{parse*} functions validate a client message's arguments into small typed records and
raise L{ProtocolError} with a message naming the offending field, which the
session sends back to the client as it is.

The same records serve the Flash room protocol, whose AMF calls carry the same
objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from wcs.errors import ProtocolError

# The JSON form of messages moved to wcs.messages, which transports may
# import; the core's callers and tests still find it here.
from wcs.messages import (  # noqa: E402,F401
    MAX_DEPTH, WIRE, decodeFrame, encodeFrame, nestingExceeds)


# Validation helpers. Each names the field as the client wrote it.

def _firstObject(name: str, args: list[Any]) -> dict[str, Any]:
    if not args or not isinstance(args[0], dict):
        raise ProtocolError(f"{name}: data[0] must be an object")
    return args[0]


def _text(obj: dict, key: str, where: str, *, required: bool = True,
          maxLength: int | None = None, allowEmpty: bool = False) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise ProtocolError(f"{where}.{key} is required")
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"{where}.{key} must be a string")
    if not value and not allowEmpty:
        raise ProtocolError(f"{where}.{key} must not be empty")
    if maxLength is not None and len(value) > maxLength:
        raise ProtocolError(f"{where}.{key} is longer than {maxLength} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate ("\ud83d" escaped in JSON) cannot be sent on as
        # UTF-8: refuse it here rather than break every recipient.
        raise ProtocolError(f"{where}.{key} is not valid Unicode") from None
    return value


def _flag(obj: dict, key: str, where: str, default: bool = False) -> bool:
    value = obj.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ProtocolError(f"{where}.{key} must be true or false")
    return value


def _object(obj: dict, key: str, where: str) -> dict[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"{where}.{key} must be an object")
    return value


@dataclass(frozen=True)
class Limits:
    """Lengths the server accepts; from the settings."""

    roomName: int = 128
    login: int = 128
    chat: int = 16384


@dataclass(frozen=True)
class Connection:
    appKey: str
    login: str | None
    clientVersion: str | None
    # custom.token (a signed access token) and custom as sent, for wcs.access.
    token: str | None = None
    custom: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def withLogin(self, login: str | None) -> "Connection":
        if login is None or login == self.login:
            return self
        return Connection(self.appKey, login, self.clientVersion, self.token, self.custom)


def parseConnection(args: list[Any], limits: Limits) -> Connection:
    obj = _firstObject("connection", args)
    custom = _object(obj, "custom", "connection")
    appKey = _text(obj, "appKey", "connection", required=False) or "defaultApp"
    login = _text(custom, "login", "connection.custom", required=False,
                  maxLength=limits.login)
    token = custom.get("token")
    version = obj.get("clientVersion")
    return Connection(appKey, login, version if isinstance(version, str) else None,
                      token if isinstance(token, str) else None, custom)


# The two records of every chat delivery are named tuples: a frozen
# dataclass's __init__ (object.__setattr__ per field) cost 4 times as much.
class DataRequest(NamedTuple):
    operationId: Any
    command: str
    options: dict[str, Any]


def parseSendData(args: list[Any]) -> DataRequest:
    """
    Parse C{sendData}. A request without an C{operationId} cannot be answered
    with a C{DataStatusEvent}: that is a L{ProtocolError} like any other.
    """
    obj = _firstObject("sendData", args)
    operationId = obj.get("operationId")
    if not isinstance(operationId, (str, int)) or isinstance(operationId, bool) \
            or operationId == "":
        raise ProtocolError("sendData.operationId must be a non-empty string")
    payload = obj.get("payload")
    if not isinstance(payload, dict):
        raise ProtocolError("sendData.payload must be an object")
    command = _text(payload, "command", "sendData.payload")
    options = _object(payload, "options", "sendData.payload")
    return DataRequest(operationId, command, options)


@dataclass(frozen=True)
class Join:
    room: str
    record: bool


@dataclass(frozen=True)
class Leave:
    room: str


class Chat(NamedTuple):
    room: str
    to: str
    text: str


def parseJoin(options: dict[str, Any], limits: Limits) -> Join:
    room = _text(options, "name", "join", maxLength=limits.roomName)
    return Join(room, _flag(options, "record", "join"))


def parseLeave(options: dict[str, Any], limits: Limits) -> Leave:
    return Leave(_text(options, "name", "leave", maxLength=limits.roomName))


def parseChat(options: dict[str, Any], limits: Limits) -> Chat:
    roomConfig = options.get("roomConfig")
    if not isinstance(roomConfig, dict):
        raise ProtocolError("sendMessage.roomConfig must be an object with the room name")
    room = _text(roomConfig, "name", "sendMessage.roomConfig", allowEmpty=True)
    to = _text(options, "to", "sendMessage", allowEmpty=True)
    text = _text(options, "text", "sendMessage", allowEmpty=True)
    problem = chatProblem(room, to, text, limits)
    if problem is not None:
        raise ProtocolError(problem)
    return Chat(room, to, text)


def chatProblem(room: str, to: str, text: str, limits: Limits) -> str | None:
    """
    What is wrong with a chat message's strings by the limits, or None: the
    one place that says them. L{parseChat} refuses with this text; the chat
    fast path (L{wcs.commands.RoomCommands.chatFrame}, strings read without
    decoding) declines any message it names, which then goes the ordinary
    way.
    """
    if not room:
        return "sendMessage.roomConfig.name must not be empty"
    if len(room) > limits.roomName:
        return f"sendMessage.roomConfig.name is longer than {limits.roomName} characters"
    if not to:
        return "sendMessage.to must not be empty"
    if len(to) > limits.login:
        return f"sendMessage.to is longer than {limits.login} characters"
    if len(text) > limits.chat:
        return f"sendMessage.text is longer than {limits.chat} characters"
    return None


@dataclass(frozen=True)
class StreamRequest:
    """
    A C{publishStream}/C{playStream}/C{unPublishStream}/C{stopStream}.

    @ivar room: C{custom.name}, the room the stream belongs to, if any.
    @ivar raw: the client's object as sent, for media engines that need more.
    """

    mediaSessionId: str
    name: str
    published: bool
    room: str | None
    sdp: str | None
    hasAudio: bool
    hasVideo: bool
    record: bool
    mediaProvider: str
    constraints: dict[str, Any]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def isScreenShare(self) -> bool:
        video = self.constraints.get("video")
        return isinstance(video, dict) and video.get("type") == "screen"


def streamSessionId(args: list[Any]) -> str | None:
    """
    The C{mediaSessionId} of a stream message, if one can be read, so that a
    refusal can be addressed to that stream.
    """
    if args and isinstance(args[0], dict):
        value = args[0].get("mediaSessionId")
        if isinstance(value, str) and value:
            return value
    return None


def parseStream(message: str, args: list[Any], limits: Limits, *,
                needSdp: bool) -> StreamRequest:
    obj = _firstObject(message, args)
    mediaSessionId = _text(obj, "mediaSessionId", message, maxLength=128)
    name = _text(obj, "name", message, maxLength=limits.roomName + limits.login + 64)
    custom = _object(obj, "custom", message)
    room = _text(custom, "name", f"{message}.custom", required=False,
                 maxLength=limits.roomName)
    sdp = _text(obj, "sdp", message, required=needSdp)
    if needSdp and "m=" not in sdp:
        raise ProtocolError(f"{message}.sdp is not an SDP offer (no m= line)")
    constraints = obj.get("constraints")
    if not isinstance(constraints, dict):
        # The SDK sends booleans or objects per kind; only objects matter here.
        constraints = {}
    provider = _text(obj, "mediaProvider", message, required=False) or "WebRTC"
    return StreamRequest(
        mediaSessionId=mediaSessionId,
        name=name,
        published=message == "publishStream",
        room=room,
        sdp=sdp,
        hasAudio=_flag(obj, "hasAudio", message, True),
        hasVideo=_flag(obj, "hasVideo", message, True),
        record=_flag(obj, "record", message),
        mediaProvider=provider,
        constraints=constraints,
        raw=obj,
    )
