"""
Room lifetime and room commands, independent of any transport.

Rooms are made by the first join and end when the last participant leaves.
When the last participant disconnects without leaving, the room lives on for
the idle timeout so that a reconnecting client finds it (with its recording
and other state) again.

Every method runs to completion before it returns: a login is free again as
soon as L{Rooms.leave} or L{Rooms.disconnect} returns, so a join that follows
a leave (on any connection) always succeeds.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.interfaces import IReactorTime
from wcs.logs import Logger, clip

from wcs.errors import FULL, IN_USE, UNAVAILABLE, RoomError
from wcs.room.events import chatEvent, streamEntry
from wcs.room.model import Member, Participant, Room


class RoomObserver(Protocol):
    """Told when rooms start and end (the recorder, metrics)."""

    def roomStarted(self, room: Room) -> None: ...

    def roomEnded(self, room: Room) -> None: ...


class Rooms:
    log = Logger()

    def __init__(self, clock: IReactorTime, idleTimeout: float = 60.0,
                 maxParticipants: int = 0, maxRooms: int = 0):
        """
        @param idleTimeout: seconds an emptied-by-disconnect room lives on.
        @param maxParticipants: participants per room, 0 for no limit.
        @param maxRooms: rooms at once (idle ones too), 0 for no limit.
        """
        self.clock = clock
        self.idleTimeout = idleTimeout
        self.maxParticipants = maxParticipants
        self.maxRooms = maxRooms
        self.rooms: dict[str, Room] = {}
        self.observers: list[RoomObserver] = []
        # Why no new room may be made (a drain), or None.
        self.refusal: str | None = None

    def get(self, name: str) -> Room | None:
        return self.rooms.get(name)

    def join(self, name: str, login: str, member: Member, record: bool = False) -> Participant:
        """
        Add C{login} to room C{name}, making the room if needed, and tell the
        others (JOINED). A second join by the same member is answered with
        the participant it already is.

        @raise RoomError: the login is taken by another member, the room
            is full, or there are too many rooms to make another.
        """
        room = self.rooms.get(name)
        if room is not None:
            existing = room.participants.get(login)
            if existing is not None:
                if existing.member is member:
                    return existing
                raise RoomError(
                    f"Room {name!r} already has a participant with login {login!r}",
                    code=IN_USE)
            if self.maxParticipants and len(room.participants) >= self.maxParticipants:
                raise RoomError(
                    f"Room {name!r} is full: at most {self.maxParticipants} participants",
                    code=FULL)
            if room.idleCall is not None:
                room.idleCall.cancel()
                room.idleCall = None
                self.log.info("room {room} resumed by {login}", room=clip(name),
                              login=clip(login))
        else:
            if self.refusal is not None:
                raise RoomError(self.refusal, code=UNAVAILABLE)
            if self.maxRooms and len(self.rooms) >= self.maxRooms:
                raise RoomError(
                    f"Room {name!r} cannot be made: the server has its maximum of "
                    f"{self.maxRooms} rooms", code=UNAVAILABLE)
            room = self.rooms[name] = Room(name, record, self.clock.seconds())
            self.log.info("room {room} started (record={record})", room=clip(name),
                          record=record)
            for observer in self.observers:
                observer.roomStarted(room)
        participant = Participant(room, login, member)
        participant.home = self
        room.broadcast(room.event("JOINED", login))
        room.participants[login] = participant
        self.log.info("{login} joined {room}", login=clip(login), room=clip(name))
        self._tell("participantJoined", participant)
        return participant

    def leave(self, participant: Participant) -> None:
        """
        Remove a participant who asked to leave; the room ends at once when
        it was the last one.
        """
        if self._remove(participant) and not participant.room.participants:
            self._end(participant.room)

    def disconnect(self, participant: Participant) -> None:
        """
        Remove a participant whose connection is gone; the room outlives its
        last participant for the idle timeout.
        """
        room = participant.room
        if not self._remove(participant) or room.participants:
            return
        if self.idleTimeout <= 0:
            self._end(room)
            return
        self.log.info("room {room} idle, ends in {timeout}s unless rejoined",
                      room=clip(room.name), timeout=self.idleTimeout)
        room.idleCall = self.clock.callLater(self.idleTimeout, self._idleExpired, room)

    def chat(self, sender: Participant, to: str, text: str) -> None:
        """
        Deliver C{text} to the participant C{to} of the sender's room, as it
        is.

        @raise RoomError: nobody of that login is in the room.
        """
        room = sender.room
        recipient = room.participants.get(to)
        if recipient is None:
            raise RoomError(f"Room {room.name!r} has no participant with login {to!r}")
        write = recipient.writeChat
        if write is not None:
            # The recipient's transport writes the frame itself: no message
            # object, no encoding step, no session in between.
            write(sender.chatHead, text)
        else:
            recipient.member.send(chatEvent(room.name, sender.login, text))

    def announceStream(self, participant: Participant, streamName: str) -> None:
        """A stream of this participant is live: PUBLISHED to the others."""
        if participant.room.participants.get(participant.login) is not participant:
            return
        participant.streams[streamName] = None
        room = participant.room
        room.broadcast(room.event("PUBLISHED", streamEntry(participant.login, streamName)),
                       exclude=participant)

    def withdrawStream(self, participant: Participant, streamName: str,
                       failed: bool = False) -> None:
        """
        A stream of this participant ended: UNPUBLISHED (or FAILED) to the
        others. Only announced streams are withdrawn.
        """
        if streamName not in participant.streams:
            return
        del participant.streams[streamName]
        room = participant.room
        event = "FAILED" if failed else "UNPUBLISHED"
        room.broadcast(room.event(event, streamEntry(participant.login, streamName)),
                       exclude=participant)

    def end(self, room: Room) -> None:
        """
        End a room that has no participants left (an operator's terminate of
        an idle room) at once, as its last leave would.
        """
        if not room.participants:
            self._end(room)

    def dissolve(self, room: Room) -> list[Participant]:
        """
        End C{room} with its participants taken out at once and no event to
        anyone: they are being moved into a room of the same name elsewhere
        (a cluster's split: L{wcs.cluster.moves}), which tells each what
        changed. Their streams are not ended here: the mover carries them.

        @return: the participants, in join order.
        """
        participants = list(room.participants.values())
        room.participants.clear()
        for participant in participants:
            self.log.info("{login} left {room} (moved)", login=clip(participant.login),
                          room=clip(room.name))
            self._tell("participantLeft", participant)
        self._end(room)
        return participants

    def _remove(self, participant: Participant) -> bool:
        room = participant.room
        if room.participants.get(participant.login) is not participant:
            return False
        for streamName in list(participant.streams):
            self.withdrawStream(participant, streamName)
        del room.participants[participant.login]
        room.broadcast(room.event("LEFT", participant.login))
        self.log.info("{login} left {room}", login=clip(participant.login),
                      room=clip(room.name))
        self._tell("participantLeft", participant)
        return True

    def _tell(self, event: str, participant: Participant) -> None:
        """Observers that have a method C{event} (webhooks) hear of a participant."""
        for observer in self.observers:
            method = getattr(observer, event, None)
            if method is None:
                continue
            try:
                method(participant)
            except Exception:
                self.log.failure("room observer failed on {event}", event=event)

    def _idleExpired(self, room: Room) -> None:
        room.idleCall = None
        if not room.participants:
            self._end(room)

    def _end(self, room: Room) -> None:
        if room.ended:
            return
        room.ended = True
        if room.idleCall is not None:
            room.idleCall.cancel()
            room.idleCall = None
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
        self.log.info("room {room} ended", room=clip(room.name))
        for observer in self.observers:
            try:
                observer.roomEnded(room)
            except Exception:
                # One observer's bug must not keep the others from hearing.
                self.log.failure("room observer failed on end of {room}",
                                 room=clip(room.name))
