"""
Messages from other cluster nodes, as they come out of Redis
(L{wcs.cluster.bus.readEnvelope}, documented error ValueError), routed (its checks, L{wcs.cluster.routing.checkMessage}, raise ValueError)
to the two ends of the relay (L{wcs.cluster.routing.route}: Visitors and Hosts, and
the resync's L{wcs.cluster.resync.Resync}, L{wcs.cluster.splits.Splits}) of a
node with a real RoomServer: a visitor of another node joined in a room
here, and a client here with a join out at node C{a}. Nothing may escape
(in the server, L{wcs.cluster.bus.Bus} would log it as a failure).

Input: one envelope (C{{"from", "inc", "m": [messages]}}) a line.
"""

import json

from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from tests.support.channels import HeldMediaEngine, RecordingChannel
from wcs.cluster import bus, relay, routing
from wcs.cluster.hosts import Hosts
from wcs.cluster.resync import Resync
from wcs.cluster.splits import Splits
from wcs.config import Settings
from wcs.server import RoomServer

EXPECTED = ()
MAX_LEN = 8192
SETTINGS = Settings()
SETTINGS.set("ws_ping_interval", 0)


class HandOvers:
    """The registry's part a split uses (Redis is not here)."""

    def handOver(self, room, node):
        return succeed(None)


class Outbox:
    nodeId = "b"

    def __init__(self):
        self.sent: list = []

    def send(self, node, payload) -> None:
        self.sent.append(json.dumps(payload))  # what goes to Redis must encode

    def deliver(self, node, session, message) -> None:
        self.sent.append(json.dumps([message.name, message.args]))


def fuzz(data: bytes) -> None:
    clock = Clock()
    server = RoomServer(SETTINGS, clock)
    server.registerMediaEngine(HeldMediaEngine())
    outbox = Outbox()
    visitors = relay.Visitors(outbox, clock)
    hosts = Hosts(outbox, server)
    resync = Resync(outbox, visitors, hosts, server, clock, {"a": "1"})
    splits = Splits(outbox, server, HandOvers(), clock, visitors, hosts)
    # A visitor from node a in room "here" (its join, as node a sends it).
    routing.route({"op": "join", "from": "a", "inc": "1", "id": "a/0", "session": "s1",
                   "room": "here", "login": "eve"}, visitors, hosts)
    # A client of this node whose join of room "there" is out at node a.
    channel = RecordingChannel("tcp:127.0.0.1:1000")
    session = server.openSession(channel)
    session.messageReceived("connection", [{"appKey": "roomApp", "custom": {"login": "bob"}}])
    # As the session's join would: the outcome (joined, refused, no answer) consumed.
    visitors.join("a", session, "there", "bob", False).addBoth(lambda _: None)
    for line in data.split(b"\n"):
        try:
            node, incarnation, messages = bus.readEnvelope(line, 1 << 16)
        except ValueError:
            continue
        for message in messages:  # as the bus hands them on
            if not isinstance(message, dict):
                continue
            message["from"], message["inc"] = node, incarnation
            try:
                routing.route(message, visitors, hosts, resync, splits)
            except ValueError:  # routing.checkMessage: the service logs it
                pass
    clock.advance(relay.JOIN_TIMEOUT + 1)
    session.connectionLost("fuzz input done")
    hosts.nodeGone("a")
    visitors.nodeGone("a")
    clock.advance(60)
