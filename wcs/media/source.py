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
from wcs.media.internals import DEPAYLOADERS, JitterBuffer, JitterFrame, jitterPacket
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


def heldFrames(jitter: JitterBuffer) -> tuple[list[JitterFrame], int, int]:
    """
    The frames still in C{jitter} whose packets are all there, oldest first,
    and the frames and packets it holds besides (incomplete). aiortc cuts a
    frame only when a packet of the next one arrives, so at a stream's end
    its last frame is still held. From the oldest packet on, while no packet
    is missing: a frame that another one's packet follows is complete, and
    so is the last one once its marker packet (its last) is there. What
    follows a missing packet is incomplete: where its frames begin is not
    known. Looks at no more than the buffer holds (its capacity).
    """
    packets, origin = jitter._packets, jitter._origin
    if origin is None:
        return [], 0, 0
    frames: list[list] = []
    run: list = []
    for count in range(len(packets)):
        packet = packets[(origin + count) % len(packets)]
        if packet is None:
            break
        if run and packet.timestamp != run[0].timestamp:
            frames.append(run)
            run = []
        run.append(packet)
    if run and any(p.marker for p in run):  # what follows the marker is padding
        frames.append(run)
    taken = {id(p) for frame in frames for p in frame}
    left = [p for p in packets if p is not None and id(p) not in taken]
    return ([JitterFrame(b"".join(p._data for p in frame), frame[0].timestamp)
             for frame in frames],
            len({p.timestamp for p in left}), len(left))


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
        lost, frame = self.jitter.add(jitterPacket(seq, timestamp, data, marker))
        if lost:
            track.requestKeyframe()
        if frame is not None:
            self._deliver(frame)

    def _deliver(self, frame: JitterFrame) -> None:
        track = self.track
        self.deliver(EncodedFrame(track.kind, track.codec, frame.data,
                                  self.unwrap(frame.timestamp), self.timeBase,
                                  frameIsKeyframe(track.codec, frame.data)))

    def flush(self) -> tuple[int, int, int]:
        """
        At the end: deliver the complete frames the jitter buffer still
        holds (L{heldFrames}), drop the rest. Returns the frames delivered,
        and the frames and packets dropped.
        """
        if self.jitter is None:
            return 0, 0, 0
        frames, dropped, packets = heldFrames(self.jitter)
        if packets or frames:  # each frame is given once
            self.jitter.remove(self.jitter.capacity)
        for frame in frames:
            self._deliver(frame)
        return len(frames), dropped, packets


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
            assembler, track.frameListener = track.frameListener, None
            if isinstance(assembler, FrameAssembler):
                self._flush(track, assembler)
            track.end()
        sinks, self.sinks = self.sinks, []
        for sink in sinks:
            try:
                sink.sourceEnded()
            except Exception:
                self.log.failure("sink {sink} failed on sourceEnded", sink=sink)

    def _flush(self, track: IncomingTrack, assembler: FrameAssembler) -> None:
        """A track's last frames to the sinks, before they hear of the end."""
        try:
            written, dropped, packets = assembler.flush()
        except Exception:
            self.log.failure("{name}: {kind} not flushed", name=self.name, kind=track.kind)
            return
        if written or dropped:
            self.log.info("{name}: {kind} at its end: {written} complete frame(s) taken from "
                          "the jitter buffer, {dropped} incomplete dropped ({packets} packets)",
                          name=self.name, kind=track.kind, written=written,
                          dropped=dropped, packets=packets)

    def _deliver(self, frame: EncodedFrame) -> None:
        for sink in tuple(self.sinks):
            try:
                sink.writeFrame(frame)
            except Exception:
                self.log.failure("sink {sink} failed on a frame", sink=sink)

    def __repr__(self) -> str:
        return f"<WebRTCSource {self.name!r} {self.tracks}>"
