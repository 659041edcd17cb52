"""
Messages between nodes (docs/cluster.md, "Relay"): the fields each C{op}
needs (L{checkMessage}: a malformed message costs itself, not a handler's
exception), and the end that handles it (L{route}): the client's node's
L{wcs.cluster.relay.Visitors}, the room's node's L{wcs.cluster.hosts.Hosts},
L{wcs.cluster.resync.Resync} or L{wcs.cluster.splits.Splits} (and its
L{wcs.cluster.moves.Moves}).
"""

from __future__ import annotations

from typing import Any

from wcs.access.tokens import GRANTS
from wcs.logs import clip

COMMANDS = frozenset({"leave", "disconnect", "chat", "announce", "withdraw", "stream"})
# The fields of each op that must be strings (checkMessage).
_REQUIRED = {
    "join": ("session", "room", "login"), "joined": ("session", "room"),
    "leave": ("session", "room"), "disconnect": ("session",),
    "chat": ("session", "room", "to", "text"), "announce": ("session", "room", "stream"),
    "withdraw": ("session", "room", "stream"), "stream": ("session", "name"),
    "deliver": ("name",), "removed": ("session", "room"), "close": ("session",),
    "members": (), "state": ("room",), "split": ("room",),
    "moved": ("session", "room", "to"),
}
_TEXT = ("op", "session", "room", "login", "appKey", "id", "name", "text", "stream",
         "reason", "info", "error", "code")
_LISTS = ("args", "state")


def checkMessage(payload: dict[str, Any]) -> None:
    """
    Whether a message from another node has the fields its C{op} needs, of
    their types: a bug or an older version there must cost its message, not
    an exception in a handler here (docs/security.md, "Between cluster
    nodes").

    @raise ValueError: why it cannot be used.
    """
    for key in _TEXT:
        if payload.get(key) is not None and not isinstance(payload[key], str):
            raise ValueError(f"{key} is not a string")
    op = payload.get("op")
    for key in ("from", "op", *_REQUIRED.get(op, ())):
        if not isinstance(payload.get(key), str):
            raise ValueError(f"{clip(op, 40)} without {key}")
    for key in _LISTS:
        if payload.get(key) is not None and not isinstance(payload[key], list):
            raise ValueError(f"{key} is not a list")
    to = payload.get("to")
    if op == "deliver" and not (isinstance(to, list) and all(isinstance(t, str) for t in to)):
        raise ValueError("deliver to something else than a list of sessions")
    if op != "deliver" and to is not None and not isinstance(to, str):
        raise ValueError("to is not a string")
    checkClaims(payload.get("claims"))
    if op == "split" and not isUnixTime(payload.get("since")):
        raise ValueError("since is not a number")
    relay = payload.get("relay")
    if relay is not None and not (isinstance(relay, list) and len(relay) == 2 and
                                  isinstance(relay[0], str) and type(relay[1]) is int
                                  and 0 < relay[1] < 65536):
        raise ValueError("relay is not [host, port]")


# Beyond this (some 30 000 years from 1970) a Unix time is no time.
TIME_MAX = 1e12


def isUnixTime(value) -> bool:
    """
    Whether C{value} is a Unix time from JSON: a number within L{TIME_MAX}.
    JSON as Python reads it has Infinity, NaN and integers of any size (a
    token that never expires; a room made after every other). Compared,
    not converted: a float() of a 400-digit integer raises.
    """
    return type(value) in (int, float) and -TIME_MAX < value < TIME_MAX


def checkClaims(claims) -> None:
    """
    Whether C{claims} (of a join, or of a member in a resync's listing) are
    none or a token's claims as the client's node sends them
    (L{wcs.cluster.relay.claimsAsJson}): a login and a room, a list of
    grants, an expiry time or none. Anything else would fail later, in an
    access check of the room's node (the fuzzer's grants of 1).

    @raise ValueError: why they cannot be used.
    """
    if claims is None:
        return
    if not isinstance(claims, dict):
        raise ValueError("claims is not an object")
    if not (isinstance(claims.get("login"), str) and isinstance(claims.get("room"), str)):
        raise ValueError("claims without login or room")
    grants = claims.get("grants")
    if not (isinstance(grants, list) and len(grants) <= len(GRANTS)
            and all(isinstance(g, str) for g in grants)):
        raise ValueError("claims' grants are not a list of grants")
    expires = claims.get("expires")
    if expires is not None and not isUnixTime(expires):
        raise ValueError("claims' expires is not a number")


def route(payload: dict[str, Any], visitors, hosts, resync=None, splits=None) -> bool:
    """
    Hand a message from another node to the end it is for.

    @return: False for an unknown C{op}.
    @raise ValueError: a message without the fields its C{op} needs (L{checkMessage}).
    """
    checkMessage(payload)
    op = payload.get("op")
    if op == "join":
        hosts.join(payload)
    elif op in COMMANDS:
        hosts.command(payload)
    elif op == "joined":
        visitors.joined(payload)
    elif op == "deliver":
        visitors.deliver(payload)
    elif op == "removed":
        visitors.removed(payload)
    elif op == "close":
        visitors.close(payload)
    elif op in ("members", "state") and resync is not None:  # wcs.cluster.resync
        getattr(resync, op)(payload)
    elif op == "split" and splits is not None:  # wcs.cluster.splits
        splits.split(payload)
    elif op == "moved" and splits is not None:  # wcs.cluster.moves
        splits.moves.moved(payload)
    else:
        return False
    return True

