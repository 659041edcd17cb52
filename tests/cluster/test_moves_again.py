"""
An RTMP encoder whose visited room is lost with the room's node joins
again (wcs/cluster/moves.py, L{Moves.again}): it speaks no room protocol,
so it could not join again by itself, and its broadcast goes on. Two nodes
in one process (tests/cluster/test_relay.py's loopback); the same with
real processes, ffmpeg and a split is tests/cluster/test_rtmpmove.py.
"""

from __future__ import annotations

from twisted.internet.defer import fail, succeed

from tests.cluster.test_relay import Network, command
from tests.cluster.test_splits import HandOvers, events, pump
from tests.support.channels import RecordingChannel
from wcs.cluster.moves import againInfo
from wcs.cluster.splits import Splits
from wcs.errors import RoomError
from wcs.recording import Recorder
from wcs.rtmp.relay import RTMPSource


class EncoderChannel(RecordingChannel):
    """An RTMP encoder's channel as wcs.rtmp.channel makes it: its room joined for it."""

    clientJoins = False


def encoderInRoom(network):
    """
    alice on a holds room r; obs, an encoder on b, joined it there (a
    visitor) and publishes r-obs from b, where its media arrives; bob, a
    page on b, is in r too.

    @return: (a, b, alice's channel, obs's session, its stream, bob, bob's channel).
    """
    a, b = network.nodes["a"], network.nodes["b"]
    for node in (a, b):
        node.registry = HandOvers()
        node.splits = Splits(node.bus, node.server, node.registry, node.clock,
                             node.visitors, node.hosts)
    alice, aliceChannel = a.client("alice")
    command(alice, "join", name="r")
    bob, bobChannel = b.client("bob")
    command(bob, "join", name="r")
    obs = b.server.openSession(EncoderChannel("rtmp:127.0.0.1:1935"))
    obs.messageReceived("connection", [{"appKey": "rtmp", "custom": {"login": "obs"}}])
    obs.requestJoin("r")
    network.pump()
    stream = obs.publish("r-obs", RTMPSource("r-obs"), "RTMP", room="r")
    network.pump()
    assert ("PUBLISHED", {"login": "obs", "name": "r-obs"}) in events(aliceChannel)
    return a, b, aliceChannel, obs, stream, bob, bobChannel


def giveUp(node, gone: str) -> None:
    """The service's give-up of node C{gone} (ClusterService._giveUp), its visitors' part."""
    for participant, seen in node.visitors.nodeGone(gone):
        node.splits.moves.again(participant, seen)


def test_an_encoder_joins_again_when_its_rooms_node_is_given_up():
    network = Network()
    a, b, aliceChannel, obs, stream, bob, bobChannel = encoderInRoom(network)
    # An encoder's stream in a visited room is the room node's to record.
    assert not Recorder.wanted(stream)
    obsChannel = obs.channel
    obsChannel.take(), bobChannel.take()
    b.enter = lambda session, room, login, record: succeed(None)  # a is gone: placed here
    b.clock.advance(10)  # b's room is the newer one
    giveUp(b, "a")
    # bob, a page, is out of the room as before: it can join again itself.
    assert ("LEFT", "alice") in events(bobChannel) and "r" not in bob.participants
    # obs is in a room r on b, its stream the same, live and announced there.
    room = b.server.rooms.rooms["r"]
    assert list(room.participants) == ["obs"] and obs.participants["r"].room is room
    assert obs.streams.active[stream.mediaSessionId] is stream
    assert stream.status == "PUBLISHING" and stream.participant is obs.participants["r"]
    assert "r-obs" in room.participants["obs"].streams
    assert obsChannel.named("notifyStreamStatusEvent") == []
    # bob joining again meets it there.
    command(bob, "join", name="r")
    assert bobChannel.roomEvents("STATE")[-1]["info"] == [{"login": "obs", "name": "r-obs"}]
    # a runs again: b's room yields, obs (and bob) move into a's, the stream with it.
    a.splits.found("r", "b")
    pump(network)
    assert "r" not in b.server.rooms.rooms and b.registry.handed == [("r", "a")]
    older = a.server.rooms.rooms["r"]
    assert {"alice", "obs", "bob"} <= set(older.participants)
    assert "r-obs" in older.participants["obs"].streams
    assert stream.status == "PUBLISHING" and obs.participants["r"].room.node == "a"


def test_an_encoder_not_joined_again_ends_its_stream_with_the_reason():
    network = Network()
    a, b, _, obs, stream, _, _ = encoderInRoom(network)
    refusal = RoomError("no live node in the cluster can take the room")
    b.enter = lambda session, room, login, record: fail(refusal)
    giveUp(b, "a")
    assert "r" not in obs.participants and obs.streams.active == {}
    ended = obs.channel.named("notifyStreamStatusEvent")[-1]
    assert ended["status"] == "UNPUBLISHED"
    assert ended["info"] == againInfo("a", refusal.info)
    assert "r" not in b.server.rooms.rooms
