"""
The relay between a client's node and its room's node, in one process: two
real RoomServers with injected clocks, real ClientSessions, the messages
between the nodes carried by a loopback instead of Redis (the Redis side is
tests/cluster/test_cluster.py and test_registry.py).
"""

from __future__ import annotations

import json

import pytest
from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from tests.support.channels import ANSWER, HeldMediaEngine, RecordingChannel
from wcs.cluster.hosts import Hosts
from wcs.cluster.relay import JOIN_TIMEOUT, Visitors
from wcs.cluster.resync import Resync
from wcs.cluster.routing import route
from wcs.config import Settings
from wcs.server import RoomServer


class Loopback:
    """A node's bus: messages queue per destination until the test pumps them."""

    def __init__(self, nodeId: str, network: "Network"):
        self.nodeId = nodeId
        self.network = network

    def send(self, node: str, payload: dict) -> None:
        # Through JSON, as over Redis.
        payload = json.loads(json.dumps({**payload, "from": self.nodeId, "inc": "1"}))
        self.network.queue.append((node, payload))

    def deliver(self, node: str, session: str, message) -> None:
        self.send(node, {"op": "deliver", "to": [session], "name": message.name,
                         "args": message.args})

    def whenSubscribed(self):
        return succeed(None)


class Node:
    def __init__(self, nodeId: str, network: "Network"):
        self.nodeId = nodeId
        self.clock = Clock()
        settings = Settings()
        settings.set("ws_ping_interval", 0)
        settings.set("room_max_participants", 3)
        self.server = RoomServer(settings, self.clock)
        self.bus = Loopback(nodeId, network)
        self.visitors = Visitors(self.bus, self.clock,
                                 isLive=lambda name: self.server.liveSource(name) is not None)
        self.hosts = Hosts(self.bus, self.server)
        self.resync = Resync(self.bus, self.visitors, self.hosts, self.server, self.clock,
                             {n: "1" for n in ("a", "b") if n != nodeId})
        self.engine = HeldMediaEngine()
        self.server.registerMediaEngine(self.engine)
        self.server.placement = self

    def forward(self, session, name, args):
        return self.visitors.forward(session, name, args)

    def enter(self, session, room, login, record):
        """Placement: every room this node does not hold lives on node a."""
        if room in self.server.rooms.rooms or self.nodeId == "a":
            return succeed(None)
        return self.visitors.join("a", session, room, login, record)

    def client(self, login: str):
        channel = RecordingChannel(f"tcp:127.0.0.1:{len(self.server.sessions) + 1000}")
        session = self.server.openSession(channel)
        session.messageReceived("connection", [{"appKey": "roomApp",
                                                "custom": {"login": login}}])
        channel.take()
        return session, channel


class Network:
    def __init__(self):
        self.queue: list = []
        self.nodes = {n: Node(n, self) for n in ("a", "b")}
        self.dropped = 0

    def pump(self, drop: bool = False) -> None:
        for _ in range(1000):
            if not self.queue:
                return
            node, payload = self.queue.pop(0)
            if drop:
                self.dropped += 1
                continue
            target = self.nodes[node]
            assert route(payload, target.visitors, target.hosts, target.resync), payload
        raise AssertionError("messages kept coming")


@pytest.fixture
def network():
    return Network()


def command(session, op: str, **options) -> None:
    session.messageReceived("sendData", [{"operationId": op,
                                          "payload": {"command": op, "options": options}}])


def status(channel) -> dict:
    return channel.named("DataStatusEvent")[-1]


def joinOnBoth(network, first: str = "alice", second: str = "bob", pump: bool = True):
    """
    C{first} on node a, then C{second} on node b, join room r (which then
    lives on a); the network is pumped unless C{pump} is false.

    @return: (node a, node b, first's session, its channel, second's, its channel).
    """
    a, b = network.nodes["a"], network.nodes["b"]
    firstSession, firstChannel = a.client(first)
    secondSession, secondChannel = b.client(second)
    command(firstSession, "join", name="r")
    command(secondSession, "join", name="r")
    if pump:
        network.pump()
    return a, b, firstSession, firstChannel, secondSession, secondChannel


