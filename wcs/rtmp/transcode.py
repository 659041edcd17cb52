"""
What an RTMP player cannot take as it is: Opus and G.711 audio become AAC,
VP8 video becomes H.264 (PyAV codecs). AAC passes through.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Callable

import av

from wcs.frames import EncodedFrame
from wcs.logs import Logger
from wcs.rtmp import flv

log = Logger()

AAC_RATE = 48000
DECODERS = {"opus": "opus", "PCMU": "pcm_mulaw", "PCMA": "pcm_alaw"}


class AudioToAAC:
    """Decode one audio codec, encode AAC; gives FLV bodies, header first."""

    def __init__(self, codec: str):
        self.decoder = av.CodecContext.create(DECODERS[codec], "r")
        if codec != "opus":
            self.decoder.sample_rate = 8000
            self.decoder.layout = "mono"
        self.encoder = av.CodecContext.create("aac", "w")
        self.encoder.sample_rate = AAC_RATE
        self.encoder.layout = "stereo"
        self.encoder.format = "fltp"
        self.encoder.bit_rate = 96000
        self.encoder.open()
        self.resampler = av.AudioResampler(format="fltp", layout="stereo", rate=AAC_RATE)
        self.headerSent = False
        self.samples = 0
        self.startMs: int | None = None

    def __call__(self, frame: EncodedFrame, ms: int) -> list[tuple[int, bytes]]:
        if self.startMs is None:
            self.startMs = ms
        out: list[tuple[int, bytes]] = []
        if not self.headerSent:
            out.append((ms, flv.aacSequenceHeader(bytes(self.encoder.extradata))))
            self.headerSent = True
        try:
            decoded = self.decoder.decode(av.Packet(frame.data))
        except av.error.FFmpegError:
            return out  # a damaged packet costs its own 20 ms, nothing more
        for pcm in decoded:
            for resampled in self.resampler.resample(pcm):
                resampled.pts = None
                out += self._bodies(self.encoder.encode(resampled))
        return out

    def flush(self) -> list[tuple[int, bytes]]:
        """
        At the end: the frames the encoder still holds (AAC looks ahead,
        about 2 of its 1024-sample frames), as FLV bodies. Nothing more can
        be encoded after it.
        """
        if self.startMs is None:
            return []
        try:
            return self._bodies(self.encoder.encode(None))
        except av.error.FFmpegError:
            return []

    def _bodies(self, packets) -> list[tuple[int, bytes]]:
        out = []
        for packet in packets:
            at = self.startMs + self.samples * 1000 // AAC_RATE
            self.samples += 1024
            out.append((at, flv.aacBody(bytes(packet))))
        return out


class VideoToH264:
    """Decode VP8, encode H.264 constrained baseline for RTMP players."""

    def __init__(self, codec: str):
        self.decoder = av.CodecContext.create(codec.lower(), "r")
        # One thread each: the codec threads (wcs.offload) are the parallelism,
        # and they leave a core to the reactor.
        self.decoder.thread_count = 1
        self.encoder = None

    def _open(self, width: int, height: int) -> None:
        encoder = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height = width, height
        encoder.pix_fmt = "yuv420p"
        encoder.time_base = Fraction(1, 1000)
        encoder.options = {"profile": "baseline", "tune": "zerolatency",
                           "preset": "veryfast", "g": "60", "repeat-headers": "1",
                           "threads": "1"}
        encoder.bit_rate = 1_000_000
        encoder.open()
        self.encoder = encoder

    def __call__(self, frame: EncodedFrame) -> list[EncodedFrame]:
        try:
            pictures = self.decoder.decode(av.Packet(frame.data))
        except av.error.FFmpegError:
            return []
        out = []
        ms = int(frame.pts * frame.time_base * 1000)
        for picture in pictures:
            if self.encoder is None or (self.encoder.width, self.encoder.height) != \
                    (picture.width, picture.height):
                self._open(picture.width, picture.height)
            picture = picture.reformat(format="yuv420p")
            picture.pts, picture.time_base = ms, Fraction(1, 1000)
            for packet in self.encoder.encode(picture):
                out.append(EncodedFrame("video", "H264", bytes(packet), ms, Fraction(1, 1000),
                                        packet.is_keyframe))
        return out


class AACPassthrough:
    def __init__(self):
        self.config: bytes | None = None

    def __call__(self, frame: EncodedFrame, ms: int) -> list[tuple[int, bytes]]:
        out = []
        if frame.config and frame.config != self.config:
            self.config = frame.config
            out.append((ms, flv.aacSequenceHeader(frame.config)))
        if self.config is not None:
            out.append((ms, flv.aacBody(frame.data)))
        return out


def converterFor(kind: str, codec: str) -> Callable | None:
    """A converter for one player's track, or None if RTMP cannot carry it."""
    try:
        if kind == "audio":
            if codec == "AAC":
                return AACPassthrough()
            if codec in DECODERS:
                return AudioToAAC(codec)
        elif kind == "video" and codec == "VP8":
            return VideoToH264(codec)
    except av.error.FFmpegError as e:
        log.warn("cannot convert {kind} {codec} for RTMP: {error}", kind=kind, codec=codec,
                 error=e)
    return None
