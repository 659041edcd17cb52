"""
When the RTMP transport considers a peer gone: the real protocol over a
StringTransport with an injected clock, the client's bytes made with the
project's chunk and AMF0 codecs.
"""

import struct

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from wcs.config import Settings
from wcs.rtmp import amf0, chunks, flv
from wcs.rtmp.connection import PING_REQUEST, PING_RESPONSE
from wcs.server import RoomServer
from wcs.transports.rtmp import RTMPFactory

HANDSHAKE = 1 + 2 * 1536  # S0 S1 S2
SPS, PPS, IDR = b"\x67\x42\xc0\x1e\x01", b"\x68\xce\x3c\x80", b"\x65\x88\x84\x21"
VIDEO_HEADER = b"\x17\x00\x00\x00\x00" + flv.makeAVCConfig(SPS, PPS)
KEYFRAME = b"\x17\x01\x00\x00\x00" + len(IDR).to_bytes(4, "big") + IDR


class WireClient:
    """The client's end of one RTMPServerProtocol on a StringTransport."""

    def __init__(self, factory, port: int):
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        self.protocol = factory.buildProtocol(self.transport.getPeer())
        self.protocol.makeConnection(self.transport)
        self.writer = chunks.ChunkWriter()
        self.reader = chunks.ChunkReader()
        self.skip = HANDSHAKE
        self.transaction = 1.0

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting

    def handshake(self) -> None:
        self.protocol.dataReceived(b"\x03" + bytes(1536))
        self.protocol.dataReceived(bytes(1536))  # C2

    def send(self, csid: int, mtype: int, streamId: int, timestamp: int, payload: bytes) -> None:
        self.protocol.dataReceived(self.writer.write(csid, mtype, streamId, timestamp, payload))

    def invoke(self, name: str, *args, streamId: int = 0) -> None:
        self.transaction += 1
        self.send(3, chunks.COMMAND_AMF0, streamId, 0,
                  amf0.encodeAll(name, self.transaction, *args))

    def connect(self, app: str) -> None:
        self.handshake()
        self.invoke("connect", {"app": app, "tcUrl": f"rtmp://127.0.0.1/{app}"})

    def received(self) -> list[chunks.Message]:
        data = self.transport.value()
        self.transport.clear()
        cut = min(self.skip, len(data))
        self.skip -= cut
        return self.reader.receive(data[cut:])

    def answerPings(self, messages) -> int:
        """Answer each ping request as an RTMP client does; how many there were."""
        pings = [m.payload[2:6] for m in messages if m.type == chunks.USER_CONTROL
                 and struct.unpack_from(">H", m.payload)[0] == PING_REQUEST]
        for stamp in pings:
            self.send(2, chunks.USER_CONTROL, 0, 0, struct.pack(">H", PING_RESPONSE) + stamp)
        return len(pings)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def factory(clock):
    # The defaults: a ping every 5 s, closed after 20 s of silence.
    settings = Settings()
    return RTMPFactory(RoomServer(settings, clock), settings)


def statuses(messages) -> list[str]:
    return [amf0.decode(m.payload)[3]["code"] for m in messages
            if m.type == chunks.COMMAND_AMF0 and amf0.decode(m.payload)[0] == "onStatus"]


def startPublishing(factory, name: str) -> WireClient:
    encoder = WireClient(factory, 50000)
    encoder.connect("live")
    encoder.invoke("createStream", None)
    encoder.invoke("publish", None, name, "live", streamId=1)
    encoder.send(6, chunks.VIDEO, 1, 0, VIDEO_HEADER)
    encoder.send(6, chunks.VIDEO, 1, 0, KEYFRAME)
    assert "NetStream.Publish.Start" in statuses(encoder.received())
    assert name in factory.server.streams.published
    return encoder


def startPlaying(factory, name: str, port: int) -> WireClient:
    player = WireClient(factory, port)
    player.connect("live")
    player.invoke("createStream", None)
    player.invoke("play", None, name, streamId=1)
    assert "NetStream.Play.Start" in statuses(player.received())
    return player


def test_media_alone_keeps_a_publisher_and_ping_answers_keep_a_player(factory, clock):
    encoder = startPublishing(factory, "cam")
    lively = startPlaying(factory, "cam", 50001)
    silent = startPlaying(factory, "cam", 50002)
    pinged = videoSeen = 0
    silentClosedAt = None
    for second in range(1, 91):  # four and a half timeouts
        # The encoder sends media only, and never answers a ping.
        encoder.send(6, chunks.VIDEO, 1, second * 1000, KEYFRAME)
        encoder.received()
        messages = lively.received()
        videoSeen += sum(m.type == chunks.VIDEO for m in messages)
        pinged += lively.answerPings(messages)
        silent.received()
        clock.advance(1)
        if silent.closed and silentClosedAt is None:
            silentClosedAt = second
    assert not encoder.closed and not lively.closed
    assert "cam" in factory.server.streams.published
    assert pinged >= 90 // 5 - 1 and videoSeen >= 89
    # Last heard while starting to play at 0 s: closed after 20 s of silence,
    # counted in whole ping intervals (5 s).
    assert silentClosedAt is not None and 20 <= silentClosedAt <= 25
    assert silent.protocol.application.session.closed is False  # until the transport reports the loss
    silent.protocol.connectionLost(None)
    assert silent.protocol.application.session.closed


def test_a_silent_publisher_is_closed_and_unpublished(factory, clock):
    encoder = startPublishing(factory, "quiet")
    clock.pump([1] * 19)
    assert not encoder.closed
    clock.pump([1] * 7)
    assert encoder.closed
    encoder.protocol.connectionLost(None)
    assert "quiet" not in factory.server.streams.published


def test_handshake_must_complete_in_time(factory, clock):
    idle = WireClient(factory, 50010)
    halfway = WireClient(factory, 50011)
    halfway.protocol.dataReceived(b"\x03" + bytes(1000))  # part of C1, then nothing
    clock.advance(9.9)
    assert not idle.closed and not halfway.closed
    clock.advance(0.2)
    assert idle.closed and halfway.closed


def test_connect_must_follow_the_handshake_in_time(factory, clock):
    late = WireClient(factory, 50020)
    prompt = WireClient(factory, 50021)
    clock.advance(9)
    late.handshake()
    prompt.connect("live")
    clock.advance(9)
    assert not late.closed  # the handshake's deadline is gone, connect's runs
    clock.advance(1.1)
    assert late.closed
    assert late.protocol.application.session is None
    # Connected: only the session's keep-alive (20 s of silence) applies now.
    clock.advance(5)
    assert not prompt.closed and prompt.protocol.application.session is not None


def test_session_pings_become_rtmp_ping_requests(factory, clock):
    player = WireClient(factory, 50030)
    player.connect("live")
    player.received()
    clock.advance(5)
    [ping] = [m for m in player.received() if m.type == chunks.USER_CONTROL]
    assert struct.unpack_from(">H", ping.payload)[0] == PING_REQUEST
    assert len(ping.payload) == 6
