"""
Hostile RTMP commands against the transport, without sockets
(StringTransport, an injected clock): every client value is checked before
use, and a bad one gets `_error` / onStatus or closes only that connection.
"""

import math
import struct
import time

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from tests.rtmp.test_hostile_wire import amf0Bomb
from wcs.config import Settings
from wcs.rtmp import amf0, chunks
from wcs.server import RoomServer
from wcs.transports.rtmp import RTMPFactory

HANDSHAKE = b"\x03" + bytes(1536) + bytes(1536)


class Peer:
    """One RTMP client connection to a server made for the test."""

    def __init__(self, settings=None):
        self.server = RoomServer(Settings(settings or {}), Clock())
        self.factory = RTMPFactory(self.server, self.server.settings)
        address = IPv4Address("TCP", "127.0.0.1", 50000)
        self.protocol = self.factory.buildProtocol(address)
        self.transport = StringTransport(peerAddress=address)
        self.protocol.makeConnection(self.transport)
        self.writer = chunks.ChunkWriter(128)
        self.reader = chunks.ChunkReader()
        self.read = 1 + 2 * 1536  # S0 S1 S2
        self.protocol.dataReceived(HANDSHAKE)
        self.transaction = 1.0

    def send(self, payload: bytes, mtype: int = chunks.COMMAND_AMF0, streamId: int = 0) -> None:
        self.protocol.dataReceived(self.writer.write(3, mtype, streamId, 0, payload))

    def call(self, name: str, *args, streamId: int = 0) -> list:
        """Call C{name}; what the server answered since (decoded commands)."""
        self.transaction += 1
        self.send(amf0.encodeAll(name, self.transaction, *args), streamId=streamId)
        return self.replies()

    def replies(self) -> list:
        data = self.transport.value()
        new, self.read = data[self.read:], len(data)
        return [amf0.decode(m.payload) for m in self.reader.receive(new)
                if m.type == chunks.COMMAND_AMF0]

    def connect(self, app="live", *args) -> list:
        return self.call("connect", {"app": app, "tcUrl": f"rtmp://127.0.0.1/{app}"}, *args)

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting


def named(replies, name):
    return [r for r in replies if r[0] == name]


def status(replies):
    return [r[3]["code"] for r in replies if r[0] == "onStatus"]


def test_a_second_connect_is_refused_and_makes_no_second_session():
    peer = Peer()
    assert named(peer.connect(), "_result")
    assert len(peer.server.sessions) == 1
    [error] = named(peer.connect("room/x", {"room": "r", "login": "l"}), "_error")
    assert error[3]["code"] == "NetConnection.Connect.Rejected"
    assert error[3]["description"] == "already connected"
    assert len(peer.server.sessions) == 1 and not peer.closed
    assert peer.protocol.application.app == "live"


@pytest.mark.parametrize("command, args, why", [
    ({"app": {"a": [1.0] * 3}}, (), "app must be a non-empty string"),
    ({"app": 5.0}, (), "app must be a non-empty string"),
    ({"app": "x" * 300}, (), "app is longer than 256 characters"),
    ({"app": "live"}, ({"appKey": "flashRoomApp", "login": ["a"]},),
     "login must be a non-empty string"),
    ({"app": "live"}, ({"room": {"r": 1.0}, "login": "l"},), "room must be a non-empty string"),
    ({"app": "live"}, ({"room": "r", "login": 7.0},), "login must be a non-empty string"),
])
def test_connect_fields_must_be_strings(command, args, why):
    peer = Peer()
    [error] = named(peer.call("connect", command, *args), "_error")
    assert error[3] == {"level": "error", "code": "NetConnection.Connect.Rejected",
                        "description": why}
    assert peer.closed and not peer.server.sessions


def test_a_reference_bomb_in_connect_closes_the_connection_in_bounded_time():
    peer = Peer()
    start = time.process_time()
    peer.send(amf0.encode("connect") + amf0.encode(1.0) + amf0Bomb(60))
    assert time.process_time() - start < 1.0
    assert peer.closed and not peer.server.sessions


def test_commands_before_connect_are_refused():
    peer = Peer()
    for name in ("createStream", "publish", "play", "deleteStream", "sendData"):
        [error] = named(peer.call(name, None, "x"), "_error")
        assert error[3]["description"] == f"{name} before connect"
    assert not peer.closed and not peer.server.sessions


