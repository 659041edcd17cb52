"""
The few RTP facts the forwarding path needs, read straight from the bytes.

Forwarding parses no packet into objects: it reads the header fields it
rewrites, finds where the payload starts and, for video, whether a packet
starts a keyframe (a player may only start there).
"""

from __future__ import annotations

import random
import struct

from wcs.media.internals import (
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
)

HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence, timestamp, SSRC
SEQ_TS = struct.Struct("!HI")  # at offset 2
SSRC = struct.Struct("!I")  # at offset 8
EXTENSION_LENGTH = struct.Struct("!H")

PADDING_BIT = 0x20
MARKER_BIT = 0x80

H264_STAP_A = 24
H264_FU_A = 28
H264_IDR = 5
H264_SPS = 7


def random16() -> int:
    return random.getrandbits(16)


def random32() -> int:
    return random.getrandbits(32)


def firstSequence() -> int:
    """
    The first sequence number of a stream we send: in the lower half, as
    Chromium and aiortc choose theirs. A receiver's libsrtp takes rollover
    counter 0 from the first packet it gets; started near 65535, losing the
    first packets would put that one past the wrap and nothing would
    decrypt again.
    """
    return random.getrandbits(15)


def ssrcOrNone(value) -> int | None:
    """An SSRC an offer announced, if it is one (aiortc reads any integer,
    -5 or 2**40, which no packet carries): else None, learned from the
    packets instead."""
    return value if isinstance(value, int) and 0 <= value <= 0xFFFFFFFF else None


def payloadOffset(data: bytes) -> int:
    """
    Where the payload of RTP packet C{data} (12 bytes at least) starts, after
    CSRCs and extension; -1 when those run past the packet.
    """
    offset = 12 + ((data[0] & 0x0F) << 2)
    if data[0] & 0x10:
        if offset + 4 > len(data):
            return -1
        offset += 4 + (EXTENSION_LENGTH.unpack_from(data, offset + 2)[0] << 2)
    return offset if offset <= len(data) else -1


def vp8StartsKeyframe(payload: bytes) -> bool:
    """
    The first packet of a VP8 keyframe: start of partition 0 (RFC 7741
    section 4.2) whose frame header has the inverse keyframe bit clear.
    """
    if len(payload) < 2:
        return False
    first = payload[0]
    if first & 0x1F != 0x10:  # S set, PID 0
        return False
    pos = 1
    if first & 0x80:
        extension = payload[1]
        pos = 2
        if extension & 0x80 and len(payload) > pos:  # PictureID
            pos += 2 if payload[pos] & 0x80 else 1
        if extension & 0x40:  # TL0PICIDX
            pos += 1
        if extension & 0x30:  # TID/KEYIDX
            pos += 1
    return len(payload) > pos and not payload[pos] & 0x01


def h264StartsKeyframe(payload: bytes, newFrame: bool) -> bool:
    """
    A packet a decoder can start from: one carrying the SPS of a keyframe,
    or the start of an IDR picture when it is the first packet of its frame
    (so that a multi-slice IDR is not joined half-way).
    """
    if not payload:
        return False
    nalType = payload[0] & 0x1F
    if nalType == H264_SPS:
        return True
    if nalType == H264_IDR:
        return newFrame
    if nalType == H264_STAP_A:
        pos = 1
        while pos + 2 < len(payload):
            size = (payload[pos] << 8) | payload[pos + 1]
            inner = payload[pos + 2] & 0x1F
            if inner == H264_SPS or (inner == H264_IDR and newFrame):
                return True
            pos += 2 + size
        return False
    if nalType == H264_FU_A and len(payload) > 1:
        header = payload[1]
        return bool(header & 0x80) and (header & 0x1F) == H264_IDR and newFrame
    return False


def h264IsKeyframe(annexB: bytes) -> bool:
    """An Annex-B access unit holding an IDR slice or an SPS."""
    pos = annexB.find(b"\x00\x00\x01")
    while pos != -1 and pos + 3 < len(annexB):
        if annexB[pos + 3] & 0x1F in (H264_IDR, H264_SPS):
            return True
        pos = annexB.find(b"\x00\x00\x01", pos + 3)
    return False


def frameIsKeyframe(codec: str, data: bytes) -> bool:
    """Whether an assembled frame of C{codec} is a keyframe."""
    if codec == "H264":
        return h264IsKeyframe(data)
    if codec == "VP8":
        return bool(data) and not data[0] & 0x01
    return True


def pli(senderSsrc: int, mediaSsrc: int) -> bytes:
    return bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=senderSsrc, media_ssrc=mediaSsrc))


def nack(senderSsrc: int, mediaSsrc: int, lost: list[int]) -> bytes:
    packet = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=senderSsrc, media_ssrc=mediaSsrc)
    # Ascending: aiortc's builder cannot express a step back (across the wrap).
    packet.lost = sorted(lost)
    return bytes(packet)


def seqNewer(a: int, b: int) -> bool:
    """Sequence number C{a} comes after C{b} (RFC 3550 wrap-around)."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000
