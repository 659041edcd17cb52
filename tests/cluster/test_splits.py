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

from tests.cluster.test_relay import Network
from wcs.cluster.routing import route
from wcs.cluster.splits import Splits, yieldInfo


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
        target.splits = Splits(target.bus, target.server, target.registry, target.clock)
        target.clock.advance(at)
        members[node] = target.client(login)
        members[node][0].joinRoom("r")  # joined without placement: a room of its own
    return network, members


@pytest.mark.parametrize("noticer", ["a", "b"])
def test_the_newer_room_yields_whoever_noticed(split, noticer):
    network, members = split
    a, b = network.nodes["a"], network.nodes["b"]
    (network.nodes[noticer]).splits.found("r", "b" if noticer == "a" else "a")
    pump(network)
    assert "r" not in b.server.rooms.rooms and "r" not in members["b"][0].participants
    assert b.registry.handed == [("r", "a")]
    # The older room and its member stay as they were.
    assert list(a.server.rooms.rooms["r"].participants) == ["alice"]
    assert a.registry.handed == []
    # bob may join again: its node places it (here: on a, as a visitor).
    session, channel = members["b"]
    session.messageReceived("sendData", [{"operationId": "j", "payload": {
        "command": "join", "options": {"name": "r"}}}])
    pump(network)
    assert sorted(a.server.rooms.rooms["r"].participants) == ["alice", "bob"]


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
    assert yieldInfo("a") == "the room lives on node a: join it again"
