"""
The node-to-node media relay's protocol (wcs/cluster/media.py) on
StringTransports: frames round-trip, a header must name a known visitor,
bad records close the connection, back-pressure drops to the next keyframe.
"""

from __future__ import annotations

import json
from fractions import Fraction

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from wcs.cluster import edge, media
from wcs.errors import StreamError
from wcs.frames import EncodedFrame

VIDEO = EncodedFrame("video", "H264", b"\x00\x00\x00\x01\x65abc", 90000, Fraction(1, 90000),
                     keyframe=True)
AUDIO = EncodedFrame("audio", "AAC", b"\x21\x10", 1024, Fraction(1, 44100),
                     config=b"\x12\x10", sample_rate=44100)


def test_frames_round_trip():
    for frame in (VIDEO, AUDIO):
        record = media.encodeFrame(frame)
        assert int.from_bytes(record[:4], "big") == len(record) - 4
        assert media.decodeFrame(record[4:]) == frame


class FakeStream:
    def __init__(self):
        self.stopped = 0

    def stop(self, info=None):
        self.stopped += 1


class Hosts:
    def __init__(self, allow=True):
        self.server = type("Server", (), {})()
        self.server.clock = Clock()
        self.allow = allow
        self.stream = FakeStream()
        self.calls = []

    def relayed(self, header, source, onStop):
        self.calls.append((header, source))
        if not self.allow:
            raise StreamError("no such visitor on this node")
        return object(), self.stream


class Sink:
    def __init__(self):
        self.frames, self.ended = [], False

    def writeFrame(self, frame):
        self.frames.append(frame)

    def sourceEnded(self):
        self.ended = True


def connected(hosts) -> tuple[media.RelayIn, StringTransport]:
    relay = media.RelayInFactory(hosts).buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5000))
    relay.makeConnection(transport)
    return relay, transport


HEADER = json.dumps({"node": "c", "inc": "x", "session": "s", "room": "r",
                     "stream": "r-obs", "tracks": {"video": "H264"}}).encode() + b"\n"


def test_frames_reach_the_source_and_its_end_stops_the_stream():
    hosts = Hosts()
    relay, transport = connected(hosts)
    data = HEADER + media.encodeFrame(VIDEO) + media.encodeFrame(AUDIO)
    for i in range(0, len(data), 7):  # in pieces, as TCP may cut them
        relay.dataReceived(data[i:i + 7])
    header, source = hosts.calls[0]
    assert header["stream"] == "r-obs"
    assert source.tracks == {"video": "H264", "audio": "AAC"}  # the header's, then the frames'
    sink = Sink()
    source.attach(sink)
    assert transport.value() == b"k"  # a new player asks for a keyframe
    relay.dataReceived(media.encodeFrame(VIDEO))
    assert sink.frames == [VIDEO]
    relay.dataReceived(b"\x00\x00\x00\x01" + media.ENDED)
    assert transport.disconnecting
    relay.connectionLost(None)
    assert sink.ended and hosts.stream.stopped == 1


def test_an_unknown_visitor_is_refused():
    hosts = Hosts(allow=False)
    relay, transport = connected(hosts)
    relay.dataReceived(HEADER + media.encodeFrame(VIDEO))
    assert transport.disconnecting


def test_bad_input_closes_the_connection():
    for data in (b"x" * (media.HEADER_MAX + 1),  # no header line
                 b"[1]\n",  # a header that is not an object
                 HEADER + (media.RECORD_MAX + 1).to_bytes(4, "big"),  # oversize record
                 HEADER + (3).to_bytes(4, "big") + b"abc"):  # not a frame
        relay, transport = connected(Hosts())
        relay.dataReceived(data)
        assert transport.disconnecting, data[:20]


class Source:
    tracks = {"video": "H264"}

    def __init__(self):
        self.sinks, self.keyframes = [], 0

    def attach(self, sink):
        self.sinks.append(sink)

    def detach(self, sink):
        self.sinks.remove(sink)

    def requestKeyframe(self):
        self.keyframes += 1


def test_the_pusher_drops_to_a_keyframe_when_congested_and_ends_cleanly():
    source = Source()
    out = media.RelayOut(source, {"stream": "r-obs"})
    transport = StringTransport()
    out.makeConnection(transport)
    assert transport.value().endswith(b"\n") and source.sinks == [out]
    transport.clear()
    delta = EncodedFrame("video", "H264", b"delta", 3000, Fraction(1, 90000))
    out.pauseProducing()
    out.writeFrame(delta)
    out.resumeProducing()
    out.writeFrame(delta)  # dropped: the player there needs a keyframe first
    assert transport.value() == b"" and source.keyframes >= 2
    out.writeFrame(VIDEO)
    out.writeFrame(delta)
    assert transport.value() == media.encodeFrame(VIDEO) + media.encodeFrame(delta)
    transport.clear()
    out.end(failed=True)
    assert transport.value() == b"\x00\x00\x00\x01" + media.ENDED_FAILED
    assert transport.disconnecting and source.sinks == []


