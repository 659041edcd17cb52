"""
wcs.cluster.edge in process: one pull per stream and node, held while plays
are decided, stopped with its last player, its players stopped with it.
The pull's connection is a StringTransport; the registry a stub answering
where the stream's room lives (Redis is tested in test_registry.py).
"""

from __future__ import annotations

from twisted.internet.defer import succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.python.failure import Failure
from twisted.internet.testing import MemoryReactorClock, StringTransport

from wcs.cluster import edge, media


class Registry:
    def __init__(self, home):
        self.home = home
        self.asked = []

    def streamHome(self, name, rooms):
        self.asked.append((name, rooms))
        return succeed(self.home)


class Streams:
    def __init__(self):
        self.ended = []

    def end(self, stream, status, info=None):
        self.ended.append((stream, status, info))


class Player:
    def __init__(self):
        self.owner = self
        self.streams = Streams()


def located(edges, name):
    results = []
    edges.locate(name).addCallback(results.append)
    return results


def answerPull(reactor, index=0):
    """Connect the pull the edge asked for and answer with the tracks."""
    host, port, factory, timeout, bind = reactor.tcpClients[index]
    pull = factory.buildProtocol(None)
    transport = StringTransport()
    pull.makeConnection(transport)
    assert transport.value() == b'{"pull": "room-x-alice"}\n'
    pull.dataReceived(b'{"tracks": {"video": "H264"}}\n')
    return pull, transport


def pulledStream():
    """An edge whose one pull of room-x-alice (from node b) is answered."""
    reactor = MemoryReactorClock()
    edges = edge.Edges(Registry(("room-x", "b", ("127.0.0.1", 7000))), reactor)
    results = located(edges, "room-x-alice")
    pull, transport = answerPull(reactor)
    return reactor, edges, results[0], pull, transport


def test_the_rooms_a_stream_name_may_belong_to():
    assert edge.roomsOfStream("room-x-alice") == ["room-x", "room"]
    assert edge.roomsOfStream("nodash") == []
    assert len(edge.roomsOfStream("a" + "-b" * 20)) == edge.MAX_ROOM_PREFIXES


def test_one_pull_for_all_players_of_a_stream_stopped_with_the_last():
    reactor = MemoryReactorClock()
    stats = media.RelayStats()
    edges = edge.Edges(Registry(("room-x", "b", ("127.0.0.1", 7000))), reactor, stats)
    first = located(edges, "room-x-alice")
    assert first == [] and len(reactor.tcpClients) == 1  # waits for the tracks
    assert reactor.tcpClients[0][:2] == ("127.0.0.1", 7000)
    pull, transport = answerPull(reactor)
    second = located(edges, "room-x-alice")
    stream = first[0]
    assert second == [stream] and len(reactor.tcpClients) == 1  # the same pull
    assert stream.room == "room-x" and stream.status == "PUBLISHING"
    assert stream.media.source.tracks == {"video": "H264"} and stream.holds == 2

    one, two = Player(), Player()
    stream.players.add(one)
    stream.release()  # the second play was refused: the first still holds it
    assert stream.holds == 0 and not transport.disconnecting
    stream.players.add(two)
    stream.players.discard(one)
    assert not transport.disconnecting
    stream.players.discard(two)
    assert transport.disconnecting and edges.streams == {}
    pull.connectionLost(None)
    assert stream.status == "UNPUBLISHED" and stats.pulling == set()


def test_the_pull_waits_for_players_still_negotiating():
    reactor, edges, stream, pull, transport = pulledStream()
    stream.players.add(Player())  # negotiating: no track attached yet
    sink = Player()
    sink.writeFrame = lambda frame: None
    stream.media.source.attach(sink)  # an RTMP player comes and goes
    stream.media.source.detach(sink)
    assert not transport.disconnecting


def test_the_end_of_the_stream_at_its_origin_stops_its_players_here():
    reactor, edges, stream, pull, transport = pulledStream()
    player = Player()
    stream.players.add(player)
    pull.dataReceived(b"\x00\x00\x00\x01" + media.ENDED)
    pull.connectionLost(None)
    assert player.streams.ended == [(player, "STOPPED", "Stopped by publisher stop")]
    assert edges.streams == {} or edges.streams["room-x-alice"].ended
    again = located(edges, "room-x-alice")  # a new play: a new pull
    assert again == [] and len(reactor.tcpClients) == 2


