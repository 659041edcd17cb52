"""
The members of a yielding room moved into the older room (docs/cluster.md,
"A split"), on each member's own node, without the client asking.

The SDK has no kick event and no "moved" event: taken out of the room, a
member would learn it only from its streams' status or its next command.
So its node joins it to the older room itself, as the same participant
name and session (a join the client did not send: no C{DataStatusEvent}),
and tells it, as room events the SDK already handles, what differs
between the room it saw and the one it is in now (L{missed}: LEFT and
UNPUBLISHED for what is gone, JOINED and PUBLISHED for what is there).
The older room's members get JOINED from their room, as for any join.

Its streams published in the yielding room go on where their media
arrives (the client negotiated with that node; the SDK cannot be made to
publish again without the page's code): each is announced in the older
room, and its media pushed there frame by frame when this node is not
the older room's node (L{wcs.cluster.relay.Visitors.announceStream},
the media relay of an RTMP encoder), so that the older room's members
play it there.

A member whose login the older room has already is not moved: the older
one wins, and the newer is out of the room as an operator's kick would
take it out, its streams there ending with the reason.

An RTMP encoder in a room of another node that is given up cannot join
again by itself (it speaks no room protocol): its node joins it again
(L{Moves.again}), its stream going on, into a room placed anew; that room
yields, and moves it, when the old node comes back.

Bus payloads (C{op}): C{moved} (C{session}, C{room}, C{to}), from the
yielding room's node to a visitor's node.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred

from wcs.cluster.resync import missed
from wcs.errors import RoomError
from wcs.interfaces import PUBLISHING, UNPUBLISHED
from wcs.logs import LogLimiter, Logger, clip
from wcs.room.events import roomEvent

Roster = dict[str, dict[str, None]]


def yieldInfo(node: str) -> str:
    """Why a visitor's stream negotiated with the yielding node ended there."""
    return f"the room moved to node {node}: publish the stream again"


def refusedInfo(node: str, info: str) -> str:
    """Why a member of a yielding room is out of the room instead of moved."""
    return f"the room lives on node {node}, which refused this member: {info}"


def againInfo(node: str, info: str) -> str:
    """Why an encoder's streams ended when its room, lost with its node, was not joined again."""
    return f"the room's node {node} is gone, and the room could not be joined again: {info}"


def dropParticipant(session, participant) -> None:
    """C{session} (a client's or a visitor's proxy) is no longer C{participant}."""
    room = participant.room.name
    if session.participants.get(room) is participant:
        del session.participants[room]


def rosterOfRoom(room) -> Roster:
    """login -> announced stream names, of a room here."""
    return {p.login: dict(p.streams) for p in room.participants.values()}


