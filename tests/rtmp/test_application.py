"""
The RTMP application layer without sockets: a client's bytes into
L{RTMPApplication}, the bytes and closes it asks for out, and the room core
seen only through wcs.interfaces (L{strictServer} refuses anything else).
Beside it, the Twisted adapter on a StringTransport.
"""

from __future__ import annotations

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface.verify import verifyObject

from tests.support.channels import RecordingChannel
from tests.support.contract import strictServer
from wcs.config import Settings
from wcs.interfaces import ISignallingChannel
from wcs.rtmp import amf0, chunks, flv
from wcs.rtmp.application import CONNECT, HANDSHAKE, RTMPApplication
from wcs.rtmp.netstream import Feeds
from wcs.server import RoomServer
from wcs.transports.rtmp import RTMPFactory

HANDSHAKE_REPLY = 1 + 2 * 1536  # S0 S1 S2
SPS, PPS, IDR = b"\x67\x42\xc0\x1e\x01", b"\x68\xce\x3c\x80", b"\x65\x88\x84\x21"
VIDEO_HEADER = b"\x17\x00\x00\x00\x00" + flv.makeAVCConfig(SPS, PPS)
KEYFRAME = b"\x17\x01\x00\x00\x00" + len(IDR).to_bytes(4, "big") + IDR


class Client:
    """
    One RTMP client of an L{RTMPApplication}: it is the application's
    L{Output} too, keeping what the application writes and whether it
    asked to close.
    """

    def __init__(self, server, port: int = 40000):
        self.written = bytearray()
        self.closes = 0
        self.app = RTMPApplication(server, self, f"rtmp:127.0.0.1:{port}", "127.0.0.1",
                                   Feeds(transcode=lambda kind, codec: None))
        self.writer = chunks.ChunkWriter()
        self.reader = chunks.ChunkReader()
        self.skip = HANDSHAKE_REPLY
        self.transaction = 1.0

    # Output

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closes += 1

    # The client's side

    def handshake(self) -> None:
        self.app.dataReceived(b"\x03" + bytes(1536))
        self.app.dataReceived(bytes(1536))  # C2

    def invoke(self, name: str, *args, streamId: int = 0) -> None:
        self.transaction += 1
        self.send(chunks.COMMAND_AMF0, streamId, amf0.encodeAll(name, self.transaction, *args))

    def send(self, mtype: int, streamId: int, payload: bytes, timestamp: int = 0) -> None:
        csid = 6 if mtype == chunks.VIDEO else 3
        self.app.dataReceived(self.writer.write(csid, mtype, streamId, timestamp, payload))

    def connect(self, app: str, *args) -> None:
        self.handshake()
        self.invoke("connect", {"app": app, "tcUrl": f"rtmp://127.0.0.1/{app}"}, *args)

    def received(self) -> list[chunks.Message]:
        data = bytes(self.written)
        self.written.clear()
        cut = min(self.skip, len(data))
        self.skip -= cut
        return self.reader.receive(data[cut:])

    def calls(self) -> list[list]:
        """The commands the server sent: [name, transaction, object, args...]."""
        return [amf0.decode(m.payload) for m in self.received()
                if m.type == chunks.COMMAND_AMF0]

    def statuses(self) -> list[str]:
        return [c[3]["code"] for c in self.calls() if c[0] == "onStatus"]


@pytest.fixture
def core():
    settings = Settings()
    settings.set("ws_ping_interval", 0)
    return RoomServer(settings, Clock())


@pytest.fixture
def server(core):
    return strictServer(core)


def roomEvents(channel: RecordingChannel) -> list[tuple[str, object]]:
    return [(e["name"], e.get("info")) for e in channel.roomEvents()]


def publishAsEncoder(server, url: str, name: str, port: int = 40000) -> Client:
    encoder = Client(server, port)
    encoder.connect(url)
    encoder.invoke("createStream", None)
    encoder.invoke("publish", None, name, "live", streamId=1)
    return encoder


def test_the_steps_a_connection_awaits(server):
    client = Client(server)
    assert client.app.awaiting == HANDSHAKE
    client.handshake()
    assert client.app.awaiting == CONNECT
    assert [m.type for m in client.received()] == [chunks.SET_CHUNK_SIZE]  # after S0 S1 S2
    client.invoke("connect", {"app": "live"})
    assert client.app.awaiting is None
    [result] = client.calls()
    assert result[0] == "_result" and result[3]["code"] == "NetConnection.Connect.Success"


def test_an_encoder_publishes_into_a_room_through_the_contract(server, core):
    watcher = core.openSession(RecordingChannel())
    watcher.identify("roomApp", "carol")
    watcher.joinRoom("r1")
    encoder = publishAsEncoder(server, "room/r1", "alice")
    assert encoder.statuses() == ["NetStream.Publish.Start"]
    assert ("JOINED", "alice") in roomEvents(watcher.channel)
    # Not playable before a keyframe with its configuration.
    assert core.liveSource("r1-alice") is None
    encoder.send(chunks.VIDEO, 1, VIDEO_HEADER)
    encoder.send(chunks.VIDEO, 1, KEYFRAME)
    assert core.liveSource("r1-alice") is not None
    published = [e for e in watcher.channel.roomEvents() if e["name"] == "PUBLISHED"]
    assert len(published) == 1

    encoder.invoke("deleteStream", None, 1.0)
    assert encoder.statuses() == ["NetStream.Unpublish.Success"]
    assert core.liveSource("r1-alice") is None
    assert [e["name"] for e in watcher.channel.roomEvents()][-1] == "UNPUBLISHED"
    assert encoder.closes == 0


