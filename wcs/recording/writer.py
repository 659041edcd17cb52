"""
Writing one stream's encoded frames to a file, without decoding.

While a stream records, its frames are muxed into MPEG-TS: a TS file is
readable up to wherever it was cut, so a crash (even SIGKILL) loses at most
what the OS had not written. When the stream ends, the TS is remuxed, still
without decoding, into the MP4 whose name the client was given.

A L{StreamWriter} is called from one thread at a time, the recording's
worker (L{wcs.offload.OffloadedSink}), never the reactor's: each mux call
writes to the file.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
from zope.interface import implementer

from wcs.frames import EncodedFrame
from wcs.interfaces import IMediaSink
from wcs.logs import Logger

log = Logger()

TS_CLOCK = Fraction(1, 90000)
# What MPEG-TS (and then MP4) can carry as it came; other codecs are left
# out of the file, with one log line.
MUXABLE = {"H264": "h264", "opus": "opus", "AAC": "aac", "VP8": "vp8"}
# VP8 cannot go into MPEG-TS (nor H.264 into WebM): a stream with VP8 video
# is written straight to WebM, which is readable when cut short too.
WEBM_CODECS = {"VP8", "opus"}


def containerFor(tracks: dict[str, str]) -> str:
    return "webm" if tracks.get("video") == "VP8" else "mpegts"


def vp8Size(data: bytes) -> tuple[int, int]:
    """Width and height from a VP8 keyframe's header (RFC 6386 9.1)."""
    if len(data) >= 10 and data[3:6] == b"\x9d\x01\x2a":
        return (int.from_bytes(data[6:8], "little") & 0x3FFF,
                int.from_bytes(data[8:10], "little") & 0x3FFF)
    return 0, 0
# How long after the first keyframe to wait for audio before starting without;
# and at most how many frames to hold meanwhile (timestamps that never move
# must not make that wait endless).
AUDIO_WAIT = 2.0
PENDING_MAX = 300


def startsFile(video: bool, frame: EncodedFrame) -> bool:
    """Whether a file can start at C{frame}: a video keyframe, any frame without video."""
    return not video or (frame.kind == "video" and frame.keyframe)


def adtsHeader(config: bytes, size: int) -> bytes:
    """The 7-byte ADTS header of one raw AAC frame, from its AudioSpecificConfig."""
    objectType = config[0] >> 3
    rateIndex = ((config[0] & 7) << 1) | (config[1] >> 7)
    channels = (config[1] >> 3) & 0xF
    length = size + 7
    return bytes([
        0xFF, 0xF1,
        ((objectType - 1) << 6) | (rateIndex << 2) | (channels >> 2),
        ((channels & 3) << 6) | (length >> 11),
        (length >> 3) & 0xFF,
        ((length & 7) << 5) | 0x1F,
        0xFC,
    ])


