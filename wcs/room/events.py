"""
Room events as the SDK receives them: C{OnDataEvent} with
C{{payload: {roomName, name, info}}}, and the C{DataStatusEvent} answer to a
room command.
"""

from typing import Any

from wcs.messages import ServerMessage

ACCEPTED = "ACCEPTED"
FAILED = "FAILED"


def roomEvent(roomName: str, name: str, info: Any) -> ServerMessage:
    return ServerMessage(
        "OnDataEvent", {"payload": {"roomName": roomName, "name": name, "info": info}}
    )


def dataStatus(operationId: Any, status: str, info: str | None = None,
               refusal: str | None = None) -> ServerMessage:
    """C{refusal}: a failure's code (L{wcs.errors}), beside the text."""
    body: dict[str, Any] = {"operationId": operationId, "status": status}
    if info is not None:
        body["info"] = info
    return ServerMessage("DataStatusEvent", body, refusal=refusal)


def streamEntry(login: str, streamName: str) -> dict[str, str]:
    """A published stream as STATE, PUBLISHED and UNPUBLISHED name it."""
    return {"login": login, "name": streamName}
