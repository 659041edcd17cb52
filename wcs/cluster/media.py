"""
Media of a stream published on one node into a room that lives on another
(an RTMP encoder, a Flash client): its encoded frames go to the room's node
over one TCP connection per stream (docs/cluster.md, "Media relay").

The client's node connects to the room's node's relay port (told in the
C{joined} answer), sends one header line (JSON: who publishes what, where)
and then its frames; the room's node publishes them there as the visitor's
stream (a L{RelayedSource}), so the room announces it, players of any node
play it there, and the recorder records it, as for a local publisher. Any
byte back from the room's node asks for a keyframe.

Records: a 4-byte length, then a frame (L{encodeFrame}), or one byte: the
stream ended (0) or failed (1). Whoever can reach the relay port is trusted
as far as Redis is (docs/cluster.md, "Trust"): the header must name a
visitor of this node by its node and that node's incarnation.
"""

from __future__ import annotations

import json
import struct
from fractions import Fraction

from twisted.internet import protocol
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from wcs.errors import WcsError
from wcs.frames import EncodedFrame
from wcs.interfaces import FAILED, IMediaSink, IMediaSource
from wcs.logs import LogLimiter, Logger, clip

log = Logger()
errors = LogLimiter(log)

HEADER_MAX = 4096  # bytes of the header line
HEADER_TIMEOUT = 10.0  # seconds a connection to the relay may take to send it
RECORD_MAX = 8 << 20  # bytes of one frame: more closes the connection
_LENGTH = struct.Struct("!I")
# flags (1: video, 2: keyframe), codec length, pts, time base, sample rate, config length
_FRAME = struct.Struct("!BBqIIIH")
ENDED, ENDED_FAILED = b"\x00", b"\x01"


def encodeFrame(frame: EncodedFrame) -> bytes:
    codec = frame.codec.encode()
    config = frame.config or b""
    flags = (1 if frame.kind == "video" else 0) | (2 if frame.keyframe else 0)
    head = _FRAME.pack(flags, len(codec), frame.pts, frame.time_base.numerator,
                       frame.time_base.denominator, frame.sample_rate or 0, len(config))
    size = len(head) + len(codec) + len(config) + len(frame.data)
    return b"".join((_LENGTH.pack(size), head, codec, config, frame.data))


def decodeFrame(record: bytes) -> EncodedFrame:
    """@raise ValueError: not a frame."""
    flags, codecLength, pts, num, den, rate, configLength = _FRAME.unpack_from(record)
    offset = _FRAME.size
    codec = record[offset:offset + codecLength].decode()
    offset += codecLength
    config = record[offset:offset + configLength] or None
    offset += configLength
    if offset > len(record) or den == 0:
        raise ValueError("a truncated frame")
    return EncodedFrame("video" if flags & 1 else "audio", codec, record[offset:], pts,
                        Fraction(num, den), bool(flags & 2), config, rate or None)


# --- The room's node: frames in ---------------------------------------------


@implementer(IMediaSource)
class RelayedSource:
    """A stream of another node, as its frames arrive here."""

    def __init__(self, tracks: dict[str, str], askKeyframe, idle=None):
        """@param idle: called when its last sink detaches (a pull then stops)."""
        self.tracks = dict(tracks)
        self.sinks: list[IMediaSink] = []
        self.askKeyframe = askKeyframe
        self.idle = idle
        self.ended = False
        # Why it ended other than by its publisher (a pull's origin lost), if so.
        self.lost: str | None = None
        # Whether to go on without sinks (players here still negotiating).
        self.keep = lambda: False
        self.ready = idle is None  # a pull is ready when the origin told its tracks
        self._waiting: list[Deferred] = []
        self._onEnd: list = []

    def whenReady(self) -> Deferred:
        """Fires with this source once its tracks are known, or None if it ended first."""
        if self.ready or self.ended:
            return succeed(None if self.ended else self)
        d = Deferred()
        self._waiting.append(d)
        return d

    def setReady(self, tracks: dict[str, str]) -> None:
        self.tracks.update(tracks)
        self.ready = True
        self._release(self)

    def _release(self, result) -> None:
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(result)

    def onEnd(self, callback) -> None:
        """Call C{callback()} when the source ends (its players here are stopped)."""
        if self.ended:
            callback()
        else:
            self._onEnd.append(callback)

    def frame(self, frame: EncodedFrame) -> None:
        if frame.kind not in self.tracks:
            self.tracks[frame.kind] = frame.codec
        for sink in list(self.sinks):
            sink.writeFrame(frame)

    def end(self) -> None:
        if not self.ended:
            self.ended = True
            self._release(None)
            for sink in list(self.sinks):
                sink.sourceEnded()
            self.sinks.clear()
            callbacks, self._onEnd = self._onEnd, []
            for callback in callbacks:
                callback()

    def attach(self, sink: IMediaSink) -> None:
        if sink not in self.sinks:
            self.sinks.append(sink)
        self.askKeyframe()

    def detach(self, sink: IMediaSink) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)
            if not self.sinks and self.idle is not None and not self.keep():
                self.idle()

    def requestKeyframe(self) -> None:
        self.askKeyframe()


