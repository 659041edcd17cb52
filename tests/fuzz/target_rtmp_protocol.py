"""
A client's RTMP byte stream through the server's Twisted protocol, on a
StringTransport, with a real RoomServer: what ServerConnection decodes goes
on to the room session, stream registry and RTMP relay. Nothing may escape
dataReceived: it closes the connection on RTMPProtocolError itself.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from wcs.config import Settings
from wcs.server import RoomServer
from wcs.transports.rtmp import RTMPFactory

EXPECTED = ()
MAX_LEN = 16384
SETTINGS = Settings({"rtmp_max_message_size": 1 << 16, "rtmp_max_chunk_size": 1 << 16})


def fuzz(data: bytes) -> None:
    clock = Clock()
    factory = RTMPFactory(RoomServer(SETTINGS, clock), SETTINGS)
    protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1935))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    protocol.makeConnection(transport)
    cut = len(data) * 7 // 16
    protocol.dataReceived(data[:cut])
    protocol.dataReceived(data[cut:])
    clock.advance(60)
    protocol.connectionLost(None)
    clock.advance(60)
