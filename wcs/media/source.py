"""
A WebRTC publisher's media as an L{IMediaSource}.

Players of the same engine take RTP straight from the L{IncomingTrack}s;
everything else (RTMP players, the recorder, transcoders) attaches an
L{IMediaSink} and gets L{EncodedFrame}s. Frames are assembled only while at
least one sink is attached.
"""

from __future__ import annotations

import time
from fractions import Fraction
from typing import Callable

from twisted.logger import Logger
from zope.interface import implementer

from wcs.frames import EncodedFrame
from wcs.interfaces import IMediaSink, IMediaSource
from wcs.media.internals import DEPAYLOADERS, JitterBuffer, jitterPacket
from wcs.media.rtp import frameIsKeyframe
from wcs.media.track import IncomingTrack


class TimestampUnwrapper:
    """RTP timestamps to a monotonic pts, tolerant of reordering and wrap."""

    def __init__(self, origin: int):
        self.pts = origin
        self.last: int | None = None

    def __call__(self, timestamp: int) -> int:
        if self.last is not None:
            self.pts += ((timestamp - self.last + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
        self.last = timestamp
        return self.pts


class FrameAssembler:
    """
    Turns one incoming track's packets into L{EncodedFrame}s: H.264 as
    Annex-B, VP8 frames, one audio frame per packet. Video goes through
    aiortc's jitter buffer, which reorders and cuts frames by timestamp.
    """

    def __init__(self, track: IncomingTrack, startedAt: float,
                 deliver: Callable[[EncodedFrame], None]):
        self.track = track
        self.deliver = deliver
        self.timeBase = Fraction(1, track.clockRate)
        # Tracks of one source share an origin: their pts are comparable.
        origin = int((time.monotonic() - startedAt) * track.clockRate)
        self.unwrap = TimestampUnwrapper(origin)
        self.depayload = DEPAYLOADERS.get(track.codec)
        self.jitter = JitterBuffer(capacity=512, is_video=True) if self.depayload else None

    def __call__(self, seq: int, timestamp: int, marker: int, payload: bytes) -> None:
        track = self.track
        if self.jitter is None:
            self.deliver(EncodedFrame(track.kind, track.codec, payload,
                                      self.unwrap(timestamp), self.timeBase, True))
            return
        try:
            data = self.depayload(payload) if payload else b""
        except ValueError:
            return
        lost, frame = self.jitter.add(jitterPacket(seq, timestamp, data))
        if lost:
            track.requestKeyframe()
        if frame is not None:
            self.deliver(EncodedFrame(track.kind, track.codec, frame.data,
                                      self.unwrap(frame.timestamp), self.timeBase,
                                      frameIsKeyframe(track.codec, frame.data)))


@implementer(IMediaSource)
class WebRTCSource:
    log = Logger()

    def __init__(self, name: str):
        self.name = name
        self.tracks: dict[str, str] = {}
        self.incoming: dict[str, IncomingTrack] = {}
        self.sinks: list[IMediaSink] = []
        self.ended = False
        self.startedAt = time.monotonic()

    def addTrack(self, track: IncomingTrack) -> None:
        self.tracks[track.kind] = track.codec
        self.incoming[track.kind] = track

    def attach(self, sink: IMediaSink) -> None:
        if self.ended:
            sink.sourceEnded()
            return
        if sink in self.sinks:
            return
        self.sinks.append(sink)
        if len(self.sinks) == 1:
            for track in self.incoming.values():
                track.frameListener = FrameAssembler(track, self.startedAt, self._deliver)
        self.requestKeyframe()

    def detach(self, sink: IMediaSink) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)
            if not self.sinks:
                for track in self.incoming.values():
                    track.frameListener = None

    def requestKeyframe(self) -> None:
        video = self.incoming.get("video")
        if video is not None:
            video.requestKeyframe()

    def end(self) -> None:
        """The publisher is gone: tell every player and sink, once."""
        if self.ended:
            return
        self.ended = True
        for track in self.incoming.values():
            track.frameListener = None
            track.end()
        sinks, self.sinks = self.sinks, []
        for sink in sinks:
            try:
                sink.sourceEnded()
            except Exception:
                self.log.failure("sink {sink} failed on sourceEnded", sink=sink)

    def _deliver(self, frame: EncodedFrame) -> None:
        for sink in tuple(self.sinks):
            try:
                sink.writeFrame(frame)
            except Exception:
                self.log.failure("sink {sink} failed on a frame", sink=sink)

    def __repr__(self) -> str:
        return f"<WebRTCSource {self.name!r} {self.tracks}>"
