"""
The unit of media exchanged between transports: one encoded frame.
"""

from dataclasses import dataclass, field
from fractions import Fraction


@dataclass(slots=True)
class EncodedFrame:
    """
    One encoded audio or video frame.

    @ivar kind: C{"audio"} or C{"video"}.
    @ivar codec: C{"H264"} (Annex-B, start codes), C{"VP8"}, C{"opus"},
        C{"PCMU"}, C{"PCMA"}, C{"AAC"} (raw, no ADTS), C{"speex"}, ...
    @ivar data: the frame's bytes.
    @ivar pts: presentation time in C{time_base} units; monotonic per track.
    @ivar time_base: e.g. C{Fraction(1, 90000)} for video.
    @ivar keyframe: a frame a decoder can start from.
    @ivar config: codec configuration where the codec needs it out of band
        (AAC AudioSpecificConfig; H.264 SPS/PPS are in-band on keyframes).
    @ivar sample_rate: for audio whose packets do not say it (Nellymoser,
        Speex from Flash): the rate a decoder must be opened with.
    """

    kind: str
    codec: str
    data: bytes
    pts: int
    time_base: Fraction
    keyframe: bool = False
    config: bytes | None = field(default=None)
    sample_rate: int | None = None
