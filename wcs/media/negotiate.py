"""
Offer/answer for the two shapes of session we answer: a publisher's offer
(we receive) and a player's receive-only offer (we send).

Each answered m-line gets exactly one codec, so that what a publisher sends
and what a player gets is known when the answer is made, and its RTX
payload type when the client offers one (L{wcs.media.rtx}; without it,
retransmissions come on the media SSRC). No header extensions are
negotiated (but a publisher's transport-wide sequence number,
L{wcs.media.bandwidth}): forwarded packets carry no extension whose ID
could mean something else to the player.
"""

from __future__ import annotations

import copy
import re
import uuid
from dataclasses import dataclass, field

from wcs.errors import StreamError
from wcs.media import info, rtx
from wcs.media.internals import (
    RTCDtlsParameters,
    RTCIceParameters,
    RTCRtcpFeedback,
    RTCRtpCodecParameters,
    RTCRtpParameters,
    and_direction,
    candidate_from_aioice,
    reverse_direction,
    sdp,
)
from wcs.media.rtp import random32, ssrcOrNone

KINDS = ("audio", "video")
# RFC 4566 token: what an m-line's media, proto and fmt fields are made of.
# A rejected m-line is echoed in the answer, so garbage there would make our
# own answer unparsable.
_TOKEN_CHARS = r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+"
_TOKEN = re.compile(_TOKEN_CHARS + r"\Z")
_PROTO = re.compile(f"{_TOKEN_CHARS}(/{_TOKEN_CHARS})*\\Z")
CLOCK_RATES = {"H264": 90000, "VP8": 90000, "opus": 48000, "PCMU": 8000, "PCMA": 8000}
KIND_OF = {"H264": "video", "VP8": "video", "opus": "audio", "PCMU": "audio", "PCMA": "audio"}
_CANONICAL = {name.lower(): name for name in CLOCK_RATES}
_FEEDBACK = {("nack", None), ("nack", "pli"), ("ccm", "fir")}
_H264_PROFILES = (sdp.H264Profile.PROFILE_CONSTRAINED_BASELINE, sdp.H264Profile.PROFILE_BASELINE)


def codecName(codec: RTCRtpCodecParameters) -> str | None:
    """
    Our name for an offered codec (C{'H264'}, C{'opus'}, ...), or None when
    we cannot take it: H.264 only in packetization mode 1 with a (constrained)
    baseline profile.
    """
    name = _CANONICAL.get(codec.name.lower())
    if name is None or codec.clockRate != CLOCK_RATES[name]:
        return None
    if name == "H264":
        try:
            if int(codec.parameters.get("packetization-mode", 0)) != 1:
                return None
            profile, _ = sdp.parse_h264_profile_level_id(
                str(codec.parameters.get("profile-level-id", "42e01f")))
        except (TypeError, ValueError):  # a=fmtp:... packetization-mode (no value)
            return None
        if profile not in _H264_PROFILES:
            return None
    return name


def preferences(text: str, kind: str) -> list[str]:
    """A C{media_*_codecs} setting as our codec names of C{kind}."""
    names = [_CANONICAL.get(item.strip().lower()) for item in text.split(",")]
    return [name for name in names if name is not None and KIND_OF[name] == kind]


@dataclass
class Section:
    """One m-line of the offer and how we answer it."""

    media: sdp.MediaDescription
    direction: str = "inactive"
    codec: RTCRtpCodecParameters | None = None  # the offer's, with its payload type
    ssrc: int | None = None  # publish: the peer's; play: ours
    rtx: RTCRtpCodecParameters | None = None  # the codec's RTX payload type, if offered
    rtxSsrc: int | None = None  # publish: the peer's RTX SSRC, if announced; play: ours
    extensions: list = field(default_factory=list)  # header extensions we answer (bandwidth.py)
    rejected: bool = False
    trackId: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def kind(self) -> str:
        return self.media.kind

    @property
    def mid(self) -> str | None:
        return self.media.rtp.muxId

    @property
    def name(self) -> str | None:
        return codecName(self.codec) if self.codec is not None else None

    @property
    def active(self) -> bool:
        return not self.rejected and self.direction != "inactive" and self.codec is not None


