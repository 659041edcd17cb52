"""
Edge fan-out (docs/cluster.md, "Edge fan-out"): streams of rooms on other
nodes played here. A stream is pulled from its room's node (its origin)
once per node, whatever the number and kind of its players here: RTMP
players take the pulled source through the node's frames-to-FLV feed,
WebRTC players negotiate here (this node's candidates) and share one
L{wcs.media.transcode.FrameTrack} per kind of it. The pull stops when its
last player here leaves, or when the stream ends at its origin (its players
here are then stopped as a publisher's stop would). Streams outside rooms
are found the same way, by their own key (C{wcs:stream:NAME}).

The pull (L{Pull}) is a relay connection (L{wcs.cluster.media}) the other
way: it sends C{{"pull": NAME}}, the origin answers with a header line of
the stream's tracks and then its frames; a byte back asks for a keyframe,
at most once per C{media_keyframe_interval} (L{KeyframeBudget}).
"""

from __future__ import annotations

import json

from twisted.internet import protocol
from twisted.internet.defer import Deferred

from wcs.cluster.media import HEADER_TIMEOUT, RelayedSource, RelayStats, Records, errors
from wcs.interfaces import FAILED, PUBLISHING, STOPPED, STOPPED_BY_PUBLISHER
from wcs.logs import LogLimiter, Logger, clip

MAX_ROOM_PREFIXES = 8
CONNECTION_LOST = "lost the connection to the stream's node"


def roomsOfStream(name: str) -> list[str]:
    """
    The rooms a stream name may belong to, longest first: each prefix
    before a C{-} (a room stream is C{ROOM-LOGIN} or C{ROOM-LOGIN-...}, and
    a room name may have dashes itself), at most L{MAX_ROOM_PREFIXES}.
    """
    cuts = [i for i, c in enumerate(name) if c == "-" and i > 0]
    return [name[:i] for i in reversed(cuts)][:MAX_ROOM_PREFIXES]


class Pull(Records):
    """
    Asks another node for a stream live there and feeds its frames to a
    L{RelayedSource} here, shared by this node's players of it (edge
    fan-out: one relay per node, however many players).
    """

    def __init__(self, name: str, source: RelayedSource, stats: RelayStats):
        super().__init__()
        self.name = name
        self.source = source
        self.stats = stats
        # Whether the end is known: the origin's end record, or our stop.
        self.done = False

    def connectionMade(self) -> None:
        if self.source.ended:
            self.transport.loseConnection()
            return
        self.stats.pulls += 1
        self.stats.pulling.add(self)
        self.transport.write(json.dumps({"pull": self.name}).encode() + b"\n")

    def headerReceived(self, header: dict) -> None:
        tracks = header.get("tracks")
        if not isinstance(tracks, dict):
            self.refuse("a pull answered without its tracks")
            return
        self.source.setReady({str(k): str(v) for k, v in tracks.items()
                              if k in ("audio", "video")})

    def askKeyframe(self) -> None:
        self.stats.keyframeAsks += 1
        super().askKeyframe()

    def recordReceived(self, record: bytes) -> None:
        if len(record) == 1:
            self.done = True  # ended at its origin: its players here are stopped
            self.transport.loseConnection()
            return
        self.frameReceived(record)

    def stop(self) -> None:
        self.done = True
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        self.stats.pulling.discard(self)
        if not self.done and self.source.lost is None:
            # No end record: the origin's process or the link failed, not
            # the publisher; its players here are told so (FAILED).
            self.source.lost = CONNECTION_LOST
        self.source.end()


class KeyframeBudget:
    """
    Keyframe requests passed on at most once per C{interval} seconds; one
    made sooner is held to the end of the interval (as a publisher's track
    does: L{wcs.media.track.Track.requestKeyframe}), so the players of a
    pull cost its origin no more requests than one local player would.
    """

    def __init__(self, clock, interval: float, ask):
        self.clock = clock
        self.interval = interval
        self.ask = ask
        self.last = float("-inf")
        self.held = None

    def __call__(self) -> None:
        now = self.clock.seconds()
        if now - self.last >= self.interval:
            self._send()
        elif self.held is None:
            self.held = self.clock.callLater(self.last + self.interval - now, self._send)

    def _send(self) -> None:
        if self.held is not None and self.held.active():
            self.held.cancel()
        self.held = None
        self.last = self.clock.seconds()
        self.ask()

    def cancel(self) -> None:
        if self.held is not None and self.held.active():
            self.held.cancel()
        self.held = None


