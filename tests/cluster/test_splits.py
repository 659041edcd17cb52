"""
A room held by two nodes at once (after a stall: docs/cluster.md, "A
split") is made one: the newer room yields, whichever node noticed. Two
nodes in one process (tests/cluster/test_relay.py's loopback); the Redis
key's hand-over is recorded here and checked with a real redis-server in
tests/cluster/test_edgestall.py.
"""

from __future__ import annotations

import pytest
from twisted.internet.defer import succeed

from tests.cluster.test_relay import Network, command, streamBody
from wcs.cluster.moves import refusedInfo, yieldInfo
from wcs.cluster.routing import route
from wcs.cluster.splits import Splits


class HandOvers:
    """The registry's part a split uses: the room key's hand-over."""

    def __init__(self):
        self.handed: list[tuple[str, str]] = []

    def handOver(self, room: str, node: str):
        self.handed.append((room, node))
        return succeed(None)


def pump(network: Network) -> None:
    for _ in range(100):
        if not network.queue:
            return
        node, payload = network.queue.pop(0)
        target = network.nodes[node]
        assert route(payload, target.visitors, target.hosts, target.resync, target.splits)
    raise AssertionError("messages kept coming")


@pytest.fixture
def split():
    """Room r made on a at time 10 (alice) and on b at time 20 (bob)."""
    network = Network()
    members = {}
    for node, login, at in (("a", "alice", 10), ("b", "bob", 20)):
        target = network.nodes[node]
        target.registry = HandOvers()
        target.splits = Splits(target.bus, target.server, target.registry, target.clock,
                               target.visitors, target.hosts)
        target.clock.advance(at)
        members[node] = target.client(login)
        members[node][0].joinRoom("r")  # joined without placement: a room of its own
    return network, members


def events(channel) -> list[tuple[str, object]]:
    return [(e["name"], e["info"]) for e in channel.roomEvents()]


@pytest.mark.parametrize("noticer", ["a", "b"])
def test_the_newer_room_yields_whoever_noticed(split, noticer):
    network, members = split
    a, b = network.nodes["a"], network.nodes["b"]
    (alice, aliceChannel), (bob, bobChannel) = members["a"], members["b"]
    aliceChannel.take(), bobChannel.take()
    (network.nodes[noticer]).splits.found("r", "b" if noticer == "a" else "a")
    pump(network)
    assert "r" not in b.server.rooms.rooms and b.registry.handed == [("r", "a")]
    assert a.registry.handed == []
    # bob is moved into the older room, on a, without asking: a join there.
    assert list(a.server.rooms.rooms["r"].participants) == ["alice", "bob"]
    assert b.visitors.rooms["r"].node == "a" and bob.participants["r"].room.node == "a"
    # It is told what differs, as room events the SDK handles; no DataStatusEvent.
    assert events(bobChannel) == [("JOINED", "alice")]
    assert bobChannel.named("DataStatusEvent") == []
    assert events(aliceChannel) == [("JOINED", "bob")]
    # Chat flows both ways in the room it is in now.
    command(bob, "sendMessage", roomConfig={"name": "r"}, to="alice", text="hi")
    command(alice, "sendMessage", roomConfig={"name": "r"}, to="bob", text="ho")
    pump(network)
    assert aliceChannel.roomEvents("MESSAGE")[-1]["info"] == {"from": "bob", "text": "hi"}
    assert bobChannel.roomEvents("MESSAGE")[-1]["info"] == {"from": "alice", "text": "ho"}


def test_what_a_member_sends_while_it_is_moved_waits_for_the_move(split):
    network, members = split
    (alice, aliceChannel), (bob, bobChannel) = members["a"], members["b"]
    network.nodes["b"].splits.found("r", "a")
    yielded(network)
    assert "r" not in bob.participants and bob.gate.waiting
    command(bob, "sendMessage", roomConfig={"name": "r"}, to="alice", text="meanwhile")
    pump(network)
    assert aliceChannel.roomEvents("MESSAGE")[-1]["info"] == {"from": "bob",
                                                               "text": "meanwhile"}
    assert [s["status"] for s in bobChannel.named("DataStatusEvent")] == ["ACCEPTED"]
    assert not bob.gate.waiting


def yielded(network) -> None:
    """Route messages until b's room yielded: its members' joins to a are on their way."""
    for _ in range(10):
        if "r" not in network.nodes["b"].server.rooms.rooms:
            return
        node, payload = network.queue.pop(0)
        target = network.nodes[node]
        route(payload, target.visitors, target.hosts, target.resync, target.splits)
    raise AssertionError("b's room did not yield")


def test_a_member_gone_while_it_is_moved_is_not_left_there(split):
    network, members = split
    a = network.nodes["a"]
    bob, _ = members["b"]
    network.nodes["b"].splits.found("r", "a")
    yielded(network)
    bob.connectionLost("closed")  # before a's answer
    pump(network)
    assert list(a.server.rooms.rooms["r"].participants) == ["alice"]
    assert not a.hosts.proxies