def parseOffer(text: str) -> sdp.SessionDescription:
    try:
        offer = sdp.SessionDescription.parse(text)
    except Exception as e:
        raise StreamError(f"Invalid SDP offer: {e or type(e).__name__}") from None
    for media in offer.media:
        fields = [media.kind, *(str(f) for f in media.fmt)]
        if not media.fmt or not _PROTO.match(media.profile) \
                or not all(_TOKEN.match(f) for f in fields):
            raise StreamError("Invalid SDP offer: an m-line field is not an SDP token")
        if media.kind not in KINDS:
            continue
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise StreamError("Invalid SDP offer: no ICE credentials")
        if media.dtls is None or not media.dtls.fingerprints:
            raise StreamError("Invalid SDP offer: no DTLS fingerprint")
        if not media.rtcp_mux:
            raise StreamError("Invalid SDP offer: RTCP mux is required")
    return offer


def _offered(media: sdp.MediaDescription, name: str) -> RTCRtpCodecParameters | None:
    for codec in media.rtp.codecs:
        # An rtpmap for a format the m-line does not list is not offered
        # (and may name a payload type an answer must not use).
        if codecName(codec) == name and codec.payloadType in media.fmt:
            answer = copy.deepcopy(codec)
            answer.rtcpFeedback = [
                RTCRtcpFeedback(type=f.type, parameter=f.parameter)
                for f in codec.rtcpFeedback if (f.type, f.parameter) in _FEEDBACK]
            return answer
    return None


def _peerSsrc(media: sdp.MediaDescription) -> int | None:
    for group in media.ssrc_group:
        if group.semantic == "FID" and group.items:
            return ssrcOrNone(group.items[0])
    return ssrcOrNone(media.ssrc[0].ssrc) if media.ssrc else None


def planPublish(offer: sdp.SessionDescription, prefs: dict[str, list[str]],
                maxLines: int = 16) -> list[Section]:
    """
    Answer a publisher: receive each audio/video m-line it sends, in the
    first of our preferred codecs it offers. m-lines past the first
    C{maxLines} are refused (port 0), unread.
    """
    sections = []
    for index, media in enumerate(offer.media):
        section = Section(media)
        sections.append(section)
        if media.kind not in KINDS or index >= maxLines:
            section.rejected = True
            continue
        section.direction = _answerDirection("recvonly", media)
        for name in prefs.get(media.kind, ()):
            section.codec = _offered(media, name)
            if section.codec is not None:
                break
        section.ssrc = _peerSsrc(media)
        section.rtx = rtx.offered(media, section.codec)
        section.rtxSsrc = rtx.peerSsrc(media)
    _requireCodec(sections)
    return sections


def planPlay(offer: sdp.SessionDescription, tracks: dict[str, str],
             prefs: dict[str, list[str]], maxLines: int = 16) -> list[Section]:
    """
    Answer a player for a source whose tracks are C{tracks} (kind to codec):
    the source's own codec when offered (forwarded as it is), else the
    first of our preferred codecs offered (transcoded). m-lines past the
    first C{maxLines} are refused (port 0), unread.
    """
    sections = []
    seen: set[str] = set()
    for index, media in enumerate(offer.media):
        section = Section(media)
        sections.append(section)
        if media.kind not in KINDS or index >= maxLines:
            section.rejected = True
            continue
        source = tracks.get(media.kind)
        if source is None or media.kind in seen:
            continue  # inactive: nothing (more) to send of that kind
        for name in [source, *prefs.get(media.kind, ())]:
            section.codec = _offered(media, name)
            if section.codec is not None:
                break
        section.direction = _answerDirection("sendonly", media)
        if section.active:
            section.ssrc = random32()
            section.rtx = rtx.offered(media, section.codec, rtx.RTX_TIME)
            if section.rtx is not None:
                section.rtxSsrc = random32()
            seen.add(media.kind)
    _requireCodec(sections)
    return sections


def _answerDirection(ours: str, media: sdp.MediaDescription) -> str:
    # No direction attribute means sendrecv (RFC 4566 section 6).
    return and_direction(ours, reverse_direction(media.direction or "sendrecv"))


def _requireCodec(sections: list[Section]) -> None:
    if not any(section.active for section in sections):
        raise StreamError(info.NO_COMMON_CODECS)


def dtlsRole(offer: sdp.SessionDescription) -> str:
    """Our DTLS role: the offerer's opposite; client when it lets us choose."""
    for media in offer.media:
        if media.dtls is not None and media.dtls.role == "client":
            return "server"
    return "client"