@implementer(IMediaSink)
class StreamWriter:
    """
    An L{IMediaSink} writing one stream to C{path} (MPEG-TS). It starts at the
    first video keyframe (audio before it is dropped) so the file plays from
    its first byte; a stream without video starts at once. The file is opened
    once the first audio frame has come too (its sample rate is needed), or
    L{AUDIO_WAIT} seconds after, without audio.

    The first error writing the file (it cannot be made, the disk is full)
    ends the recording: the frames after it are dropped, and C{onFailure}
    is called once with the error, so the recorder can detach the writer
    and tell the publisher. A packet the muxer refuses costs itself only.
    """

    def __init__(self, path: Path, tracks: dict[str, str], onFailure=None):
        self.path = path
        self.onFailure = onFailure
        self.tracks = dict(tracks)
        self.container = None
        self.streams: dict[str, object] = {}
        self.base: Fraction | None = None
        self.last: dict[str, int] = {}
        self.pending: list[EncodedFrame] = []
        self.audioConfig: bytes | None = None
        self.failed = False
        self.frames = 0
        self.closed = False

    def _open(self, audioRate: int | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Written out packet by packet, interleaved over at most 0.5 s: what
        # reached us is in the file, not in a buffer a crash would lose.
        format = containerFor(self.tracks)
        self.container = av.open(str(self.path), "w", format=format,
                                 options={"flush_packets": "1",
                                          "max_interleave_delta": "500000"})
        for kind, codec in self.tracks.items():
            name = MUXABLE.get(codec)
            if format == "webm" and codec not in WEBM_CODECS:
                name = None
            if name is None:
                log.warn("{path}: {kind} in {codec} is not recorded (not muxable as is)",
                         path=str(self.path), kind=kind, codec=codec)
                continue
            if kind == "audio":
                if audioRate is None:
                    log.warn("{path}: no audio came, recorded without it", path=str(self.path))
                    continue
                # A codec-less mux stream cannot say how many channels there
                # are (players then refuse the audio): declare the stream with
                # an encoder context, opened once for its parameters; packets
                # are still muxed as they came.
                encoder = "libopus" if codec == "opus" else "aac"
                stream = self.container.add_stream(encoder, rate=audioRate,
                                                   layout=self.audioLayout)
            elif codec == "VP8":
                width, height = vp8Size(self.pending[0].data)
                stream = self.container.add_mux_stream(name, width=width, height=height)
            else:
                stream = self.container.add_mux_stream(name)
            stream.time_base = TS_CLOCK
            self.streams[kind] = stream

    def writeFrame(self, frame: EncodedFrame) -> None:
        if self.closed:
            return
        try:
            if self.container is None:
                self._start(frame)
            else:
                self._write(frame)
        except (OSError, av.error.FFmpegError) as e:
            # Opening or writing the file failed (PyAV's errors with an
            # errno are OSErrors too): stop here, once.
            self._fail(e)

    def _fail(self, error: Exception) -> None:
        self.failed = True
        self.pending = []
        self.close()
        onFailure, self.onFailure = self.onFailure, None
        if onFailure is not None:
            onFailure(error)

    @property
    def audioLayout(self) -> str:
        """Stereo for WebRTC Opus (always two channels); AAC says in its config."""
        config = self.audioConfig
        if config and len(config) >= 2 and ((config[1] >> 3) & 0xF) == 1:
            return "mono"
        return "stereo"

    def _start(self, frame: EncodedFrame) -> None:
        """Gather the first frames until the file can be opened."""
        if not self.pending and not startsFile("video" in self.tracks, frame):
            return
        self.pending.append(frame)
        audio = next((f for f in self.pending if f.kind == "audio"), None)
        waited = float((frame.pts * frame.time_base) - (self.pending[0].pts * self.pending[0].time_base))
        if audio is None and "audio" in self.tracks and waited < AUDIO_WAIT \
                and len(self.pending) < PENDING_MAX:
            return
        self._begin()

    def _begin(self) -> None:
        """Open the file (with audio if a frame of it came) and write what is pending."""
        audio = next((f for f in self.pending if f.kind == "audio"), None)
        rate = None if audio is None else (48000 if audio.codec == "opus" else audio.sample_rate)
        self.audioConfig = audio.config if audio is not None else None
        self._open(rate)
        pending, self.pending = self.pending, []
        for each in pending:
            self._write(each)

    def _write(self, frame: EncodedFrame) -> None:
        stream = self.streams.get(frame.kind)
        if stream is None:
            return
        data = frame.data
        if frame.codec == "AAC":
            if not frame.config:
                return
            data = adtsHeader(frame.config, len(data)) + data
        # Exactly (time_base is a Fraction), rounded: in floats, frames 1/15 s
        # apart at an RTP clock's large origin came out 5999 to 6001 ticks apart.
        seconds = frame.pts * frame.time_base
        if self.base is None:
            self.base = seconds
        # Timestamps from 0, never going back (TS muxers refuse that).
        pts = max(self.last.get(frame.kind, -1) + 1, round((seconds - self.base) * 90000))
        self.last[frame.kind] = pts
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        packet.time_base = TS_CLOCK
        packet.stream = stream
        packet.is_keyframe = frame.keyframe
        try:
            self.container.mux(packet)
        except OSError:
            raise  # the file, not the packet: see writeFrame
        except av.error.FFmpegError as e:
            # One bad packet costs itself, not the recording; said once.
            if not self.failed:
                log.warn("{path}: packets not written: {error}", path=str(self.path), error=e)
                self.failed = True
            return
        self.frames += 1

    def sourceEnded(self) -> None:
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        if self.pending and self.container is None:
            # The stream ended while the file waited for its audio: what
            # came is written all the same.
            try:
                self._begin()
            except (OSError, av.error.FFmpegError) as e:
                self._fail(e)  # closes
                return
        self.closed = True
        container, self.container = self.container, None
        if container is not None:
            try:
                container.close()
            except (OSError, av.error.FFmpegError) as e:
                log.warn("{path}: not closed cleanly: {error}", path=str(self.path), error=e)


def remuxToMP4(source: Path, target: Path, shift: float = 0.0) -> None:
    """
    Copy every packet of a recording's TS into an MP4 (no decoding). Runs in
    a worker thread; the TS is removed only once the MP4 is complete.

    @param shift: seconds of black video and silence to put first (aligned
        recordings): encoded here, so still nothing is decoded.
    """
    partial = target.with_suffix(".mp4.part")
    with av.open(str(source)) as inFile:
        with av.open(str(partial), "w", format="mp4") as outFile:
            mapping = {}
            for stream in inFile.streams:
                if stream.type in ("video", "audio"):
                    mapping[stream.index] = outFile.add_stream_from_template(stream)
            if shift > 0:
                for index, out in mapping.items():
                    for packet in padding(inFile.streams[index], shift):
                        packet.stream = out
                        outFile.mux(packet)
            first: dict[int, int] = {}
            for packet in inFile.demux(*[inFile.streams[i] for i in mapping]):
                if packet.dts is None:
                    continue
                if shift > 0:
                    base = first.setdefault(packet.stream.index, packet.dts)
                    offset = int(shift / packet.time_base) - base
                    packet.dts += offset
                    packet.pts = packet.pts + offset if packet.pts is not None else packet.dts
                packet.stream = mapping[packet.stream.index]
                outFile.mux(packet)
    partial.rename(target)
    source.unlink()


PAD_FPS = 15


def padding(stream, seconds: float) -> list:
    """
    Encoded black frames of the stream's own size, or silence in its own
    codec and rate, lasting C{seconds}, with timestamps from 0.
    """
    packets = []
    if stream.type == "video":
        ctx = stream.codec_context
        encoder = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height, encoder.pix_fmt = ctx.width, ctx.height, "yuv420p"
        encoder.time_base = stream.time_base
        # Parameter sets in-band: the stream's own ones follow at its first keyframe.
        encoder.options = {"profile": "baseline", "tune": "zerolatency", "repeat-headers": "1",
                           "g": str(PAD_FPS)}
        encoder.open()
        black = av.VideoFrame(ctx.width, ctx.height, "yuv420p")
        black.planes[0].update(bytes([16]) * black.planes[0].buffer_size)
        for plane in black.planes[1:]:
            plane.update(bytes([128]) * plane.buffer_size)
        for i in range(int(seconds * PAD_FPS)):
            black.pts = int(i / PAD_FPS / stream.time_base)
            black.time_base = stream.time_base
            packets += encoder.encode(black)
        packets += encoder.encode(None)
    else:
        ctx = stream.codec_context
        name = "libopus" if ctx.name == "opus" else ctx.name
        encoder = av.CodecContext.create(name, "w")
        encoder.sample_rate = ctx.sample_rate or 48000
        encoder.layout = ctx.layout.name if ctx.layout.nb_channels else "stereo"
        encoder.format = encoder.codec.audio_formats[0].name
        encoder.open()
        size = encoder.frame_size or 960
        rate = encoder.sample_rate
        for start in range(0, int(seconds * rate), size):
            silence = av.AudioFrame(format=encoder.format.name, layout=encoder.layout.name,
                                    samples=size)
            for plane in silence.planes:
                plane.update(bytes(plane.buffer_size))
            silence.sample_rate, silence.pts = rate, start
            silence.time_base = Fraction(1, rate)
            packets += encoder.encode(silence)
        packets += encoder.encode(None)
        for packet in packets:  # into the stream's time base
            packet.pts = packet.dts = int(packet.pts * Fraction(1, rate) / stream.time_base)
            packet.time_base = stream.time_base
    # Inside [0, seconds) only: an encoder's pre-skip and flush would make the
    # stream's own packets (from `seconds` on) go back in time.
    end = int(seconds / stream.time_base)
    return [p for p in packets if p.pts is not None and 0 <= p.pts < end
            and (p.dts is None or p.dts < end)]
