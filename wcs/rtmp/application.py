"""
The RTMP application layer without I/O: what C{connect}, C{createStream},
C{publish}, C{play} and a Flash client's calls mean for the room core.

L{RTMPApplication} takes the bytes of one connection (decoded by
L{wcs.rtmp.connection.ServerConnection} into commands, data and media) and
answers through an L{Output}: bytes to write, or a close. It reaches the
core only through L{wcs.interfaces} (L{IRoomServer}, L{IClientSession},
L{IStream}). L{wcs.transports.rtmp} adapts it to a Twisted connection.

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

Access (docs/security.md): a signed token comes as C{?token=JWT} on the
stream name or the app, as C{token} in ffmpeg's connect arguments, or in a
Flash client's connect object; it goes to the core with the identity
(L{IClientSession.identify}), and the core's access policy decides each
step, as for a WebSocket client. A client identifies at C{connect} when it
can (Flash, connect arguments, a token on the app), else at its first
C{publish} or C{play}. While a check is out (a REST hook), the client's
later commands wait for the answer, in order.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Protocol

from twisted.internet import defer

from wcs.config import Key, declare
from wcs.errors import ProtocolError, WcsError
from wcs.interfaces import NAME_IN_USE, IClientSession, IRoomServer
from wcs.logs import Logger, LogLimiter, clip
from wcs.rtmp import amf0
from wcs.rtmp.arguments import Arguments, BadArgument
from wcs.rtmp.channel import RTMPChannel
from wcs.rtmp.chunks import AUDIO, VIDEO
from wcs.rtmp.connection import Command, Data, Media, ServerConnection
from wcs.rtmp.errors import RTMPProtocolError
from wcs.rtmp.netstream import Feeds, PlayStream, Publication
from wcs.rtmp.relay import FLVFeed, RTMPSource, TagPlayer
from wcs.rtmp.waiting import Waiting

log = Logger()
badInput = LogLimiter(log)

declare(
    Key("rtmp_max_chunk_size", "int", 1 << 20, "largest chunk size a client may set, bytes"),
    Key("rtmp_max_message_size", "int", 4 << 20, "largest RTMP message accepted, bytes"),
    Key("rtmp_max_streams_per_connection", "int", 8, "NetStreams one RTMP connection may create"),
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

# A close reason's kind, for rate-limiting: its words up to the first number or quote.
_REASON_KIND = re.compile(r"[^0-9'\"]*")

HANDSHAKE, CONNECT = "handshake", "connect"


class Output(Protocol):
    """What the application asks of its connection (the Twisted adapter)."""

    def write(self, data: bytes) -> None:
        """Send C{data} to the peer, after what was sent before."""

    def close(self) -> None:
        """Close the connection once what was written is sent."""


class RTMPApplication:
    """
    One RTMP connection's application state: bytes in through
    L{dataReceived}, bytes and closes out through C{output}.

    @param server: the L{IRoomServer}; its settings bound what a client may
        send, its clock stamps pings.
    @param peer: the peer, for logs (C{rtmp:HOST:PORT}); C{address} its host,
        the key of rate-limited warnings.
    @param feeds: the server's shared L{Feeds}.
    """

    def __init__(self, server: IRoomServer, output: Output, peer: str, address: str,
                 feeds: Feeds):
        self.server = server
        self.settings = settings = server.settings
        self.output = output
        self.peer = peer
        self.address = address
        self.feeds = feeds
        self.conn = ServerConnection(
            now=int(server.clock.seconds() * 1000) & 0xFFFFFFFF,
            maxMessageSize=settings.rtmp_max_message_size,
            maxChunkSize=settings.rtmp_max_chunk_size,
            minChunkSize=settings.rtmp_min_chunk_size,
            maxPending=settings.rtmp_max_pending_bytes,
            maxAMFValues=settings.rtmp_amf_max_values)
        self.args = Arguments(settings.rtmp_max_name_length)
        self.session: IClientSession | None = None
        self.channel: RTMPChannel | None = None
        self.app = ""
        self.roomApp = False  # rtmp://HOST/room/ROOM/LOGIN: the login is the stream name
        self.token: str | None = None  # from the app's query or the connect arguments
        # Commands wait here while an access check is out.
        self.waiting = Waiting(self._event, self.close, lambda: self.closed, self.flush)
        # From the connect arguments: (room, login) of ffmpeg's -rtmp_conn.
        self.argsRoom: tuple[str, str] | None = None
        self.nextStreamId = 1
        self.publishing: dict[int, Publication] = {}
        self.players: dict[int, TagPlayer] = {}
        self.congested = False  # set by the adapter from its transport's back-pressure
        self.closed = False

    @property
    def awaiting(self) -> str | None:
        """The step the client has yet to take: L{HANDSHAKE}, L{CONNECT} or None."""
        if self.session is not None:
            return None
        return CONNECT if self.conn.handshake.done else HANDSHAKE

    # Bytes in, and the end

    def dataReceived(self, data: bytes) -> None:
        if self.closed:
            return
        if self.session is not None:
            self.session.peerActive()  # any bytes: media, acks, ping responses
        try:
            for event in self.conn.receive(data):
                if self.closed:
                    break
                self.waiting.receive(event)
        except RTMPProtocolError as e:
            self.close(f"protocol error: {e}")
            return
        self.flush()

    def _event(self, event: Command | Data | Media) -> None:
        if isinstance(event, Media):
            self._media(event)
        elif isinstance(event, Command):
            self._command(event)
        elif isinstance(event, Data):
            self._data(event)

    def connectionLost(self) -> None:
        self.closed = True
        for player in list(self.players.values()):
            player.stop()
        self.players.clear()
        for publication in list(self.publishing.values()):
            self._endPublish(publication)
        self.publishing.clear()
        if self.session is not None:
            self.session.connectionLost("RTMP connection closed")

    def close(self, reason: str) -> None:
        if self.closed:
            return
        # Rate-limited per kind of reason: a flood of bad connections from
        # one address is one line.
        self.warn(_REASON_KIND.match(reason).group()[:40], "closing: {reason}", reason=reason)
        self.closed = True
        self.flush()
        self.output.close()

    def flush(self) -> None:
        data = self.conn.dataToSend()
        if data:
            self.output.write(data)

    def warn(self, kind: str, format: str, **kwargs) -> None:
        """Bad input, logged once a while per address and kind."""
        badInput.warn((self.address, kind), "{peer}: " + format, peer=self.peer, **kwargs)

    # Commands. Every argument is a decoded client value of any type: each
    # is checked for the type and size it must have before use, and none is
    # str()-ed, logged whole or encoded again.

    def _command(self, command: Command) -> None:
        if len(command.name) > self.settings.rtmp_max_name_length:
            self._refuseCall(command, "command name too long")
            return
        if self.session is None and command.name != "connect":
            self._refuseCall(command, f"{command.name} before connect")
            return
        handler = getattr(self, "cmd_" + command.name, None)
        if handler is not None:
            handler(command)
        elif self.channel.flash:
            # A Flash room client's call: sendData, pong, ... (the session checks them).
            args = command.args if command.commandObject is None \
                else [command.commandObject] + command.args
            self.session.messageReceived(command.name, args)
        elif command.transactionId:
            # getStreamLength, _checkbw, ...: players do without an answer.
            self.conn.error(command.transactionId, "NetConnection.Call.Failed",
                            f"{command.name} is not supported")

    def _refuseCall(self, command: Command, info: str) -> None:
        self.warn("call", "{name} refused: {info}", name=clip(command.name), info=info)
        self.conn.error(command.transactionId, "NetConnection.Call.Failed", info)

    def cmd_connect(self, command: Command) -> None:
        if self.session is not None:
            # A second session on one connection would orphan the first.
            self.warn("connect", "second connect refused")
            self.conn.error(command.transactionId, "NetConnection.Connect.Rejected",
                            "already connected")
            return
        draining = self.server.draining
        transactionId = command.transactionId

        def rejected(info: str) -> None:
            self.warn("connect", "connect refused: {info}", info=info)
            self.conn.error(transactionId, "NetConnection.Connect.Rejected", info)
            self.close(f"connect refused: {info}")

        if draining:
            self.conn.error(transactionId, "NetConnection.Connect.Rejected", draining)
            self.close(f"connect refused: {draining}")
            return
        try:
            found = self.args.connect(command.commandObject, command.args)
        except BadArgument as e:
            rejected(str(e))
            return
        self.app, self.token, self.argsRoom = found.app, found.token, found.argsRoom
        self.roomApp = self.app.startswith("room/")
        flash = found.flash
        self.channel = RTMPChannel(self, flash=flash is not None)
        self.session = self.server.openSession(self.channel)

        def accepted(_=None) -> None:
            self.conn.acceptConnect(transactionId)
            log.info("{peer} connected to app {app}", peer=self.peer, app=clip(self.app))

        if flash is not None:
            self.waiting.after(self._identify("flashRoomApp", flash or None), accepted, rejected)
        elif self.argsRoom is not None:
            self.waiting.after(self._identify("rtmp", self.argsRoom[1]), accepted, rejected)
        elif self.token is not None and not self.roomApp:
            self.waiting.after(self._identify("rtmp", None), accepted, rejected)
        else:
            # The token, if any, and a room URL's login come with the stream
            # name: identify at publish or play.
            accepted()

    def _identify(self, appKey: str, login: str | None,
                  token: str | None = None) -> defer.Deferred:
        """The session's identification (a Deferred), with the connection's token."""
        try:
            return self.session.identify(appKey, login or None, token or self.token)
        except ProtocolError as e:
            return defer.fail(e)

    def _identified(self, login: str | None, token: str | None,
                    then: Callable[[Any], None], refused: Callable[[str], None]) -> None:
        """C{then()} once the session is identified: now, or at this first publish or play."""
        if self.session.identified:
            then(None)
            return

        def unidentified(info: str) -> None:
            refused(info)
            self.close(f"connection refused: {info}")  # an unidentified session is done
        self.waiting.after(self._identify("rtmp", login, token), then, unidentified)

    def cmd_createStream(self, command: Command) -> None:
        if len(self.publishing) + len(self.players) >= \
                self.settings.rtmp_max_streams_per_connection:
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
            name, _ = self.args.query(command.args[0] if command.args else None, "stream name")
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

    def _streamName(self, command: Command, what: str,
                    code: str) -> tuple[str, dict[str, str]] | None:
        """
        The stream name of a C{publish} or C{play} and its query
        (C{?token=...&record=true}), or None with the client told.
        """
        try:
            return self.args.query(command.args[0] if command.args else None, "stream name")
        except BadArgument as e:
            self.warn("stream", "{what} refused: {info}", what=what, info=str(e))
            self.conn.onStatus(command.streamId, code, f"{e}.", level="error")
            return None

    def _streamFree(self, streamId: int, what: str) -> bool:
        """
        Whether C{streamId} may start publishing or playing: a stream this
        connection created, not busy, within the connection's stream limit.
        Otherwise the client is told (onStatus NetStream.Failed).
        """
        limit = self.settings.rtmp_max_streams_per_connection
        if not 0 < streamId < self.nextStreamId:
            info = f"stream {streamId} was not created (createStream first)"
        elif streamId in self.publishing or streamId in self.players:
            info = f"stream {streamId} is already publishing or playing"
        elif len(self.publishing) + len(self.players) >= limit:
            info = f"too many streams on this connection: at most {limit}"
        else:
            return True
        self.warn("stream", "{what} refused: {info}", what=what, info=info)
        self.conn.onStatus(streamId, "NetStream.Failed", info, level="error")
        return False

    # Publish

    def cmd_publish(self, command: Command) -> None:
        streamId = command.streamId
        parsed = self._streamName(command, "publish", "NetStream.Publish.BadName")
        if parsed is None or not self._streamFree(streamId, "publish"):
            return
        name, query = parsed
        record = query.get("record") == "true"
        try:
            token = self.args.token(query.get("token"))
        except BadArgument as e:
            self._refusePublish(streamId, name, str(e))
            return
        room, login = self._roomOf(name)
        if room is not None:
            name = f"{room}-{login}"

        def refused(info: str) -> None:
            self._refusePublish(streamId, name, info)

        # Each step asks the core's access policy; a refusal ends the publish.
        def identified(_) -> None:
            if room is None:
                joined(None)
            elif self.session.login != login:
                refused(f"this connection is {self.session.login!r}, not {login!r}")
            else:
                self.waiting.after(self.session.requestJoin(room), joined, refused)

        def joined(_) -> None:
            if self.server.streamNameInUse(name):
                refused(NAME_IN_USE)
            else:
                self.waiting.after(self.session.authorizePublish(name, room, record), start, refused)

        def start(record: bool) -> None:
            if self.server.streamNameInUse(name):  # taken while the backend was asked
                refused(NAME_IN_USE)
                return
            # Announced (PUBLISHED, playable by name) once the media can be
            # played: see _media.
            self.publishing[streamId] = Publication(RTMPSource(name), record)
            self.conn.streamBegin(streamId)
            self.conn.onStatus(streamId, "NetStream.Publish.Start",
                               f"{name} is now published.", details=name)
            log.info("{peer} publishes {name}", peer=self.peer, name=clip(name))

        self._identified(login if room is not None else None, token, identified, refused)

    def _refusePublish(self, streamId: int, name: str, info: str) -> None:
        self.warn("publish", "publish of {name} refused: {info}", name=clip(name), info=info)
        self.conn.onStatus(streamId, "NetStream.Publish.BadName", info, level="error")
        self.flush()
        self.close(f"publish refused: {info}")

    def _announce(self, streamId: int, publication: Publication) -> None:
        source = publication.source
        try:
            publication.stream = self.session.publish(
                source.name, source, "RTMP", record=publication.record,
                onStop=lambda: self._publishStopped(streamId))
        except WcsError as e:
            self.publishing.pop(streamId, None)
            self._refusePublish(streamId, source.name, e.info)

    def _roomOf(self, name: str) -> tuple[str | None, str | None]:
        """The room and login an encoder publishes as, if any."""
        parts = self.app.split("/")
        if len(parts) >= 2 and parts[0] == "room":
            return "/".join(parts[1:]), name
        return self.argsRoom or (None, None)

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

    def _endPublish(self, publication: Publication) -> None:
        publication.source.end()
        if publication.stream is not None:
            publication.stream.stop()

    # Play

    def cmd_play(self, command: Command) -> None:
        streamId = command.streamId
        parsed = self._streamName(command, "play", "NetStream.Play.Failed")
        if parsed is None or not self._streamFree(streamId, "play"):
            return
        name, query = parsed

        def refused(info: str) -> None:
            self.warn("play", "play of {name} refused: {info}", name=clip(name), info=info)
            self.conn.onStatus(streamId, "NetStream.Play.Failed", info, level="error")

        def identified(_) -> None:
            # Allowed, then found: here, or (a cluster) on its room's node.
            found = self.session.authorizePlay(name).addCallback(
                lambda _: self.server.locateSource(name))
            self.waiting.after(found, lambda source: self._play(streamId, name, source),
                               refused)

        try:
            token = self.args.token(query.get("token"))
        except BadArgument as e:
            refused(str(e))
            return
        self._identified(None, token, identified, refused)

    def _play(self, streamId: int, name: str, source) -> None:
        if not self._streamFree(streamId, "play"):
            return
        if source is None:
            self.conn.onStatus(streamId, "NetStream.Play.StreamNotFound",
                               f"Stream not found: {name}", level="error")
            log.info("{peer}: play of {name}: not found", peer=self.peer, name=clip(name))
            return
        self.conn.streamBegin(streamId)
        self.conn.onStatus(streamId, "NetStream.Play.Reset", f"Playing {name}.")
        self.conn.onStatus(streamId, "NetStream.Play.Start", f"Started playing {name}.")
        self.conn.data(streamId, 0, amf0.encodeAll("|RtmpSampleAccess", True, True))
        self.flush()
        if not isinstance(source, RTMPSource):
            source = self.feeds.feedOf(source, name)
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

