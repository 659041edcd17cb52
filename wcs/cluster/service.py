"""
The cluster service: joins this node to the cluster at C{cluster_redis_url}
and plugs into the L{RoomServer} as its C{placement} and a room observer.

Every third of C{cluster_node_ttl} it sends its heartbeat (its load, and
the rooms it holds), and reads the heartbeats of the nodes it shares rooms
with: one whose key expired, or came back with another incarnation (a
restart), is given up (L{Visitors.nodeGone}, L{Hosts.nodeGone}), unless
Redis itself lost the keys meanwhile (L{wcs.cluster.liveness}).
"""

from __future__ import annotations

import asyncio
import socket
import uuid

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall

from wcs.cluster.bus import Bus, later
from wcs.cluster.edge import Edges
from wcs.cluster.liveness import GRACE_TTLS, Liveness
from wcs.cluster.media import RelayStats
from wcs.cluster.registry import Registry
from wcs.cluster.hosts import Hosts
from wcs.cluster.relay import Visitors
from wcs.cluster.resync import Resync
from wcs.cluster.routing import route
from wcs.cluster.splits import Splits
from wcs.errors import UNAVAILABLE, RoomError
from wcs.logs import LogLimiter, Logger, clip

STOP_TIMEOUT = 2.0  # seconds a clean stop waits to take its keys out of Redis


def nodeIdOf(settings) -> str:
    return settings.node_id or f"{socket.gethostname()}:{settings.ws_port}"


