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
greater node id): its node hands the room's key to the other node, takes
its members out of the room as an operator's kick would (their streams
there end, a visitor's node is told with C{removed}) and ends the room, so
that their next join is placed in the older room. The older room's node
answers a C{split} with its own, so the newer yields whichever noticed.

Bus payloads (C{op}): C{split} (C{room}, C{since}), either way.
"""

from __future__ import annotations

from typing import Any

from wcs.logs import LogLimiter, Logger, clip


def yieldInfo(node: str) -> str:
    return f"the room lives on node {node}: join it again"


class Splits:
    log = Logger()

    def __init__(self, bus, server, registry, clock):
        self.bus = bus
        self.server = server
        self.registry = registry
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
                         "{node}, where it is older: its {count} members here are out of "
                         "it, to join it there", room=clip(room.name), node=node,
                         count=len(room.participants))
        info = yieldInfo(node)
        for participant in list(room.participants.values()):
            participant.member.removeFromRoom(room.name, info)
        self.server.rooms.end(room)
