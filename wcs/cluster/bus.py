"""
Messages between the nodes of a cluster: one Redis pub/sub channel per node
(C{wcs:to:NODE}), JSON objects with an C{op}.

The bus has two connections of its own to Redis (L{wcs.cluster.resp}, RESP
on Twisted): one publishes, one is subscribed to this node's channel. What
is queued for one node within one reactor turn goes in one C{PUBLISH}: an
envelope C{{"from", "inc", "m": [messages]}}; several nodes' envelopes go in
one write. The publishing connection asks for no replies (C{CLIENT REPLY
OFF}): a batch is one write and no read; one connection keeps a node's
messages to another in the order they were sent. The receiver unpacks an envelope and
handles its messages in order. A room event handed to several members on
the same node in a row (a broadcast) goes there once, with the list of
recipients.

Pub/sub is at most once: a node whose subscription is down (Redis
restarting) misses what is sent meanwhile, and what is sent while the
publishing connection is down is lost (logged, rate-limited); the heartbeat
(registry) is what decides that a node is gone.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from wcs.cluster.resp import RespProtocol, connect, parseUrl
from wcs.logs import LogLimiter, Logger, clip
from wcs.messages import ServerMessage, nestingExceeds

RETRY = 1.0  # seconds between attempts to resubscribe after an error
MAX_DEPTH = 64  # a client's JSON (json_max_depth) inside a message, with room
MAX_QUEUED = 10_000  # messages held while Redis does not read: beyond, dropped
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def channelOf(node: str) -> str:
    return f"wcs:to:{node}"


def later(coroutine) -> Deferred:
    """A coroutine of the Redis client as a Deferred (the asyncio reactor)."""
    return Deferred.fromFuture(asyncio.ensure_future(coroutine))


@implementer(IPushProducer)
class _Flow:
    """The publishing connection's buffer full (paused) or drained."""

    def __init__(self, bus: "Bus"):
        self.bus = bus

    def pauseProducing(self) -> None:
        self.bus.paused = True

    def resumeProducing(self) -> None:
        self.bus.paused = False
        if self.bus.outbox and self.bus.scheduled is None:
            self.bus.scheduled = self.bus.reactor.callLater(0, self.bus._flush)

    def stopProducing(self) -> None:
        pass