def test_a_visitor_joins_chats_and_leaves(network):
    a, b, alice, aliceChannel, bob, bobChannel = joinOnBoth(network, pump=False)
    # The answer waits for the room's node.
    assert bobChannel.named("DataStatusEvent") == []
    network.pump()
    assert status(bobChannel)["status"] == "ACCEPTED"
    assert bobChannel.roomEvents("STATE")[0]["info"] == ["alice"]
    assert aliceChannel.roomEvents("JOINED")[0]["info"] == "bob"
    assert "r" not in b.server.rooms.rooms and list(a.server.rooms.rooms["r"].participants) == [
        "alice", "bob"]

    command(bob, "sendMessage", roomConfig={"name": "r"}, to="alice", text="hi ✓")
    network.pump()
    assert aliceChannel.roomEvents("MESSAGE")[0]["info"] == {"from": "bob", "text": "hi ✓"}
    command(alice, "sendMessage", roomConfig={"name": "r"}, to="bob", text="hello")
    network.pump()
    assert [e["info"] for e in bobChannel.roomEvents("MESSAGE")] == [
        {"from": "alice", "text": "hello"}]

    # A login not in the room: refused on the client's node, nothing sent.
    command(bob, "sendMessage", roomConfig={"name": "r"}, to="nobody", text="?")
    assert status(bobChannel)["status"] == "FAILED" and "nobody" in status(bobChannel)["info"]
    assert network.queue == []

    command(bob, "leave", name="r")
    assert status(bobChannel)["status"] == "ACCEPTED"
    network.pump()
    assert aliceChannel.roomEvents("LEFT")[0]["info"] == "bob"
    assert b.visitors.rooms == {} and a.hosts.proxies == {}


def test_second_visitor_on_a_node_gets_the_state_and_events_once(network):
    a, b = network.nodes["a"], network.nodes["b"]
    alice, _ = a.client("alice")
    bob, bobChannel = b.client("bob")
    carol, carolChannel = b.client("carol")
    command(alice, "join", name="r")
    command(bob, "join", name="r")
    network.pump()
    command(carol, "join", name="r")
    network.pump()
    assert carolChannel.roomEvents("STATE")[0]["info"] == ["alice", "bob"]
    assert [e["info"] for e in bobChannel.roomEvents("JOINED")] == ["carol"]
    # Alice's chat to bob reaches bob only.
    command(alice, "sendMessage", roomConfig={"name": "r"}, to="bob", text="x")
    network.pump()
    assert len(bobChannel.roomEvents("MESSAGE")) == 1
    assert carolChannel.roomEvents("MESSAGE") == []


def test_the_room_node_refuses_a_taken_login_and_a_full_room(network):
    a, b, first, _, second, secondChannel = joinOnBoth(network, "dana", "dana")
    assert status(secondChannel)["status"] == "FAILED"
    assert "already has a participant with login 'dana'" in status(secondChannel)["info"]
    assert "r" not in second.participants and b.visitors.rooms == {}
    for login in ("e", "f"):
        session, _ = b.client(login)
        command(session, "join", name="r")
        network.pump()
    late, lateChannel = b.client("g")
    command(late, "join", name="r")
    network.pump()
    assert "is full" in status(lateChannel)["info"]


def test_a_join_without_answer_fails_and_a_late_answer_is_undone(network):
    a, b = network.nodes["a"], network.nodes["b"]
    bob, bobChannel = b.client("bob")
    command(bob, "join", name="r")
    b.clock.advance(JOIN_TIMEOUT)
    assert status(bobChannel)["status"] == "FAILED"
    assert "did not answer" in status(bobChannel)["info"]
    # The join reaches a after all; its answer finds nobody waiting on b,
    # which takes the participant out again.
    network.pump()
    assert "r" not in a.server.rooms.rooms
    assert "r" not in bob.participants


