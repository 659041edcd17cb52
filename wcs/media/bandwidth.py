"""
Bandwidth of publishers: what we tell their encoders and estimators.

- Transport-wide congestion control (L{wcs.media.twcc}): negotiated with
  publishers that offer it (the header extension and C{a=rtcp-fb:*
  transport-cc}), so that a browser's estimator works on our uplink's
  delay as well as its loss.
- Caps: C{room_max_bitrate} (the server's, for every publisher) and the
  SDK's C{constraints.video.maxBitrate} (per stream), the lower of the two;
  told to the publisher as C{b=AS}/C{b=TIAS} on the video m-lines of our
  answer and as REMB (C{goog-remb}, RFC draft-alvestrand-rmcat-remb), which
  both browsers and aiortc apply to their encoder.
- No cap, and a publisher that negotiated C{goog-remb} but not
  transport-cc (aiortc, and other encoders without an estimator of their
  own): REMB of C{media_remb_uncapped}, lowered while the publisher loses
  more than a tenth of its packets (L{LossBasedRate}). Without it such an
  encoder stays at its start rate (aiortc's VP8: 500 kbit/s) for good.
  Janus sends REMB only with a room bitrate; browsers that negotiated
  transport-cc estimate on their own and get none, as before.

Sans-I/O: L{remb} encodes a REMB packet, L{streamCap} reads the cap of a
request, L{negotiate} adds the feedback and extension to a publisher's
answer plan, L{withBandwidth} adds the C{b=} lines to an answer.
"""

from __future__ import annotations

import re
import struct

from wcs.config import Key, declare
from wcs.media.internals import RTCRtcpFeedback, RTCRtpHeaderExtensionParameters
from wcs.media.twcc import URI as TWCC_URI
from wcs.media.twcc import TwccFeedback

declare(
    Key("room_max_bitrate", "int", 0,
        "kbit/s a publisher's video may use (b=AS and REMB in its answer and feedback); "
        "the SDK's constraints.video.maxBitrate lowers it per stream; 0: no cap"),
    Key("media_transport_cc", "bool", True,
        "negotiate transport-wide congestion control with publishers that offer it and "
        "send them its feedback"),
    Key("media_remb_uncapped", "int", 1500,
        "kbit/s told as REMB, when no cap is set, to a publisher whose video negotiated "
        "goog-remb but not transport-cc (it has no estimate of its own: aiortc's VP8 "
        "otherwise stays at 500); lowered while it loses over 10 %; 0: none"),
)

PSFB = 206
FMT_APP = 15
REMB_MIN = 10  # kbit/s: a cap below is taken for a mistake and ignored
REMB_MAX = 100_000  # kbit/s

_FEEDBACK_TWCC = ("transport-cc", None)
_FEEDBACK_REMB = ("goog-remb", None)


def remb(senderSsrc: int, bitrate: int, ssrcs: list[int]) -> bytes:
    """
    A REMB packet: C{bitrate} (bit/s) as an 18-bit mantissa and a 6-bit
    exponent, rounded down, for the streams C{ssrcs}.
    """
    bitrate = max(0, int(bitrate))
    exponent = 0
    while bitrate >> exponent > 0x3FFFF:
        exponent += 1
    mantissa = bitrate >> exponent
    if exponent > 63:
        exponent, mantissa = 63, 0x3FFFF
    ssrcs = ssrcs[:255]
    header = struct.pack("!BBHII4sBBH", 0x80 | FMT_APP, PSFB, 4 + len(ssrcs), senderSsrc, 0,
                         b"REMB", len(ssrcs), exponent << 2 | mantissa >> 16,
                         mantissa & 0xFFFF)
    return header + struct.pack(f"!{len(ssrcs)}I", *ssrcs)


def _kbps(value) -> int:
    """A client's bitrate option as kbit/s, 0 when absent or not sane."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return 0
    try:
        number = int(float(value))
    except (TypeError, ValueError, OverflowError):
        return 0
    return number if REMB_MIN <= number <= REMB_MAX else 0


def streamCap(request, settings) -> int:
    """
    The kbit/s a publisher's video may use, 0 for none: the lower of
    C{room_max_bitrate} and the SDK's C{constraints.video.maxBitrate} (it
    sends the same value as C{maxBitrate} in the message, which counts
    when the constraints have none).
    """
    caps = [settings.room_max_bitrate if settings.room_max_bitrate > 0 else 0]
    constraints = getattr(request, "constraints", None) or {}
    video = constraints.get("video") if isinstance(constraints, dict) else None
    asked = _kbps(video.get("maxBitrate")) if isinstance(video, dict) else 0
    if not asked:
        raw = getattr(request, "raw", None)
        asked = _kbps(raw.get("maxBitrate")) if isinstance(raw, dict) else 0
    caps.append(asked)
    caps = [cap for cap in caps if cap > 0]
    return min(caps) if caps else 0


def negotiate(sections, transportCc: bool) -> None:
    """
    Add to a publisher's answer plan (L{wcs.media.negotiate.Section}s) what
    it offered of C{goog-remb} and, when C{transportCc}, of transport-wide
    congestion control: the feedback on the chosen codec and the header
    extension with the offer's ID (C{section.extensions}).
    """
    for section in sections:
        if not section.active:
            continue
        offered = next((c for c in section.media.rtp.codecs
                        if c.payloadType == section.codec.payloadType), None)
        if offered is None:
            continue
        kinds = {(f.type, f.parameter) for f in offered.rtcpFeedback}
        have = {(f.type, f.parameter) for f in section.codec.rtcpFeedback}
        wanted = [_FEEDBACK_REMB] if section.kind == "video" else []
        extension = next((e for e in section.media.rtp.headerExtensions if e.uri == TWCC_URI),
                         None)
        if transportCc and extension is not None and _FEEDBACK_TWCC in kinds:
            wanted.append(_FEEDBACK_TWCC)
            section.extensions = [RTCRtpHeaderExtensionParameters(id=extension.id,
                                                                  uri=extension.uri)]
        for kind in wanted:
            if kind in kinds and kind not in have:
                section.codec.rtcpFeedback.append(RTCRtcpFeedback(type=kind[0],
                                                                  parameter=kind[1]))


def transportCcId(sections) -> int | None:
    """The transport-wide sequence number's extension ID of these sections, if negotiated."""
    for section in sections:
        for extension in getattr(section, "extensions", ()):
            if extension.uri == TWCC_URI:
                return extension.id
    return None


