"""
Messages between the nodes of a cluster: one Redis pub/sub channel per node
(C{wcs:to:NODE}), JSON objects with an C{op}.

Sends are queued and published by one task at a time, each batch in one
pipeline on one connection, so a node's messages to another arrive in the
order they were sent. A room event handed to several members on the same
node in a row (a broadcast) goes there once, with the list of recipients.

Pub/sub is at most once: a node whose subscription is down (Redis
restarting) misses what is sent meanwhile; the heartbeat (registry) is what
decides that a node is gone.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

from twisted.internet.defer import Deferred

from wcs.logs import LogLimiter, Logger, clip
from wcs.messages import ServerMessage, nestingExceeds

RETRY = 1.0  # seconds between attempts to resubscribe after an error
MAX_DEPTH = 64  # a client's JSON (json_max_depth) inside a payload, with room
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

# The fields of each op that must be strings (docs/cluster.md, "Trust").
_REQUIRED = {
    "join": ("session", "room", "login"), "joined": ("session", "room"),
    "leave": ("session", "room"), "disconnect": ("session",),
    "chat": ("session", "room", "to", "text"), "announce": ("session", "room", "stream"),
    "withdraw": ("session", "room", "stream"), "stream": ("session", "name"),
    "deliver": ("name",), "removed": ("session", "room"), "close": ("session",),
}
_TEXT = ("from", "op", "session", "room", "login", "appKey", "id", "name", "text", "stream",
         "reason", "info", "error", "code", "inc")
_LISTS = ("args", "state")


def channelOf(node: str) -> str:
    return f"wcs:to:{node}"


def later(coroutine) -> Deferred:
    """A coroutine of the Redis client as a Deferred (the asyncio reactor)."""
    return Deferred.fromFuture(asyncio.ensure_future(coroutine))


class Bus:
    log = Logger()

    def __init__(self, redis, nodeId: str, incarnation: str,
                 dispatch: Callable[[dict[str, Any]], None], clock=None,
                 maxMessage: int = 1 << 20):
        self.redis = redis
        self.maxMessage = maxMessage
        self.nodeId = nodeId
        self.incarnation = incarnation
        self.dispatch = dispatch
        self.errors = LogLimiter(self.log, clock=clock)
        self.outbox: list[list] = []
        self.last: dict[str, list] = {}  # node -> its newest entry in outbox
        self.flushing = False
        self.stopped = False
        self.subscribed = False
        self._listener: asyncio.Task | None = None
        self._ready: list[Deferred] = []

    def start(self) -> None:
        self._listener = asyncio.ensure_future(self._listen())

    def whenSubscribed(self) -> Deferred:
        """Fires once this node hears its channel (at once if it does)."""
        d = Deferred()
        if self.subscribed:
            d.callback(None)
        else:
            self._ready.append(d)
        return d

    async def stop(self) -> None:
        self.stopped = True
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except BaseException:
                pass
        if self.outbox and not self.flushing:
            await self._flush()

    # Sending

    def send(self, node: str, payload: dict[str, Any]) -> None:
        self._queue(node, payload, None)

    def deliver(self, node: str, session: str, message: ServerMessage) -> None:
        """A room event for one member on C{node}, merged with the same event
        just queued for others there."""
        entry = self.last.get(node)
        if entry is not None and entry[2] is message:
            entry[1]["to"].append(session)
            return
        self._queue(node, {"op": "deliver", "to": [session], "name": message.name,
                           "args": message.args}, message)

    def _queue(self, node: str, payload: dict[str, Any], message) -> None:
        payload["from"] = self.nodeId
        payload["inc"] = self.incarnation
        entry = [node, payload, message]
        self.outbox.append(entry)
        self.last[node] = entry
        if not self.flushing:
            self.flushing = True
            asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        try:
            while self.outbox:
                batch, self.outbox, self.last = self.outbox, [], {}
                pipe = self.redis.pipeline(transaction=False)
                for node, payload, _ in batch:
                    pipe.publish(channelOf(node), _encoder.encode(payload))
                try:
                    await pipe.execute()
                except Exception as e:
                    self.errors.warn("publish", "cluster: {count} messages to other nodes "
                                     "lost: {error}", count=len(batch), error=e)
        finally:
            self.flushing = False

    # Receiving

    async def _listen(self) -> None:
        while not self.stopped:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channelOf(self.nodeId))
                self._heard()
                while not self.stopped:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._received(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.subscribed = False
                self.errors.warn("subscribe", "cluster: not hearing other nodes "
                                 "({error}), retrying", error=e)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:
                    pass
            if not self.stopped:
                await asyncio.sleep(RETRY)

    def _heard(self) -> None:
        if not self.subscribed:
            self.log.info("cluster: node {node} listening on {channel}",
                          node=self.nodeId, channel=channelOf(self.nodeId))
        self.subscribed = True
        ready, self._ready = self._ready, []
        for d in ready:
            d.callback(None)

    def _received(self, data: str) -> None:
        try:
            payload = readPayload(data, self.maxMessage)
        except ValueError as e:
            self.errors.warn("bad", "cluster: unreadable message from another node: "
                             "{error}", error=e)
            return
        try:
            self.dispatch(payload)
        except Exception:
            self.log.failure("cluster: handling {op} from {node} failed",
                             op=payload.get("op"), node=payload.get("from"))


def readPayload(data, maxMessage: int) -> dict[str, Any]:
    """
    A message from another node, decoded and its fields' types checked, so
    that a bug or an older version elsewhere costs one message, not an
    exception in a handler; bounded in size and nesting (docs/cluster.md,
    "Trust": the nodes trust each other, not the bytes).

    @raise ValueError: why it cannot be used.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if not isinstance(data, bytes):
        raise ValueError(f"not text but {type(data).__name__}")
    if len(data) > maxMessage:
        raise ValueError(f"{len(data)} bytes, over cluster_max_message ({maxMessage})")
    if nestingExceeds(data, MAX_DEPTH):
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    payload = json.loads(data)
    if not isinstance(payload, dict):
        raise ValueError("not an object")
    for key in _TEXT:
        if payload.get(key) is not None and not isinstance(payload[key], str):
            raise ValueError(f"{key} is not a string")
    op = payload.get("op")
    for key in ("from", "op", *_REQUIRED.get(op, ())):
        if not isinstance(payload.get(key), str):
            raise ValueError(f"{clip(op, 40)} without {key}")
    for key in _LISTS:
        if payload.get(key) is not None and not isinstance(payload[key], list):
            raise ValueError(f"{key} is not a list")
    to = payload.get("to")
    if op == "deliver" and not (isinstance(to, list) and all(isinstance(t, str) for t in to)):
        raise ValueError("deliver to something else than a list of sessions")
    if op != "deliver" and to is not None and not isinstance(to, str):
        raise ValueError("to is not a string")
    if payload.get("claims") is not None and not isinstance(payload["claims"], dict):
        raise ValueError("claims is not an object")
    return payload