def transportGroups(offer: sdp.SessionDescription, sections: list[Section],
                    maxTransports: int = 4) -> list[list[Section]]:
    """
    The sections that share one transport: each BUNDLE group of the offer,
    and every other accepted section alone; only groups that carry media
    (an active section), at most C{maxTransports} of them. Sections left
    without a transport are rejected (port 0): an offer cannot make us bind
    sockets for m-lines that carry nothing, or for more than the cap.
    """
    accepted = [s for s in sections if not s.rejected]
    byMid = {s.mid: s for s in reversed(accepted) if s.mid is not None}
    candidates: list[list[Section]] = []
    grouped: set[int] = set()
    for group in offer.group:
        if group.semantic != "BUNDLE":
            continue
        members = {id(byMid[mid]): byMid[mid] for mid in map(str, group.items)
                   if mid in byMid and id(byMid[mid]) not in grouped}
        if members:
            # In the order of the offer's m-lines, as before.
            candidates.append([s for s in accepted if id(s) in members])
            grouped.update(members)
    candidates.extend([s] for s in accepted if id(s) not in grouped)
    groups = [g for g in candidates if any(s.active for s in g)][:maxTransports]
    kept = {id(s) for g in groups for s in g}
    for section in accepted:
        if id(section) not in kept:
            section.rejected = True
    return groups


def buildAnswer(offer: sdp.SessionDescription, sections: list[Section], transports: dict,
                fingerprints: list, role: str, cname: str, streamId: str) -> str:
    """
    The answer SDP. C{transports} maps C{id(section)} to the
    L{wcs.media.ice.IceConnection} that serves it: its gathered candidates
    are the server's candidates, with end-of-candidates.
    """
    answer = sdp.SessionDescription()
    answer.origin = f"- {random32()} 2 IN IP4 0.0.0.0"
    answer.msid_semantic.append(sdp.GroupDescription(semantic="WMS", items=["*"]))
    answer.type = "answer"
    bundles = {}
    for section in sections:
        offered = section.media
        codec = section.codec
        listed = [c for c in offered.rtp.codecs if c.payloadType in offered.fmt]
        if codec is None and listed:
            # An inactive m-line still names a format, with its rtpmap.
            codec = copy.deepcopy(listed[0])
            codec.rtcpFeedback = []
        codecs = [codec] if codec is not None else []
        if codec is section.codec and section.rtx is not None and section.active:
            codecs.append(section.rtx)
        fmt = [c.payloadType for c in codecs] or offered.fmt[:1]
        media = sdp.MediaDescription(kind=offered.kind, port=9, profile=offered.profile, fmt=fmt)
        media.rtp = RTCRtpParameters(codecs=codecs, muxId=offered.rtp.muxId,
                                     headerExtensions=list(section.extensions))
        if offered.kind in KINDS:
            media.direction = section.direction
            media.rtcp_host, media.rtcp_port, media.rtcp_mux = "0.0.0.0", 9, True
        media.dtls = RTCDtlsParameters(fingerprints=fingerprints, role=role)
        connection = transports.get(id(section))
        if connection is None:
            # Rejected. Still with ICE credentials, which parsers require.
            media.port = 0
            anyConnection = next(iter(transports.values()))
            media.ice = RTCIceParameters(usernameFragment=anyConnection.local_username,
                                         password=anyConnection.local_password)
        else:
            media.ice = RTCIceParameters(usernameFragment=connection.local_username,
                                         password=connection.local_password)
            media.ice_candidates = [candidate_from_aioice(c) for c in connection.local_candidates]
            media.ice_candidates_complete = True
            media.host = media.ice_candidates[0].ip
            media.port = media.ice_candidates[0].port
            bundles.setdefault(id(connection), []).append(offered.rtp.muxId)
        if section.active and section.direction == "sendonly":
            media.msid = f"{streamId} {section.trackId}"
            media.ssrc = [sdp.SsrcDescription(ssrc=section.ssrc, cname=cname)]
            if section.rtx is not None:
                rtx.answerSsrcs(media, section.ssrc, section.rtxSsrc, cname)
        answer.media.append(media)
    offerBundled = any(g.semantic == "BUNDLE" for g in offer.group)
    for mids in bundles.values():
        if offerBundled and all(mid is not None for mid in mids):
            answer.group.append(sdp.GroupDescription(semantic="BUNDLE", items=mids))
    return str(answer)


def stripCandidates(text: str) -> str:
    """
    An offer as the SDK sends it: no candidates, no end-of-candidates, the
    discard address. Tests use it on aiortc's offers.
    """
    lines = [line for line in text.splitlines()
             if not line.startswith(("a=candidate:", "a=end-of-candidates"))]
    lines = [re.sub(r"^(m=\S+) \d+ ", r"\1 9 ", line) for line in lines]
    lines = [re.sub(r"^c=IN IP4 .*", "c=IN IP4 0.0.0.0", line) for line in lines]
    return "\r\n".join(lines) + "\r\n"