class ClusterService(Service):
    log = Logger()

    def __init__(self, server, settings, clock):
        import redis.asyncio

        self.server = server
        self.clock = clock
        self.url = settings.cluster_redis_url
        self.nodeId = nodeIdOf(settings)
        self.incarnation = uuid.uuid4().hex
        self.ttl = settings.cluster_node_ttl / 1000.0
        self.redis = redis.asyncio.Redis.from_url(
            self.url, decode_responses=True, socket_connect_timeout=2,
            socket_timeout=max(2.0, self.ttl),
            # A pooled connection idle that long is checked (PING) before
            # use: after a Redis restart, stale ones would fail a heartbeat
            # each, long enough for the others to think this node dead.
            health_check_interval=1)
        self.errors = LogLimiter(self.log, clock=clock)
        self.bus = Bus(self.url, self.nodeId, self.incarnation, self._dispatch, clock,
                       settings.cluster_max_message)
        self.registry = Registry(self.redis, self.nodeId, self.incarnation, self.ttl)
        self.visitors = Visitors(self.bus, clock,
                                 isLive=lambda name: server.liveSource(name) is not None,
                                 reactor=clock, edgePlay=settings.cluster_edge_play,
                                 edgeMinPlayers=settings.cluster_edge_play_min_players,
                                 pulling=lambda name: self.edges.pulling(name),
                                 maxRelayed=settings.cluster_session_max_relayed_streams)
        # node -> the incarnation first heard from it.
        self.known: dict[str, str] = {}
        self.hosts = Hosts(self.bus, server, self.known)
        # What was relayed while Redis was away is lost: resync when it is back.
        self.resync = Resync(self.bus, self.visitors, self.hosts, server, clock, self.known)
        self.bus.resubscribed = lambda: self.resync.outage("subscription back")
        # A room held here and on another node (after a stall) is made one.
        self.splits = Splits(self.bus, server, self.registry, clock, self.visitors, self.hosts)
        self.relayAddress = (settings.cluster_relay_address, settings.cluster_relay_port)
        self._relayPort = None
        self.relayStats = RelayStats()
        # Streams of other nodes played here: one pull of each.
        self.edges = Edges(self.registry, clock, self.relayStats,
                           settings.media_keyframe_interval / 1000.0)
        # Streams outside rooms live here, held in Redis for other nodes' players.
        self.streams: dict[str, None] = {}
        # Whether the other nodes' missing keys say they are gone.
        self.liveness = Liveness(clock, self.ttl, self.ttl / 3)
        self._beat = LoopingCall(self._tick)
        self._beat.clock = clock
        self._ticking = False
        self._beats = 0  # heartbeats that reached Redis: the first is no outage's end
        self._inflight: set[Deferred] = set()

    def startService(self):
        super().startService()
        self.log.info("cluster: node {node} joining the cluster at {url}",
                      node=self.nodeId, url=self.url)
        self.server.placement = self
        self.server.rooms.observers.append(self)
        self.server.streamObservers.append(self)
        self._listenRelay()
        self.bus.start()
        self._beat.start(self.liveness.interval, now=True)

    def _listenRelay(self) -> None:
        from wcs.cluster.media import RelayInFactory

        host, port = self.relayAddress
        self._relayPort = self.clock.listenTCP(port, RelayInFactory(self.hosts, self.relayStats),
                                               interface=host)
        self.hosts.relayAddress = (host, self._relayPort.getHost().port)
        self.registry.relayAddress = self.hosts.relayAddress
        self.log.info("cluster: media relay of node {node} on {host}:{port}",
                      node=self.nodeId, host=host, port=self.hosts.relayAddress[1])

    def stopService(self):
        super().stopService()
        if self._beat.running:
            self._beat.stop()
        self.resync.stop()
        if self._relayPort is not None:
            self._relayPort.stopListening()
        # Added before the shutdown service, this stops after it closed the
        # clients: their leaves and room releases are on their way already.
        rooms = list(self.server.rooms.rooms)
        streams = list(self.streams)
        inflight = [d for d in self._inflight]

        async def stop():
            loop = asyncio.get_running_loop()
            for d in inflight:
                await d.asFuture(loop)  # their errbacks log
            try:
                await self.registry.leave(rooms, tuple(streams))
            except Exception as e:
                self.log.warn("cluster: could not leave the cluster cleanly ({error}): "
                              "its keys expire", error=e)
            await self.bus.stop()
            await self.redis.aclose()
        d = later(stop())
        d.addTimeout(STOP_TIMEOUT, self.clock)
        return d.addErrback(lambda f: None)

    # Placement (RoomServer.placement)

    def enter(self, session, room: str, login: str, record: bool) -> Deferred:
        """
        Where C{room} lives: None when here (the session joins it locally),
        else the participant joined on its node.
        """
        if room in self.server.rooms.rooms:
            return succeed(None)
        visited = self.visitors.rooms.get(room)
        if visited is not None:
            return self.visitors.join(visited.node, session, room, login, record)

        def placed(node):
            if node is None:
                raise RoomError("no live node in the cluster can take the room",
                                code=UNAVAILABLE)
            if node == self.nodeId:
                return None
            return self.visitors.join(node, session, room, login, record)

        def unreachable(failure):
            if failure.check(RoomError):
                return failure
            self.errors.warn("place", "cluster: cannot place room {room}: {error}",
                             room=clip(room), error=failure.value)
            raise RoomError("the cluster is unreachable (Redis): the room cannot be "
                            "placed, try again later", code=UNAVAILABLE)
        return self.registry.place(room).addCallback(placed).addErrback(unreachable)

    def forward(self, session, name: str, args: list) -> bool:
        """A stream message of a room on another node goes there (RoomServer.placement)."""
        return self.visitors.forward(session, name, args)

    def locateSource(self, name: str) -> Deferred:
        """
        A stream not live here, from the node of the room its name belongs
        to (C{ROOM-LOGIN...}): pulled once for all of this node's players
        (RoomServer.locateSource).
        """
        def found(edge):
            if edge is None:
                return None
            # An RTMP player attaches to the source itself: no hold needed.
            edge.holds = max(0, edge.holds - 1)
            return edge.media.source
        return self.edges.locate(name).addCallback(found)

    def locateStream(self, name: str) -> Deferred:
        """
        The same, as a published stream's shape for a WebRTC player here
        (L{wcs.cluster.edge.EdgeStream}), or None.
        """
        if not self.visitors.edgePlay:
            return succeed(None)
        return self.edges.locate(name)

    def relayCounts(self) -> dict[str, int]:
        """For /metrics (docs/operations.md)."""
        stats = self.relayStats
        return {"pullsServed": stats.pullsServed, "serving": len(stats.serving),
                "pulls": stats.pulls, "pulling": len(stats.pulling),
                "keyframeAsks": stats.keyframeAsks,
                "edgePlayers": sum(len(e.players) for e in self.edges.streams.values())}

    # Room observer: hold the rooms that live here

    def roomStarted(self, room) -> None:
        def held(owner):
            if owner != self.nodeId:
                self._split(room.name, owner)
        self._track(self.registry.claim(room.name).addCallbacks(held, self._redisDown))

    def roomEnded(self, room) -> None:
        self._track(self.registry.release(room.name).addErrback(self._redisDown))

    # Stream observer: hold the streams outside rooms that are live here

    def streamStarted(self, stream) -> None:
        if stream.participant is None:
            self.streams[stream.name] = None

            def held(owner):
                if owner != self.nodeId:
                    self.errors.warn(("stream", stream.name), "cluster: stream {name} is live "
                                     "here and on {owner}: players elsewhere find {owner}'s",
                                     name=clip(stream.name), owner=owner)
            self._track(self.registry.claimStream(stream.name).addCallbacks(
                held, self._redisDown))

    def streamEnded(self, stream) -> None:
        if self.streams.pop(stream.name, 0) is None:
            self._track(self.registry.releaseStream(stream.name).addErrback(self._redisDown))

    def _track(self, d: Deferred) -> None:
        """Keep a room's claim or release until done: a stop waits for it."""
        self._inflight.add(d)
        d.addBoth(lambda result: self._inflight.discard(d))

    def _split(self, room: str, owner: str) -> None:
        # A room held here that another node holds too: placed there while
        # this node stalled and was given up, or made here without placement
        # (a transport joined with the synchronous joinRoom). The newer yields.
        self.errors.warn(("split", room), "cluster: room {room} lives here and on {owner} "
                         "(docs/cluster.md, \"A split\")", room=clip(room), owner=owner)
        self.splits.found(room, owner)

    def _redisDown(self, failure) -> None:
        self.errors.warn("redis", "cluster: Redis unreachable: {error}", error=failure.value)

    # Heartbeat and the other nodes' health

    def load(self) -> int:
        rooms = self.server.rooms.rooms.values()
        return len(self.server.sessions) + sum(len(r.participants) for r in rooms)

    def _tick(self) -> None:
        if self._ticking:  # the previous round still waits for Redis
            return
        self._ticking = True
        beat = self.registry.heartbeat(self.load(), list(self.server.rooms.rooms),
                                       draining=self.server.draining is not None,
                                       streams=tuple(self.streams))
        beat.addCallback(self._beaten)
        beat.addCallback(lambda _: self._checkPeers())
        beat.addErrback(self._beatFailed)
        beat.addBoth(self._ticked)
        self._track(beat)  # a stop waits: a late heartbeat would bring the key back

    def _ticked(self, _) -> None:
        self._ticking = False

    def _beaten(self, beat) -> None:
        if not beat.kept and self.liveness.live:
            self.log.warn("cluster: Redis had lost node {node}'s key (restarted, or too slow "
                          "for the TTL): no node is given up for {grace} s",
                          node=self.nodeId, grace=GRACE_TTLS * self.ttl)
        outage = self._beats > 0 and not (beat.kept and self.liveness.live)
        self._beats += 1
        if self.liveness.beaten(beat.kept):
            self.log.info("cluster: node {node} is live", node=self.nodeId)
        if outage:
            self.resync.outage("heartbeat")
        for room, owner in beat.splits.items():
            self._split(room, owner)

    def _beatFailed(self, failure) -> None:
        if self.liveness.failed():
            self.log.warn("cluster: heartbeat failed, rooms here go on: {error}",
                          error=failure.value)

    def _checkPeers(self):
        peers = sorted(self.visitors.peers() | self.hosts.peers() | self.edges.peers())
        if not peers or not self.liveness.judging():
            return None
        return self.registry.incarnations(peers).addCallback(self._peersRead)

    def _peersRead(self, incarnations: dict) -> None:
        if not self.liveness.judging():  # Redis lost the keys while they were read
            return
        for node in self.liveness.judge(incarnations, self.known):
            self.log.warn("cluster: node {node} is gone, giving up its rooms and members",
                          node=node)
            self.known.pop(node, None)
            self._giveUp(node)

    def _giveUp(self, node: str) -> None:
        """What C{node} held is gone; an encoder of its rooms joins again (L{Moves.again})."""
        for participant, seen in self.visitors.nodeGone(node):
            self.splits.moves.again(participant, seen)
        self.hosts.nodeGone(node)
        self.edges.nodeGone(node)

    # Messages from other nodes

    def _dispatch(self, payload: dict) -> None:
        node, incarnation = payload.get("from"), payload.get("inc")
        if not isinstance(node, str):
            return
        if self.known.get(node) != incarnation:
            if node in self.known:
                # It restarted before its key expired: what it held is gone.
                self._giveUp(node)
            self.known[node] = incarnation
        try:
            known = route(payload, self.visitors, self.hosts, self.resync, self.splits)
        except ValueError as e:
            self.errors.warn(("bad", node), "cluster: a message from {node} cannot be "
                             "used: {error}", node=clip(node, 80), error=e)
            return
        if not known:
            self.errors.warn(("op", node), "cluster: unknown message {op} from {node}",
                             op=clip(payload.get("op"), 40), node=clip(node, 80))
