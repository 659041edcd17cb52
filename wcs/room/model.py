"""
Rooms and their participants.

A L{Room} holds L{Participant}s in join order; a participant announces the
names of the streams it publishes. Whatever carries a participant's events
(a WebSocket session, a Flash client, an RTMP encoder) is its C{member}: any
object with C{send(ServerMessage)}. Its C{home} is the L{wcs.room.rooms.Rooms}
that holds it, or, for a participant of a room on another node of a cluster,
the object relaying its commands there (L{wcs.cluster}): the session and the
streams call C{participant.home.leave(participant)} and so on.
"""

from __future__ import annotations

from typing import Any, Iterable, Protocol

from wcs.messages import ServerMessage
from wcs.room.events import chatHead, roomEvent, streamEntry


class Member(Protocol):
    def send(self, message: ServerMessage) -> None: ...

    # Optional: C{chatWriter}, a callable C{(head: bytes, text: str)} that
    # writes a chat MESSAGE (L{wcs.room.events.chatHead}) to this member's
    # client, or None: L{wcs.room.rooms.Rooms.chat} calls it instead of
    # making a ServerMessage for C{send}.


class Participant:
    def __init__(self, room: "Room", login: str, member: Member):
        self.room = room
        self.login = login
        self.member = member
        # A chat delivery to this participant: one call with the sender's
        # head (below) and the text, when the member's transport has it.
        self.writeChat = getattr(member, "chatWriter", None)
        # The MESSAGE's JSON up to the text, for this participant's chat.
        self.chatHead = chatHead(room.name, login)
        # The Rooms holding this participant (set by Rooms.join).
        self.home: Any = None
        # Names of the streams announced as PUBLISHED, in publish order.
        self.streams: dict[str, None] = {}

    def stateEntries(self) -> list[Any]:
        """
        How STATE lists this participant: one C{{login, name}} per published
        stream, or the bare login for one who publishes nothing. Never both:
        the SDK would replace the participant it built from the streams.
        """
        if not self.streams:
            return [self.login]
        return [streamEntry(self.login, name) for name in self.streams]

    def __repr__(self) -> str:
        return f"<Participant {self.login!r} in {self.room.name!r}>"


class Room:
    def __init__(self, name: str, record: bool, createdAt: float):
        self.name = name
        self.record = record
        self.createdAt = createdAt
        self.participants: dict[str, Participant] = {}
        # Set while the room outlives its last participant (idle timeout).
        self.idleCall = None
        self.ended = False

    def state(self, forLogin: str) -> list[Any]:
        entries: list[Any] = []
        for participant in self.participants.values():
            if participant.login != forLogin:
                entries.extend(participant.stateEntries())
        return entries

    def event(self, name: str, info: Any) -> ServerMessage:
        return roomEvent(self.name, name, info)

    def broadcast(self, message: ServerMessage, exclude: Participant | None = None) -> None:
        """Send one message to every participant but C{exclude}, encoded once."""
        for participant in list(self.participants.values()):
            if participant is not exclude:
                participant.member.send(message)

    def others(self, participant: Participant) -> Iterable[Participant]:
        return (p for p in self.participants.values() if p is not participant)

    def __repr__(self) -> str:
        return f"<Room {self.name!r} ({len(self.participants)} participants)>"
