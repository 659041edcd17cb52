"""
The resync after a Redis outage and the cap on relayed streams, in one
process: tests/cluster/test_relay.py's two RoomServers joined by a loopback
that can lose messages as Redis away would (the real Redis and nodes:
test_resync.py).
"""

from __future__ import annotations

from tests.cluster.test_relay import command, joinOnBoth, network, streamBody  # noqa: F401
from wcs.cluster.resync import SETTLE


def resync(network, *nodes: str) -> None:
    """C{nodes} saw Redis back: their resyncs go out and are answered."""
    for node in nodes:
        network.nodes[node].resync.outage("test")
        network.nodes[node].resync.outage("test")  # a second signal: one resync
    for node in nodes:
        network.nodes[node].clock.advance(SETTLE)
    network.pump()


def test_a_leave_lost_is_undone(network):
    a, b, alice, aliceChannel, bob, bobChannel = joinOnBoth(network)
    command(bob, "leave", name="r")
    network.pump(drop=True)  # Redis away: the room's node still holds bob
    assert list(a.server.rooms.rooms["r"].participants) == ["alice", "bob"]
    assert b.visitors.rooms == {}  # b visits the room no more: it lists nothing there

    resync(network, "b")
    assert [e["info"] for e in aliceChannel.roomEvents("LEFT")] == ["bob"]
    assert list(a.server.rooms.rooms["r"].participants) == ["alice"]
    assert a.hosts.proxies == {} and [s for s in a.server.sessions if s is not alice] == []
    resync(network, "a", "b")  # again: nothing changes
    assert len(aliceChannel.roomEvents("LEFT")) == 1


def test_a_disconnect_lost_ends_the_visitors_streams_there(network):
    a, b, alice, aliceChannel, bob, bobChannel = joinOnBoth(network)
    bob.messageReceived("publishStream", [streamBody("m1", "r-bob", "r", True)])
    network.pump()
    a.engine.last().listener.mediaStarted()
    network.pump()
    bob.connectionLost("test")
    network.pump(drop=True)
    resync(network, "a")  # the room's node asks; b answers with nobody
    assert [e["info"] for e in aliceChannel.roomEvents("UNPUBLISHED")] == [
        {"login": "bob", "name": "r-bob"}]
    assert [e["info"] for e in aliceChannel.roomEvents("LEFT")] == ["bob"]
    assert a.server.liveSource("r-bob") is None and a.hosts.proxies == {}


def test_events_lost_are_told_to_the_visitors(network):
    a, b, alice, aliceChannel, bob, bobChannel = joinOnBoth(network)
    carol, carolChannel = a.client("carol")
    command(carol, "join", name="r")
    alice.messageReceived("publishStream", [streamBody("m2", "r-alice", "r", True)])
    a.engine.last().listener.mediaStarted()
    network.pump(drop=True)  # bob misses JOINED carol and PUBLISHED r-alice
    assert bobChannel.roomEvents("JOINED") == []

    resync(network, "a")
    assert [e["info"] for e in bobChannel.roomEvents("JOINED")] == ["carol"]
    assert [e["info"] for e in bobChannel.roomEvents("PUBLISHED")] == [
        {"login": "alice", "name": "r-alice"}]
    assert set(b.visitors.rooms["r"].roster) == {"alice", "bob", "carol"}
    # Chat to the newcomer: the roster here knows her now.
    command(bob, "sendMessage", roomConfig={"name": "r"}, to="carol", text="hi")
    network.pump()
    assert [e["info"]["text"] for e in carolChannel.roomEvents("MESSAGE")] == ["hi"]

    # carol leaves, the LEFT is lost; the next resync tells it, once.
    command(carol, "leave", name="r")
    network.pump(drop=True)
    resync(network, "b")
    resync(network, "a", "b")
    assert [e["info"] for e in bobChannel.roomEvents("LEFT")] == ["carol"]


def test_a_member_the_room_node_lost_joins_again(network):
    a, b, alice, aliceChannel, bob, bobChannel = joinOnBoth(network)
    a.hosts.nodeGone("b")  # a gave b up (its key missing too long): bob is out there
    network.pump(drop=True)
    assert [e["info"] for e in aliceChannel.roomEvents("LEFT")] == ["bob"]
    resync(network, "b")
    assert [e["info"] for e in aliceChannel.roomEvents("JOINED")] == ["bob", "bob"]
    assert list(a.server.rooms.rooms["r"].participants) == ["alice", "bob"]
    command(bob, "sendMessage", roomConfig={"name": "r"}, to="alice", text="back")
    network.pump()
    assert [e["info"]["text"] for e in aliceChannel.roomEvents("MESSAGE")] == ["back"]


def test_a_member_who_cannot_join_again_is_removed(network):
    a, b, alice, aliceChannel, bob, bobChannel = joinOnBoth(network)
    a.hosts.nodeGone("b")
    network.pump(drop=True)
    intruder, _ = a.client("bob")  # bob's login taken meanwhile
    command(intruder, "join", name="r")
    resync(network, "b")
    # Out of the room on b, as after a kick (the SDK has no event for it).
    assert "r" not in bob.participants and b.visitors.rooms == {}
    assert a.server.rooms.rooms["r"].participants["bob"].member is intruder
    assert a.hosts.proxies == {}


def test_relayed_streams_per_session_are_capped(network):
    a, b, alice, aliceChannel, bob, bobChannel = joinOnBoth(network)
    b.visitors.maxRelayed = 2
    # Publishes into the room, relayed to a and not answered yet: each keeps
    # its slot until its final status comes back.
    for id in ("p1", "p2"):
        bob.messageReceived("publishStream", [streamBody(id, "r-bob-" + id, "r", True)])
    assert len(b.visitors.streams.nodes[bob.sessionId]) == 2
    queued = len(network.queue)
    bob.messageReceived("publishStream", [streamBody("p3", "r-bob-p3", "r", True)])
    failed = bobChannel.named("notifyStreamStatusEvent")[-1]
    assert failed["mediaSessionId"] == "p3" and failed["status"] == "FAILED"
    assert "too many streams relayed to other nodes" in failed["info"]
    assert len(network.queue) == queued and "p3" not in b.visitors.streams.nodes[bob.sessionId]
    # A repeated id is no new entry: still taken there.
    bob.messageReceived("publishStream", [streamBody("p2", "r-bob-p2", "r", True)])
    assert len(network.queue) == queued + 1
    network.pump()
    # One ends: a new one fits again.
    bob.messageReceived("unPublishStream", [{"mediaSessionId": "p1", "name": "r-bob-p1"}])
    network.pump()
    bob.messageReceived("publishStream", [streamBody("p4", "r-bob-p4", "r", True)])
    assert set(b.visitors.streams.nodes[bob.sessionId]) == {"p2", "p4"}


def test_a_join_on_its_way_is_kept(network):
    a, b = network.nodes["a"], network.nodes["b"]
    alice, aliceChannel = a.client("alice")
    command(alice, "join", name="r")
    bob, bobChannel = b.client("bob")
    command(bob, "join", name="r")  # queued; the resync's listing goes after it
    b.resync.outage("test")
    b.clock.advance(SETTLE)
    network.pump()
    assert list(a.server.rooms.rooms["r"].participants) == ["alice", "bob"]
    assert bobChannel.named("DataStatusEvent")[-1]["status"] == "ACCEPTED"
    assert aliceChannel.roomEvents("LEFT") == []
