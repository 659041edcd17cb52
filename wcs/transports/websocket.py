"""
WebSocket signalling (Autobahn): JSON text frames to and from a
L{wcs.session.ClientSession}.

Listens on C{ws_port}, and on C{wss_port} with the server's certificate
(L{wcs.interfaces.IRoomServer.tlsContext}) when TLS is available.
"""

from __future__ import annotations

import struct

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet import endpoints
from twisted.internet.interfaces import IPushProducer
from wcs.logs import Logger, clip
from zope.interface import implementer

from wcs.config import Key, declare
from wcs.errors import ProtocolError
from wcs.interfaces import IRoomServer, ISignallingChannel, ITransport
from wcs.messages import (ACCEPTED, ACCEPTED_HEAD, ACCEPTED_TAIL, CHAT_FRAME_DEPTH, CHAT_TAIL,
                          ServerMessage, chatFrame, decodeFrame, encodeFrame, quote)
from wcs.transports.outbox import Outboxes, SendDelays
from wcs.transports.peers import DROP, PeerConnections
from wcs.transports.wsframes import textFrame as clientTextFrame

declare(
    Key("ws_max_send_buffer", "int", 1 << 20,
        "bytes of output a client may leave unread (beyond the transport's own "
        "64 KiB) before it is disconnected; 0: no limit"),
    Key("ws_max_connections_per_address", "int", 100,
        "WebSocket connections from one address at once; 0: no limit"),
    Key("ws_max_connections", "int", 10000, "WebSocket connections at once; 0: no limit"),
    Key("ws_send_delay_report", "int", 0,
        "every this many seconds, log the server's own part of a WebSocket frame's delay "
        "(from the read of the message that made it to its send: p50, p90, p99, max); "
        "0: off"),
)

# Within one read, the other connections' frames go out every this many
# client frames (the reader's own, its status answers, at the end).
FLUSH_EVERY = 32

# Frames over the configured limit get a `fail`; frames this many times over
# it are not even read: Autobahn closes the connection (code 1009).
HARD_LIMIT_FACTOR = 16

def frameHeader(size: int) -> bytes:
    """
    The header of an unmasked, unfragmented text frame of C{size} bytes
    (RFC 6455 5.2), as a server sends it when no extension is negotiated.
    """
    if size < TABLED:
        return _HEADERS[size]
    if size < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, size)
    return struct.pack("!BBQ", 0x81, 127, size)


# The headers of the frames up to this size (a chat MESSAGE, an ACCEPTED) are
# looked up, made once: ~40 KB.
TABLED = 1024
_HEADERS = [bytes((0x81, size)) if size < 126 else struct.pack("!BBH", 0x81, 126, size)
            for size in range(TABLED)]


def textFrame(message: ServerMessage) -> bytes:
    """
    One text frame of C{message}: made once per message, written to every
    recipient.
    """
    payload = encodeFrame(message)
    return frameHeader(len(payload)) + payload


# Not a class attribute: Autobahn's protocols have a `log` of their own.
log = Logger()


@implementer(IPushProducer)
class Backlog:
    """
    What a client leaves unread. The transport pauses its producer when its
    own buffer passes its C{bufferSize} and resumes it once drained; what is
    written in between is the backlog.
    """

    paused = False
    size = 0

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.size = 0

    def stopProducing(self) -> None:
        pass


