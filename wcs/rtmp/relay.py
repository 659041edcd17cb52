"""
Media of RTMP streams: a published RTMP stream as an L{IMediaSource}, and
players that send a stream to an RTMP client.

RTMP to RTMP is the fast path: players get the publisher's FLV bodies as
they came, with only the timestamp rebased. Other consumers (WebRTC players,
the recorder) get L{EncodedFrame}s, converted once per stream and only while
one is attached. A source that is not RTMP is converted to FLV once for all
its RTMP players (L{FLVFeed}), in a worker thread.
"""

from __future__ import annotations

from typing import Callable, Protocol

from zope.interface import implementer

from wcs.frames import EncodedFrame
from wcs.interfaces import IMediaSink, IMediaSource
from wcs.offload import Worker, trimFreedMemory
from wcs.rtmp import flv
from wcs.rtmp.chunks import AUDIO, VIDEO

# Frames an FLV feed's worker may have queued: audio and video together,
# about a second of both; more would only delay the players.
FEED_QUEUE = 90


class TagWriter(Protocol):
    """Where a player's FLV tags go (an RTMP connection's play stream)."""

    def writeTag(self, mtype: int, timestamp: int, body: bytes) -> None: ...

    def writeMetadata(self, payload: bytes) -> None: ...

    def congested(self) -> bool: ...

    def sourceEnded(self) -> None: ...


@implementer(IMediaSource)
class RTMPSource:
    def __init__(self, name: str):
        self.name = name
        self.tracks: dict[str, str] = {}
        self.metadata: bytes | None = None
        self.videoHeader: bytes | None = None
        self.audioHeader: bytes | None = None
        self.players: set[TagPlayer] = set()
        self.sinks: set[IMediaSink] = set()
        self.toVideoFrames = flv.VideoToFrames()
        self.toAudioFrames = flv.AudioToFrames()
        self.ended = False
        self.sawKeyframe = False
        self.sawAudio = False
        # The latest video message, while it is a keyframe: see attach.
        self.keyframe: tuple[int, bytes] | None = None

    def playable(self) -> bool:
        """
        Whether players can start: a keyframe came (with its codec
        configuration), or audio came and the metadata announces no video.
        """
        if self.sawKeyframe and self.videoHeader is not None:
            return True
        noVideo = self.metadata is not None and b"videocodecid" not in self.metadata
        return self.sawAudio and noVideo

    # From the publisher

    def setMetadata(self, payload: bytes) -> None:
        self.metadata = payload
        for player in list(self.players):
            player.writer.writeMetadata(payload)

    def video(self, timestamp: int, body: bytes) -> None:
        if flv.isSequenceHeader(body, video=True):
            self.videoHeader = body
            self.tracks["video"] = "H264"
        keyframe = flv.isVideoKeyframe(body)
        if keyframe and body[1:2] == b"\x01":
            self.sawKeyframe = True
            self.keyframe = (timestamp, body)
        else:
            self.keyframe = None
        for player in list(self.players):
            player.tag(VIDEO, timestamp, body, keyframe)
        # The sequence header is read even with no sink yet: a sink that comes
        # later needs the parameter sets in front of its first keyframe.
        if self.sinks or body[1:2] == b"\x00":
            frame = self.toVideoFrames.convert(timestamp, body)
            if frame is not None:
                self._deliver(frame)

    def audio(self, timestamp: int, body: bytes) -> None:
        if not body:
            return
        if "audio" not in self.tracks:
            self.tracks["audio"] = flv.AUDIO_FORMATS.get(body[0] >> 4, "unknown")
        if flv.isSequenceHeader(body, video=False):
            self.audioHeader = body
        else:
            self.sawAudio = True
        for player in list(self.players):
            player.tag(AUDIO, timestamp, body, False)
        if self.sinks or flv.isSequenceHeader(body, video=False):
            frame = self.toAudioFrames.convert(timestamp, body)
            if frame is not None:
                self._deliver(frame)

    def playerLeft(self, player: "TagPlayer") -> None:
        """A player went away (a converting feed stops when none is left)."""

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        for player in list(self.players):
            player.writer.sourceEnded()
        self.players.clear()
        for sink in list(self.sinks):
            sink.sourceEnded()
        self.sinks.clear()

    def _deliver(self, frame: EncodedFrame) -> None:
        for sink in list(self.sinks):
            sink.writeFrame(frame)

    # IMediaSource

    def attach(self, sink: IMediaSink) -> None:
        """
        A sink that comes right after a keyframe starts on it, not a GOP
        later: the recorder attaches when the stream is announced, on the
        keyframe that made it playable (docs/recording.md).
        """
        if sink in self.sinks:
            return
        self.sinks.add(sink)
        if self.keyframe is not None:
            frame = self.toVideoFrames.convert(*self.keyframe)
            if frame is not None:
                sink.writeFrame(frame)

    def detach(self, sink: IMediaSink) -> None:
        self.sinks.discard(sink)

    def requestKeyframe(self) -> None:
        """RTMP has no way to ask: the next keyframe comes with the next GOP."""


