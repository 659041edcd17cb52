"""
One client connection's side of the room protocol, whatever its wire.

A transport hands decoded messages to L{ClientSession.messageReceived}; the
session answers through the transport's L{ISignallingChannel}. Messages are
handled one at a time, in order, and each handler finishes its room
bookkeeping before it returns.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import LoopingCall
from wcs.logs import Logger, clip
from zope.interface import implementer

from wcs import protocol
from wcs.access.gate import Gate
from wcs.commands import TRACED, RoomCommands
from wcs.errors import AccessDenied, ProtocolError, RoomError, StreamError
from wcs.interfaces import IClientSession, IMediaSource, IRoomServer, ISignallingChannel, IStream
from wcs.messages import ServerMessage
from wcs.room.model import Participant
from wcs.streams import StreamControl

PING = ServerMessage("ping", None)
PONG = ServerMessage("pong", None)

# Log levels (connection/set_log_level); at TRACED ones a client's messages are logged.
LOG_LEVELS = ("ERROR", "WARN", "INFO", "DEBUG", "TRACE")

# Stream messages, which a cluster may take to the room's node (wcs.cluster).
STREAM_MESSAGES = frozenset({"publishStream", "playStream", "unPublishStream", "stopStream"})

# Messages of the SDK that need no answer from a room server.
IGNORED = frozenset({"pushLogs", "sessionDebug", "submitBugReport"})


def failMessage(apiMethod: str | None, info: str) -> ServerMessage:
    return ServerMessage("fail", {"apiMethod": apiMethod, "info": info})


def traceText(args: Any, limit: int = 500) -> str:
    """
    A traced message's arguments for the log, as JSON cut to C{limit}. Only
    for a client an operator chose to trace: its messages are already
    bounded by the transport's size and value limits.
    """
    try:
        text = json.dumps(args, ensure_ascii=True, default=lambda o: f"<{type(o).__name__}>")
    except (ValueError, RecursionError):  # an AMF value that refers to itself
        return "<unprintable>"
    return text[:limit] + "..." if len(text) > limit else text


def peerAddress(peer: str) -> str:
    """C{tcp:1.2.3.4:5678} without the port: log limits go by address."""
    return peer.rpartition(":")[0] or peer


@implementer(IClientSession)
class ClientSession(RoomCommands):
    log = Logger()

    def __init__(self, server: IRoomServer, channel: ISignallingChannel):
        # server: the core's own wcs.server.RoomServer (its rooms, limits...).
        self.server = server
        self.channel = channel
        self.rooms = server.rooms
        self.limits = server.limits
        self.connection: protocol.Connection | None = None
        self.participants: dict[str, Participant] = {}
        self.streams = StreamControl(self)
        self.closed = False
        # Known from the start (the REST API lists clients before they
        # identify); told to the client in getUserData.
        self.sessionId = server.newSessionId()
        self.createdAt = server.clock.seconds()
        # Set from the REST API (connection/set_log_level): DEBUG or TRACE
        # logs each message this client sends.
        self.logLevel: str | None = None
        # Access: the token's claims once connected; the gate holds messages
        # while an access check (a REST hook) is out.
        self.claims = None
        self.connecting = False
        self.gate = Gate(self._handle, self._heldTooMany)
        # Liveness: transports set `heard` on anything from the peer (the hot
        # path: one store); each keep-alive tick turns it into `lastHeard`.
        self.heard = False
        self.lastHeard = server.clock.seconds()
        self._pinger: LoopingCall | None = None
        self._handlers: dict[str, Callable[[str, list[Any]], None]] = {
            "connection": self._connection,
            "ping": self._ping,
            "pong": self._pong,
            "sendData": self._sendData,
            "publishStream": self.streams.open,
            "playStream": self.streams.open,
            "unPublishStream": self.streams.stop,
            "stopStream": self.streams.stop,
        }
        # From the start, not from `connection`: a client that never
        # identifies (an RTMP room URL before publish) is still timed out.
        self._startPinging()

    @property
    def login(self) -> str | None:
        return self.connection.login if self.connection else None

    @property
    def identified(self) -> bool:
        return self.connection is not None

    def __repr__(self) -> str:
        return f"<ClientSession {clip(self.login, 40)} from {self.channel.peer}>"

    # IClientSession

    def messageReceived(self, name: str, args: list[Any]) -> None:
        if self.closed:
            return
        self.heard = True
        if self.logLevel in TRACED:
            self.log.info("{session} sent {name} {args}", session=self, name=clip(name, 64),
                          args=traceText(args))
        if self.gate.waiting and name not in ("ping", "pong"):
            self.gate.hold(name, args)
            return
        self._handle(name, args)

    def _handle(self, name: str, args: list[Any]) -> None:
        if self.closed:
            return
        handler = self._handlers.get(name)
        if handler is None:
            if name in IGNORED:
                return
            # Not echoed whole: a name may be a message's worth of text.
            self.refuse(name[:64], f"unknown message {clip(name, 64)}")
            return
        if self.connection is None and name not in ("connection", "ping", "pong"):
            self.refuse(name, f"{name} before connection: send 'connection' first")
            return
        if name in STREAM_MESSAGES and self.server.placement is not None \
                and self.server.placement.forward(self, name, args):
            return  # a stream of a room on another node: negotiated there
        try:
            handler(name, args)
        except ProtocolError as e:
            self.refuse(name, e.info)

    def peerActive(self) -> None:
        self.heard = True

    def protocolError(self, info: str) -> None:
        self.refuse(None, info)

    def connectionLost(self, reason: str = "connection lost") -> None:
        if self.closed:
            return
        self.closed = True
        if self._pinger is not None and self._pinger.running:
            self._pinger.stop()
        self.streams.stopAll(disconnected=True)
        for participant in list(self.participants.values()):
            participant.home.disconnect(participant)
        self.participants.clear()
        self.server.sessionEnded(self)
        self.log.info("{session} disconnected: {reason}", session=self, reason=reason)

    # Acting for a client that has no SDK messages (IClientSession)

    def identify(self, appKey: str, login: str | None = None,
                 token: str | None = None) -> Deferred:
        custom: dict[str, Any] = {"login": login} if login else {}
        if token is not None:
            custom["token"] = token
        result = Deferred()
        self._connection("connection", [{"appKey": appKey, "custom": custom}], result)
        return result

    def requestJoin(self, room: str, record: bool = False) -> Deferred:
        if room in self.participants:
            return succeed(None)
        try:
            room = protocol.parseJoin({"name": room}, self.limits).room
        except ProtocolError as e:
            return fail(RoomError(e.info))

        def decided(decision):
            self._allowed(decision)
            wanted = record if decision.record is None else decision.record
            placement = self.server.placement
            if placement is None or not self.login or room in self.participants:
                entered(None, wanted)
                return None
            # In a cluster the room may live on another node: join it there
            # (an RTMP encoder or Flash client, as a WebSocket join does).
            return placement.enter(self, room, self.login, wanted).addCallback(entered, wanted)

        def entered(placed: Participant | None, wanted: bool) -> None:
            if placed is not None and self.closed:
                placed.home.disconnect(placed)  # gone while the room's node answered
                raise AccessDenied("the connection is closed")
            if room not in self.participants:
                self._enterRoom(room, wanted, placed)
        return self.server.access.join(self, room, record).addCallback(decided)

    def authorizePublish(self, name: str, room: str | None = None, record: bool = False,
                         provider: str = "RTMP") -> Deferred:
        request = self.streams.sourceRequest(name, provider, room=room, record=record)

        def decided(decision) -> bool:
            self._allowed(decision)
            return record if decision.record is None else decision.record
        return self.streams.ask(request).addCallback(decided)

    def authorizePlay(self, name: str, provider: str = "RTMP") -> Deferred:
        request = self.streams.sourceRequest(name, provider, published=False)
        return self.streams.ask(request).addCallback(self._allowed)

    def _allowed(self, decision) -> None:
        """A transport's question answered: raise L{AccessDenied} unless allowed."""
        if self.closed:
            raise AccessDenied("the connection is closed")
        if not decision.allowed:
            raise AccessDenied(decision.reason)

    def inRoom(self, room: str) -> bool:
        return room in self.participants

    def publish(self, name: str, source: IMediaSource, provider: str, record: bool = False,
                room: str | None = None, onStop=None) -> IStream:
        if room is not None:
            self.joinRoom(room)
        return self.streams.publishSource(name, source, provider=provider, room=room,
                                          record=record, onStop=onStop)

    # Member of rooms

    def send(self, message: ServerMessage) -> None:
        if not self.closed:
            self.channel.send(message)

    @property
    def chatWriter(self):
        """
        The channel's own way to write a chat MESSAGE (a WebSocket's
        C{sendChat}), or None: a participant's C{writeChat}
        (L{wcs.room.model.Participant}). A closed session has left its rooms
        before anything could call it.
        """
        return getattr(self.channel, "sendChat", None)

    def refuse(self, apiMethod: str | None, info: str) -> None:
        """
        Bad input: one C{fail} to this client and a log line, at most one a
        while per address (the info may quote up to a message of client text).
        """
        self.badInput("refused", "{session}: refused {api}: {info}",
                      session=self, api=clip(apiMethod, 40), info=clip(info, 200))
        self.send(failMessage(apiMethod, info))

    def badInput(self, kind: str, format: str, **kwargs) -> None:
        """Log bad input, rate-limited by this peer's address and C{kind}."""
        self.server.badInputLog.warn((peerAddress(self.channel.peer), kind), format, **kwargs)

    # Handlers

    def _connection(self, name: str, args: list[Any], result: Deferred | None = None) -> None:
        """
        C{result}: a transport's L{identify}, told the decision; on a
        refusal the transport answers its own way and closes.
        """
        if self.connection is not None or self.connecting:
            raise ProtocolError("connection: already connected")
        connection = protocol.parseConnection(args, self.limits)
        self.connecting = True
        self.gate.after(self.server.access.connect(self, connection),
                        lambda decision: self._connected(connection, decision, result))

    def _connected(self, connection: protocol.Connection, decision,
                   result: Deferred | None = None) -> None:
        if self.closed:
            if result is not None:
                result.errback(AccessDenied("the connection is closed"))
            return
        if not decision.allowed:
            if result is not None:
                # A transport's identify: it tells its client its own way
                # (RTMP: a status naming the reason), then closes.
                self.badInput("refused", "{session}: refused {api}: {info}", session=self,
                              api="connection", info=clip(decision.reason, 200))
                result.errback(AccessDenied(decision.reason))
                return
            # The SDK's way: a fail naming the reason, then the socket closes.
            self.refuse("connection", decision.reason)
            self.channel.close(decision.reason)
            return
        self.connection = connection.withLogin(decision.login)
        self.claims = decision.claims
        self.log.info("{peer} connected as {login} (appKey {appKey})",
                      peer=self.channel.peer, login=clip(self.connection.login),
                      appKey=clip(self.connection.appKey))
        self.send(ServerMessage("getUserData", {
            "appKey": self.connection.appKey,
            "login": self.connection.login,
            "sessionId": self.sessionId,
            **({"custom": decision.custom} if decision.custom else {}),
            # The SDK keeps this object and ignores fields it does not know;
            # pages pass these to it as mediaOptions.iceServers (docs/networks.md).
            **({"iceServers": self.server.turn.iceServers(self.connection.login)}
               if self.server.turn else {}),
        }))
        if result is not None:
            result.callback(None)

    def _heldTooMany(self, reason: str) -> None:
        self.refuse(None, reason)
        self.channel.close(reason)

    def _ping(self, name: str, args: list[Any]) -> None:
        self.send(PONG)

    def _pong(self, name: str, args: list[Any]) -> None:
        pass  # a sign of life is all a pong is for

    def _startPinging(self) -> None:
        settings = self.server.settings
        interval = settings.ws_ping_interval / 1000.0
        if interval <= 0:
            return
        self._lastTick = self.server.clock.seconds()
        self._pinger = LoopingCall(self._keepAlive)
        self._pinger.clock = self.server.clock
        self._pinger.start(interval, now=False)

    def _keepAlive(self) -> None:
        """
        Close a peer silent for C{ws_dead_peer_timeout}, else ping it (each
        transport says C{ping} its own way). Silence is counted from the
        first tick that saw a sign of life, so it is measured in whole ping
        intervals and errs on the side of keeping the client.
        """
        now = self.server.clock.seconds()
        sinceTick, self._lastTick = now - self._lastTick, now
        # A tick long overdue or from the future: the machine or the loop
        # stood still (a virtual machine paused and resumed, a frozen
        # loop) or the wall clock the reactor reads was stepped. That
        # silence is ours as much as the peer's: it counts from now (in
        # the lab, a paused VM closed every session of an hour's run).
        if self.heard or not 0 <= sinceTick <= 2 * self._pinger.interval:
            self.heard = False
            self.lastHeard = now
        timeout = self.server.settings.ws_dead_peer_timeout / 1000.0
        silent = now - self.lastHeard
        if timeout > 0 and silent >= timeout:
            self.log.warn("{session}: nothing heard for {silent:.0f}s, closing",
                          session=self, silent=silent)
            self.channel.close(f"nothing heard from the client for {silent:.0f} s")
            return
        self.send(PING)

    # Room membership (the commands that change it: wcs.commands)

    def joinRoom(self, room: str, record: bool = False) -> None:
        """
        Join C{room} for a transport acting for its client (an RTMP encoder
        publishing to a room URL): a room already joined stays as it is.
        """
        if room in self.participants:
            return
        try:
            room = protocol.parseJoin({"name": room}, self.limits).room
        except ProtocolError as e:
            raise RoomError(e.info) from None
        self._enterRoom(room, record)

    def _enterRoom(self, room: str, record: bool = False,
                   placed: Participant | None = None) -> Participant:
        """
        Join C{room} as this session's login, here or, when C{placed}, as
        the participant already joined on the room's node of a cluster.

        @raise RoomError: no login, the login is taken, the room is full.
        """
        if not self.login:
            raise RoomError("a login is needed to join a room: "
                            "connect with custom.login set")
        existing = self.participants.get(room)
        if existing is not None:
            return existing  # a second join changes nothing
        if placed is None:
            placed = self.rooms.join(room, self.login, self, record)
        self.participants[room] = placed
        return placed

    def removeFromRoom(self, room: str, info: str) -> bool:
        """
        The server takes this client out of C{room} (an operator's kick): as
        a leave, but its streams there end with C{info}. The SDK has no kick
        event: the client learns it from its streams and later room commands.

        @return: whether the client was in the room.
        """
        participant = self.participants.pop(room, None)
        if participant is None:
            return False
        self.log.info("{session} removed from {room}: {info}", session=self,
                      room=clip(room), info=info)
        self.streams.stopRoom(participant, info)
        participant.home.leave(participant)
        return True

    def participantFor(self, roomName: str) -> Participant:
        participant = self.participants.get(roomName)
        if participant is None:
            raise StreamError(f"not in room {roomName!r}: join it before publishing")
        return participant
