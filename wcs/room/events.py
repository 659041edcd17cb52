"""
Room events as the SDK receives them: C{OnDataEvent} with
C{{payload: {roomName, name, info}}}, and the C{DataStatusEvent} answer to a
room command.
"""

from typing import Any

from wcs.messages import ServerMessage, quote

ACCEPTED = "ACCEPTED"
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
_CHAT = ('{"message":"OnDataEvent","data":[{"payload":{"roomName":%s,'
         '"name":"MESSAGE","info":{"from":%s,"text":%s}}}]}')
_STATUS = '{"message":"DataStatusEvent","data":[{"operationId":%s,"status":%s}]}'


def chatEvent(roomName: str, sender: str, text: str) -> ServerMessage:
    """The MESSAGE event of C{text} from C{sender} (validated strings)."""
    return ServerMessage(
        "OnDataEvent",
        {"payload": {"roomName": roomName, "name": "MESSAGE",
                     "info": {"from": sender, "text": text}}},
        jsonText=_CHAT % (quote(roomName), quote(sender), quote(text)))


def dataStatus(operationId: Any, status: str, info: str | None = None,
               refusal: str | None = None) -> ServerMessage:
    """C{refusal}: a failure's code (L{wcs.errors}), beside the text."""
    body: dict[str, Any] = {"operationId": operationId, "status": status}
    if info is not None:
        body["info"] = info
        return ServerMessage("DataStatusEvent", body, refusal=refusal)
    kind = operationId.__class__
    if kind is str:
        op = quote(operationId)
    elif kind is int:
        op = int.__repr__(operationId)
    else:
        return ServerMessage("DataStatusEvent", body, refusal=refusal)
    return ServerMessage("DataStatusEvent", body, refusal=refusal,
                         jsonText=_STATUS % (op, quote(status)))


def streamEntry(login: str, streamName: str) -> dict[str, str]:
    """A published stream as STATE, PUBLISHED and UNPUBLISHED name it."""
    return {"login": login, "name": streamName}