class TagPlayer:
    """
    One RTMP player of an RTMP source: starts on a keyframe, timestamps from
    0, and when its connection is congested drops everything up to the next
    keyframe rather than queue it.
    """

    def __init__(self, source: RTMPSource, writer: TagWriter):
        self.source = source
        self.writer = writer
        self.base: int | None = None
        self.last = 0
        self.dropping = False
        self.dropped = 0

    def start(self) -> None:
        if self.source.metadata is not None:
            self.writer.writeMetadata(self.source.metadata)
        self.source.players.add(self)

    def stop(self) -> None:
        self.source.players.discard(self)
        self.source.playerLeft(self)

    def tag(self, mtype: int, timestamp: int, body: bytes, keyframe: bool) -> None:
        if self.base is None or self.dropping:
            if not (mtype == VIDEO and keyframe and not flv.isSequenceHeader(body, True)) \
                    and not (self.base is None and "video" not in self.source.tracks):
                self.dropped += 1
                return
            if self.writer.congested():
                self.dropped += 1
                return
            self._resume(timestamp)
        elif self.writer.congested():
            self.dropping = True
            self.dropped += 1
            return
        self._write(mtype, timestamp, body)

    def _resume(self, timestamp: int) -> None:
        if self.base is None:
            self.base = timestamp
        self.dropping = False
        # Decoders need the configuration again after a gap, and at the start.
        if self.source.videoHeader is not None:
            self._write(VIDEO, timestamp, self.source.videoHeader)
        if self.source.audioHeader is not None:
            self._write(AUDIO, timestamp, self.source.audioHeader)

    def _write(self, mtype: int, timestamp: int, body: bytes) -> None:
        # Monotonic from 0 whatever the publisher's clock does.
        relative = max(self.last, timestamp - self.base)
        self.last = relative
        self.writer.writeTag(mtype, relative, body)


@implementer(IMediaSink)
class FLVFeed(RTMPSource):
    """
    A source that is not RTMP (a WebRTC publisher) as FLV tags, converted
    once for all its RTMP players: H.264 passes as it is; other codecs go
    through C{transcode(kind, codec)}, which returns a converter or None when
    that track cannot be carried over RTMP. Players are ordinary
    L{TagPlayer}s of this feed.

    The conversion runs in a L{Worker} (off the reactor thread); the tags it
    makes come back to the reactor thread, in order, for the players. The
    converters and the timestamp state below are only touched there.
    """

    def __init__(self, upstream: IMediaSource, name: str,
                 transcode: Callable[[str, str], Callable | None],
                 idle: Callable[["FLVFeed"], None], **workerOptions):
        super().__init__(name)
        self.upstream = upstream
        self.transcode = transcode
        self.idle = idle
        self.toVideo = flv.FramesToVideo()
        self.converters: dict[str, Callable | None] = {}
        self.base: float | None = None
        self.last = {"audio": 0, "video": 0}
        self.worker: Worker[list[tuple[int, int, bytes]]] = Worker(
            f"RTMP feed of {name!r}", self._convert, self._tags,
            limit=FEED_QUEUE, onDrop=upstream.requestKeyframe, **workerOptions)

    def open(self) -> None:
        self.upstream.attach(self)

    def addPlayer(self, player: "TagPlayer") -> None:
        player.start()
        self.upstream.requestKeyframe()  # so the newcomer starts soon

    def playerLeft(self, player: "TagPlayer") -> None:
        if not self.players and not self.ended:
            self.upstream.detach(self)
            self.ended = True
            self.worker.stop(self._release, drain=False)
            self.idle(self)

    # IMediaSink

    def writeFrame(self, frame: EncodedFrame) -> None:
        self.worker.submit(frame)

    def sourceEnded(self) -> None:
        self.worker.stop(self._release, drain=False)
        self.end()
        self.idle(self)

    # In the worker's thread

    def _release(self) -> None:
        """After the last frame: the converters go, and their codecs' memory."""
        converters, self.converters = self.converters, {}
        if any(converters.values()):
            converters.clear()
            trimFreedMemory()

    def _convert(self, frame: EncodedFrame) -> list[tuple[int, int, bytes]]:
        """One frame to FLV tags: (message type, timestamp, body)."""
        seconds = float(frame.pts * frame.time_base)
        if self.base is None:
            self.base = seconds
        ms = max(self.last[frame.kind], int((seconds - self.base) * 1000))
        self.last[frame.kind] = ms
        tags = []
        if frame.kind == "video":
            frames = [frame]
            if frame.codec != "H264":
                converter = self._converter("video", frame.codec)
                frames = converter(frame) if converter is not None else []
            for each in frames:
                for timestamp, body in self.toVideo.convert(each, ms):
                    tags.append((VIDEO, timestamp, body))
        else:
            converter = self._converter("audio", frame.codec)
            if converter is not None:
                for timestamp, body in converter(frame, ms):
                    tags.append((AUDIO, timestamp, body))
        return tags

    def _converter(self, kind: str, codec: str):
        if codec not in self.converters:
            self.converters[codec] = self.transcode(kind, codec)
        return self.converters[codec]

    # Back on the reactor thread

    def _tags(self, tags: list[tuple[int, int, bytes]]) -> None:
        for mtype, timestamp, body in tags:
            if self.ended:
                return
            if mtype == VIDEO:
                self.video(timestamp, body)
            else:
                self.audio(timestamp, body)
