"""
The recording choices that need a transcode: Opus audio to AAC
(C{record_audio_codec=aac}, for old players) and VP8 video to H.264
(C{record_vp8=h264}, MP4 instead of WebM). The converters are the RTMP
transport's (same needs: AAC and H.264 for FLV-era players). Like the
writer behind it, it runs in the recording's worker thread (L{wcs.offload}).
"""

from __future__ import annotations

from fractions import Fraction

from zope.interface import implementer

from wcs.frames import EncodedFrame
from wcs.interfaces import IMediaSink
from wcs.rtmp import flv
from wcs.rtmp.transcode import AudioToAAC, VideoToH264

MS = Fraction(1, 1000)


def recordedTracks(tracks: dict[str, str], audioCodec: str, vp8: str) -> dict[str, str]:
    """The tracks as they will be written, once the configured transcodes are done."""
    out = dict(tracks)
    if audioCodec == "aac" and out.get("audio") in ("opus", "PCMU", "PCMA"):
        out["audio"] = "AAC"
    if vp8 == "h264" and out.get("video") == "VP8":
        out["video"] = "H264"
    return out


@implementer(IMediaSink)
class Transcoding:
    """Transcodes what C{tracks} says must change, hands everything on to C{sink}."""

    def __init__(self, sink: IMediaSink, source: dict[str, str], written: dict[str, str]):
        self.sink = sink
        self.video = VideoToH264(source["video"]) \
            if source.get("video") != written.get("video") else None
        self.audio = AudioToAAC(source["audio"]) \
            if source.get("audio") != written.get("audio") else None
        self.config: bytes | None = None
        self.flushed = False

    def writeFrame(self, frame: EncodedFrame) -> None:
        if self.flushed:
            return  # the end: the encoders take nothing more
        if frame.kind == "video" and self.video is not None:
            for each in self.video(frame):
                self.sink.writeFrame(each)
        elif frame.kind == "audio" and self.audio is not None:
            self._audio(self.audio(frame, int(frame.pts * frame.time_base * 1000)))
        else:
            self.sink.writeFrame(frame)

    def _audio(self, bodies: list[tuple[int, bytes]]) -> None:
        for timestamp, body in bodies:
            if body[1] == flv.SEQUENCE_HEADER:
                self.config = body[2:]
            elif self.config is not None:
                self.sink.writeFrame(EncodedFrame("audio", "AAC", body[2:], timestamp, MS,
                                                  True, self.config,
                                                  sample_rate=flv.aacSampleRate(self.config)))

    def _flush(self) -> None:
        """The AAC encoder's last frames go into the file before it is closed (once)."""
        if not self.flushed and self.audio is not None:
            self._audio(self.audio.flush())
        self.flushed = True

    def sourceEnded(self) -> None:
        self._flush()
        self.sink.sourceEnded()

    def close(self) -> None:
        self._flush()
        self.sink.close()