class Records(protocol.Protocol):
    """Length-prefixed records after a header line, bounded."""

    def __init__(self):
        self.buffer = bytearray()
        self.headerSeen = False

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if not self.headerSeen:
            end = self.buffer.find(b"\n")
            if end < 0:
                if len(self.buffer) > HEADER_MAX:
                    self.refuse("the header line is too long")
                return
            line, self.buffer = bytes(self.buffer[:end]), self.buffer[end + 1:]
            self.headerSeen = True
            try:
                header = json.loads(line)
                if not isinstance(header, dict):
                    raise ValueError("not an object")
            except ValueError as e:
                self.refuse(f"unreadable header: {e}")
                return
            self.headerReceived(header)
        while len(self.buffer) >= 4 and self.transport is not None \
                and not self.transport.disconnecting:
            (size,) = _LENGTH.unpack_from(self.buffer)
            if size > RECORD_MAX or size == 0:
                self.refuse(f"a record of {size} bytes")
                return
            if len(self.buffer) < 4 + size:
                return
            record = bytes(self.buffer[4:4 + size])
            del self.buffer[:4 + size]
            self.recordReceived(record)

    def refuse(self, info: str) -> None:
        errors.warn(("relay", info[:30]), "cluster: media relay from {peer} closed: {info}",
                    peer=self.transport.getPeer(), info=info)
        self.transport.loseConnection()

    def frameReceived(self, record: bytes) -> None:
        """A frame for this connection's source."""
        try:
            frame = decodeFrame(record)
        except (ValueError, struct.error, UnicodeDecodeError) as e:
            self.refuse(f"a bad frame: {e}")
            return
        self.source.frame(frame)

    def askKeyframe(self) -> None:
        """Any byte back asks the sending end for a keyframe."""
        if self.transport is not None and not self.transport.disconnecting:
            self.transport.write(b"k")

    def headerReceived(self, header: dict) -> None:
        raise NotImplementedError

    def recordReceived(self, record: bytes) -> None:
        raise NotImplementedError


class RelayIn(Records):
    """One stream pushed here by another node."""

    def __init__(self, hosts, stats=None):
        super().__init__()
        self.hosts = hosts
        self.stats = stats if stats is not None else RelayStats()
        self.source: RelayedSource | None = None
        self.stream = None
        self.proxy = None
        self.pusher: RelayOut | None = None
        self.timeout = None

    def connectionMade(self) -> None:
        self.timeout = self.hosts.server.clock.callLater(HEADER_TIMEOUT, self._silent)

    def _silent(self) -> None:
        self.timeout = None
        if not self.headerSeen:
            self.refuse(f"no header in {HEADER_TIMEOUT:.0f} s")

    def dataReceived(self, data: bytes) -> None:
        if self.pusher is not None:
            self.pusher.dataReceived(data)
        else:
            super().dataReceived(data)

    def headerReceived(self, header: dict) -> None:
        if "pull" in header:
            # Another node's players want a stream live here: it is sent
            # back on this connection, as a push would send it.
            source = self.hosts.server.liveSource(str(header["pull"]))
            if source is None:
                self.refuse("no such stream here")
                return
            log.info("cluster: relaying {name} to {peer} for its players",
                     name=clip(header["pull"]), peer=self.transport.getPeer())
            # The tracks first: the edge's WebRTC players negotiate with them.
            self.pusher = RelayOut(source, {"tracks": dict(source.tracks)})
            self.stats.pullsServed += 1
            self.stats.serving.add(self)
            self.pusher.makeConnection(self.transport)
            return
        self.source = RelayedSource(
            {str(k): str(v) for k, v in (header.get("tracks") or {}).items()}
            if isinstance(header.get("tracks"), dict) else {}, self.askKeyframe)
        try:
            self.proxy, self.stream = self.hosts.relayed(header, self.source, self._stopped)
        except WcsError as e:
            self.refuse(e.info)

    def recordReceived(self, record: bytes) -> None:
        if len(record) == 1:
            if record == ENDED_FAILED and self.stream is not None:
                self.proxy.streams.end(self.stream, FAILED, "Failed by its node")
            self.transport.loseConnection()
            return
        self.frameReceived(record)

    def _stopped(self) -> None:
        # Ended here (a leave, a kick): the client's node stops pushing.
        self.source.end()
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        if self.timeout is not None and self.timeout.active():
            self.timeout.cancel()
        self.stats.serving.discard(self)
        if self.pusher is not None:
            self.pusher.ending = ENDED  # the puller left: nothing to say
            self.pusher.connectionLost(reason)
        if self.source is not None:
            self.source.end()
        if self.stream is not None:
            self.stream.stop()