def test_a_command_name_too_long_is_refused():
    peer = Peer()
    peer.connect()
    [error] = named(peer.call("x" * 10_000, None), "_error")
    assert error[3]["description"] == "command name too long"


@pytest.mark.parametrize("streamId", [math.nan, math.inf, -math.inf, 1.5])
def test_delete_stream_with_a_number_that_is_no_id(streamId):
    peer = Peer()
    peer.connect()
    [error] = named(peer.call("deleteStream", None, streamId), "_error")
    assert error[3]["description"] == "deleteStream: the stream id must be a whole number"
    assert not peer.closed
    assert named(peer.call("createStream", None), "_result")  # the connection goes on


def test_publish_and_play_names_must_be_strings():
    peer = Peer()
    peer.connect()
    peer.call("createStream", None)
    assert status(peer.call("publish", None, {"a": 1.0}, "live", streamId=1)) == \
        ["NetStream.Publish.BadName"]
    assert status(peer.call("publish", None, "n" * 1000, "live", streamId=1)) == \
        ["NetStream.Publish.BadName"]
    assert status(peer.call("play", None, [1.0, 2.0], streamId=1)) == ["NetStream.Play.Failed"]
    [error] = named(peer.call("FCPublish", None, {"x": 1.0}), "_error")
    assert error[3]["description"] == "stream name must be a non-empty string"
    assert not peer.closed and not peer.protocol.application.publishing


def test_streams_are_used_once_and_only_when_created():
    peer = Peer({"rtmp_max_streams_per_connection": 2})
    peer.connect()
    assert status(peer.call("publish", None, "a", "live", streamId=7)) == ["NetStream.Failed"]
    for _ in range(5):
        peer.call("createStream", None)  # ids 1..5: none busy yet
    assert "NetStream.Publish.Start" in status(peer.call("publish", None, "a", "live", streamId=1))
    # Publishing again on a busy stream would orphan its publication.
    replies = peer.call("publish", None, "b", "live", streamId=1)
    assert status(replies) == ["NetStream.Failed"]
    assert "already publishing or playing" in replies[0][3]["description"]
    assert "NetStream.Publish.Start" in status(peer.call("publish", None, "c", "live", streamId=2))
    replies = peer.call("publish", None, "d", "live", streamId=3)
    assert status(replies) == ["NetStream.Failed"]
    assert "too many streams on this connection: at most 2" in replies[0][3]["description"]
    assert sorted(p.source.name for p in peer.protocol.application.publishing.values()) == ["a", "c"]


def test_metadata_goes_to_players_as_the_publisher_sent_it():
    peer = Peer()
    peer.connect()
    peer.call("createStream", None)
    peer.call("publish", None, "meta", "live", streamId=1)
    # A ByteArray (AVM+) inside: re-encoding the decoded value used to raise TypeError.
    metadata = amf0.encode(amf0.ECMAArray(width=320.0)) + bytes([amf0.AVMPLUS, 12, 5]) + b"ab"
    body = amf0.encode("@setDataFrame") + amf0.encode("onMetaData") + metadata
    peer.send(body, mtype=chunks.DATA_AMF0, streamId=1)
    assert peer.protocol.application.publishing[1].source.metadata == metadata
    peer.send(amf0.encode("onMetaData") + metadata[:-2] + b"cd", mtype=chunks.DATA_AMF0,
              streamId=1)
    assert peer.protocol.application.publishing[1].source.metadata == metadata[:-2] + b"cd"


def test_tiny_chunk_size_and_unfinished_messages_close_the_connection():
    peer = Peer()
    peer.connect()
    peer.protocol.dataReceived(peer.writer.write(2, chunks.SET_CHUNK_SIZE, 0, 0,
                                                 struct.pack(">I", 16)))
    assert peer.closed
    peer = Peer({"rtmp_max_pending_bytes": 10000, "rtmp_max_message_size": 8000})
    peer.connect()
    for csid in (4, 5):
        peer.protocol.dataReceived(bytes([csid]) + bytes(3) + (8000).to_bytes(3, "big") +
                                   b"\x09" + (1).to_bytes(4, "little") + b"v" * 128 +
                                   (bytes([0xC0 | csid]) + b"v" * 128) * 39)
    assert peer.closed
