"""
RTMP: encoders (ffmpeg, OBS), players (ffmpeg, VLC) and Flash room clients.

URLs:
- C{rtmp://HOST:1935/live/STREAM}: publish or play STREAM by name (any
  application name works the same; a room stream plays by its name too).
- C{rtmp://HOST:1935/room/ROOM/LOGIN}: publish as participant LOGIN of ROOM:
  the others get JOINED and PUBLISHED (stream C{ROOM-LOGIN}), and LEFT when
  the connection closes. With ffmpeg the same can be said in the connect
  arguments: C{-rtmp_conn "O:1 NS:room:ROOM NS:login:LOGIN O:0"}.
- A Flash room client connects with C{{appKey: "flashRoomApp", login}} and
  speaks the room protocol in AMF0 calls (C{sendData}, C{pong}; the server
  calls C{DataStatusEvent}, C{OnDataEvent}, C{ping}, C{fail}).

The wire is L{wcs.rtmp.connection.ServerConnection}; this module adapts it.
"""

from __future__ import annotations

import math
import re
import socket
from collections import Counter

from twisted.application.internet import StreamServerEndpointService
from twisted.internet import endpoints
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from wcs.config import Key, declare
from wcs.errors import StreamError, WcsError
from wcs.interfaces import ISignallingChannel, ITransport
from wcs.logs import Logger, LogLimiter, clip
from wcs.rtmp import amf0
from wcs.rtmp.chunks import AUDIO, VIDEO
from wcs.rtmp.connection import Command, Data, Media, ServerConnection
from wcs.rtmp.errors import RTMPProtocolError
from wcs.rtmp.relay import FLVFeed, RTMPSource, TagPlayer

log = Logger()
badInput = LogLimiter(log)


_REASON_KIND = re.compile(r"[^0-9'\"]*")


class BadArgument(Exception):
    """A client's command argument that cannot be used; the message says why."""

declare(
    Key("rtmp_max_chunk_size", "int", 1 << 20, "largest chunk size a client may set, bytes"),
    Key("rtmp_max_message_size", "int", 4 << 20, "largest RTMP message accepted, bytes"),
    Key("rtmp_max_streams_per_connection", "int", 8, "NetStreams one RTMP connection may create"),
    Key("rtmp_max_connections_per_address", "int", 64,
        "RTMP connections from one address at once; 0: no limit"),
    Key("rtmp_player_buffer", "int", 1 << 20,
        "bytes waiting to be sent to an RTMP player before it drops to the next keyframe"),
    Key("rtmp_handshake_timeout", "int", 10000,
        "ms a new RTMP connection has to finish the handshake, and then again to send "
        "connect; 0: no limit"),
)

# What a client may send (docs/security.md, "RTMP and AMF").
declare(
    Key("rtmp_min_chunk_size", "int", 128,
        "least chunk size an RTMP client may set, bytes; a smaller one closes the connection"),
    Key("rtmp_max_pending_bytes", "int", 8 << 20,
        "bytes of unfinished messages one RTMP connection may hold over all its chunk streams"),
    Key("rtmp_amf_max_values", "int", 100_000,
        "values one AMF command or data message may decode to, a reference counting as "
        "what it points to and a string one more per 64 characters"),
    Key("rtmp_max_name_length", "int", 256,
        "characters of an RTMP application, stream or command name"),
)

KERNEL_SEND_BUFFER = 256 * 1024

# Server calls a Flash room client knows; other session messages are not for it.
FLASH_CALLS = frozenset({"DataStatusEvent", "OnDataEvent", "ping", "fail",
                         "notifyStreamStatusEvent"})


@implementer(ISignallingChannel)
class RTMPChannel:
    """The room session's view of an RTMP connection."""

    def __init__(self, protocol: "RTMPServerProtocol", flash: bool):
        self.protocol = protocol
        self.flash = flash
        self.peer = protocol.peer
        self.transportName = "flash" if flash else "rtmp"  # a label of wcs.metrics

    def send(self, message) -> None:
        if self.flash:
            if message.name in FLASH_CALLS:
                self.protocol.conn.call(message.name, *message.args)
                self.protocol.flush()
        elif message.name == "ping":
            # An encoder or player speaks no room protocol, but every RTMP
            # client answers a ping request: the session's keep-alive in RTMP.
            self.protocol.pingPeer()

    def close(self, reason: str) -> None:
        self.protocol.closeWith(reason)