def test_a_player_plays_by_name_and_hears_the_end(server, core):
    encoder = publishAsEncoder(server, "live", "cam")
    encoder.send(chunks.VIDEO, 1, VIDEO_HEADER)
    encoder.send(chunks.VIDEO, 1, KEYFRAME)
    player = Client(server, 40001)
    player.connect("live")
    player.invoke("createStream", None)
    player.invoke("play", None, "nothing", streamId=1)
    assert player.statuses() == ["NetStream.Play.StreamNotFound"]
    player.invoke("createStream", None)
    player.invoke("play", None, "cam", streamId=2)
    assert player.statuses() == ["NetStream.Play.Reset", "NetStream.Play.Start"]
    encoder.send(chunks.VIDEO, 1, KEYFRAME, timestamp=40)
    video = [m for m in player.received() if m.type == chunks.VIDEO]
    assert [m.payload for m in video] == [VIDEO_HEADER, KEYFRAME]  # configuration first
    encoder.app.connectionLost()
    assert player.statuses() == ["NetStream.Play.UnpublishNotify", "NetStream.Play.Stop"]
    assert not player.app.players


def test_a_taken_name_is_refused_and_closed(server):
    first = publishAsEncoder(server, "live", "same")
    first.send(chunks.VIDEO, 1, VIDEO_HEADER)
    first.send(chunks.VIDEO, 1, KEYFRAME)
    second = publishAsEncoder(server, "live", "same", port=40001)
    calls = [c for c in second.calls() if c[0] == "onStatus"]
    assert [(c[3]["code"], c[3]["description"]) for c in calls] == \
        [("NetStream.Publish.BadName", "Stream name is already in use")]
    assert second.closes == 1 and second.app.closed
    assert first.closes == 0


def test_a_room_url_login_must_match_the_connection(server, core):
    encoder = Client(server)
    encoder.connect("live", {"room": "r2", "login": "dave"})
    encoder.invoke("createStream", None)
    encoder.invoke("publish", None, "cam", streamId=1)
    # -rtmp_conn names the room and login: the stream is ROOM-LOGIN.
    assert encoder.statuses() == ["NetStream.Publish.Start"]
    assert core.streamNameInUse("r2-dave") is False  # announced with the media
    encoder.send(chunks.VIDEO, 1, VIDEO_HEADER)
    encoder.send(chunks.VIDEO, 1, KEYFRAME)
    assert core.streamNameInUse("r2-dave")


def test_a_flash_client_speaks_the_room_protocol(server, core):
    flash = Client(server)
    flash.connect("flashRoomApp", {"appKey": "flashRoomApp", "login": "erin"})
    assert flash.app.channel.flash
    verifyObject(ISignallingChannel, flash.app.channel)
    flash.calls()
    flash.invoke("sendData", None, {"operationId": "op1", "payload": {
        "command": "join", "options": {"name": "r3"}}})
    names = [c[0] for c in flash.calls()]
    assert names == ["DataStatusEvent", "OnDataEvent"]  # ACCEPTED, then STATE
    # Calls that are not for a Flash client (getUserData) never reach it.
    assert "getUserData" not in names


def test_commands_before_connect_and_protocol_errors(server):
    client = Client(server)
    client.handshake()
    client.invoke("createStream", None)
    [error] = client.calls()
    assert error[0] == "_error" and "before connect" in error[3]["description"]
    assert client.closes == 0
    # A chunk size under rtmp_min_chunk_size is a protocol error: closed.
    client.app.dataReceived(client.writer.write(2, chunks.SET_CHUNK_SIZE, 0, 0,
                                                (1).to_bytes(4, "big")))
    assert client.closes == 1 and client.app.closed
    client.invoke("connect", {"app": "live"})  # nothing is read after the close
    assert client.app.session is None and client.closes == 1


# The Twisted adapter


def adapter(factory, port: int):
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
    protocol = factory.buildProtocol(transport.getPeer())
    protocol.makeConnection(transport)
    return protocol, transport


def test_adapter_caps_connections_per_address(core):
    core.settings.set("rtmp_max_connections_per_address", 2)
    factory = RTMPFactory(strictServer(core), core.settings)
    first, second = adapter(factory, 1), adapter(factory, 2)
    third, thirdTransport = adapter(factory, 3)
    assert thirdTransport.disconnecting and third.application is None
    assert not first[1].disconnecting and not second[1].disconnecting
    third.connectionLost(None)
    first[0].connectionLost(None)
    fourth, fourthTransport = adapter(factory, 4)
    assert not fourthTransport.disconnecting and fourth.application is not None


def test_adapter_back_pressure_and_output(core):
    factory = RTMPFactory(strictServer(core), core.settings)
    protocol, transport = adapter(factory, 5)
    verifyObject(IPushProducer, protocol)
    assert transport.producer is protocol
    assert transport.bufferSize == core.settings.rtmp_player_buffer
    protocol.pauseProducing()
    assert protocol.application.congested
    protocol.resumeProducing()
    assert not protocol.application.congested
    protocol.dataReceived(b"\x03" + bytes(1536))
    assert len(transport.value()) >= HANDSHAKE_REPLY  # written through the Output
    protocol.application.close("test")
    assert transport.disconnecting