@implementer(ISignallingChannel)
class SignallingProtocol(WebSocketServerProtocol):
    transportName = "websocket"  # a label of wcs.metrics
    session = None
    host = None  # the peer's address while it counts against the caps
    refusal = None  # why the opening handshake is refused, if it is
    dropped = False  # cut for reading too slowly: write nothing more
    outbox = None  # frames sent in this reactor turn, not yet written
    # `peer` (ISignallingChannel) is set by Autobahn on connection.

    def connectionMade(self) -> None:
        # Replies come in bursts of small frames (DataStatusEvent then STATE):
        # with Nagle on, the second waits for the client's delayed ACK (~40 ms).
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)
        super().connectionMade()
        self.backlog = Backlog()
        self.transport.registerProducer(self.backlog, True)
        self.host = self.transport.getPeer().host
        verdict, self.refusal = self.factory.peers.connect(self.host)
        if verdict == DROP:
            self.badInput("flood", "{peer}: closed at once: {reason}", reason=self.refusal)
            self.transport.abortConnection()

    def onConnect(self, request):
        if self.refusal is not None:
            raise ConnectionDeny(503, self.refusal)
        draining = self.factory.server.draining
        if draining:
            # failHandshake logs it, rate-limited per address.
            raise ConnectionDeny(503, draining)
        return None

    def failHandshake(self, reason: str, code: int = 400, responseHeaders=None) -> None:
        # Autobahn's own logs two lines per failed handshake, not rate-limited.
        self.badInput("handshake", "{peer}: WebSocket handshake refused ({code} {reason})",
                      code=code, reason=clip(reason))
        self.wasNotCleanReason = reason
        self.wasClean = True  # a refusal we answered: nothing more to log
        self.sendHttpErrorResponse(code, reason, responseHeaders)
        self.dropConnection(abort=False)

    def connectionLost(self, reason) -> None:
        self.outbox = None
        if self.host is not None:
            self.factory.peers.disconnect(self.host)
            self.host = None
        super().connectionLost(reason)

    def badInput(self, kind: str, format: str, **kwargs) -> None:
        self.factory.server.badInputLog.warn((self.host, kind), format, peer=self.peer,
                                             **kwargs)

    def onOpen(self) -> None:
        self.session = self.factory.server.openSession(self)

    def dataReceived(self, data: bytes) -> None:
        # Any bytes are a sign of life: the frames of a message, and the
        # control frames (WebSocket pings, pongs) that never reach onMessage.
        if self.session is not None:
            self.session.peerActive()
        outboxes = self.factory.outboxes
        outboxes.reading += 1
        delays = outboxes.delays
        if delays is not None:
            delays.readAt = delays.now()
        try:
            if (self.state == self.STATE_OPEN and not self.data
                    and self.current_frame is None and not self.inside_message):
                data = self._readTextFrames(data)
            if data:
                super().dataReceived(data)
        finally:
            outboxes.reading -= 1
            outboxes.flush()
            if delays is not None:
                delays.readAt = None

    def _readTextFrames(self, data: bytes) -> bytes:
        """
        Hand the whole text frames at the start of C{data} to L{onMessage}
        (L{wcs.transports.wsframes}); return the rest, for Autobahn.
        """
        offset, limit = 0, self.factory.hardLimit
        frames = 0
        while True:
            frame = clientTextFrame(data, offset, limit)
            if frame is None:
                return data[offset:] if offset else data
            payload, offset = frame
            self.onMessage(payload, False)
            if self.state != self.STATE_OPEN:
                return data[offset:]
            frames += 1
            if frames % FLUSH_EVERY == 0:
                # A burst to a big room (199 frames, ~5 ms of work) is one
                # read: its first recipients need not wait for the last.
                self.factory.outboxes.flushOthers(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        session = self.session
        if session is None:
            return
        factory = self.factory
        limit = factory.softLimit
        chat = None
        try:
            if isBinary:
                raise ProtocolError("binary frames are not part of the protocol: send JSON text")
            if len(payload) > limit:
                raise ProtocolError(
                    f"message of {len(payload)} bytes exceeds the limit of {limit} bytes")
            # Most frames are chat deliveries: those are read without
            # decoding them (wcs.messages.chatFrame).
            if factory.chatFrames:
                chat = chatFrame(payload)
            if chat is None:
                name, args = decodeFrame(payload, factory.maxDepth)
        except ProtocolError as e:
            session.protocolError(e.info)
            return
        try:
            if chat is not None:
                name = "sendData"
                handled = session.chatFrame(*chat)
                if handled is ACCEPTED:
                    # Delivered: the answer from its template, as one frame.
                    payload = ACCEPTED_HEAD + quote(chat[0]).encode("utf-8") + ACCEPTED_TAIL
                    size = len(payload)
                    self.writeFrame((_HEADERS[size] if size < TABLED else frameHeader(size))
                                    + payload)
                    return
                if handled:
                    return
                # Not the common case after all: the ordinary way.
                name, args = decodeFrame(payload, factory.maxDepth)
            session.messageReceived(name, args)
        except Exception:
            # A bug of ours must cost this one message, not the connection.
            log.failure("{peer}: error handling {name}", peer=self.peer, name=name)
            session.refuse(name, f"internal error while handling {name}")

    def onClose(self, wasClean: bool, code, reason) -> None:
        if self.session is not None:
            self.session.connectionLost(f"WebSocket closed (code {code}, {reason or 'no reason'})")

    # ISignallingChannel

    def send(self, message: ServerMessage) -> None:
        self.writeFrame(message.encoded("websocket", textFrame))

    def sendChat(self, head: bytes, text: str) -> None:
        """
        A chat MESSAGE to this client (L{wcs.room.events.chatHead}: the
        sender's head), written as one frame: a delivery makes no
        ServerMessage and no encoding of anything but its text.
        """
        payload = head + quote(text).encode("utf-8") + CHAT_TAIL
        size = len(payload)
        self.writeFrame((_HEADERS[size] if size < TABLED else frameHeader(size)) + payload)

    def writeFrame(self, frame: bytes) -> None:
        """One whole frame to this client, queued for the end of the turn."""
        if self.state != self.STATE_OPEN or self.dropped:
            return
        backlog = self.backlog
        if backlog.paused:
            backlog.size += len(frame)
            limit = self.factory.maxBacklog
            if limit and backlog.size > limit:
                self._dropSlowReader(limit)
                return
        if self.send_queue:
            self.sendData(frame)  # keep order behind what Autobahn queued
            return
        # Autobahn's sendData formats a debug line per call even when debug
        # is off: a third of the cost of a small message. The frames of one
        # reactor turn go out together (wcs/transports/outbox.py).
        if self.outbox:
            self.outbox.append(frame)
        else:
            self.outbox = [frame]
            self.factory.outboxes.add(self)

    def sendData(self, data: bytes, sync: bool = False, chopsize=None) -> None:
        # Every write of Autobahn's own (handshake, pong, close) comes here:
        # what this turn queued goes first, in the order it was sent.
        if self.outbox:
            self.factory.outboxes.flushOne(self)
        super().sendData(data, sync, chopsize)

    def _dropSlowReader(self, limit: int) -> None:
        """
        A client that reads slower than its rooms talk would hold ever more
        of the server's memory: cut it (a close frame would wait behind the
        backlog it does not read).
        """
        self.badInput("slow", "{peer}: over {limit} bytes of output left unread, "
                      "disconnected", limit=limit)
        self.dropped = True
        self.wasNotCleanReason = f"over {limit} bytes of output left unread"
        self.droppedByMe = True
        self.transport.abortConnection()

    def close(self, reason: str) -> None:
        # A close reason must fit in a control frame (123 bytes of UTF-8).
        text = reason.encode("utf-8")[:120].decode("utf-8", "ignore")
        self.sendClose(code=1000, reason=text)


class SignallingFactory(WebSocketServerFactory):
    protocol = SignallingProtocol

    def __init__(self, server: IRoomServer, url: str | None = None):
        super().__init__(url)
        self.server = server
        settings = server.settings
        self.softLimit = settings.ws_max_message_size
        self.maxDepth = settings.json_max_depth
        # A chat frame nests 6 deep: under a lower limit decodeFrame refuses it.
        self.chatFrames = self.maxDepth >= CHAT_FRAME_DEPTH
        self.maxBacklog = settings.ws_max_send_buffer
        self.outboxes = Outboxes(server.clock.callLater)
        if settings.ws_send_delay_report > 0:
            self.outboxes.delays = SendDelays(server.clock, settings.ws_send_delay_report)
            self.outboxes.delays.start()
        self.peers = PeerConnections(settings.ws_max_connections_per_address,
                                     settings.ws_max_connections)
        hard = self.hardLimit = max(self.softLimit * HARD_LIMIT_FACTOR, 1 << 20)
        self.setProtocolOptions(
            maxMessagePayloadSize=hard,
            maxFramePayloadSize=hard,
            # The SDK speaks plain JSON; compressing would cost CPU on every
            # broadcast and defeat prepared (encode-once) messages.
            perMessageCompressionAccept=lambda offers: None,
            # Tell a client why it is dropped (a close frame with code and
            # reason) instead of cutting the TCP connection.
            failByDrop=False,
            # json.loads rejects invalid UTF-8 itself (a `fail` naming it);
            # Autobahn's own check would read every byte again in Python.
            utf8validateIncoming=False,
            openHandshakeTimeout=10,
            closeHandshakeTimeout=5,
        )



def _listen(port: int, address: str, factory, description: str, backlog: int,
            tlsContext=None) -> StreamServerEndpointService:
    from twisted.internet import reactor

    if tlsContext is None:
        endpoint = endpoints.TCP4ServerEndpoint(reactor, port, backlog, interface=address)
    else:
        endpoint = endpoints.SSL4ServerEndpoint(reactor, port, tlsContext, backlog,
                                                interface=address)
    service = StreamServerEndpointService(endpoint, factory)
    service.setName(description)
    return service


@implementer(ITransport)
class WebSocketTransport:
    name = "websocket"

    def makeService(self, server, settings):
        services = MultiService()
        factory = SignallingFactory(server)
        if settings.ws_port:
            _listen(settings.ws_port, settings.listen_address, factory, "ws",
                    settings.listen_backlog).setServiceParent(services)
        if settings.wss_port:
            context = server.tlsContext()
            if context is None:
                log.warn("wss disabled: TLS is not available")
            else:
                _listen(settings.wss_port, settings.listen_address, factory, "wss",
                        settings.listen_backlog, context).setServiceParent(services)
        return services if services.services else None


websocketTransport = WebSocketTransport()