class Bus:
    """
    @param url: the Redis URL (C{cluster_redis_url}).
    @param reactor: connects and schedules (the asyncio reactor; a test's).
    """
    log = Logger()

    def __init__(self, url: str, nodeId: str, incarnation: str,
                 dispatch: Callable[[dict[str, Any]], None], reactor=None,
                 maxMessage: int = 1 << 20):
        if reactor is None:
            from twisted.internet import reactor
        parseUrl(url)  # a scheme it does not speak fails the start, not a retry loop
        self.url = url
        self.reactor = reactor
        self.maxMessage = maxMessage
        self.nodeId = nodeId
        self.incarnation = incarnation
        self.dispatch = dispatch
        self.errors = LogLimiter(self.log, clock=reactor)
        self.outbox: list[list] = []
        self.last: dict[str, list] = {}  # node -> its newest entry in outbox
        self.scheduled = None  # the flush of this turn's outbox
        self.publisher: RespProtocol | None = None  # connected
        self.connecting = False
        self.paused = False  # the publishing connection's buffer is full
        self.listener: RespProtocol | None = None
        self.retry = None
        self.stopped = False
        self.subscribed = False
        self.heardBefore = False
        # Called when the subscription is back after it was lost: what was
        # published to this node meanwhile is lost (the service resyncs).
        self.resubscribed: Callable[[], None] = lambda: None
        self._ready: list[Deferred] = []

    def start(self) -> None:
        self._subscribe()

    def whenSubscribed(self) -> Deferred:
        """Fires once this node hears its channel (at once if it does)."""
        d = Deferred()
        if self.subscribed:
            d.callback(None)
        else:
            self._ready.append(d)
        return d

    async def stop(self) -> None:
        """Publish what is queued (if connected), close both connections."""
        self.stopped = True
        if self.retry is not None and self.retry.active():
            self.retry.cancel()
        if self.scheduled is not None and self.scheduled.active():
            self.scheduled.cancel()
        self._flush()
        for connection in (self.publisher, self.listener):
            if connection is not None and connection.connected:
                connection.transport.loseConnection()

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
        entry = [node, payload, message]
        self.outbox.append(entry)
        self.last[node] = entry
        if self.scheduled is None and not self.stopped:
            self.scheduled = self.reactor.callLater(0, self._flush)

    def _flush(self) -> None:
        self.scheduled = None
        if not self.outbox:
            return
        publisher = self.publisher
        if publisher is None or not publisher.connected:
            self._connectPublisher()
            return
        if self.paused:  # Redis reads slower than we write: hold, bounded
            if len(self.outbox) > MAX_QUEUED:
                lost, self.outbox, self.last = self.outbox, [], {}
                self._lost(len(lost), "Redis does not keep up")
            return
        batch, self.outbox, self.last = self.outbox, [], {}
        byNode: dict[str, list] = {}
        for node, payload, _ in batch:
            byNode.setdefault(node, []).append(payload)
        publisher.writeOnly([("PUBLISH", channelOf(node), _encoder.encode(
            {"from": self.nodeId, "inc": self.incarnation, "m": payloads}))
            for node, payloads in byNode.items()])

    def _connectPublisher(self) -> None:
        if self.connecting or self.stopped:
            return
        self.connecting = True
        protocol = RespProtocol(1 << 16, onLost=self._publisherLost)

        def connected(_) -> None:
            self.connecting = False
            self.publisher = protocol
            # No replies: reading one per PUBLISH cost this node a wakeup
            # per batch for a number nobody uses. The transport's buffer
            # says when Redis does not keep up (pauseProducing).
            protocol.writeOnly([("CLIENT", "REPLY", "OFF")])
            protocol.transport.registerProducer(_Flow(self), True)
            self._flush()

        def failed(failure) -> None:
            self.connecting = False
            lost, self.outbox, self.last = self.outbox, [], {}
            self._lost(len(lost), failure.value)
        connect(self.reactor, self.url, protocol).addCallbacks(connected, failed)

    def _publisherLost(self, reason) -> None:
        self.publisher = None
        self.paused = False
        if not self.stopped:
            self.errors.warn("publish", "cluster: the connection publishing to other "
                             "nodes was lost ({error}); what it had not sent is lost",
                             error=reason.value)
        if self.outbox and self.scheduled is None and not self.stopped:
            self.scheduled = self.reactor.callLater(0, self._flush)

    def _lost(self, count: int, error) -> None:
        self.errors.warn("publish", "cluster: {count} messages to other nodes lost: "
                         "{error}", count=count, error=error)

    # Receiving

    def _subscribe(self) -> None:
        self.retry = None
        if self.stopped:
            return
        # Room for an envelope over cluster_max_message, which readEnvelope
        # refuses with its reason; a bigger reply drops the connection.
        protocol = RespProtocol(2 * self.maxMessage + (1 << 16), onMessage=self._received,
                                onLost=self._unsubscribed)
        self.listener = protocol
        d = connect(self.reactor, self.url, protocol)
        d.addCallback(lambda _: protocol.send("SUBSCRIBE", channelOf(self.nodeId)))
        d.addCallbacks(lambda _: self._heard(), self._notHeard, errbackArgs=(protocol,))

    def _notHeard(self, failure, protocol) -> None:
        if protocol.connected:
            protocol.transport.loseConnection()  # _unsubscribed retries
        else:
            self._unsubscribed(failure)

    def _unsubscribed(self, reason) -> None:
        self.subscribed = False
        if self.stopped or self.retry is not None:
            return
        self.errors.warn("subscribe", "cluster: not hearing other nodes ({error}), "
                         "retrying", error=getattr(reason, "value", reason))
        self.retry = self.reactor.callLater(RETRY, self._subscribe)

    def _heard(self) -> None:
        if not self.subscribed:
            self.log.info("cluster: node {node} listening on {channel}",
                          node=self.nodeId, channel=channelOf(self.nodeId))
        again, self.heardBefore = self.heardBefore, True
        self.subscribed = True
        ready, self._ready = self._ready, []
        for d in ready:
            d.callback(None)
        if again:
            self.resubscribed()

    def _received(self, data: bytes) -> None:
        try:
            node, incarnation, messages = readEnvelope(data, self.maxMessage)
        except ValueError as e:
            self.errors.warn("bad", "cluster: unreadable message from another node: "
                             "{error}", error=e)
            return
        for payload in messages:
            if not isinstance(payload, dict):
                self.errors.warn("bad", "cluster: a message from {node} is not an object",
                                 node=clip(node, 80))
                continue
            payload["from"] = node
            payload["inc"] = incarnation
            try:
                self.dispatch(payload)
            except Exception:
                self.log.failure("cluster: handling {op} from {node} failed",
                                 op=clip(payload.get("op"), 40), node=clip(node, 80))


def readEnvelope(data, maxMessage: int) -> tuple[str, Any, list]:
    """
    The sender, its incarnation and the messages of an envelope from
    another node, bounded in size and nesting. The nodes trust each other,
    not the bytes: a bug or an older version elsewhere costs its messages,
    not an exception in a handler.

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
    envelope = json.loads(data)
    if not isinstance(envelope, dict) or not isinstance(envelope.get("m"), list):
        raise ValueError("not an envelope of messages")
    if not isinstance(envelope.get("from"), str):
        raise ValueError("an envelope without its node")
    return envelope["from"], envelope.get("inc"), envelope["m"]