def test_a_stream_live_nowhere_else_is_not_pulled():
    reactor = MemoryReactorClock()
    registry = Registry(None)
    edges = edge.Edges(registry, reactor)
    assert located(edges, "room-x-alice") == [None]
    assert located(edges, "nodash") == [None]  # a stream outside rooms is looked for too
    assert registry.asked == [("room-x-alice", ["room-x", "room"]), ("nodash", [])]
    assert reactor.tcpClients == []


def test_a_stream_outside_rooms_on_another_node_is_pulled():
    reactor = MemoryReactorClock()
    edges = edge.Edges(Registry((None, "b", ("127.0.0.1", 7000))), reactor)
    results = located(edges, "room-x-alice")  # the name of the test's pull
    answerPull(reactor)
    assert results[0].room is None and results[0].status == "PUBLISHING"


def test_a_pull_that_cannot_connect_answers_none():
    reactor = MemoryReactorClock()
    edges = edge.Edges(Registry(("room-x", "b", ("127.0.0.1", 7000))), reactor)
    results = located(edges, "room-x-alice")
    factory = reactor.tcpClients[0][2]
    factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
    assert results == [None] and edges.streams == {}


def test_a_silent_origin_answers_none_in_time():
    reactor = MemoryReactorClock()
    edges = edge.Edges(Registry(("room-x", "b", ("127.0.0.1", 7000))), reactor)
    results = located(edges, "room-x-alice")
    host, port, factory, timeout, bind = reactor.tcpClients[0]
    pull = factory.buildProtocol(None)
    transport = StringTransport()
    pull.makeConnection(transport)  # connected, but no answer comes
    reactor.advance(media.HEADER_TIMEOUT - 1)
    assert results == []
    reactor.advance(1)
    assert results == [None] and transport.disconnecting and edges.streams == {}


def test_the_pulls_of_a_gone_origin_end_and_stop_their_players():
    reactor, edges, stream, pull, transport = pulledStream()
    player = Player()
    stream.players.add(player)
    assert edges.peers() == {"b"}
    edges.nodeGone("c")
    assert not transport.disconnecting
    edges.nodeGone("b")  # a vanished machine: no FIN ever comes
    assert transport.disconnecting and stream.ended and edges.streams == {}
    # Not its publisher's stop: FAILED, saying why (a play again may find it).
    assert player.streams.ended == [(player, "FAILED", "the stream's node b is gone")]


def test_a_pull_lost_without_its_end_fails_its_players():
    """The origin's process died (its kernel closed the connection): no end record."""
    reactor, edges, stream, pull, transport = pulledStream()
    player = Player()
    stream.players.add(player)
    pull.connectionLost(None)
    assert player.streams.ended == [(player, "FAILED", edge.CONNECTION_LOST)]
    assert edges.streams == {} and edges.peers() == set()


def test_a_play_the_media_engine_refused_gives_its_hold_back():
    reactor, edges, stream, pull, transport = pulledStream()
    stream.players.discard(Player())  # StreamControl.end of a play never added
    assert stream.holds == 0 and transport.disconnecting


def test_streams_ended_at_their_origin_are_forgotten():
    """
    Hours of streams played here and ended at their origin (each a new
    name, as the SDK makes them): this node keeps none of them. Each ended
    L{EdgeStream} (its source, pull, budget) stayed in C{Edges.streams}
    until a stream of the same name was played again, and its origin among
    the L{Edges.peers} whose health is watched.
    """
    reactor = MemoryReactorClock()
    edges = edge.Edges(Registry(("room-x", "b", ("127.0.0.1", 7000))), reactor)
    for i in range(200):
        name = f"room-x-alice{i}"
        results = located(edges, name)
        pull = reactor.tcpClients[i][2].buildProtocol(None)
        pull.makeConnection(StringTransport())
        pull.dataReceived(b'{"tracks": {"video": "H264"}}\n')
        player = Player()
        results[0].players.add(player)
        pull.dataReceived(b"\x00\x00\x00\x01" + media.ENDED)
        pull.connectionLost(None)
        assert player.streams.ended == [(player, "STOPPED", "Stopped by publisher stop")]
        reactor.advance(60)
    assert edges.streams == {} and edges.peers() == set()
    again = located(edges, "room-x-alice0")  # a new play of an old name: a new pull
    assert again == [] and len(reactor.tcpClients) == 201
