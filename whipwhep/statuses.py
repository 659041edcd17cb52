"""
The HTTP status of a refusal, from the text the core gives every client
(the SDK's C{STREAM_STATUS_INFO} strings and the room's RoomError texts).
"""

from __future__ import annotations

from wcs.interfaces import NAME_IN_USE, STREAM_NOT_FOUND

# (text found at the start of or in the info, status), first match wins.
_BY_TEXT: list[tuple[str, int]] = [
    (STREAM_NOT_FOUND, 404),
    ("already has a participant with login", 409),
    (NAME_IN_USE, 409),
    ("is full: at most", 403),
    ("cannot be made: the server has its maximum", 503),
    ("Server media capacity reached", 503),
    ("is not available on this server", 503),
    ("Too many media sessions from this address", 429),
    ("port share of this", 429),
    ("too many streams on this connection", 429),
    ("Failed by", 500),
]


def statusOf(info: str) -> int:
    """
    The status for a refusal with C{info}: the table above, else 400 (an
    offer or a name the core could not take: the client's to fix).
    """
    for text, status in _BY_TEXT:
        if text.lower() in info.lower():
            return status
    return 400
