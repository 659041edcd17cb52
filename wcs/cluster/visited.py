"""
Rooms of other nodes as this node sees them (docs/cluster.md, "Relay"):
L{RemoteRoom}, followed from the events relayed to its members here,
L{RemoteParticipant}, a client of this node in it, and L{Relayed}, the
stream messages of this node's clients taken to other nodes.
L{wcs.cluster.relay.Visitors} keeps them.
"""

from __future__ import annotations

from typing import Any

from wcs.messages import ServerMessage
from wcs.room.events import roomEvent, streamEntry


class RemoteRoom:
    """A room on another node, as its members here see it."""

    # A room's recording is its node's: a stream published into it from
    # here is recorded there, where the room's node publishes it too.
    record = False

    def __init__(self, name: str, node: str):
        self.name = name
        self.node = node
        # (host, port) of the node's media relay, from its join answer.
        self.relay: tuple[str, int] | None = None
        # login -> its announced stream names, in join order (STATE's order).
        self.roster: dict[str, dict[str, None]] = {}
        # sessionId -> the participant of a client of this node.
        self.members: dict[str, "RemoteParticipant"] = {}

    def event(self, name: str, info: Any) -> ServerMessage:
        return roomEvent(self.name, name, info)

    def state(self, forLogin: str) -> list[Any]:
        entries: list[Any] = []
        for login, streams in self.roster.items():
            if login != forLogin:
                entries.extend([streamEntry(login, s) for s in streams] or [login])
        return entries

    def setState(self, login: str, state: list[Any]) -> None:
        """The room as the room's node listed it to C{login} joining."""
        roster: dict[str, dict[str, None]] = {}
        for entry in state:
            if isinstance(entry, dict):
                roster.setdefault(entry.get("login"), {})[entry.get("name")] = None
            else:
                roster.setdefault(entry, {})
        roster[login] = {}
        self.roster = roster

    def apply(self, name: str, info: Any) -> None:
        """Follow the room from an event relayed to its members here."""
        if name == "JOINED":
            self.roster.setdefault(info, {})
        elif name == "LEFT":
            self.roster.pop(info, None)
        elif name == "PUBLISHED" and isinstance(info, dict):
            self.roster.setdefault(info.get("login"), {})[info.get("name")] = None
        elif name in ("UNPUBLISHED", "FAILED") and isinstance(info, dict):
            self.roster.get(info.get("login"), {}).pop(info.get("name"), None)


class RemoteParticipant:
    """A client of this node in a room on another: a Participant's shape."""

    def __init__(self, room: RemoteRoom, login: str, member, home):
        self.room = room
        self.login = login
        self.member = member  # the ClientSession
        self.home = home
        self.streams: dict[str, None] = {}
        # stream name -> its media pushed to the room's node (media.RelayOut).
        self.pushes: dict[str, Any] = {}
        self.gone = False

    def __repr__(self) -> str:
        return f"<RemoteParticipant {self.login!r} in {self.room.name!r} on {self.room.node}>"


class Relayed:
    """
    The streams of this node's clients taken to other nodes (publishes and
    plays forwarded there), and how many of the plays are of each stream:
    the edge rule (L{Visitors.forward}) counts a stream's players here.
    """

    def __init__(self):
        # sessionId -> {mediaSessionId: node}
        self.nodes: dict[str, dict[str, str]] = {}
        # (sessionId, mediaSessionId) -> the stream name, for plays
        self.plays: dict[tuple[str, str], str] = {}
        self.players: dict[str, int] = {}  # stream name -> its forwarded plays

    def node(self, sessionId: str, mediaSessionId: str) -> str | None:
        return self.nodes.get(sessionId, {}).get(mediaSessionId)

    def add(self, sessionId: str, mediaSessionId: str, node: str,
            played: str | None = None) -> None:
        self.remove(sessionId, mediaSessionId)
        self.nodes.setdefault(sessionId, {})[mediaSessionId] = node
        if played is not None:
            self.plays[sessionId, mediaSessionId] = played
            self.players[played] = self.players.get(played, 0) + 1

    def remove(self, sessionId: str, mediaSessionId: str) -> None:
        streams = self.nodes.get(sessionId)
        if streams is None or streams.pop(mediaSessionId, None) is None:
            return
        if not streams:
            del self.nodes[sessionId]
        played = self.plays.pop((sessionId, mediaSessionId), None)
        if played is not None:
            left = self.players.pop(played) - 1
            if left:
                self.players[played] = left

    def removeSession(self, sessionId: str) -> None:
        for mediaSessionId in list(self.nodes.get(sessionId, ())):
            self.remove(sessionId, mediaSessionId)

