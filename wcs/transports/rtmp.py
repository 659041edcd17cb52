"""
RTMP: encoders (ffmpeg, OBS), players (ffmpeg, VLC) and Flash room clients
(URLs and calls: L{wcs.rtmp.application}).

The application is L{wcs.rtmp.application.RTMPApplication}, without I/O;
this module gives it a TCP connection: connection caps, socket tuning,
back-pressure and the deadlines of a new connection.
"""

from __future__ import annotations

import socket

from twisted.application.internet import StreamServerEndpointService
from twisted.internet import endpoints
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from wcs.config import Key, declare
from wcs.interfaces import IRoomServer, ITransport
from wcs.logs import Logger
from wcs.rtmp.application import RTMPApplication, badInput
from wcs.rtmp.deadline import StepDeadline
from wcs.rtmp.netstream import Feeds
from wcs.transports.lowwater import LowWater
from wcs.transports.outbox import Outboxes
from wcs.transports.peers import ADMIT, PeerConnections

log = Logger()

declare(
    Key("rtmp_max_connections_per_address", "int", 64,
        "RTMP connections from one address at once; 0: no limit"),
    Key("rtmp_player_buffer", "int", 1 << 20,
        "bytes waiting to be sent to an RTMP player before it drops to the next keyframe"),
    Key("rtmp_handshake_timeout", "int", 10000,
        "ms a new RTMP connection has to finish the handshake, and then again to send "
        "connect; 0: no limit"),
    Key("rtmp_publisher_low_water", "int", 9,
        "bytes a publisher's socket must hold before the server wakes to read it, "
        "between chunks (a chunk whose header is in: the rest of it); a smaller last "
        "message waits at most 2 s; 1: wake for any byte (wcs/transports/lowwater.py)"),
)

# Left to autotuning, the kernel would queue megabytes (seconds of video)
# for a stalled player before we see any back-pressure.
KERNEL_SEND_BUFFER = 256 * 1024


@implementer(IPushProducer)
class RTMPServerProtocol(Protocol):
    application: RTMPApplication | None = None
    counted = False  # against the per-address cap, until the connection is lost
    outbox = None  # bytes written in this reactor turn, not yet sent
    socket = None  # the TCP socket, for its receive low-water mark
    dropped = False  # (never: a congested player drops frames, not the connection)

    def connectionMade(self) -> None:
        factory, address = self.factory, self.transport.getPeer()
        self.address, self.peer = address.host, f"rtmp:{address.host}:{address.port}"
        verdict, reason = factory.peers.connect(self.address)
        self.counted = True
        if verdict != ADMIT:
            badInput.warn((self.address, "address"), "{peer}: {reason}, closed",
                          peer=self.peer, reason=reason)
            self.transport.abortConnection()
            return
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)
        sock = getattr(self.transport, "socket", None)
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_SEND_BUFFER)
            self.socket = sock
        self.application = RTMPApplication(factory.server, self, self.peer, self.address,
                                           factory.feeds)
        self.transport.registerProducer(self, True)
        self.transport.bufferSize = factory.settings.rtmp_player_buffer
        self.deadline = StepDeadline(factory.server.clock,
                                     factory.settings.rtmp_handshake_timeout / 1000.0,
                                     self.application.close)
        self.deadline.expect(self.application.awaiting)

    def dataReceived(self, data: bytes) -> None:
        if self.application is not None:
            # What a publisher's read makes for its players goes out at its end.
            outboxes = self.factory.outboxes
            outboxes.reading += 1
            try:
                self.application.dataReceived(data)
            finally:
                outboxes.reading -= 1
                outboxes.flush()
            self.deadline.expect(self.application.awaiting)
            if self.socket is not None:
                app = self.application
                if app.publishing and not app.closed:
                    self.factory.lowWater.set(self.socket, app.conn.reader.wanted)
                else:
                    self.factory.lowWater.forget(self.socket)

    def connectionLost(self, reason=None) -> None:
        self.outbox = None
        if self.socket is not None:
            self.factory.lowWater.forget(self.socket)
            self.socket = None
        if self.counted:
            self.counted = False
            self.factory.peers.disconnect(self.address)
        if self.application is not None:
            self.deadline.cancel()
            self.application.connectionLost()

    # The application's Output

    def write(self, data: bytes) -> None:
        # The chunks of one reactor turn go out in one send
        # (wcs/transports/outbox.py); Twisted ignores them once disconnected.
        if self.outbox:
            self.outbox.append(data)
        else:
            self.outbox = [data]
            self.factory.outboxes.add(self)

    def close(self) -> None:
        if self.outbox:
            self.factory.outboxes.flushOne(self)
        self.transport.loseConnection()

    # IPushProducer: the transport says when its buffer is full.

    def pauseProducing(self) -> None:
        app = self.application
        if not app.congested and app.players:
            log.info("{peer}: player congested, dropping to the next keyframe", peer=self.peer)
        app.congested = True

    def resumeProducing(self) -> None:
        self.application.congested = False

    def stopProducing(self) -> None:
        self.application.congested = True


class RTMPFactory(Factory):
    protocol = RTMPServerProtocol

    def __init__(self, server: IRoomServer, settings):
        self.server = server
        self.settings = settings
        self.peers = PeerConnections(settings.rtmp_max_connections_per_address)
        self.feeds = Feeds()
        self.outboxes = Outboxes(server.clock.callLater)
        self.lowWater = LowWater(server.clock.callLater, settings.rtmp_publisher_low_water)

    def stopFactory(self) -> None:
        self.lowWater.stop()


@implementer(ITransport)
class RTMPTransport:
    name = "rtmp"

    def makeService(self, server, settings):
        if not settings.rtmp_port:
            return None
        from twisted.internet import reactor

        endpoint = endpoints.TCP4ServerEndpoint(reactor, settings.rtmp_port,
                                                settings.listen_backlog,
                                                interface=settings.listen_address)
        service = StreamServerEndpointService(endpoint, RTMPFactory(server, settings))
        service.setName("rtmp")
        return service


rtmpTransport = RTMPTransport()
