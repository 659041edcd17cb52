"""
The room server: rooms, streams and sessions, shared by every transport.
"""

from __future__ import annotations

import uuid

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from wcs.logs import LogLimiter, Logger
from twisted.plugin import getPlugins
from zope.interface import implementer

from wcs import protocol
from wcs.access.policy import AccessPolicy
from wcs.config import Settings
from wcs.errors import UNAVAILABLE, StreamError
from wcs.interfaces import (IMediaEngine, IMediaSource, IRoomServer, ISignallingChannel,
                            ITransport)
from wcs.room.rooms import Rooms
from wcs.session import ClientSession
from wcs.streams import StreamRegistry
from wcs.turn import TurnCredentials


@implementer(IRoomServer)
class RoomServer:
    log = Logger()

    def __init__(self, settings: Settings, clock: IReactorTime):
        self.settings = settings
        self.clock = clock
        self.rooms = Rooms(clock, idleTimeout=settings.room_idle_timeout / 1000.0,
                           maxParticipants=settings.room_max_participants,
                           maxRooms=settings.room_max_count)
        self.streams = StreamRegistry()
        self.limits = protocol.Limits(roomName=settings.room_name_max_length,
                                      login=settings.login_max_length,
                                      chat=settings.chat_max_length)
        self.sessions: set[ClientSession] = set()
        # Warnings about a client's bad input: one a while per address and kind.
        self.badInputLog = LogLimiter(ClientSession.log, clock=clock)
        self.engines: dict[str, IMediaEngine] = {}
        # Who may do what: tokens, REST hooks, rate limits (wcs.access).
        self.access = AccessPolicy(settings, clock)
        # Relays for clients behind firewalls: credentials told at connect.
        self.turn = TurnCredentials(settings)
        self.streamObservers: list = []
        # Why new connections are refused (wcs.drain); None: they are welcome.
        self.draining: str | None = None
        # In a cluster (wcs.cluster): where a joined room lives, with
        # enter(session, room, login, record) -> Deferred firing None (here)
        # or the participant joined on another node, and forward(session,
        # name, args) -> whether it took a stream message to the node of
        # the stream's room. None: one process.
        self.placement = None

    def openSession(self, channel: ISignallingChannel) -> ClientSession:
        session = ClientSession(self, channel)
        self.sessions.add(session)
        return session

    def sessionEnded(self, session: ClientSession) -> None:
        self.sessions.discard(session)

    def newSessionId(self) -> str:
        return str(uuid.uuid4())

    def registerMediaEngine(self, engine: IMediaEngine) -> None:
        for provider in engine.providers:
            self.engines[provider] = engine

    def mediaEngine(self, provider: str) -> IMediaEngine:
        engine = self.engines.get(provider)
        if engine is None:
            raise StreamError(f"media provider {provider!r} is not available on this server",
                              code=UNAVAILABLE)
        return engine

    def liveSource(self, name: str) -> IMediaSource | None:
        stream = self.streams.live(name)
        media = stream.media if stream is not None else None
        return media.source if media is not None else None

    def locateSource(self, name: str) -> Deferred:
        source = self.liveSource(name)
        if source is not None or self.placement is None:
            return succeed(source)
        return self.placement.locateSource(name)

    def streamNameInUse(self, name: str) -> bool:
        return name in self.streams.published

    def tlsContext(self):
        try:
            from wcs import tls
        except ImportError:
            return None
        return tls.serverContext(self.settings)

    def streamStarted(self, stream) -> None:
        """
        A published stream went live. Each of C{streamObservers} (the
        recorder) gets C{streamStarted(stream)}; one may set
        C{stream.recordName}.
        """
        self._tellObservers("streamStarted", stream)

    def streamEnded(self, stream) -> None:
        self._tellObservers("streamEnded", stream)

    def _tellObservers(self, event: str, stream) -> None:
        for observer in self.streamObservers:
            try:
                getattr(observer, event)(stream)
            except Exception:
                # A recorder's bug must not break the stream for its viewers.
                self.log.failure("stream observer failed on {event} of {stream}",
                                 event=event, stream=stream)

    def closeAll(self, reason: str) -> None:
        """Shut down: close every client connection."""
        for session in list(self.sessions):
            session.channel.close(reason)
            session.connectionLost(reason)


def findPlugins(interface) -> list:
    """
    The providers of C{interface} installed: built-in ones in
    C{wcs.transports}, drop-ins in the top-level C{wcs_plugins} package. A
    name found twice is taken once, the built-in first.
    """
    import wcs.transports
    import wcs_plugins

    found: dict[str, object] = {}
    for package in (wcs.transports, wcs_plugins):
        for provider in getPlugins(interface, package):
            found.setdefault(provider.name, provider)
    return list(found.values())


def findTransports() -> list[ITransport]:
    """The transports installed (L{findPlugins})."""
    return findPlugins(ITransport)