def test_messages_held_while_a_join_is_placed_keep_their_order(network):
    a, b = network.nodes["a"], network.nodes["b"]
    alice, aliceChannel = a.client("alice")
    command(alice, "join", name="r")
    bob, bobChannel = b.client("bob")
    command(bob, "join", name="r")
    command(bob, "sendMessage", roomConfig={"name": "r"}, to="alice", text="after join")
    network.pump()
    assert [s["status"] for s in bobChannel.named("DataStatusEvent")] == ["ACCEPTED", "ACCEPTED"]
    assert aliceChannel.roomEvents("MESSAGE")[0]["info"]["text"] == "after join"


def test_a_room_node_gone(network):
    a, b, alice, _, bob, bobChannel = joinOnBoth(network)
    a.server.rooms.announceStream(alice.participants["r"], "alice-cam")
    network.pump()
    bobChannel.take()
    b.visitors.nodeGone("a")
    assert [(e["name"], e["info"]) for e in bobChannel.roomEvents()] == [
        ("FAILED", {"login": "alice", "name": "alice-cam"}), ("LEFT", "alice")]
    assert bob.participants == {} and b.visitors.rooms == {}
    assert network.queue == []  # nothing sent to the dead node


def test_a_client_node_gone(network):
    a, b, alice, aliceChannel, bob, _ = joinOnBoth(network)
    a.hosts.nodeGone("b")
    assert aliceChannel.roomEvents("LEFT")[-1]["info"] == "bob"
    assert list(a.server.rooms.rooms["r"].participants) == ["alice"]
    assert a.hosts.proxies == {}


OFFER = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendrecv\r\n"


def streamBody(mediaSessionId: str, name: str, room: str, published: bool) -> dict:
    return {"mediaSessionId": mediaSessionId, "name": name, "published": published,
            "hasVideo": True, "hasAudio": True, "mediaProvider": "WebRTC",
            "sdp": OFFER, "custom": {"name": room}}


def test_a_visitors_streams_are_negotiated_on_the_room_node(network):
    a, b, alice, aliceChannel, bob, bobChannel = joinOnBoth(network)

    # bob (on b) publishes into r (on a): a's engine answers, a holds the name.
    bob.messageReceived("publishStream", [streamBody("m1", "r-bob", "r", True)])
    assert b.engine.sessions == [] and bob.streams.active == {}
    network.pump()
    frames = [f for f in bobChannel.frames if f["message"] == "setRemoteSDP"]
    assert frames[0]["data"] == ["m1", ANSWER]
    a.engine.last().listener.mediaStarted()
    network.pump()
    assert bobChannel.named("notifyStreamStatusEvent")[-1]["status"] == "PUBLISHING"
    assert aliceChannel.roomEvents("PUBLISHED")[0]["info"] == {"login": "bob", "name": "r-bob"}
    assert a.server.liveSource("r-bob") is not None

    # alice (on a) publishes; bob plays it: the play goes to a as well.
    alice.messageReceived("publishStream", [streamBody("m2", "r-alice", "r", True)])
    a.engine.last().listener.mediaStarted()
    network.pump()
    assert bobChannel.roomEvents("PUBLISHED")[-1]["info"] == {"login": "alice",
                                                              "name": "r-alice"}
    bob.messageReceived("playStream", [streamBody("m3", "r-alice", "r", False)])
    network.pump()
    a.engine.last().listener.mediaStarted()
    network.pump()
    assert bobChannel.named("notifyStreamStatusEvent")[-1]["status"] == "PLAYING"

    # Stops go where the streams are; the relayed ones are then forgotten.
    bob.messageReceived("unPublishStream", [{"mediaSessionId": "m1", "name": "r-bob"}])
    network.pump()
    assert bobChannel.named("notifyStreamStatusEvent")[-1]["status"] == "UNPUBLISHED"
    assert aliceChannel.roomEvents("UNPUBLISHED")[0]["info"] == {"login": "bob",
                                                                 "name": "r-bob"}
    assert b.visitors.streams.nodes[bob.sessionId] == {"m3": "a"}
    assert b.visitors.streams.players == {"r-alice": 1}

    # bob leaves: his play there goes on until his connection ends.
    bob.connectionLost("test")
    network.pump()
    assert a.hosts.proxies == {} and list(a.server.rooms.rooms["r"].participants) == ["alice"]
    assert [s for s in a.server.sessions if s is not alice] == []


