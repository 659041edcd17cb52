"""
A room held by two nodes at once is made one again (docs/cluster.md, "A
split"). It happens after a node stall: the others gave the stalled node
up and its room with it, a member joined the room again meanwhile and was
placed on a live node, which made a new room of the same name; when the
stalled node runs again, its heartbeat finds the room's key held by that
node. Left alone, both rooms would go on apart until they end: a member
of one would never meet, nor play the streams of, the other's.

The node whose claim failed tells the key's owner (C{split}, with its
room's creation time); the newer room yields (on a tie, that of the
greater node id): its node hands the room's key to the other node, ends
the room with no event to anyone (L{wcs.room.rooms.Rooms.dissolve}) and
moves its members into the older room (L{wcs.cluster.moves}): its own
clients itself, a visitor through its node (C{moved}; its streams
negotiated here end). The older room's node answers a C{split} with its
own, so the newer yields whichever noticed.

Bus payloads (C{op}): C{split} (C{room}, C{since}), either way.
"""

from __future__ import annotations

from typing import Any

from wcs.cluster.moves import Moves, rosterOfRoom
from wcs.logs import LogLimiter, Logger, clip


class Splits:
    log = Logger()

    def __init__(self, bus, server, registry, clock, visitors, hosts):
        self.bus = bus
        self.server = server
        self.registry = registry
        self.hosts = hosts
        self.moves = Moves(server, visitors, bus.nodeId, clock)
        self.errors = LogLimiter(self.log, clock=clock)

    def found(self, room: str, owner: str) -> None:
        """This node holds C{room}, whose key names C{owner}."""
        local = self.server.rooms.rooms.get(room)
        if local is not None:
            self.bus.send(owner, {"op": "split", "room": room, "since": local.createdAt})

    def split(self, payload: dict[str, Any]) -> None:
        """Another node holds a room of that name too, made at C{since}."""
        node, name, since = payload["from"], payload["room"], payload["since"]
        local = self.server.rooms.rooms.get(name)
        if local is None:
            return
        if (local.createdAt, self.bus.nodeId) > (since, node):
            self._yield(local, node)
        else:  # ours is the older: the other yields
            self.bus.send(node, {"op": "split", "room": name, "since": local.createdAt})

    def _yield(self, room, node: str) -> None:
        # The room ends once the key names the other node: its end releases
        # the key only while it is this node's, and a join between the two
        # would otherwise find no key and could be placed here again.
        d = self.registry.handOver(room.name, node)
        d.addErrback(lambda f: self.errors.warn("hand", "cluster: cannot hand room {room} "
                                                "over: {error}", room=clip(room.name),
                                                error=f.value))
        d.addCallback(lambda _: self._dissolve(room, node))

    def _dissolve(self, room, node: str) -> None:
        if self.server.rooms.rooms.get(room.name) is not room:
            return  # ended meanwhile
        self.errors.warn(("yield", room.name), "cluster: room {room} lives here and on "
                         "{node}, where it is older: its {count} members here move there",
                         room=clip(room.name), node=node, count=len(room.participants))
        seen = rosterOfRoom(room)
        for participant in self.server.rooms.dissolve(room):
            if self.hosts.moveOut(participant, node):
                continue  # a visitor: its node moves it
            self.moves.local(participant, node, seen, room.record)
