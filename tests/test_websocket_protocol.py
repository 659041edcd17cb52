"""
The WebSocket transport's protocol on Twisted's StringTransport, beside the
end-to-end tests of tests/test_websocket.py: the bytes of an opening
handshake and masked frames in, frames out, with the core seen only through
wcs.interfaces (L{tests.support.contract.strictServer}).
"""

from __future__ import annotations

import json
import os
import struct

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from zope.interface.verify import verifyObject

from tests.support.contract import strictServer
from wcs.config import Settings
from wcs.interfaces import ISignallingChannel
from wcs.messages import ServerMessage
from wcs.server import RoomServer
from wcs.transports.websocket import SignallingFactory

UPGRADE = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")


def clientFrame(payload: bytes, opcode: int = 1) -> bytes:
    """One masked, final frame, as a client must send it (RFC 6455 5.3)."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


def serverFrames(data: bytes) -> list[tuple[int, bytes]]:
    """The (opcode, payload) of each unmasked server frame in C{data}."""
    frames = []
    while data:
        opcode, size = data[0] & 0x0F, data[1] & 0x7F
        offset = 2
        if size == 126:
            size, offset = struct.unpack("!H", data[2:4])[0], 4
        elif size == 127:
            size, offset = struct.unpack("!Q", data[2:10])[0], 10
        frames.append((opcode, data[offset:offset + size]))
        data = data[offset + size:]
    return frames


class Peer:
    """One client connection on a StringTransport."""

    def __init__(self, factory: SignallingFactory, port: int = 40000):
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        self.protocol = factory.buildProtocol(self.transport.getPeer())
        self.protocol.makeConnection(self.transport)

    def handshake(self) -> None:
        self.protocol.dataReceived(UPGRADE)
        response = self.transport.value()
        assert response.startswith(b"HTTP/1.1 101"), response[:200]
        self.transport.clear()

    def send(self, name: str, *args) -> None:
        self.protocol.dataReceived(clientFrame(json.dumps({"message": name,
                                                           "data": list(args)}).encode()))

    def received(self) -> list[dict]:
        frames = serverFrames(self.transport.value())
        self.transport.clear()
        return [json.loads(payload) for opcode, payload in frames if opcode == 1]


def inRoom(factory: SignallingFactory, room: str, *logins: str) -> list[Peer]:
    """A connected peer per login, each joined to C{room}."""
    peers = [Peer(factory, 40001 + i) for i in range(len(logins))]
    for peer, login in zip(peers, logins):
        peer.handshake()
        peer.send("connection", {"appKey": "roomApp", "custom": {"login": login}})
        peer.send("sendData", {"operationId": "join",
                               "payload": {"command": "join", "options": {"name": room}}})
    return peers


@pytest.fixture
def factory():
    settings = Settings()
    settings.set("ws_ping_interval", 0)
    settings.set("ws_max_send_buffer", 4096)
    server = RoomServer(settings, Clock())
    made = SignallingFactory(strictServer(server))
    made.reactor = MemoryReactorClock()  # Autobahn's handshake timers
    return made


def test_conversation_through_the_contract(factory):
    alice, bob = Peer(factory, 40001), Peer(factory, 40002)
    for peer, login in ((alice, "alice"), (bob, "bob")):
        peer.handshake()
        verifyObject(ISignallingChannel, peer.protocol)
        peer.send("connection", {"appKey": "roomApp", "custom": {"login": login}})
        [userData] = peer.received()
        assert userData["message"] == "getUserData"
        assert userData["data"][0]["login"] == login
        peer.send("sendData", {"operationId": "op1",
                               "payload": {"command": "join", "options": {"name": "r"}}})
    status, state = bob.received()
    assert status["message"] == "DataStatusEvent"
    assert status["data"][0]["status"] == "ACCEPTED"
    assert state["data"][0]["payload"]["name"] == "STATE"
    assert state["data"][0]["payload"]["info"] == ["alice"]
    events = [m["data"][0]["payload"] for m in alice.received() if m["message"] == "OnDataEvent"]
    assert (events[-1]["name"], events[-1]["info"]) == ("JOINED", "bob")


def test_a_binary_frame_gets_a_fail_and_the_connection_stays(factory):
    peer = Peer(factory)
    peer.handshake()
    peer.protocol.dataReceived(clientFrame(b"\x00\x01", opcode=2))
    [fail] = peer.received()
    assert fail["message"] == "fail"
    assert "binary frames" in fail["data"][0]["info"]
    peer.send("ping")
    assert [m["message"] for m in peer.received()] == ["pong"]
    assert not peer.transport.disconnecting


def test_bad_json_gets_a_fail(factory):
    peer = Peer(factory)
    peer.handshake()
    peer.protocol.dataReceived(clientFrame(b"{not json"))
    [fail] = peer.received()
    assert fail["message"] == "fail"
    assert fail["data"][0]["info"].startswith("malformed JSON")


def test_a_reader_that_stops_reading_is_dropped(factory):
    """
    Back-pressure: once the transport pauses its producer, what is written
    counts against ws_max_send_buffer; past it the connection is aborted.
    """
    peer = Peer(factory)
    peer.handshake()
    peer.send("connection", {"appKey": "roomApp", "custom": {"login": "slow"}})
    peer.received()
    peer.transport.producer.pauseProducing()
    for _ in range(200):
        if peer.transport.disconnecting:
            break
        peer.send("ping")
    assert peer.transport.disconnecting
    assert peer.protocol.dropped
    assert len(peer.transport.value()) <= 4096 + 64


class CountingTransport(StringTransport):
    writes = 0

    def write(self, data):
        self.writes += 1
        super().write(data)


def test_the_frames_of_one_read_are_written_at_once(factory):
    peer = Peer(factory)
    peer.transport.__class__ = CountingTransport
    peer.handshake()
    before = peer.transport.writes
    ping = json.dumps({"message": "ping", "data": []}).encode()
    peer.protocol.dataReceived(clientFrame(ping) + clientFrame(ping) + clientFrame(ping))
    assert [m["message"] for m in peer.received()] == ["pong"] * 3
    assert peer.transport.writes == before + 1


def test_frames_sent_outside_a_read_go_out_at_the_end_of_the_turn(factory):
    peer = Peer(factory)
    peer.handshake()
    peer.protocol.send(ServerMessage("ping"))
    peer.protocol.send(ServerMessage("pong"))
    assert peer.transport.value() == b""
    factory.server.clock.advance(0)
    assert [m["message"] for m in peer.received()] == ["ping", "pong"]


def test_a_close_goes_after_the_frames_queued_before_it(factory):
    peer = Peer(factory)
    peer.handshake()
    peer.protocol.send(ServerMessage("fail", {"info": "bye"}))
    peer.protocol.close("bye")
    assert [opcode for opcode, _ in serverFrames(peer.transport.value())] == [1, 8]
    factory.server.clock.advance(0)  # nothing left to write twice
    assert [opcode for opcode, _ in serverFrames(peer.transport.value())] == [1, 8]


def test_frames_autobahn_reads_mix_with_ours_in_order(factory):
    """A ping frame and a message split across reads go through Autobahn."""
    peer = Peer(factory)
    peer.handshake()
    ping = json.dumps({"message": "ping", "data": []}).encode()
    bad = clientFrame(b"{bad")
    data = clientFrame(ping) + clientFrame(b"are you there", opcode=9) + bad + clientFrame(ping)
    cut = len(data) - 3
    peer.protocol.dataReceived(data[:cut])
    peer.protocol.dataReceived(data[cut:])
    frames = serverFrames(peer.transport.value())
    assert [opcode for opcode, _ in frames] == [1, 10, 1, 1]
    assert frames[1][1] == b"are you there"
    assert [json.loads(p)["message"] for o, p in frames if o == 1] == ["pong", "fail", "pong"]


def test_over_the_address_cap_is_refused_with_503():
    settings = Settings()
    settings.set("ws_ping_interval", 0)
    settings.set("ws_max_connections_per_address", 1)
    factory = SignallingFactory(strictServer(RoomServer(settings, Clock())))
    factory.reactor = MemoryReactorClock()
    first, second = Peer(factory, 40001), Peer(factory, 40002)
    first.handshake()
    second.protocol.dataReceived(UPGRADE)
    assert second.transport.value().startswith(b"HTTP/1.1 503")


def test_a_big_burst_reaches_its_recipients_while_it_is_read(factory):
    """
    A burst of chat frames in one read goes out to the other connections
    every FLUSH_EVERY frames, in order; the sender's answers in one write at
    the end of its read.
    """
    from wcs.transports.websocket import FLUSH_EVERY
    alice, bob = Peer(factory, 40001), Peer(factory, 40002)
    for peer, login in ((alice, "alice"), (bob, "bob")):
        peer.transport.__class__ = CountingTransport
        peer.handshake()
        peer.send("connection", {"appKey": "roomApp", "custom": {"login": login}})
        peer.send("sendData", {"operationId": "join",
                               "payload": {"command": "join", "options": {"name": "r"}}})
    alice.received(), bob.received()
    count = 2 * FLUSH_EVERY + 1
    burst = b"".join(clientFrame(json.dumps({"message": "sendData", "data": [{
        "operationId": f"op{i}", "payload": {"command": "sendMessage", "options": {
            "roomConfig": {"name": "r"}, "to": "bob", "text": str(i)}}}]}).encode())
        for i in range(count))
    aliceWrites, bobWrites = alice.transport.writes, bob.transport.writes
    alice.protocol.dataReceived(burst)
    assert bob.transport.writes - bobWrites == 3  # FLUSH_EVERY, FLUSH_EVERY, 1
    assert [m["data"][0]["payload"]["info"] for m in bob.received()] == [
        {"from": "alice", "text": str(i)} for i in range(count)]
    assert alice.transport.writes - aliceWrites == 1
    assert [m["data"][0] for m in alice.received()] == [
        {"operationId": f"op{i}", "status": "ACCEPTED"} for i in range(count)]


def test_the_send_delay_report_counts_each_frame_from_its_read():
    """
    ws_send_delay_report: each frame a read produced is counted from the
    start of that read to its send, and the figures go out every report.
    """
    from wcs.transports.websocket import FLUSH_EVERY
    settings = Settings()
    settings.set("ws_ping_interval", 0)
    settings.set("ws_send_delay_report", 5)
    clock = Clock()
    factory = SignallingFactory(strictServer(RoomServer(settings, clock)))
    factory.reactor = MemoryReactorClock()
    alice, bob = inRoom(factory, "r", "alice", "bob")
    delays = factory.outboxes.delays
    delays.samples.clear()
    ticks = iter(range(1, 100))
    delays.now = lambda: next(ticks) / 1000.0  # each look at the time: 1 ms later
    count = 2 * FLUSH_EVERY + 1
    alice.protocol.dataReceived(b"".join(clientFrame(json.dumps({
        "message": "sendData", "data": [{"operationId": f"op{i}", "payload": {
            "command": "sendMessage", "options": {
                "roomConfig": {"name": "r"}, "to": "bob", "text": str(i)}}}]}).encode())
        for i in range(count)))
    # Read at 1 ms; bob's frames go at 2 and 3 ms (FLUSH_EVERY each), then
    # alice's answers (all of them) at 4 and bob's last frame at 5 ms.
    assert delays.samples == [(0.001, FLUSH_EVERY), (0.002, FLUSH_EVERY), (0.003, count),
                              (0.004, 1)]
    clock.advance(5)
    assert delays.last == {"frames": 2 * count, "p50": 3.0, "p90": 3.0, "p99": 3.0,
                           "max": 4.0}
    assert delays.samples == []
    clock.advance(5)  # nothing sent: no report, the last one stays
    assert delays.last["frames"] == 2 * count


CHAT_TEXTS = ["", "plain", 'é "quoted" \\ back', "\u2028\u2029 \x00\x1f\x7f", "emoji \U0001f600",
              "%s %d %%", "x" * 30, "y" * 2000,
              "\U0001f600" * 4000]


@pytest.mark.parametrize("text", CHAT_TEXTS)
def test_a_chat_delivery_writes_the_bytes_of_the_generic_frames(factory, text):
    """
    A delivery's MESSAGE (SignallingProtocol.sendChat, from the sender's
    head) and the sender's ACCEPTED (from its template, on the fast path or
    the generic one) are the frames textFrame makes of chatEvent and
    dataStatus: any text, frame sizes on both sides of 126 and of the
    header table's end.
    """
    from wcs.room.events import ACCEPTED, chatEvent, dataStatus
    from wcs.transports.websocket import textFrame
    alice, bob = inRoom(factory, "r \U0001f600", "alice é", "bob")
    alice.received(), bob.received()
    for operationId in ("op-1", "op é \\ 2"):
        alice.send("sendData", {"operationId": operationId, "payload": {
            "command": "sendMessage", "options": {
                "roomConfig": {"name": "r \U0001f600"}, "to": "bob", "text": text}}})
        assert bob.transport.value() == textFrame(chatEvent("r \U0001f600", "alice é", text))
        assert alice.transport.value() == textFrame(dataStatus(operationId, ACCEPTED))
        alice.transport.clear(), bob.transport.clear()


def test_frame_headers_from_the_table_and_beyond():
    from wcs.transports.websocket import TABLED, frameHeader
    for size in list(range(TABLED + 2)) + [(1 << 16) - 1, 1 << 16, 1 << 20]:
        if size < 126:
            expected = struct.pack("!BB", 0x81, size)
        elif size < 1 << 16:
            expected = struct.pack("!BBH", 0x81, 126, size)
        else:
            expected = struct.pack("!BBQ", 0x81, 127, size)
        assert frameHeader(size) == expected, size