class Moves:
    log = Logger()

    def __init__(self, server, visitors, nodeId: str, clock):
        self.server = server
        self.visitors = visitors
        self.nodeId = nodeId
        self.errors = LogLimiter(self.log, clock=clock)

    def local(self, participant, node: str, seen: Roster, record: bool) -> None:
        """
        A client of this node was a member of this node's yielding room
        (already dissolved: L{wcs.room.rooms.Rooms.dissolve}) that saw
        C{seen}: join it to the room on C{node}.
        """
        session = participant.member
        dropParticipant(session, participant)
        self._move(session, participant, participant.room.name, node, seen, record)

    def moved(self, payload: dict[str, Any]) -> None:
        """The node of a visited room yields it to node C{to}: move our members there."""
        room = self.visitors.rooms.get(payload["room"])
        participant = room.members.get(payload["session"]) if room is not None else None
        if participant is None or room.node != payload["from"]:
            return
        seen = {login: dict(streams) for login, streams in room.roster.items()}
        participant.gone = True
        self.visitors.forget(participant)
        self._leaveVisited(participant)
        self._move(participant.member, participant, room.name, payload["to"], seen, False)

    def again(self, participant, seen: Roster) -> None:
        """
        A client of this node that speaks no room protocol (an RTMP encoder:
        L{wcs.cluster.relay.joinsItself}) lost its visited room with the
        room's node (given up: L{wcs.cluster.relay.Visitors.nodeGone}). It cannot join
        again by itself, and its broadcast must not end with a stall: it is
        joined again as a move would, the room placed anew (while the old
        node is away, on a live node: a new room of that name, which yields
        to the older one if that node comes back, moving it there), its
        streams carried. Not recorded as a room (the lost room's flag was
        its node's); a stream asked to be recorded still is.
        """
        session, room = participant.member, participant.room.name
        self._leaveVisited(participant)
        if session.closed:
            return

        def entered(placed):
            if placed is None:  # here
                return self._joinHere(session, room, False)
            return placed, placed.room.roster
        d = self.server.placement.enter(session, room, session.login, False)
        self._carry(session, participant, room, seen, d.addCallback(entered),
                    lambda info: againInfo(participant.room.node, info))

    def _leaveVisited(self, participant) -> None:
        """A visitor out of its room there, its streams kept here: pushed anew once moved."""
        dropParticipant(participant.member, participant)
        for push in participant.pushes.values():
            push.end(False)  # that node ended it there (or is gone)
        participant.pushes.clear()

    def _move(self, session, old, room: str, node: str, seen: Roster, record: bool) -> None:
        if session.closed:
            return  # its streams ended with its connection
        if node == self.nodeId:
            d = maybeDeferred(self._joinHere, session, room, record)
        else:
            d = self.visitors.join(node, session, room, session.login, record).addCallback(
                lambda placed: (placed, placed.room.roster))
        self._carry(session, old, room, seen, d, lambda info: refusedInfo(node, info))

    def _carry(self, session, old, room: str, seen: Roster, d: Deferred, why) -> None:
        """
        C{session}, member C{old} of C{room} until now, joins it (C{d}: its
        new participant and that room's roster) with the streams it
        published there; C{why(info)} says why its streams end when refused.
        """
        # Its streams in the old room go on: announced in the new one once there.
        streams = [s for s in session.streams.active.values()
                   if s.published and s.participant is old]
        d.addCallbacks(self._joined, self._refused, (session, room, seen, streams),
                       errbackArgs=(session, room, streams, why))
        d.addErrback(lambda f: self.log.failure("cluster: moving a member of {room}",
                                                f, room=clip(room)))
        if not session.gate.waiting:
            # What the client sends meanwhile (a chat to the room) waits for
            # the move, in order, as during an access check. (A gate already
            # holding for a check is left alone: its messages are its own.)
            moving = Deferred()
            session.gate.after(moving, lambda _: None)
            d.addBoth(lambda _: moving.callback(None))

    def _joinHere(self, session, room: str, record: bool):
        placed = self.server.rooms.join(room, session.login, session, record)
        return placed, rosterOfRoom(placed.room)

    def _joined(self, result, session, room: str, seen: Roster, streams: list) -> None:
        placed, roster = result
        if session.closed:  # gone while the room's node answered
            placed.home.disconnect(placed)
            return
        session.participants[room] = placed
        events = missed(seen, roster, session.login)
        for name, info in events:
            session.send(roomEvent(room, name, info))
        carried = 0
        for stream in streams:
            if session.streams.active.get(stream.mediaSessionId) is not stream:
                continue  # ended meanwhile
            stream.participant = placed
            if stream.status == PUBLISHING:  # a pending one is announced when it starts
                placed.home.announceStream(placed, stream.name)
            carried += 1
        self.log.info("cluster: {session} moved into room {room} on node {node}: "
                      "{events} room events, {streams} streams carried",
                      session=session, room=clip(room),
                      node=getattr(placed.room, "node", self.nodeId), events=len(events),
                      streams=carried)

    def _refused(self, failure, session, room: str, streams: list, why) -> None:
        failure.trap(RoomError)
        info = why(failure.value.info)
        self.errors.warn(("refused", room), "cluster: {session} not moved into room "
                         "{room}: {info}", session=session, room=clip(room), info=info)
        for stream in streams:
            session.streams.end(stream, UNPUBLISHED, info)
