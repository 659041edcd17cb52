"""
Tracks made from L{EncodedFrame}s of any L{IMediaSource}.

A L{FrameTrack} is an L{IMediaSink}: frames of one kind come in, RTP of the
player's codec goes out through the usual fan-out. When the player's codec
is the source's, frames are only packetized (an RTMP publisher's H.264 to a
WebRTC player); otherwise they are decoded and re-encoded once for every
player of that codec. The codec work runs in a L{wcs.offload.Worker}: in a
codec thread, one frame at a time, with a bounded queue that drops up to the
next keyframe when full; the RTP goes out from the event loop.
"""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction
from typing import Callable

import av
from zope.interface import implementer

from wcs.frames import EncodedFrame
from wcs.interfaces import IMediaSink, IMediaSource
from wcs.media import rtp
from wcs.media.internals import JitterFrame, RTCRtpCodecParameters, get_decoder, get_encoder
from wcs.media.negotiate import CLOCK_RATES, KIND_OF
from wcs.media.pacer import Pacer
from wcs.media.track import Track
from wcs.offload import Worker, trimFreedMemory


def _parameters(name: str) -> RTCRtpCodecParameters:
    return RTCRtpCodecParameters(mimeType=f"{KIND_OF[name]}/{name}",
                                 clockRate=CLOCK_RATES[name], payloadType=0)


def canDecode(codec: str) -> bool:
    if codec in CLOCK_RATES:
        return True
    try:
        av.Codec(codec.lower(), "r")
    except Exception:
        return False
    return True


class _AnyDecoder:
    """
    A PyAV decoder for codecs aiortc has none of (AAC from RTMP), with audio
    resampled to what aiortc's encoders take.
    """

    def __init__(self, codec: str, config: bytes | None, sampleRate: int | None = None):
        self.context = av.CodecContext.create(codec.lower(), "r")
        if config:
            self.context.extradata = config
        if sampleRate:
            # Flash's Nellymoser and Speex: mono, at the rate the FLV flags gave.
            self.context.sample_rate = sampleRate
            self.context.layout = "mono"
        self.resampler = av.AudioResampler(format="s16", layout="stereo", rate=48000)

    def decode(self, frame: JitterFrame) -> list:
        packet = av.Packet(frame.data)
        packet.pts = frame.timestamp
        packet.time_base = Fraction(1, 90000)
        out = []
        for decoded in self.context.decode(packet):
            if isinstance(decoded, av.AudioFrame):
                out.extend(self.resampler.resample(decoded))
            else:
                out.append(decoded)
        return out


def makeDecoder(codec: str, config: bytes | None = None, sampleRate: int | None = None):
    if codec in CLOCK_RATES:
        return get_decoder(_parameters(codec))
    return _AnyDecoder(codec, config, sampleRate)


@implementer(IMediaSink)
class FrameTrack(Track):
    def __init__(self, source: IMediaSource, kind: str, inputCodec: str, codec: str,
                 idle: Callable[["FrameTrack"], None], bitrate: int = 0, pace: float = 0):
        super().__init__(kind, codec, CLOCK_RATES[codec])
        self.source = source
        self.inputCodec = inputCodec
        # A bitrate: a lower rendition of the same codec (wcs.media.narrow).
        self.transcoding = inputCodec != codec or bitrate > 0
        self.idle = idle
        self.forceKeyframe = False
        self.seq = rtp.random16()
        self.tsBase = rtp.random32()
        self.decoder = None
        self.encoder = get_encoder(_parameters(codec))
        if bitrate > 0 and hasattr(self.encoder, "target_bitrate"):
            self.encoder.target_bitrate = bitrate  # the encoder clamps it to its range
        self.frames = 0
        # A lower rendition's packets go out at most at C{pace} times its
        # bitrate (wcs.media.pacer): its players sit behind narrow links.
        # The rate the encoder was left with: it clamps what it is given.
        rate = getattr(self.encoder, "target_bitrate", bitrate)
        self.pacer = (Pacer(self.clock, pace * rate / 8, self.fanout)
                      if bitrate > 0 and pace > 0 else None)
        self.worker: Worker[list] | None = Worker(
            repr(self), self._convert, self._sendAll, onDrop=source.requestKeyframe,
            callFromThread=asyncio.get_running_loop().call_soon_threadsafe)
        source.attach(self)

    # IMediaSink

    def writeFrame(self, frame: EncodedFrame) -> None:
        if frame.kind != self.kind or self.ended or self.worker is None:
            return
        self.worker.submit(frame)

    def sourceEnded(self) -> None:
        self.stop()
        self.end()

    # Track

    def sendKeyframeRequest(self) -> None:
        if self.transcoding:
            self.forceKeyframe = True
        else:
            self.source.requestKeyframe()

    def unsubscribe(self, subscription) -> None:
        super().unsubscribe(subscription)
        if not self.subscribers:
            self.stop()
            self.idle(self)

    def stop(self) -> None:
        if self.pacer is not None:
            self.pacer.stop()
        if self.worker is not None:
            self.worker.stop(self._release, drain=False)
            self.worker = None
            self.source.detach(self)

    def _release(self) -> None:
        """In the codec thread, after its last frame: the codecs go, and their memory."""
        decoded, self.decoder, self.encoder = self.decoder is not None, None, None
        if decoded:  # a packetizer alone holds no codec buffers
            trimFreedMemory()

    # The codec work

    def _convert(self, frame: EncodedFrame) -> list[tuple[list[bytes], int]]:
        """In a codec thread: one source frame to RTP payloads of our codec."""
        force, self.forceKeyframe = self.forceKeyframe, False
        if not self.transcoding:
            packet = av.Packet(frame.data)
            packet.pts = frame.pts
            packet.time_base = frame.time_base
            return [self.encoder.pack(packet)]
        if self.decoder is None:
            if self.kind == "video" and not frame.keyframe:
                return []  # nothing decodes before the first keyframe
            self.decoder = makeDecoder(frame.codec, frame.config, frame.sample_rate)
        timestamp = int(frame.pts * frame.time_base * CLOCK_RATES.get(frame.codec, 90000))
        out = []
        for decoded in self.decoder.decode(JitterFrame(frame.data, timestamp)):
            payloads, ts = self.encoder.encode(decoded, force)
            force = False
            if payloads:
                out.append((payloads, ts))
        self.frames += 1
        return out

    def _sendAll(self, encoded: list[tuple[list[bytes], int]]) -> None:
        for payloads, timestamp in encoded:
            self._send(payloads, timestamp)

    def _send(self, payloads: list[bytes], timestamp: int) -> None:
        timestamp = (timestamp + self.tsBase) & 0xFFFFFFFF
        last = len(payloads) - 1
        for i, payload in enumerate(payloads):
            if self.kind == "video":
                keyframe = i == 0 and (rtp.vp8StartsKeyframe(payload) if self.codec == "VP8"
                                       else rtp.h264StartsKeyframe(payload, True))
            else:
                keyframe = True
            if keyframe:
                self.lastKeyframe = time.monotonic()
            self.seq = (self.seq + 1) & 0xFFFF
            marker = rtp.MARKER_BIT if i == last and self.kind == "video" else 0
            if self.pacer is not None:
                self.pacer.push(len(payload) + rtp.HEADER.size, 0, marker, self.seq, timestamp,
                                payload, keyframe)
            else:
                self.fanout(0, marker, self.seq, timestamp, payload, keyframe)

    def __repr__(self) -> str:
        return f"<FrameTrack {self.inputCodec}->{self.codec} of {self.source!r}>"
