"""
What the cluster keeps in Redis (docs/cluster.md, "Keys"):

  - C{wcs:node:ID}: a live node, JSON C{{incarnation, load}}, with a TTL
    (C{cluster_node_ttl}) renewed by its heartbeat. Gone: the node is dead.
  - C{wcs:nodes}: sorted set of node ids by load, for placement; a
    heartbeat drops the ids whose node key has expired.
  - C{wcs:room:NAME}: the id of the node the room lives on, with a TTL of
    two node TTLs renewed by that node while it holds the room; deleted by
    it when the room ends.
  - C{wcs:stream:NAME}: the id of the node a stream outside rooms is live
    on (an RTMP C{live/NAME} publish), kept as a room key is, so that other
    nodes' players find it (docs/cluster.md, "Edge fan-out").

Each change is one Lua script, so two nodes placing the same room at once
agree: the first to run places it, the second reads its answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred

from wcs.cluster.bus import later

NODES = "wcs:nodes"


def nodeKey(node: str) -> str:
    return f"wcs:node:{node}"


def roomKey(room: str) -> str:
    return f"wcs:room:{room}"


def streamKey(name: str) -> str:
    return f"wcs:stream:{name}"


# A draining node stays live (its rooms go on) but out of the node set, so
# no new room is placed on it.
# Returns 1 when this node's key was still there: 0 means Redis lost it
# (restarted empty, paused past the TTL, or this node beat too late), and
# the other nodes' keys may be gone through no fault of theirs.
# KEYS: this node's key, the node set. ARGV: id, info, ttl ms, load, draining.
HEARTBEAT = """
local kept = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if ARGV[5] == '1' then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
end
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if redis.call('EXISTS', 'wcs:node:' .. id) == 0 then
    redis.call('ZREM', KEYS[2], id)
  end
end
return kept
"""

# The room's node: its owner while that node is live, else the least loaded
# live node (the asking node on a tie), whose load is counted one higher
# until its next heartbeat so that a burst of new rooms spreads.
# KEYS: the room key, the node set. ARGV: room ttl ms, asking node.
PLACE = """
local owner = redis.call('GET', KEYS[1])
if owner then
  if redis.call('EXISTS', 'wcs:node:' .. owner) == 1 then return owner end
  redis.call('DEL', KEYS[1])
end
local best, bestLoad = false, nil
local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = 1, #entries, 2 do
  local id, load = entries[i], tonumber(entries[i + 1])
  if redis.call('EXISTS', 'wcs:node:' .. id) == 1 then
    if best == false or load < bestLoad or (load == bestLoad and id == ARGV[2]) then
      best, bestLoad = id, load
    end
  end
end
if best == false then return false end
redis.call('SET', KEYS[1], best, 'PX', ARGV[1])
redis.call('ZINCRBY', KEYS[2], 1, best)
return best
"""

# Hold a room: renew it when this node holds it or nobody does.
# KEYS: the room key. ARGV: this node, ttl ms. Returns the owner.
CLAIM = """
local owner = redis.call('GET', KEYS[1])
if owner == false or owner == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return owner
"""

# A room of this node that yields to another's (wcs.cluster.splits): the
# key names that node from now, so the next join is placed there.
# KEYS: the room key. ARGV: this node, the other node, ttl ms.
HAND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
"""

# KEYS: the room key. ARGV: this node.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


@dataclass
class Beat:
    """What a heartbeat found."""

    # This node's key was still there: Redis kept its view of the cluster.
    kept: bool
    # The rooms (and streams) held by another node: {name: owner}.
    splits: dict[str, str] = field(default_factory=dict)


