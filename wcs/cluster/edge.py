"""
Edge fan-out (docs/cluster.md, "Edge fan-out"): streams of rooms on other
nodes played here. A stream is pulled from its room's node (its origin)
once per node, whatever the number and kind of its players here: RTMP
players take the pulled source through the node's frames-to-FLV feed,
WebRTC players negotiate here (this node's candidates) and share one
L{wcs.media.transcode.FrameTrack} per kind of it. The pull stops when its
last player here leaves, or when the stream ends at its origin (its players
here are then stopped as a publisher's stop would).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed

from wcs.cluster.media import RelayStats, pullStream
from wcs.interfaces import PUBLISHING
from wcs.logs import LogLimiter, Logger, clip

MAX_ROOM_PREFIXES = 8
STOPPED_BY_PUBLISHER = "Stopped by publisher stop"


def roomsOfStream(name: str) -> list[str]:
    """
    The rooms a stream name may belong to, longest first: each prefix
    before a C{-} (a room stream is C{ROOM-LOGIN} or C{ROOM-LOGIN-...}, and
    a room name may have dashes itself), at most L{MAX_ROOM_PREFIXES}.
    """
    cuts = [i for i, c in enumerate(name) if c == "-" and i > 0]
    return [name[:i] for i in reversed(cuts)][:MAX_ROOM_PREFIXES]


class _Media:
    def __init__(self, source):
        self.source = source


class _Players(set):
    """The WebRTC players of an edge stream (the core adds and discards them)."""

    def __init__(self, edge: "EdgeStream"):
        super().__init__()
        self.edge = edge

    def add(self, player) -> None:
        super().add(player)
        self.edge.holds = max(0, self.edge.holds - 1)  # its hold became a player

    def discard(self, player) -> None:
        super().discard(player)
        self.edge.checkIdle()


class EdgeStream:
    """
    A stream of another node as this node's players see it: what a local
    publisher's L{wcs.streams.Stream} is to them (its C{media.source}, its
    C{players}), for the one relay of it.

    Each L{Edges.locate} that returns it holds it until the play starts
    (C{players.add}) or is refused (L{release}): the pull stops when it has
    no hold, no WebRTC player and no sink (an RTMP feed, a player's track).
    """

    published = True
    participant = None

    def __init__(self, name: str, room: str, source):
        self.name = name
        self.room = room
        self.media = _Media(source)
        self.players = _Players(self)
        self.holds = 0
        source.keep = lambda: bool(self.players or self.holds)
        source.onEnd(self._ended)

    @property
    def ended(self) -> bool:
        return self.media.source.ended

    @property
    def status(self) -> str:
        return "UNPUBLISHED" if self.ended else PUBLISHING

    def release(self) -> None:
        """A play that located it did not start."""
        self.holds = max(0, self.holds - 1)
        self.checkIdle()

    def checkIdle(self) -> None:
        source = self.media.source
        if not (source.ended or source.sinks or self.players or self.holds):
            source.idle()

    def _ended(self) -> None:
        for player in list(self.players):
            player.owner.streams.end(player, "STOPPED", STOPPED_BY_PUBLISHER)
        set.clear(self.players)

    def __repr__(self) -> str:
        return f"<EdgeStream {self.name!r} of room {self.room!r}>"


class Edges:
    """This node's edge streams, by name: at most one pull of each."""

    log = Logger()

    def __init__(self, registry, reactor, stats: RelayStats | None = None,
                 keyframeInterval: float = 0.5):
        self.registry = registry
        self.keyframeInterval = keyframeInterval
        self.reactor = reactor
        self.stats = stats if stats is not None else RelayStats()
        self.streams: dict[str, EdgeStream] = {}
        self.errors = LogLimiter(self.log, clock=reactor)

    def locate(self, name: str) -> Deferred:
        """
        The L{EdgeStream} of C{name} once its origin told its tracks, or
        None: not a stream of a room held by another live node, or its pull
        failed.
        """
        edge = self.streams.get(name)
        if edge is not None and not edge.ended:
            return self._ready(edge)
        rooms = roomsOfStream(name)
        if not rooms:
            return succeed(None)

        def found(home):
            if home is None:
                return None
            room, _node, address = home
            edge = self.streams.get(name)  # another player asked meanwhile
            if edge is None or edge.ended:
                source = pullStream(self.reactor, address, name, {}, self._forget(name),
                                    self.stats, self.keyframeInterval)
                edge = self.streams[name] = EdgeStream(name, room, source)
            return self._ready(edge)

        def unreachable(failure):
            self.errors.warn("locate", "cluster: cannot look for stream {name}: {error}",
                             name=clip(name), error=failure.value)
            return None
        return self.registry.roomHome(rooms).addCallbacks(found, unreachable)

    @staticmethod
    def _ready(edge: EdgeStream) -> Deferred:
        def ready(source):
            if source is None:
                return None
            edge.holds += 1
            return edge
        return edge.media.source.whenReady().addCallback(ready)

    def _forget(self, name: str):
        def forget(source) -> None:
            edge = self.streams.get(name)
            if edge is not None and edge.media.source is source:
                del self.streams[name]
        return forget
