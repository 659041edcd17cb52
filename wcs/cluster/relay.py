"""
The client's node's end of a visitor: a client connected here in a room
that lives on another node (docs/cluster.md, "Relay"); the room's node's end
is L{wcs.cluster.hosts}.

L{Visitors} is such a participant's C{home}: the session calls
C{participant.home.leave(participant)} as for a local room, and the command
goes to the room's node. It keeps each visited room's roster from the
events it relays, so that a chat to a login not in the room fails at once,
as it does locally, and so that a play of a stream announced there goes
there. Stream messages for the room's streams are relayed as they came.

Bus payloads (C{op}): C{join} -> C{joined}; C{leave}, C{disconnect},
C{chat}, C{announce}, C{withdraw}, C{stream} (to the room's node);
C{deliver}, C{removed}, C{close} (to the client's node); C{members} and
C{state} are L{wcs.cluster.resync}'s. The rooms it keeps are
L{wcs.cluster.visited}'s; which end a message from another node is for,
L{wcs.cluster.routing}'s.
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any

from twisted.internet.defer import Deferred

from wcs.cluster.visited import Relayed, RemoteParticipant, RemoteRoom
from wcs.errors import TOO_MANY, UNAVAILABLE, RoomError
from wcs.logs import LogLimiter, Logger, clip
from wcs.messages import ServerMessage
from wcs.room.events import streamEntry

JOIN_TIMEOUT = 5.0  # seconds a join waits for the room's node


def joinsItself(session) -> bool:
    """
    Whether C{session}'s client sends its own joins (the room protocol: a
    page, a Flash client), or its transport joined for it (an RTMP encoder
    publishing to a room URL: C{clientJoins} false on its channel) and
    the client cannot join again by itself.
    """
    return getattr(session.channel, "clientJoins", True)


def claimsAsJson(claims) -> dict[str, Any] | None:
    """A session's verified token claims, for its session on the room's node."""
    if claims is None:
        return None
    return {"login": claims.login, "room": claims.room, "grants": sorted(claims.grants),
            "expires": claims.expires}


class Visitors:
    log = Logger()

    def __init__(self, bus, clock, isLive=lambda name: False, reactor=None,
                 edgePlay: bool = False, edgeMinPlayers: int = 1,
                 pulling=lambda name: False, maxRelayed: int = 64):
        """
        @param isLive: whether a stream of that name is live on this node
            (then it is played here, not relayed).
        @param reactor: connects media relays (L{wcs.cluster.media}).
        @param edgePlay: a play of a visited room's stream may be kept here:
            the session plays it from this node's pull of it
            (L{wcs.cluster.edge}), when the edge rule says so.
        @param edgeMinPlayers: the edge rule: a new play is kept here when
            this node pulls the stream already (C{pulling(name)}), or when
            with it the stream has at least that many players here; fewer
            are forwarded to the room's node.
        @param maxRelayed: stream messages with a new mediaSessionId a
            session may have relayed to other nodes and not yet ended
            (C{cluster_session_max_relayed_streams}).
        """
        self.maxRelayed = maxRelayed
        self.errors = LogLimiter(self.log, clock=clock)
        self.edgePlay = edgePlay
        self.edgeMinPlayers = edgeMinPlayers
        self.pulling = pulling
        self.bus = bus
        self.clock = clock
        self.reactor = reactor
        self.isLive = isLive
        self.rooms: dict[str, RemoteRoom] = {}
        # requestId -> (its Deferred, its timeout, sessionId, room, node)
        self.pending: dict[str, tuple[Deferred, Any, str, str, str]] = {}
        self._ids = itertools.count()
        # Every session that visited a room, for what its proxy there sends
        # (stream statuses, answers): weak, a closed session goes by itself.
        self.sessions: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        # The stream messages relayed to other nodes.
        self.streams = Relayed()

    def peers(self) -> set[str]:
        return {room.node for room in self.rooms.values()}

    def join(self, node: str, session, room: str, login: str, record: bool) -> Deferred:
        """
        Join C{room} on C{node} for C{session}.

        @return: a Deferred firing with the L{RemoteParticipant}, or failing
            with L{RoomError} (the room node's refusal, or no answer).
        """
        requestId = f"{self.bus.nodeId}/{next(self._ids)}"
        d = Deferred()
        timeout = self.clock.callLater(JOIN_TIMEOUT, self._noAnswer, requestId, node)
        self.pending[requestId] = (d, timeout, session.sessionId, room, node)
        self.sessions[session.sessionId] = session
        appKey = session.connection.appKey if session.connection else ""
        claims = getattr(session, "claims", None)
        self.bus.send(node, {"op": "join", "id": requestId, "session": session.sessionId,
                             "room": room, "login": login, "record": record,
                             "appKey": appKey, "claims": claimsAsJson(claims)})

        def joined(payload):
            remote = self.rooms.get(room)
            if remote is None or remote.node != node:
                remote = self.rooms[room] = RemoteRoom(room, node)
            remote.setState(login, payload.get("state") or [])
            relay = payload.get("relay")
            if isinstance(relay, list) and len(relay) == 2:
                remote.relay = (str(relay[0]), int(relay[1]))
            participant = RemoteParticipant(remote, login, session, self)
            remote.members[session.sessionId] = participant
            return participant
        return d.addCallback(joined)

    def _noAnswer(self, requestId: str, node: str) -> None:
        entry = self.pending.pop(requestId, None)
        if entry is not None:
            entry[0].errback(RoomError(
                f"the room's node {node} did not answer in {JOIN_TIMEOUT:.0f} s",
                code=UNAVAILABLE))

    def joined(self, payload: dict[str, Any]) -> None:
        entry = self.pending.pop(payload.get("id"), None)
        if entry is None:
            if "error" not in payload:  # joined after we gave up: undo it
                self.bus.send(payload["from"], {"op": "leave",
                                                "session": payload.get("session"),
                                                "room": payload.get("room")})
            return
        d, timeout = entry[:2]
        timeout.cancel()
        if "error" in payload:
            code = payload.get("code")
            d.errback(RoomError(str(payload["error"]),
                                code=code if isinstance(code, str) else None))
        else:
            d.callback(payload)

    # The participant's home: what the session and its streams call

    def leave(self, participant: RemoteParticipant) -> None:
        self._send(participant, "leave")

    def disconnect(self, participant: RemoteParticipant) -> None:
        self.streams.removeSession(participant.member.sessionId)
        self._send(participant, "disconnect")

    def forward(self, session, name: str, args: list[Any]) -> bool:
        """
        Take a stream message to the node of the stream's room: a publish
        into a visited room, a play of a stream announced in one (and not
        live here), a stop of a stream relayed before.

        @return: whether it was taken (else the session handles it).
        """
        request = args[0] if args and isinstance(args[0], dict) else {}
        mediaSessionId = request.get("mediaSessionId")
        if not isinstance(mediaSessionId, str):
            return False
        node = self.streams.node(session.sessionId, mediaSessionId)
        if node is None and name in ("publishStream", "playStream"):
            room = self._roomOf(session, name, request)
            node = room.node if room is not None else None
            if node is not None and name == "playStream" and self.playsHere(request["name"]):
                return False
        if node is None:
            return False
        if name in ("publishStream", "playStream"):
            relayed = self.streams.nodes.get(session.sessionId, {})
            if self.maxRelayed and mediaSessionId not in relayed \
                    and len(relayed) >= self.maxRelayed:
                self._tooMany(session, name, mediaSessionId, request)
                return True
            # A repeated mediaSessionId skips _roomOf's checks: the name is
            # the client's, and counted only when it is one.
            played = request.get("name") if name == "playStream" else None
            self.streams.add(session.sessionId, mediaSessionId, node,
                             played if isinstance(played, str) else None)
        self.bus.send(node, {"op": "stream", "session": session.sessionId, "name": name,
                             "args": args})
        return True

    def _tooMany(self, session, name: str, mediaSessionId: str, request: dict) -> None:
        """
        Past C{cluster_session_max_relayed_streams}: each relayed stream is
        kept until its final status comes back, so a client making new
        mediaSessionIds without end would grow the map without bound.
        """
        info = (f"too many streams relayed to other nodes on this connection: at most "
                f"{self.maxRelayed} until some end")
        self.errors.warn("relayed", "{session}: {message} refused: {info}",
                         session=session, message=name, info=info)
        streamName = request.get("name")
        session.send(ServerMessage("notifyStreamStatusEvent", {
            "mediaSessionId": mediaSessionId,
            "name": streamName if isinstance(streamName, str) else "",
            "published": name == "publishStream", "status": "FAILED", "info": info},
            refusal=TOO_MANY))

    def playsHere(self, stream: str) -> bool:
        """
        The edge rule: whether a new play of a visited room's stream is
        played here, from this node's pull of it, rather than forwarded to
        the room's node. A pull costs both nodes a copy of the stream (the
        origin sends it, this node takes it in and packetizes it again): it
        pays only for a stream with several players here, so the first
        C{edgeMinPlayers - 1} are forwarded; the next one makes the pull,
        and every later one shares it. A forwarded player stays where it
        is (docs/cluster.md, "Edge fan-out").
        """
        if not self.edgePlay:
            return False
        return self.pulling(stream) or \
            self.streams.players.get(stream, 0) + 1 >= self.edgeMinPlayers

    def _roomOf(self, session, name: str, request: dict) -> RemoteRoom | None:
        custom = request.get("custom")
        if name == "publishStream":
            room = self.rooms.get(custom.get("name")) if isinstance(custom, dict) else None
            return room if room is not None and session.sessionId in room.members else None
        stream = request.get("name")
        if not isinstance(stream, str) or self.isLive(stream):
            return None
        for room in self.rooms.values():
            if session.sessionId in room.members and any(
                    stream in streams for streams in room.roster.values()):
                return room
        return None

    def chat(self, sender: RemoteParticipant, to: str, text: str) -> None:
        room = sender.room
        if to not in room.roster:
            raise RoomError(f"Room {room.name!r} has no participant with login {to!r}")
        self._send(sender, "chat", to=to, text=text, keep=True)

    def announceStream(self, participant: RemoteParticipant, streamName: str) -> None:
        participant.streams[streamName] = None
        stream = self._localStream(participant, streamName)
        if stream is not None and participant.room.relay is not None \
                and self.reactor is not None and not participant.gone:
            # Media a transport brought here (RTMP, Flash): its frames go to
            # the room's node, which publishes and announces it there.
            from wcs.cluster.media import pushStream

            room = participant.room
            participant.pushes[streamName] = pushStream(
                self.reactor, room.relay, stream.media.source, {
                    "node": self.bus.nodeId, "inc": self.bus.incarnation,
                    "session": participant.member.sessionId, "room": room.name,
                    "stream": streamName, "provider": stream.request.mediaProvider,
                    "tracks": dict(stream.media.source.tracks),
                    "record": bool(stream.request.record)})
            return
        self._send(participant, "announce", stream=streamName, keep=True)

    @staticmethod
    def _localStream(participant: RemoteParticipant, streamName: str):
        """The published stream of that name whose media a transport brings here."""
        for stream in participant.member.streams.active.values():
            if stream.published and stream.name == streamName \
                    and getattr(stream.media, "source", None) is not None:
                return stream
        return None

    def withdrawStream(self, participant: RemoteParticipant, streamName: str,
                       failed: bool = False) -> None:
        push = participant.pushes.pop(streamName, None)
        if participant.streams.pop(streamName, 0) is None:
            if push is not None:
                push.end(failed)  # the room's node ends it there
            else:
                self._send(participant, "withdraw", stream=streamName, failed=failed,
                           keep=True)

    def _send(self, participant: RemoteParticipant, op: str, keep: bool = False,
              **fields) -> None:
        if participant.gone:
            return
        room = participant.room
        if not keep:
            participant.gone = True
            self.forget(participant)
        self.bus.send(room.node, {"op": op, "session": participant.member.sessionId,
                                  "room": room.name, **fields})

    def forget(self, participant: RemoteParticipant) -> None:
        room = participant.room
        room.members.pop(participant.member.sessionId, None)
        if not room.members and self.rooms.get(room.name) is room:
            del self.rooms[room.name]

    # From the room's node

    def deliver(self, payload: dict[str, Any]) -> None:
        """A message of the room's node for clients here: a room event
        (which the roster follows), a stream's answer or status."""
        name, args = str(payload.get("name")), payload.get("args") or []
        message = ServerMessage(name, *args)
        to = payload.get("to") or ()
        if name == "OnDataEvent":
            try:
                event = args[0]["payload"]
                room = self.rooms.get(event["roomName"])
            except (IndexError, KeyError, TypeError):
                event = room = None
            if room is not None:
                room.apply(event.get("name"), event.get("info"))
            if event is not None:
                # Not to a client that left the room meanwhile (its leave and
                # this event crossed, or its leave was lost with Redis away).
                to = [s for s in to if room is not None and s in room.members]
        elif name == "notifyStreamStatusEvent":
            to = self._streamStatus(to, args)
        for sessionId in to:
            session = self.sessions.get(sessionId)
            if session is not None:
                session.send(message)

    def _streamStatus(self, sessions, args: list[Any]) -> list[str]:
        """
        A relayed stream that ended is forgotten. The statuses of the room
        node's copy of a stream whose media this node pushes there (its
        own mediaSessionId, made there) are not for the client, which has
        its own stream's: they are dropped while that stream is live here.

        @return: the sessions to deliver the status to.
        """
        body = args[0] if args and isinstance(args[0], dict) else {}
        media, stream = body.get("mediaSessionId"), body.get("name")
        final = body.get("status") in ("UNPUBLISHED", "STOPPED", "FAILED")
        to = []
        for sessionId in sessions:
            if self.streams.node(sessionId, media) is None \
                    and self._publishesHere(sessionId, stream):
                continue
            to.append(sessionId)
            if final:
                self.streams.remove(sessionId, media)
        return to

    def _publishesHere(self, sessionId: str, name: Any) -> bool:
        session = self.sessions.get(sessionId)
        return session is not None and any(
            s.published and s.name == name for s in session.streams.active.values())

    def close(self, payload: dict[str, Any]) -> None:
        """The room's node closed a visitor (an operator there)."""
        session = self.sessions.get(payload.get("session"))
        if session is not None:
            session.channel.close(str(payload.get("reason")))

    def removed(self, payload: dict[str, Any]) -> None:
        """The room's node took a member out (an operator's kick there)."""
        room = self.rooms.get(payload.get("room"))
        participant = room.members.get(payload.get("session")) if room else None
        if participant is not None:
            participant.gone = True
            self.forget(participant)
            participant.member.removeFromRoom(room.name, str(payload.get("info")))

    def nodeGone(self, node: str) -> list[tuple[RemoteParticipant, dict]]:
        """
        The node of some visited rooms died: their members here see every
        other participant's streams fail and the participants leave, and
        are out of the room (free to join again, on a live node).

        @return: the members whose client cannot join again by itself (an
            RTMP encoder: L{joinsItself}), each with the
            room as it saw it: not taken out, their streams kept, for
            L{wcs.cluster.moves.Moves.again}.
        """
        kept = []
        for room in [r for r in self.rooms.values() if r.node == node]:
            del self.rooms[room.name]
            self.log.warn("cluster: room {room} lost with its node {node}",
                          room=clip(room.name), node=node)
            seen = {login: dict(streams) for login, streams in room.roster.items()}
            for participant in list(room.members.values()):
                participant.gone = True
                session = participant.member
                if not joinsItself(session):
                    kept.append((participant, seen))
                    continue
                for login, streams in room.roster.items():
                    if login == participant.login:
                        continue
                    for stream in streams:
                        session.send(room.event("FAILED", streamEntry(login, stream)))
                    session.send(room.event("LEFT", login))
                session.removeFromRoom(room.name, f"the room's node {node} is gone")
        return kept