class Registry:
    def __init__(self, redis, nodeId: str, incarnation: str, ttl: float):
        """
        @param ttl: seconds a node counts as live after a heartbeat.
        """
        self.redis = redis
        self.nodeId = nodeId
        self.incarnation = incarnation
        self.ttlMs = int(ttl * 1000)
        self.roomTtlMs = 2 * self.ttlMs
        self._heartbeat = redis.register_script(HEARTBEAT)
        self._place = redis.register_script(PLACE)
        self._claim = redis.register_script(CLAIM)
        self._release = redis.register_script(RELEASE)
        self._hand = redis.register_script(HAND)
        # (host, port) of this node's media relay, in its key for pulls.
        self.relayAddress: tuple[str, int] | None = None

    def heartbeat(self, load: int, rooms: list[str], draining: bool = False,
                  streams: tuple[str, ...] = ()) -> Deferred:
        """
        Say this node is live with C{load}, and hold its C{rooms} and its
        C{streams} outside rooms; a C{draining} node takes no new room.

        @return: a Deferred firing with a L{Beat}: whether this node's key
            was still there, and the rooms held by another node (a split:
            logged by the caller).
        """
        async def beat():
            info = json.dumps({"incarnation": self.incarnation, "load": load,
                               "relay": self.relayAddress})
            # Closed when done, failed or not (an unclosed one is warned
            # about on stderr).
            async with self.redis.pipeline(transaction=False) as pipe:
                await self._heartbeat(keys=[nodeKey(self.nodeId), NODES],
                                      args=[self.nodeId, info, self.ttlMs, load,
                                            int(draining)], client=pipe)
                for key in [roomKey(room) for room in rooms] + [streamKey(s) for s in streams]:
                    await self._claim(keys=[key], args=[self.nodeId, self.roomTtlMs],
                                      client=pipe)
                results = await pipe.execute()
            return Beat(bool(results[0]), {room: owner for room, owner in
                                           zip(rooms, results[1:]) if owner != self.nodeId})
        return later(beat())

    def place(self, room: str) -> Deferred:
        """@return: a Deferred firing with the id of the room's node, or None
        when no node is live."""
        return later(self._place(keys=[roomKey(room), NODES],
                                 args=[self.roomTtlMs, self.nodeId]))

    def claim(self, room: str) -> Deferred:
        """@return: a Deferred firing with the room's node (this one unless
        another holds it)."""
        return later(self._claim(keys=[roomKey(room)], args=[self.nodeId, self.roomTtlMs]))

    def release(self, room: str) -> Deferred:
        return later(self._release(keys=[roomKey(room)], args=[self.nodeId]))

    def handOver(self, room: str, node: str) -> Deferred:
        """The room's key, when this node's, names C{node} from now."""
        return later(self._hand(keys=[roomKey(room)], args=[self.nodeId, node,
                                                             self.roomTtlMs]))

    def claimStream(self, name: str) -> Deferred:
        """A stream outside rooms went live here: C{claim} for its name."""
        return later(self._claim(keys=[streamKey(name)], args=[self.nodeId, self.roomTtlMs]))

    def releaseStream(self, name: str) -> Deferred:
        return later(self._release(keys=[streamKey(name)], args=[self.nodeId]))

    def incarnations(self, nodes: list[str]) -> Deferred:
        """@return: a Deferred firing with {node: incarnation or None (dead)}."""
        async def read():
            values = await self.redis.mget([nodeKey(n) for n in nodes])
            found = {}
            for node, value in zip(nodes, values):
                try:
                    found[node] = json.loads(value)["incarnation"] if value else None
                except (ValueError, KeyError, TypeError):
                    found[node] = None
            return found
        return later(read())

    def streamHome(self, name: str, rooms: list[str]) -> Deferred:
        """
        Where stream C{name}, not live here, is: on the node of the first of
        C{rooms} (the rooms its name may belong to) held by another live
        node, else on the node where it is live outside rooms.

        @return: a Deferred firing with (the room or None, the node, the
            node's relay address), or None.
        """
        async def read():
            owners = await self.redis.mget([roomKey(room) for room in rooms] + [streamKey(name)])
            for room, owner in zip([*rooms, None], owners):
                if owner and owner != self.nodeId:
                    value = await self.redis.get(nodeKey(owner))
                    try:
                        relay = json.loads(value)["relay"] if value else None
                    except (ValueError, KeyError, TypeError):
                        relay = None
                    if isinstance(relay, list) and len(relay) == 2:
                        return room, owner, (str(relay[0]), int(relay[1]))
            return None
        return later(read())

    async def leave(self, rooms: list[str], streams: tuple[str, ...] = ()) -> None:
        """A clean stop (a coroutine): this node and its rooms go at once,
        not at expiry."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(nodeKey(self.nodeId))
            pipe.zrem(NODES, self.nodeId)
            for key in [roomKey(room) for room in rooms] + [streamKey(s) for s in streams]:
                await self._release(keys=[key], args=[self.nodeId], client=pipe)
            await pipe.execute()
