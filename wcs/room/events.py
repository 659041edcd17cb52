"""
Room events as the SDK receives them: C{OnDataEvent} with
C{{payload: {roomName, name, info}}}, and the C{DataStatusEvent} answer to a
room command.
"""

from typing import Any

# A room command's two statuses; ACCEPTED is made in wcs.messages (which a
# transport may import: the chat fast path's answer) and named here too.
from wcs.messages import ACCEPTED  # noqa: F401
from wcs.messages import CHAT_TAIL, ServerMessage, TemplateMessage, quote

FAILED = "FAILED"


def roomEvent(roomName: str, name: str, info: Any) -> ServerMessage:
    return ServerMessage(
        "OnDataEvent", {"payload": {"roomName": roomName, "name": name, "info": info}}
    )


# The two messages of every chat delivery (the MESSAGE to the recipient, the
# ACCEPTED to the sender) are written from templates: the generic encoder's
# walk over their nested dicts was 12 % of the server's time at 4 000
# deliveries/s, the templates take a sixth of that. tests/test_protocol.py
# checks them against the generic encoding.
_CHAT_HEAD = ('{"message":"OnDataEvent","data":[{"payload":{"roomName":%s,'
              '"name":"MESSAGE","info":{"from":%s,"text":')
_CHAT = _CHAT_HEAD + "%s" + CHAT_TAIL.decode()
_STATUS = '{"message":"DataStatusEvent","data":[{"operationId":%s,"status":%s}]}'

# The same MESSAGE in three pieces, for a transport that writes JSON text
# (L{wcs.transports.websocket.SignallingProtocol.sendChat}): the UTF-8 before
# the text, made once per sender (L{chatHead}, kept on its participant), the
# quoted text, and C{CHAT_TAIL} (L{wcs.messages}, which a transport may
# import). Nothing per delivery but the text's quoting.


def chatHead(roomName: str, sender: str) -> bytes:
    """The UTF-8 of a MESSAGE from C{sender} in C{roomName} up to its text."""
    return (_CHAT_HEAD % (quote(roomName), quote(sender))).encode("utf-8")


def _chatArgs(roomName: str, sender: str, text: str) -> list:
    return [{"payload": {"roomName": roomName, "name": "MESSAGE",
                         "info": {"from": sender, "text": text}}}]


def chatEvent(roomName: str, sender: str, text: str) -> ServerMessage:
    """The MESSAGE event of C{text} from C{sender} (validated strings)."""
    return TemplateMessage("OnDataEvent", _CHAT % (quote(roomName), quote(sender), quote(text)),
                           _chatArgs, roomName, sender, text)


def _statusArgs(operationId: Any, status: str) -> list:
    return [{"operationId": operationId, "status": status}]


def dataStatus(operationId: Any, status: str, info: str | None = None,
               refusal: str | None = None) -> ServerMessage:
    """C{refusal}: a failure's code (L{wcs.errors}), beside the text."""
    if info is not None:
        return ServerMessage("DataStatusEvent",
                             {"operationId": operationId, "status": status, "info": info},
                             refusal=refusal)
    kind = operationId.__class__
    if kind is str:
        op = quote(operationId)
    elif kind is int:
        op = int.__repr__(operationId)
    else:
        return ServerMessage("DataStatusEvent", {"operationId": operationId, "status": status},
                             refusal=refusal)
    message = TemplateMessage("DataStatusEvent", _STATUS % (op, quote(status)), _statusArgs,
                              operationId, status)
    if refusal is not None:
        message.refusal = refusal
    return message


def streamEntry(login: str, streamName: str) -> dict[str, str]:
    """A published stream as STATE, PUBLISHED and UNPUBLISHED name it."""
    return {"login": login, "name": streamName}