class Server:
    def __init__(self, source):
        self.source = source

    def liveSource(self, name):
        return self.source if name == "r-obs" else None


def test_a_pull_gets_the_stream_and_its_keyframe_requests_reach_it():
    source = Source()
    hosts = Hosts()
    hosts.server = Server(source)
    hosts.server.clock = Clock()
    relay, transport = connected(hosts)
    relay.dataReceived(b'{"pull": "r-obs"}\n')
    # The tracks first, for the puller's WebRTC players to negotiate with.
    assert source.sinks == [relay.pusher]
    assert transport.value() == b'{"tracks": {"video": "H264"}}\n'
    assert relay.stats.pullsServed == 1 and relay.stats.serving == {relay}
    transport.clear()
    relay.pusher.writeFrame(VIDEO)
    assert transport.value() == media.encodeFrame(VIDEO)
    asked = source.keyframes
    relay.dataReceived(b"k")
    assert source.keyframes == asked + 1
    relay.connectionLost(None)
    assert source.sinks == [] and relay.stats.serving == set()

    missing, transport = connected(hosts)
    missing.dataReceived(b'{"pull": "other"}\n')
    assert transport.disconnecting


def test_the_pulling_node_shares_one_relay_and_stops_it_when_its_last_player_leaves():
    forgotten = []
    source = media.RelayedSource({}, lambda: None, lambda: None)
    stats = media.RelayStats()
    pull = edge.Pull("r-obs", source, stats)
    source.idle = lambda: (forgotten.append(source), pull.stop())
    transport = StringTransport()
    pull.makeConnection(transport)
    assert transport.value() == b'{"pull": "r-obs"}\n'
    ready = []
    source.whenReady().addCallback(ready.append)
    assert ready == [] and not source.ready
    pull.dataReceived(b'{"tracks": {"video": "H264", "audio": "opus", "x": "y"}}\n')
    assert ready == [source] and source.tracks == {"video": "H264", "audio": "opus"}
    assert stats.pulls == 1 and stats.pulling == {pull}
    first, second = Sink(), Sink()
    source.attach(first)
    source.attach(second)
    pull.dataReceived(media.encodeFrame(VIDEO))
    assert first.frames == second.frames == [VIDEO]
    source.detach(first)
    assert not transport.disconnecting
    source.detach(second)
    assert forgotten == [source] and transport.disconnecting
    pull.connectionLost(None)
    assert source.ended and stats.pulling == set()


def test_a_pull_answered_without_tracks_is_closed_and_its_waiters_get_none():
    source = media.RelayedSource({}, lambda: None, lambda: None)
    pull = edge.Pull("r-obs", source, media.RelayStats())
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5000))
    pull.makeConnection(transport)
    ready = []
    source.whenReady().addCallback(ready.append)
    pull.dataReceived(b'{"no": "tracks"}\n')
    assert transport.disconnecting
    pull.connectionLost(None)
    assert ready == [None] and source.ended


def test_keyframe_requests_of_a_pull_reach_its_origin_at_most_once_per_interval():
    clock = Clock()
    asked = []
    budget = edge.KeyframeBudget(clock, 0.5, lambda: asked.append(clock.seconds()))
    for _ in range(5):  # five players ask at once: one passes, one is held
        budget()
    assert asked == [0]
    clock.advance(0.5)
    assert asked == [0, 0.5]
    clock.advance(10)
    assert asked == [0, 0.5]  # nothing held: nothing more
    budget()
    assert asked == [0, 0.5, 10.5]
    budget()
    budget.cancel()  # the pull ended: the held one is dropped
    clock.advance(1)
    assert asked == [0, 0.5, 10.5] and clock.getDelayedCalls() == []


def test_a_connection_without_a_header_is_closed_in_time():
    hosts = Hosts()
    relay, transport = connected(hosts)
    relay.dataReceived(b'{"node"')
    hosts.server.clock.advance(media.HEADER_TIMEOUT - 1)
    assert not transport.disconnecting
    hosts.server.clock.advance(1)
    assert transport.disconnecting
    relay.connectionLost(None)

    sent, transport = connected(hosts)  # a header in time: the timer is off
    sent.dataReceived(HEADER)
    sent.connectionLost(None)
    assert hosts.server.clock.getDelayedCalls() == []