def test_the_edge_rule_forwards_the_first_players_of_a_stream(network):
    """
    With edge play and a minimum of 3 players, the first two plays of a
    stream on b are forwarded to its room's node a; the third is kept on b
    (the session then locates the stream: b pulls it), and so is any play
    while b pulls it. Stopped forwarded plays no longer count.
    """
    a, b, alice, aliceChannel, bob, bobChannel = joinOnBoth(network)
    pulling: set[str] = set()
    b.visitors.edgePlay, b.visitors.edgeMinPlayers = True, 3
    b.visitors.pulling = pulling.__contains__
    alice.messageReceived("publishStream", [streamBody("p1", "r-alice", "r", True)])
    a.engine.last().listener.mediaStarted()
    network.pump()

    def play(mediaSessionId: str) -> bool:
        """Whether b forwards this play of bob's (then a's engine answers it)."""
        return b.visitors.forward(bob, "playStream",
                                  [streamBody(mediaSessionId, "r-alice", "r", False)])

    assert play("m1") and play("m2")
    assert b.visitors.streams.players == {"r-alice": 2}
    assert not play("m3")  # the third player: b pulls
    network.pump()
    assert sorted(a.hosts.proxies["b", bob.sessionId].streams.active) == ["m1", "m2"]
    pulling.add("r-alice")
    b.visitors.edgeMinPlayers = 10
    assert not play("m4")  # b pulls it already: a new player shares the pull
    pulling.clear()

    # A forwarded play stops (its status comes back): it no longer counts.
    bob.messageReceived("stopStream", [{"mediaSessionId": "m1", "name": "r-alice"}])
    network.pump()
    assert b.visitors.streams.players == {"r-alice": 1}
    b.visitors.edgeMinPlayers = 3
    assert play("m5")  # 1 forwarded + this one: still under 3
    b.visitors.edgePlay = False
    assert play("m6")  # edge play off: every play forwarded
    # A play again under a relayed mediaSessionId, its name missing or not a
    # string: forwarded (the room's node answers it), counted under no name.
    for bad in ({"mediaSessionId": "m6"}, {"mediaSessionId": "m6", "name": ["x"]}):
        assert b.visitors.forward(bob, "playStream", [bad])
        assert b.visitors.streams.players == {"r-alice": 2}
    bob.connectionLost("test")
    assert b.visitors.streams.players == {} and b.visitors.streams.nodes == {}


def test_a_visitors_token_claims_go_with_its_join(network):
    from wcs.access.tokens import Claims

    a, b = network.nodes["a"], network.nodes["b"]
    alice, _ = a.client("alice")
    command(alice, "join", name="r")
    bob, _ = b.client("bob")
    bob.claims = Claims("bob", "r", frozenset({"join", "publish"}), 1234.5)
    command(bob, "join", name="r")
    network.pump()
    (proxy,) = a.hosts.proxies.values()
    assert proxy.claims == bob.claims and proxy.login == "bob"
    assert proxy.channel.peer == f"cluster:b:{bob.sessionId}"


def test_refused_relayed_plays_are_not_kept(network):
    """
    A visitor's plays that the room's node refuses outright (a malformed
    request: `fail`, no stream status) are forgotten: kept, each new
    mediaSessionId stayed for the session's life, and counted as a player
    of the stream by the edge rule.
    """
    a, b, alice, aliceChannel, bob, bobChannel = joinOnBoth(network)
    alice.messageReceived("publishStream", [streamBody("p1", "r-alice", "r", True)])
    a.engine.last().listener.mediaStarted()
    network.pump()
    for i in range(50):
        body = streamBody(f"bad{i}", "r-alice", "r", False)
        body["sdp"] = 7  # not an offer
        bob.messageReceived("playStream", [body])
        network.pump()
    refusals = [f for f in bobChannel.frames if f["message"] in ("fail", "notifyStreamStatusEvent")]
    assert len(refusals) == 50, bobChannel.frames[-3:]
    assert b.visitors.streams.nodes.get(bob.sessionId, {}) == {}
    assert b.visitors.streams.players == {}
