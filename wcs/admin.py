"""
The operator's view of a running server (L{IAdmin}): clients, streams,
rooms and recordings found by their ids, and what may be done to them.

The REST API (L{wcs.rest}) is one user; it formats what this returns. Every
method runs to completion synchronously, like the rest of the core.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from zope.interface import implementer

from wcs.errors import StreamError
from wcs.interfaces import IAdmin
from wcs.logs import Logger, clip
from wcs.session import LOG_LEVELS, ClientSession
from wcs.streams import STOPPED, UNPUBLISHED, Stream

if TYPE_CHECKING:
    from wcs.room.model import Room
    from wcs.server import RoomServer

# What a client is told when an operator ends its stream or takes it out of
# a room (the info of its stream's UNPUBLISHED/STOPPED status).
TERMINATED = "Terminated by the server administrator"
KICKED = "Removed from the room by the server administrator"
ROOM_ENDED = "Room ended by the server administrator"


@implementer(IAdmin)
class Admin:
    log = Logger()

    def __init__(self, server: "RoomServer"):
        self.server = server

    # Clients

    def connections(self) -> list[ClientSession]:
        return sorted(self.server.sessions, key=lambda s: s.createdAt)

    def connection(self, sessionId: str) -> ClientSession | None:
        for session in self.server.sessions:
            if session.sessionId == sessionId:
                return session
        return None

    def closeConnection(self, sessionId: str, reason: str = TERMINATED) -> bool:
        session = self.connection(sessionId)
        if session is None:
            return False
        self.log.info("{session}: closed by the administrator", session=session)
        session.channel.close(reason)
        # The transport reports the loss later; the client's rooms and
        # streams are freed now, so a listing right after no longer has it.
        session.connectionLost(reason)
        return True

    def setLogLevel(self, sessionId: str, level: str) -> bool:
        if level not in LOG_LEVELS:
            raise ValueError(f"log level {clip(level)} is not one of {', '.join(LOG_LEVELS)}")
        session = self.connection(sessionId)
        if session is None:
            return False
        session.logLevel = level
        self.log.info("{session}: log level {logLevel}", session=session, logLevel=level)
        return True

    # Streams

    def streams(self) -> list[Stream]:
        return [stream for session in self.connections()
                for stream in session.streams.active.values()]

    def stream(self, mediaSessionId: str) -> Stream | None:
        for session in self.server.sessions:
            stream = session.streams.active.get(mediaSessionId)
            if stream is not None:
                return stream
        return None

    def endStream(self, mediaSessionId: str, info: str = TERMINATED) -> bool:
        stream = self.stream(mediaSessionId)
        if stream is None:
            return False
        stream.owner.streams.end(stream, UNPUBLISHED if stream.published else STOPPED, info)
        return True

    def recordingOf(self, stream: Stream) -> str | None:
        """The file C{stream} is being recorded to now, or None."""
        recorder = getattr(self.server, "recorder", None)
        return recorder.recordingOf(stream) if recorder is not None else None

    # Rooms

    def rooms(self) -> list["Room"]:
        return sorted(self.server.rooms.rooms.values(), key=lambda r: r.createdAt)

    def room(self, name: str) -> "Room | None":
        return self.server.rooms.get(name)

    def streamsOf(self, participant) -> list[Stream]:
        """The streams a participant publishes (or is starting to) in its room."""
        return [stream for stream in participant.member.streams.active.values()
                if stream.published and stream.participant is participant]

    def kick(self, room: str, login: str, info: str = KICKED) -> bool:
        found = self.room(room)
        participant = found.participants.get(login) if found is not None else None
        if participant is None:
            return False
        return participant.member.removeFromRoom(room, info)

    def endRoom(self, name: str, info: str = ROOM_ENDED) -> bool:
        room = self.room(name)
        if room is None:
            return False
        self.log.info("room {room}: ended by the administrator", room=clip(name))
        for participant in list(room.participants.values()):
            participant.member.removeFromRoom(name, info)
        # Idle (everyone disconnected) or emptied just now by the removals.
        self.server.rooms.end(room)
        return True

    # Recordings

    def _recorder(self):
        recorder = getattr(self.server, "recorder", None)
        if recorder is None:
            raise StreamError("this server does not record")
        return recorder

    def _published(self, mediaSessionId: str) -> Stream:
        stream = self.stream(mediaSessionId)
        if stream is None:
            raise LookupError(f"no stream with mediaSessionId {mediaSessionId!r}")
        return stream

    def startRecording(self, mediaSessionId: str) -> str:
        stream = self._published(mediaSessionId)
        name = self._recorder().record(stream)
        self.log.info("recording of {stream} started by the administrator", stream=stream)
        return name

    def stopRecording(self, mediaSessionId: str) -> str:
        stream = self._published(mediaSessionId)
        return self._recorder().stopRecording(stream)

    def recordings(self) -> list[Path]:
        return self._recorder().files()

    def deleteRecording(self, fileName: str) -> None:
        self._recorder().delete(fileName)