def pullStream(reactor, address, name: str, tracks: dict[str, str],
               forget, stats: RelayStats | None = None,
               keyframeInterval: float = 0.5) -> RelayedSource:
    """
    A source here of stream C{name} live on the node whose relay is at
    C{address}; it ends when the stream ends there, or when its last player
    here leaves (then C{forget(source)}). Its players' keyframe requests
    reach the origin at most once per C{keyframeInterval} seconds.
    """
    pull: Pull | None = None
    budget = KeyframeBudget(reactor, keyframeInterval,
                            lambda: pull.askKeyframe() if pull is not None else None)

    def idle() -> None:
        forget(source)
        if pull is not None:
            pull.stop()
        source.end()

    source = RelayedSource(tracks, budget, idle)
    source.onEnd(budget.cancel)

    def silent() -> None:
        # The origin neither answered nor closed: its players here must not
        # wait for ever (their session holds its later messages meanwhile).
        if not source.ready and not source.ended:
            errors.warn(("silent", address[0]), "cluster: pull of {name} from {host}:{port}: "
                        "no answer in {timeout:.0f} s", name=clip(name), host=address[0],
                        port=address[1], timeout=HEADER_TIMEOUT)
            forget(source)
            pull.stop()
            source.end()
    timeout = reactor.callLater(HEADER_TIMEOUT, silent)
    source.onEnd(lambda: timeout.cancel() if timeout.active() else None)
    pull = Pull(name, source, stats if stats is not None else RelayStats())
    factory = protocol.ClientFactory()
    factory.protocol = lambda: pull

    def failed(connector, reason) -> None:
        errors.warn(("connect", address[0]), "cluster: pull of {name} from {host}:{port} "
                    "failed: {reason}", name=clip(name), host=address[0], port=address[1],
                    reason=reason.value)
        forget(source)
        source.end()
    factory.clientConnectionFailed = failed
    reactor.connectTCP(address[0], int(address[1]), factory, timeout=5)
    return source


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
        if player in self:
            super().discard(player)
        else:  # its start failed (the media engine refused it): its hold goes
            self.edge.holds = max(0, self.edge.holds - 1)
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

    def __init__(self, name: str, room: str | None, source):
        self.name = name
        self.room = room
        self.media = _Media(source)
        self.players = _Players(self)
        self.holds = 0
        self.node: str | None = None  # the origin
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
        lost = self.media.source.lost
        for player in list(self.players):
            if lost is None:
                player.owner.streams.end(player, STOPPED, STOPPED_BY_PUBLISHER)
            else:  # not the publisher's stop: a play again may find it
                player.owner.streams.end(player, FAILED, lost)
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

    def pulling(self, name: str) -> bool:
        """Whether this node pulls C{name} already (a new player of it costs no new copy)."""
        edge = self.streams.get(name)
        return edge is not None and not edge.ended

    def locate(self, name: str) -> Deferred:
        """
        The L{EdgeStream} of C{name} once its origin told its tracks, or
        None: neither a stream of a room held by another live node nor one
        live outside rooms on another node, or its pull failed.
        """
        edge = self.streams.get(name)
        if edge is not None and not edge.ended:
            return self._ready(edge)

        def found(home):
            if home is None:
                return None
            room, node, address = home
            edge = self.streams.get(name)  # another player asked meanwhile
            if edge is None or edge.ended:
                forget = self._forget(name)
                source = pullStream(self.reactor, address, name, {}, forget,
                                    self.stats, self.keyframeInterval)
                edge = self.streams[name] = EdgeStream(name, room, source)
                edge.node = node
                # Ended at its origin: forgotten too, or every stream ever
                # played here stays (and its origin among our peers).
                source.onEnd(lambda: forget(source))
            return self._ready(edge)

        def unreachable(failure):
            self.errors.warn("locate", "cluster: cannot look for stream {name}: {error}",
                             name=clip(name), error=failure.value)
            return None
        return self.registry.streamHome(name, roomsOfStream(name)).addCallbacks(
            found, unreachable)

    @staticmethod
    def _ready(edge: EdgeStream) -> Deferred:
        def ready(source):
            if source is None:
                return None
            edge.holds += 1
            return edge
        return edge.media.source.whenReady().addCallback(ready)

    def peers(self) -> set[str]:
        """The origins of this node's pulls: their health is watched."""
        return {edge.node for edge in self.streams.values()}

    def nodeGone(self, node: str) -> None:
        """
        An origin is gone: its pulls end (a machine that vanished closes no
        connection), and their players here are stopped.
        """
        for edge in [e for e in self.streams.values() if e.node == node]:
            self.log.warn("cluster: stream {name} lost with its node {node}",
                          name=clip(edge.name), node=node)
            edge.media.source.lost = f"the stream's node {node} is gone"
            edge.media.source.idle()

    def _forget(self, name: str):
        def forget(source) -> None:
            edge = self.streams.get(name)
            if edge is not None and edge.media.source is source:
                del self.streams[name]
        return forget
