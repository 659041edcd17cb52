"""
The HTTP status of a refusal, from the code the core gives it beside the
text (L{wcs.errors}: C{ServerMessage.refusal}).
"""

from __future__ import annotations

from wcs import errors

_BY_CODE: dict[str | None, int] = {
    errors.NOT_FOUND: 404,
    errors.IN_USE: 409,
    errors.FULL: 403,
    errors.UNAVAILABLE: 503,
    errors.TOO_MANY: 429,
    errors.SERVER_ERROR: 500,
}


def statusOf(code: str | None) -> int:
    """
    The status for a refusal with C{code}: the table above, else 400 (an
    offer, a name or a request the core could not take: the client's to fix).
    """
    return _BY_CODE.get(code, 400)