class PlayStream:
    """An RTMP connection's play NetStream, as a player writes to it."""

    def __init__(self, protocol: "RTMPServerProtocol", streamId: int):
        self.protocol = protocol
        self.streamId = streamId

    def writeTag(self, mtype: int, timestamp: int, body: bytes) -> None:
        self.protocol.writeRaw(self.protocol.conn.media(mtype, self.streamId, timestamp, body))

    def writeMetadata(self, payload: bytes) -> None:
        self.protocol.conn.data(self.streamId, 0, amf0.encode("onMetaData") + payload)
        self.protocol.flush()

    def congested(self) -> bool:
        return self.protocol.congested

    def sourceEnded(self) -> None:
        conn = self.protocol.conn
        conn.streamEOF(self.streamId)
        conn.onStatus(self.streamId, "NetStream.Play.UnpublishNotify", "The stream ended.")
        conn.onStatus(self.streamId, "NetStream.Play.Stop", "Stopped playing.")
        self.protocol.flush()
        self.protocol.players.pop(self.streamId, None)


class Publication:
    """A NetStream being published: its source, and its room stream once live."""

    def __init__(self, source: RTMPSource, record: bool):
        self.source = source
        self.record = record
        self.stream = None


@implementer(IPushProducer)
class RTMPServerProtocol(Protocol):
    def __init__(self):
        self.session = None
        self.app = ""
        # From the connect arguments: (room, login) of ffmpeg's -rtmp_conn.
        self.argsRoom: tuple[str, str] | None = None
        self.nextStreamId = 1
        self.publishing: dict[int, Publication] = {}
        self.players: dict[int, TagPlayer] = {}
        self.congested = False
        self.closed = False
        self.peer = "?"
        self.awaiting: str | None = None  # the step a deadline waits for: see _expect
        self.deadline = None

    # Connection

    def connectionMade(self) -> None:
        factory = self.factory
        address = self.transport.getPeer()
        self.peer = f"rtmp:{address.host}:{address.port}"
        self.address = address.host
        limit = factory.settings.rtmp_max_connections_per_address
        factory.perAddress[self.address] += 1
        if limit and factory.perAddress[self.address] > limit:
            self._warn("address", "over {limit} connections from one address, closed",
                       limit=limit)
            self.transport.abortConnection()
            return
        settings = factory.settings
        self.conn = ServerConnection(
            now=int(factory.server.clock.seconds() * 1000) & 0xFFFFFFFF,
            maxMessageSize=settings.rtmp_max_message_size,
            maxChunkSize=settings.rtmp_max_chunk_size,
            minChunkSize=settings.rtmp_min_chunk_size,
            maxPending=settings.rtmp_max_pending_bytes,
            maxAMFValues=settings.rtmp_amf_max_values)
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)
        sock = getattr(self.transport, "socket", None)
        if sock is not None:
            # Left to autotuning, the kernel would queue megabytes (seconds of
            # video) for a stalled player before we see any back-pressure.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_SEND_BUFFER)
        self.transport.registerProducer(self, True)
        self.transport.bufferSize = settings.rtmp_player_buffer
        self._expect("handshake")

    # Before a session exists its keep-alive cannot time the connection out:
    # each step (the handshake, then connect) has its own deadline.

    def _expect(self, step: str) -> None:
        self._cancelDeadline()
        self.awaiting = step
        timeout = self.factory.settings.rtmp_handshake_timeout / 1000.0
        if timeout > 0:
            self.deadline = self.factory.server.clock.callLater(
                timeout, self.closeWith, f"no RTMP {step} within {timeout:g} s")

    def _progress(self) -> None:
        if self.session is not None:
            self._cancelDeadline()
            self.awaiting = None
        elif self.awaiting == "handshake" and self.conn.handshake.done:
            self._expect("connect")

    def _cancelDeadline(self) -> None:
        if self.deadline is not None and self.deadline.active():
            self.deadline.cancel()
        self.deadline = None

    def dataReceived(self, data: bytes) -> None:
        if self.closed:
            return
        if self.session is not None:
            self.session.peerActive()  # any bytes: media, acks, ping responses
        try:
            for event in self.conn.receive(data):
                if isinstance(event, Media):
                    self._media(event)
                elif isinstance(event, Command):
                    self._command(event)
                elif isinstance(event, Data):
                    self._data(event)
        except RTMPProtocolError as e:
            self.closeWith(f"protocol error: {e}")
            return
        if self.awaiting is not None:
            self._progress()
        self.flush()

    def connectionLost(self, reason=None) -> None:
        self.closed = True
        self._cancelDeadline()
        self.factory.perAddress[getattr(self, "address", "")] -= 1
        for player in list(self.players.values()):
            player.stop()
        self.players.clear()
        for publication in list(self.publishing.values()):
            self._endPublish(publication)
        self.publishing.clear()
        if self.session is not None:
            self.session.connectionLost("RTMP connection closed")

    def closeWith(self, reason: str) -> None:
        if self.closed:
            return
        # Rate-limited per kind of reason (its words up to the first number or
        # quote): a flood of bad connections from one address is one line.
        self._warn(_REASON_KIND.match(reason).group()[:40], "closing: {reason}", reason=reason)
        self.closed = True
        self.flush()
        self.transport.loseConnection()

    def flush(self) -> None:
        data = self.conn.dataToSend()
        if data:
            self.transport.write(data)  # ignored by Twisted once disconnected

    def writeRaw(self, data: bytes) -> None:
        self.transport.write(data)

    def pingPeer(self) -> None:
        self.conn.pingRequest(int(self.factory.server.clock.seconds() * 1000))
        self.flush()

    # IPushProducer: the transport says when its buffer is full.

    def pauseProducing(self) -> None:
        if not self.congested and self.players:
            log.info("{peer}: player congested, dropping to the next keyframe", peer=self.peer)
        self.congested = True

    def resumeProducing(self) -> None:
        self.congested = False

    def stopProducing(self) -> None:
        self.congested = True

    # Commands. Every argument is a decoded client value of any type: each
    # is checked for the type and size it must have before use, and none is
    # str()-ed, logged whole or encoded again.

    def _command(self, command: Command) -> None:
        if len(command.name) > self.factory.settings.rtmp_max_name_length:
            self._refuseCall(command, "command name too long")
            return
        if self.session is None and command.name != "connect":
            self._refuseCall(command, f"{command.name} before connect")
            return
        handler = getattr(self, "cmd_" + command.name, None)
        if handler is not None:
            handler(command)
        elif self.session.channel.flash:
            # A Flash room client's call: sendData, pong, ... (wcs.protocol checks them).
            args = command.args if command.commandObject is None \
                else [command.commandObject] + command.args
            self.session.messageReceived(command.name, args)
        elif command.transactionId:
            # getStreamLength, _checkbw, ...: players do without an answer.
            self.conn.error(command.transactionId, "NetConnection.Call.Failed",
                            f"{command.name} is not supported")

    def _warn(self, kind: str, format: str, **kwargs) -> None:
        """Bad input, logged once a while per address and kind."""
        badInput.warn((getattr(self, "address", ""), kind), "{peer}: " + format,
                      peer=self.peer, **kwargs)

    def _refuseCall(self, command: Command, info: str) -> None:
        self._warn("call", "{name} refused: {info}", name=clip(command.name), info=info)
        self.conn.error(command.transactionId, "NetConnection.Call.Failed", info)

    def _text(self, value, what: str, maxLength: int | None = None) -> str:
        """C{value} if it is a non-empty string of at most C{maxLength} characters."""
        if maxLength is None:
            maxLength = self.factory.settings.rtmp_max_name_length
        if not isinstance(value, str) or not value:
            raise BadArgument(f"{what} must be a non-empty string")
        if len(value) > maxLength:
            raise BadArgument(f"{what} is longer than {maxLength} characters")
        return value

    def cmd_connect(self, command: Command) -> None:
        if self.session is not None:
            # A second session on one connection would orphan the first.
            self._warn("connect", "second connect refused")
            self.conn.error(command.transactionId, "NetConnection.Connect.Rejected",
                            "already connected")
            return
        draining = self.factory.server.draining
        if draining:
            self.conn.error(command.transactionId, "NetConnection.Connect.Rejected", draining)
            self.closeWith(f"connect refused: {draining}")
            return
        try:
            flash = self._parseConnect(command)
        except BadArgument as e:
            self._warn("connect", "connect refused: {info}", info=str(e))
            self.conn.error(command.transactionId, "NetConnection.Connect.Rejected", str(e))
            self.closeWith(f"connect refused: {e}")
            return
        self.conn.acceptConnect(command.transactionId)
        self.session = self.factory.server.openSession(RTMPChannel(self, flash=flash is not None))
        if flash is not None:
            self._identify("flashRoomApp", flash)
        elif self.argsRoom is not None:
            self._identify("rtmp", self.argsRoom[1])
        elif not self.app.startswith("room/"):
            # A room URL names the login in the stream name: identify at publish.
            self._identify("rtmp", None)
        log.info("{peer} connected to app {app}", peer=self.peer, app=clip(self.app))

    def _parseConnect(self, command: Command) -> str | None:
        """
        Set C{app} and C{argsRoom} from C{connect}; the login of a Flash room
        client ("" if it gave none), or None for an encoder or player.
        """
        info = command.commandObject if isinstance(command.commandObject, dict) else {}
        app = info.get("app")
        self.app = "" if app is None or app == "" else self._text(app, "app").strip("/")
        flash = None
        for arg in command.args:
            if not isinstance(arg, dict):
                continue
            if arg.get("appKey") == "flashRoomApp" and flash is None:
                login = arg.get("login")
                flash = "" if login is None or login == "" else self._text(login, "login")
            elif arg.get("room") and arg.get("login") and self.argsRoom is None:
                self.argsRoom = (self._text(arg["room"], "room"),
                                 self._text(arg["login"], "login"))
        return flash

    def _identify(self, appKey: str, login: str | None) -> None:
        custom = {"login": login} if login else {}
        self.session.messageReceived("connection", [{"appKey": appKey, "custom": custom}])

    def cmd_createStream(self, command: Command) -> None:
        if len(self.publishing) + len(self.players) >= \
                self.factory.settings.rtmp_max_streams_per_connection:
            self.conn.error(command.transactionId, "NetConnection.Call.Failed",
                            "too many streams on this connection")
            return
        streamId = self.nextStreamId
        self.nextStreamId += 1
        self.conn.result(command.transactionId, None, float(streamId))

    def cmd_releaseStream(self, command: Command) -> None:
        pass  # ffmpeg and OBS ask before publishing; nothing to release here

    def cmd_FCPublish(self, command: Command) -> None:
        try:
            name = self._text(command.args[0] if command.args else None, "stream name")
        except BadArgument as e:
            self._refuseCall(command, str(e))
            return
        self.conn.command(0, "onFCPublish", 0, None,
                          {"code": "NetStream.Publish.Start", "description": name})

    def cmd_FCUnpublish(self, command: Command) -> None:
        for streamId in list(self.publishing):
            self._unpublish(streamId)

    def cmd_deleteStream(self, command: Command) -> None:
        streamId = command.args[0] if command.args else None
        if not isinstance(streamId, (int, float)) or isinstance(streamId, bool):
            streamId = command.streamId
        elif not (math.isfinite(streamId) and streamId == int(streamId)):
            # nan, inf, 1.5: no stream has that id
            self._refuseCall(command, "deleteStream: the stream id must be a whole number")
            return
        self._closeStream(int(streamId))

    def cmd_closeStream(self, command: Command) -> None:
        self._closeStream(command.streamId)

    def _closeStream(self, streamId: int) -> None:
        if streamId in self.publishing:
            self._unpublish(streamId)
        player = self.players.pop(streamId, None)
        if player is not None:
            player.stop()

    def _streamName(self, command: Command, what: str, code: str) -> str | None:
        """The stream name of a C{publish} or C{play}, or None with the client told."""
        try:
            return self._text(command.args[0] if command.args else None, "stream name")
        except BadArgument as e:
            self._warn("stream", "{what} refused: {info}", what=what, info=str(e))
            self.conn.onStatus(command.streamId, code, f"{e}.", level="error")
            return None

    def _streamFree(self, streamId: int, what: str) -> bool:
        """
        Whether C{streamId} may start publishing or playing: a stream this
        connection created, not busy, within the connection's stream limit.
        Otherwise the client is told (onStatus NetStream.Failed).
        """
        limit = self.factory.settings.rtmp_max_streams_per_connection
        if not 0 < streamId < self.nextStreamId:
            info = f"stream {streamId} was not created (createStream first)"
        elif streamId in self.publishing or streamId in self.players:
            info = f"stream {streamId} is already publishing or playing"
        elif len(self.publishing) + len(self.players) >= limit:
            info = f"too many streams on this connection: at most {limit}"
        else:
            return True
        self._warn("stream", "{what} refused: {info}", what=what, info=info)
        self.conn.onStatus(streamId, "NetStream.Failed", info, level="error")
        return False

    def cmd_publish(self, command: Command) -> None:
        streamId = command.streamId
        name = self._streamName(command, "publish", "NetStream.Publish.BadName")
        if name is None or not self._streamFree(streamId, "publish"):
            return
        name, record = self._recordOption(name)
        try:
            room, login = self._roomOf(name)
            if self.session.connection is None and room is None:
                raise StreamError("publish to rtmp://HOST/room/ROOM/LOGIN")
            if room is not None:
                self._joinRoom(room, login)
                name = f"{room}-{login}"
            if name in self.factory.server.streams.published:
                raise StreamError("Stream name is already in use")
        except WcsError as e:
            self._refusePublish(streamId, name, e.info)
            return
        # Announced (PUBLISHED, playable by name) once the media can be
        # played: see _media.
        self.publishing[streamId] = Publication(RTMPSource(name), record)
        self.conn.streamBegin(streamId)
        self.conn.onStatus(streamId, "NetStream.Publish.Start", f"{name} is now published.",
                           details=name)
        log.info("{peer} publishes {name}", peer=self.peer, name=clip(name))

    def _refusePublish(self, streamId: int, name: str, info: str) -> None:
        self._warn("publish", "publish of {name} refused: {info}", name=clip(name), info=info)
        self.conn.onStatus(streamId, "NetStream.Publish.BadName", info, level="error")
        self.flush()
        self.closeWith(f"publish refused: {info}")

    def _announce(self, streamId: int, publication: "Publication") -> None:
        source = publication.source
        try:
            publication.stream = self.session.streams.publishSource(
                source.name, source, provider="RTMP", record=publication.record,
                onStop=lambda: self._publishStopped(streamId))
        except WcsError as e:
            self.publishing.pop(streamId, None)
            self._refusePublish(streamId, source.name, e.info)

    @staticmethod
    def _recordOption(name: str) -> tuple[str, bool]:
        """C{STREAM?record=true} asks for a recording, like the original server."""
        base, _, query = name.partition("?")
        return base, "record=true" in query.split("&")

    def _roomOf(self, name: str) -> tuple[str | None, str | None]:
        """The room and login an encoder publishes as, if any."""
        parts = self.app.split("/")
        if len(parts) >= 2 and parts[0] == "room":
            return "/".join(parts[1:]), name
        return self.argsRoom or (None, None)

    def _joinRoom(self, room: str, login: str) -> None:
        limit = self.factory.settings.room_name_max_length
        if len(room) > limit:
            raise StreamError(f"room name is longer than {limit} characters")
        if self.session.connection is None:
            self._identify("rtmp", login)
        elif self.session.login != login:
            raise StreamError(f"this connection is {self.session.login!r}, not {login!r}")
        if room not in self.session.participants:
            self.session.joinRoom(room)

    def _publishStopped(self, streamId: int) -> None:
        publication = self.publishing.pop(streamId, None)
        if publication is not None:
            publication.source.end()

    def _unpublish(self, streamId: int) -> None:
        publication = self.publishing.pop(streamId, None)
        if publication is None:
            return
        self._endPublish(publication)
        if not self.closed:
            self.conn.onStatus(streamId, "NetStream.Unpublish.Success", "Stopped publishing.")

    def _endPublish(self, publication: "Publication") -> None:
        publication.source.end()
        if self.session is not None and publication.stream is not None:
            self.session.streams.end(publication.stream, "UNPUBLISHED")

    def cmd_play(self, command: Command) -> None:
        streamId = command.streamId
        name = self._streamName(command, "play", "NetStream.Play.Failed")
        if name is None or not self._streamFree(streamId, "play"):
            return
        live = self.factory.server.streams.live(name)
        if live is None or live.media is None or live.media.source is None:
            self.conn.onStatus(streamId, "NetStream.Play.StreamNotFound",
                               f"Stream not found: {name}", level="error")
            log.info("{peer}: play of {name}: not found", peer=self.peer, name=clip(name))
            return
        self.conn.streamBegin(streamId)
        self.conn.onStatus(streamId, "NetStream.Play.Reset", f"Playing {name}.")
        self.conn.onStatus(streamId, "NetStream.Play.Start", f"Started playing {name}.")
        self.conn.data(streamId, 0, amf0.encodeAll("|RtmpSampleAccess", True, True))
        self.flush()
        source = live.media.source
        if not isinstance(source, RTMPSource):
            source = self.factory.feedOf(source, name)
        player = self.players[streamId] = TagPlayer(source, PlayStream(self, streamId))
        if isinstance(source, FLVFeed):
            source.addPlayer(player)
        else:
            player.start()
        log.info("{peer} plays {name}", peer=self.peer, name=clip(name))

    # Media and data

    def _media(self, media: Media) -> None:
        publication = self.publishing.get(media.streamId)
        if publication is None:
            return
        source = publication.source
        if media.type == VIDEO:
            source.video(media.timestamp, media.payload)
        elif media.type == AUDIO:
            source.audio(media.timestamp, media.payload)
        if publication.stream is None and source.playable():
            self._announce(media.streamId, publication)

    def _data(self, data: Data) -> None:
        publication = self.publishing.get(data.streamId)
        if publication is None:
            return
        values = data.values
        if data.name == "@setDataFrame" and values and values[0] == "onMetaData":
            skip = 2
        elif data.name == "onMetaData":
            skip = 1
        else:
            return
        # The publisher's own bytes after the names go to players: a decoded
        # client value is never encoded again (see docs/security.md).
        reader = amf0.Reader(data.payload)
        for _ in range(skip):
            reader.value()
        publication.source.setMetadata(bytes(data.payload[reader.offset:]))


