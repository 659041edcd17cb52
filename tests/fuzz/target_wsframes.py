"""
The fast reader of a client's WebSocket text frames
(L{wcs.transports.wsframes.textFrame}), two ways:

- against a reading of RFC 6455 written here the plain way, at any offset
  and limit: it takes exactly the whole, final, masked, unextended text
  frames in their shortest length encoding within the limit, with the same
  payload and end, and leaves every other byte to Autobahn;
- against Autobahn itself: the server's real protocol
  (L{wcs.transports.websocket.SignallingProtocol}, after its opening
  handshake) is fed the same bytes, in the same pieces, with and without
  the fast path; the messages delivered, what is written back (close frames
  and their codes) and whether the connection closes must be the same.

It never raises. Input: C{[u8 limit/16][u8 offset|piece][bytes]}.
"""

import struct

import txaio
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from wcs.config import Settings
from wcs.server import RoomServer
from wcs.transports.websocket import SignallingFactory
from wcs.transports.wsframes import textFrame

EXPECTED = ()
MAX_LEN = 4096
UPGRADE = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")
_SETTINGS = Settings()
_SETTINGS.set("ws_ping_interval", 0)


def reference(data: bytes, offset: int, limit: int):
    """RFC 6455 5.2, byte by byte."""
    header = data[offset:offset + 2]
    if len(header) < 2:
        return None
    fin, rsv, opcode = header[0] >> 7, header[0] >> 4 & 7, header[0] & 0x0F
    masked, size = header[1] >> 7, header[1] & 0x7F
    if not (fin and rsv == 0 and opcode == 1 and masked):
        return None
    start = offset + 2
    if size == 126:
        if len(data) < start + 2:
            return None
        size = struct.unpack("!H", data[start:start + 2])[0]
        if size <= 125:
            return None  # Autobahn: not the minimal encoding
        start += 2
    elif size == 127:
        if len(data) < start + 8:
            return None
        size = struct.unpack("!Q", data[start:start + 8])[0]
        if size <= 0xFFFF or size >> 63:
            return None
        start += 8
    if size > limit or len(data) < start + 4 + size:
        return None
    key = data[start:start + 4]
    payload = bytes(b ^ key[i % 4] for i, b in enumerate(data[start + 4:start + 4 + size]))
    return payload, start + 4 + size


def againstReference(buffer: bytes, offset: int, limit: int) -> None:
    while True:
        got = textFrame(buffer, offset, limit)
        want = reference(buffer, offset, limit)
        if got != want:
            raise AssertionError(f"at {offset} with limit {limit}: {got!r} != {want!r}")
        if got is None:
            return
        payload, end = got
        if len(payload) > limit or not offset < end <= len(buffer):
            raise AssertionError(f"frame of {len(payload)} bytes ending at {end}")
        offset = end


def _factory(limit: int, clock: Clock) -> SignallingFactory:
    # Autobahn's timers (handshake, close, drop) go to txaio's loop: a Clock
    # per run, advanced at its end (the global reactor, not running here,
    # would keep every call and its protocol).
    txaio.config.loop = clock
    factory = SignallingFactory(RoomServer(_SETTINGS, clock))
    factory.reactor = clock
    # A small limit, so that short inputs cross it (the server's is >= 1 MiB).
    factory.hardLimit = limit
    factory.setProtocolOptions(maxMessagePayloadSize=limit, maxFramePayloadSize=limit)
    return factory


def _run(limit: int, pieces, fast: bool):
    clock = Clock()
    factory = _factory(limit, clock)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    protocol = factory.buildProtocol(transport.getPeer())
    messages = []
    protocol.onMessage = lambda payload, isBinary: messages.append((bytes(payload), isBinary))
    if not fast:
        protocol._readTextFrames = lambda data: data
    protocol.makeConnection(transport)
    protocol.dataReceived(UPGRADE)
    transport.clear()
    for piece in pieces:
        if transport.disconnecting:
            break
        protocol.dataReceived(piece)
    for _ in range(20):  # Autobahn's close and drop timeouts
        clock.advance(1)
    return messages, transport.value(), transport.disconnecting, protocol.state


def againstAutobahn(data: bytes, limit: int, piece: int) -> None:
    pieces = [data[i:i + piece] for i in range(0, len(data), piece)]
    fast, plain = _run(limit, pieces, True), _run(limit, pieces, False)
    if fast != plain:
        raise AssertionError(f"fast path {fast!r:.400} != Autobahn {plain!r:.400}")


def fuzz(data: bytes) -> None:
    if len(data) < 3:
        return
    limit = data[0] << 4
    buffer = data[2:]
    againstReference(buffer, (data[1] & 0x0F) % (len(buffer) + 1), limit | data[1] >> 4)
    againstAutobahn(buffer, max(limit, 126), (data[1] >> 4) * 64 + 64)