_MLINE = re.compile(r"^m=(\S+) (\d+) ")


def withBandwidth(answer: str, kbps: int) -> str:
    """
    C{answer} with C{b=AS} (kbit/s) and C{b=TIAS} (bit/s, RFC 3890) on each
    video m-line that is not refused, after its C{c=} line as RFC 4566
    orders them.
    """
    if kbps <= 0:
        return answer
    out = []
    video = False
    for line in answer.split("\r\n"):
        out.append(line)
        match = _MLINE.match(line)
        if match:
            video = match.group(1) == "video" and match.group(2) != "0"
        elif video and line.startswith("c="):
            out += [f"b=AS:{kbps}", f"b=TIAS:{kbps * 1000}"]
            video = False
    return "\r\n".join(out)


def rembOnly(sections) -> bool:
    """Whether these sections' video negotiated C{goog-remb} and no transport-wide feedback."""
    if transportCcId(sections) is not None:
        return False
    return any(section.active and section.kind == "video" and any(
        (f.type, f.parameter) == _FEEDBACK_REMB for f in section.codec.rtcpFeedback)
        for section in sections)


class LossBasedRate:
    """
    The loss-based half of Google congestion control (draft-ietf-rmcat-gcc-02
    section 6), once a receiver report: over 10 % lost, the rate times
    (1 - loss / 2); under 2 %, 5 % more, up to C{ceiling}; between, held (a
    lossy radio link loses a few percent whatever the rate).
    """

    FLOOR = 100  # kbit/s: aiortc's encoders stop lower anyway

    def __init__(self, ceiling: int):
        self.ceiling = self.kbps = ceiling

    def update(self, fractionLost: int) -> int:
        """C{fractionLost}: RFC 3550's 8-bit fraction of the last interval. The new kbit/s."""
        loss = fractionLost / 256
        if loss > 0.1:
            self.kbps = max(self.FLOOR, int(self.kbps * (1 - loss / 2)))
        elif loss < 0.02:
            self.kbps = min(self.ceiling, int(self.kbps * 1.05) + 1)
        return self.kbps


class PublisherBandwidth:
    """
    A publish session's part of the above: the plan and the answer get the
    feedback, extension and C{b=} lines; once connected each transport
    that negotiated it sends transport-wide feedback (a L{TwccFeedback}),
    and the cap goes out as REMB with each receiver report.
    """

    def __init__(self, request, settings, clock):
        self.cap = streamCap(request, settings)  # kbit/s, 0: none
        self.uncapped = settings.media_remb_uncapped
        self.rates: dict[int, LossBasedRate] = {}  # id(transport): REMB-only, no cap
        self.transportCc = settings.media_transport_cc
        self.clock = clock
        self.feedback: list = []  # TwccFeedback of each transport
        self.rembSent = 0

    def plan(self, sections) -> None:
        negotiate(sections, self.transportCc)

    def answer(self, text: str) -> str:
        return withBandwidth(text, self.cap)

    def connected(self, groups) -> None:
        """C{groups}: (transport, its sections) of the session."""
        for transport, sections in groups:
            ident = transportCcId(sections)
            if ident is not None:
                feedback = TwccFeedback(self.clock, ident, transport.rtcpSsrc,
                                        transport.sendRtcp)
                transport.transportWide = feedback
                self.feedback.append(feedback)
            elif not self.cap and self.uncapped > 0 and rembOnly(sections):
                self.rates[id(transport)] = LossBasedRate(self.uncapped)

    def report(self, transport, ssrcs: list[int], fractionLost: int = 0) -> bytes:
        """
        The REMB to send with a receiver report of C{transport} (the caller
        puts both in one compound packet: one protect, one datagram), or
        C{b""}: the cap, if any; else a REMB-only publisher's loss-based
        rate (C{fractionLost}: the most its tracks lost, of 256).
        """
        if not ssrcs:
            return b""
        kbps = self.cap
        if not kbps:
            rate = self.rates.get(id(transport))
            if rate is None:
                return b""
            kbps = rate.update(fractionLost)
        self.rembSent += 1
        return remb(transport.rtcpSsrc, kbps * 1000, ssrcs)

    def stop(self) -> None:
        for feedback in self.feedback:
            feedback.stop()
