"""
RTX (RFC 4588): retransmissions on a stream of their own, as browsers send
and expect them when an offer pairs an C{rtx} payload type with a codec
(C{a=fmtp:<rtx> apt=<codec>}) and names the RTX SSRC in
C{a=ssrc-group:FID <media> <rtx>}.

An RTX packet is the original packet with its own payload type, SSRC and
sequence numbers, and the original sequence number (OSN) in the first two
payload bytes. A receiver can thus tell a retransmission from a late
packet, and a sender's loss statistics and bandwidth estimate see its own
stream undisturbed.

- Offer/answer: L{offered} (the rtx payload type of a chosen codec) and
  L{peerSsrc} (the publisher's RTX SSRC); L{wcs.media.negotiate} answers
  with them.
- Publisher leg: L{RtxReceiver} unwraps what the publisher resends on its
  RTX SSRC and hands the original packet to the video track, which fills
  the gap as it does with a plain retransmission.
- Player leg: L{RtxSender} wraps what a player's NACK asks for
  (L{wcs.media.track.Subscription.nackReceived}), within the same budgets.

Clients that offer no RTX get plain retransmissions on the media SSRC.
"""

from __future__ import annotations

import struct

from wcs.media import rtp
from wcs.media.internals import RTCRtpCodecParameters, sdp

# ms a packet stays in a player's history (512 packets): a few seconds at
# 1 Mbit/s, about one at 4 Mbit/s. Advertised to players as rtx-time.
RTX_TIME = 1000

_OSN = struct.Struct("!H")


def isRtx(codec: RTCRtpCodecParameters) -> bool:
    return codec.name.lower() == "rtx"


def offered(media: sdp.MediaDescription, codec: RTCRtpCodecParameters | None,
            rtxTime: int | None = None) -> RTCRtpCodecParameters | None:
    """
    The offer's RTX payload type for C{codec} (its C{apt}), as the answer
    lists it; None when the offer has none (or for audio: browsers do not
    resend audio). C{rtxTime}: our C{rtx-time} when we are the sender;
    else the offerer's own, if it gave one, is echoed.
    """
    if codec is None or media.kind != "video":
        return None
    for candidate in media.rtp.codecs:
        if isRtx(candidate) and candidate.payloadType in media.fmt \
                and candidate.clockRate == codec.clockRate \
                and candidate.parameters.get("apt") == codec.payloadType:
            parameters = {"apt": codec.payloadType}
            time = rtxTime if rtxTime is not None else candidate.parameters.get("rtx-time")
            if str(time).isdigit() and len(str(time)) < 8:  # aiortc leaves it a string
                parameters["rtx-time"] = int(time)
            return RTCRtpCodecParameters(mimeType=f"{media.kind}/rtx",
                                         clockRate=candidate.clockRate,
                                         payloadType=candidate.payloadType,
                                         parameters=parameters)
    return None


def peerSsrc(media: sdp.MediaDescription) -> int | None:
    """The offerer's RTX SSRC: the second of its C{FID} group, if any."""
    for group in media.ssrc_group:
        if group.semantic == "FID" and len(group.items) >= 2:
            return rtp.ssrcOrNone(group.items[1])
    return None


def answerSsrcs(media: sdp.MediaDescription, ssrc: int, rtxSsrc: int, cname: str) -> None:
    """
    Announce the RTX stream we send beside C{ssrc}: the media SSRC first,
    as receivers (aiortc among them) take the first for the media.
    """
    media.ssrc.append(sdp.SsrcDescription(ssrc=rtxSsrc, cname=cname))
    media.ssrc_group.append(sdp.GroupDescription(semantic="FID", items=[ssrc, rtxSsrc]))


def wrap(data: bytes, payloadType: int, seq: int, ssrc: int) -> bytes:
    """
    RTX packet C{seq} on C{ssrc} for C{data}, a packet with a bare 12-byte
    header (as L{wcs.media.track.Subscription} sends them): marker,
    timestamp and padding are the original's, the OSN leads the payload.
    """
    return (data[:1] + bytes(((data[1] & rtp.MARKER_BIT) | payloadType,))
            + _OSN.pack(seq) + data[4:8] + rtp.SSRC.pack(ssrc) + data[2:4] + data[12:])


def unwrap(data: bytes, payloadType: int, ssrc: int) -> bytes | None:
    """
    The original packet of RTX packet C{data}, with C{payloadType} and
    C{ssrc} (CSRCs and header extension kept); None when there is none in
    it: padding alone (bandwidth probes) or not readable RTP.
    """
    offset = rtp.payloadOffset(data)
    if offset < 0:
        return None
    end = len(data)
    if data[0] & rtp.PADDING_BIT:
        end -= data[-1]
    if end - offset < 2:
        return None  # no OSN: a padding packet, or garbage
    return (data[:1] + bytes(((data[1] & rtp.MARKER_BIT) | payloadType,))
            + data[offset:offset + 2] + data[4:8] + rtp.SSRC.pack(ssrc)
            + data[12:offset] + data[offset + 2:])


class RtxReceiver:
    """
    The RTX stream of a publisher's video track, registered on its
    transport like a track (by SSRC, or by payload type until learned):
    each retransmission reaches the track as the original packet.
    """

    def __init__(self, track, payloadType: int, ssrc: int | None):
        self.track = track
        self.payloadType = payloadType
        self.ssrc = ssrc
        # Counters (docs/media.md).
        self.packets = 0  # RTX packets received
        self.octets = 0
        self.padding = 0  # with no packet in them (bandwidth probes)
        self.unasked = 0  # of a packet not missing: probes with old payloads, duplicates

    def rtpReceived(self, data: bytes) -> None:
        self.packets += 1
        self.octets += len(data)
        original = unwrap(data, self.track.payloadType, self.track.ssrc or 0)
        if original is None:
            self.padding += 1
        else:
            seq = _OSN.unpack_from(original, 2)[0]
            if seq not in self.track.nacks.missing:
                # A browser probing bandwidth resends recent packets on RTX, or
                # the original came late: the players have it already.
                self.unasked += 1
                return
            self.track.rtpReceived(original, self.track.nacks.received(seq, retransmission=True))

    def senderReport(self, packet) -> None:
        """Reports about the RTX stream itself: nothing to relay."""


class RtxSender:
    """A player's RTX stream: its payload type, SSRC and sequence numbers."""

    def __init__(self, payloadType: int, ssrc: int):
        self.payloadType = payloadType
        self.ssrc = ssrc
        self.seq = rtp.firstSequence()
        self.packets = 0  # RTX packets made (docs/media.md)

    def wrap(self, data: bytes) -> bytes:
        seq, self.seq = self.seq, (self.seq + 1) & 0xFFFF
        self.packets += 1
        return wrap(data, self.payloadType, seq, self.ssrc)