def test_a_moved_members_stream_is_announced_in_the_older_room(split):
    network, members = split
    a, b = network.nodes["a"], network.nodes["b"]
    (alice, aliceChannel), (bob, bobChannel) = members["a"], members["b"]
    bob.messageReceived("publishStream", [streamBody("m1", "r-bob", "r", True)])
    b.engine.last().listener.mediaStarted()
    alice.messageReceived("publishStream", [streamBody("m2", "r-alice", "r", True)])
    a.engine.last().listener.mediaStarted()
    aliceChannel.take(), bobChannel.take()
    b.splits.found("r", "a")
    pump(network)
    # Its stream goes on where it was negotiated, announced in the older room.
    stream = bob.streams.active["m1"]
    assert stream.status == "PUBLISHING" and b.engine.sessions[0].stopped is False
    assert events(aliceChannel) == [("JOINED", "bob"),
                                    ("PUBLISHED", {"login": "bob", "name": "r-bob"})]
    assert events(bobChannel) == [("JOINED", "alice"),
                                  ("PUBLISHED", {"login": "alice", "name": "r-alice"})]
    assert bobChannel.named("notifyStreamStatusEvent") == []
    # Its end is the older room's UNPUBLISHED.
    bob.messageReceived("unPublishStream", [{"mediaSessionId": "m1", "name": "r-bob"}])
    pump(network)
    assert events(aliceChannel)[-1] == ("UNPUBLISHED", {"login": "bob", "name": "r-bob"})


def test_a_login_the_older_room_has_already_is_out_with_a_reason(split):
    network, members = split
    a, b = network.nodes["a"], network.nodes["b"]
    other, _ = a.client("bob")
    other.joinRoom("r")  # the older room has a bob of its own
    bob, bobChannel = members["b"]
    bob.messageReceived("publishStream", [streamBody("m1", "r-bob", "r", True)])
    b.engine.last().listener.mediaStarted()
    bobChannel.take()
    b.splits.found("r", "a")
    pump(network)
    assert list(a.server.rooms.rooms["r"].participants) == ["alice", "bob"]
    assert a.server.rooms.rooms["r"].participants["bob"].member is other
    assert "r" not in bob.participants and bob.streams.active == {}
    (ended,) = bobChannel.named("notifyStreamStatusEvent")
    assert ended["status"] == "UNPUBLISHED"
    assert ended["info"] == refusedInfo(
        "a", "Room 'r' already has a participant with login 'bob'")


def test_a_visitor_of_the_newer_room_is_moved_by_its_node(split):
    """carol, a client of a, visits b's room: b tells a, which joins it to its own."""
    network, members = split
    a, b = network.nodes["a"], network.nodes["b"]
    carol, carolChannel = a.client("carol")
    a.visitors.join("b", carol, "r", "carol", False).addCallback(
        lambda p: carol.participants.__setitem__("r", p))
    pump(network)
    carol.messageReceived("publishStream", [streamBody("m3", "r-carol", "r", True)])
    pump(network)  # negotiated with b, where the room is
    b.engine.last().listener.mediaStarted()
    pump(network)
    carolChannel.take()
    b.splits.found("r", "a")
    pump(network)
    assert list(a.server.rooms.rooms["r"].participants) == ["alice", "bob", "carol"]
    assert carol.participants["r"].home is a.server.rooms and not b.hosts.proxies
    assert "r" not in a.visitors.rooms
    # It saw bob (moved before it); in a's room it meets alice.
    assert events(carolChannel) == [("JOINED", "alice")]
    # Its stream was negotiated with b: it ended there, with the reason.
    (ended,) = [s for s in carolChannel.named("notifyStreamStatusEvent")
                if s["status"] == "UNPUBLISHED"]
    assert ended["info"] == yieldInfo("a")


def test_on_a_tie_the_greater_node_id_yields(split):
    network, members = split
    a, b = network.nodes["a"], network.nodes["b"]
    b.server.rooms.rooms["r"].createdAt = a.server.rooms.rooms["r"].createdAt
    b.splits.found("r", "a")
    pump(network)
    assert "r" not in b.server.rooms.rooms and "r" in a.server.rooms.rooms


def test_a_room_no_longer_held_answers_nothing(split):
    network, members = split
    network.nodes["b"].splits.found("r", "a")
    members["a"][0].messageReceived("sendData", [{"operationId": "l", "payload": {
        "command": "leave", "options": {"name": "r"}}}])  # a's room ends first
    pump(network)
    assert network.queue == [] and "r" in network.nodes["b"].server.rooms.rooms


def test_yield_info_names_the_node():
    assert yieldInfo("a") == "the room moved to node a: publish the stream again"