class RTMPFactory(Factory):
    protocol = RTMPServerProtocol

    def __init__(self, server, settings):
        self.server = server
        self.settings = settings
        self.perAddress: Counter[str] = Counter()
        # One conversion to FLV per non-RTMP source, shared by its RTMP players.
        self.feeds: dict[int, FLVFeed] = {}

    def feedOf(self, source, name: str) -> FLVFeed:
        feed = self.feeds.get(id(source))
        if feed is None or feed.ended:
            from wcs.rtmp.transcode import converterFor

            feed = FLVFeed(source, name, converterFor,
                           lambda f: self.feeds.pop(id(source), None) if
                           self.feeds.get(id(source)) is f else None)
            self.feeds[id(source)] = feed
            feed.open()
            log.info("converting {name!r} to FLV for RTMP players", name=name)
        return feed


@implementer(ITransport)
class RTMPTransport:
    name = "rtmp"

    def makeService(self, server, settings):
        if not settings.rtmp_port:
            return None
        from twisted.internet import reactor

        endpoint = endpoints.TCP4ServerEndpoint(reactor, settings.rtmp_port,
                                                interface=settings.listen_address)
        service = StreamServerEndpointService(endpoint, RTMPFactory(server, settings))
        service.setName("rtmp")
        return service


rtmpTransport = RTMPTransport()