class RelayStats:
    """What this node's relays carry, for /metrics (docs/operations.md)."""

    def __init__(self):
        self.pullsServed = 0  # pulls of streams here by other nodes, since start
        self.serving: set[RelayIn] = set()  # those running
        self.pulls = 0  # pulls made here, since start
        self.pulling: set = set()  # those running (wcs.cluster.edge.Pull)
        self.keyframeAsks = 0  # keyframe requests pulls sent to their origin


class RelayInFactory(protocol.Factory):
    def __init__(self, hosts, stats: RelayStats | None = None):
        self.hosts = hosts
        self.stats = stats if stats is not None else RelayStats()

    def buildProtocol(self, addr):
        return RelayIn(self.hosts, self.stats)


# --- The client's node: frames out ------------------------------------------


@implementer(IMediaSink, IPushProducer)
class RelayOut(protocol.Protocol):
    """
    Pushes one local stream to the room's node. While the connection is
    congested, frames are dropped, and video until the next keyframe.
    """

    def __init__(self, source: IMediaSource, header: dict):
        self.source = source
        self.header = header
        self.paused = False
        self.needKeyframe = False
        self.ending: bytes | None = None
        self.attached = False
        self.lost = False  # the connection ended before the stream did

    def connectionMade(self) -> None:
        self.transport.registerProducer(self, True)
        if self.header is not None:  # else it answers a pull: no header
            self.transport.write(json.dumps(self.header).encode() + b"\n")
        if self.ending is not None:
            self._finish()
            return
        self.attached = True
        self.source.attach(self)
        self.source.requestKeyframe()

    def dataReceived(self, data: bytes) -> None:
        self.source.requestKeyframe()  # a player there needs one

    # IMediaSink

    def writeFrame(self, frame: EncodedFrame) -> None:
        if self.paused or self.transport is None:
            self.needKeyframe = True
            return
        if self.needKeyframe and frame.kind == "video":
            if not frame.keyframe:
                return
            self.needKeyframe = False
        self.transport.write(encodeFrame(frame))

    def sourceEnded(self) -> None:
        self.end(False)

    # IPushProducer: the socket's back-pressure

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        if self.paused:
            self.paused = False
            self.source.requestKeyframe()

    def stopProducing(self) -> None:
        self.paused = True

    def end(self, failed: bool) -> None:
        """The stream ended here: tell the room's node and close."""
        if self.ending is None:
            self.ending = ENDED_FAILED if failed else ENDED
            if self.transport is not None:
                self._finish()

    def _finish(self) -> None:
        if self.attached:
            self.attached = False
            self.source.detach(self)
        self.transport.write(_LENGTH.pack(1) + self.ending)
        self.transport.loseConnection()

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        if self.attached:
            self.attached = False
            self.source.detach(self)
        if self.ending is None:
            self.lost = True
            stream = (self.header or {}).get("stream")
            errors.warn(("out", stream), "cluster: media relay of {stream} lost: {reason}",
                        stream=clip(stream), reason=reason.value)


def pushStream(reactor, address, source: IMediaSource, header: dict) -> RelayOut:
    """Connect to the room's node's relay at C{address} and push C{source}."""
    out = RelayOut(source, header)
    factory = protocol.ClientFactory()
    factory.protocol = lambda: out

    def failed(connector, reason) -> None:
        errors.warn(("connect", address[0]), "cluster: media relay to {host}:{port} "
                    "failed: {reason}", host=address[0], port=address[1], reason=reason.value)
    factory.clientConnectionFailed = failed
    reactor.connectTCP(address[0], int(address[1]), factory, timeout=5)
    return out
