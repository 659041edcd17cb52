"""
FLV tag bodies, as RTMP audio and video messages carry them, and their
conversion to and from L{wcs.frames.EncodedFrame}.

Video: H.264 in AVCC (length-prefixed NAL units, parameter sets in an
AVCDecoderConfigurationRecord sent once); frames hold Annex-B with SPS/PPS
in front of every keyframe. Audio: AAC raw with its AudioSpecificConfig sent
once; Speex and Nellymoser pass as they are.
"""

from __future__ import annotations

import struct
from fractions import Fraction

from wcs.frames import EncodedFrame
from wcs.rtmp.errors import RTMPProtocolError

MS = Fraction(1, 1000)
START_CODE = b"\x00\x00\x00\x01"

# Video codec ids and frame types (first byte of a video body).
AVC = 7
KEYFRAME, INTER = 1, 2
# AVCPacketType / AACPacketType
SEQUENCE_HEADER, NALU, END_OF_SEQUENCE = 0, 1, 2
# Audio formats (high nibble of the first byte of an audio body).
AUDIO_FORMATS = {10: "AAC", 11: "speex", 4: "nellymoser", 5: "nellymoser", 6: "nellymoser",
                 2: "mp3", 7: "PCMA", 8: "PCMU"}

NAL_SPS, NAL_PPS, NAL_IDR = 7, 8, 5


def isVideoKeyframe(body: bytes) -> bool:
    return len(body) > 0 and body[0] >> 4 == KEYFRAME


def isSequenceHeader(body: bytes, video: bool) -> bool:
    if len(body) < 2 or body[1] != SEQUENCE_HEADER:
        return False
    return (body[0] & 0x0F) == AVC if video else (body[0] >> 4) == 10


def parseAVCConfig(record: bytes) -> tuple[int, list[bytes], list[bytes]]:
    """(NAL length size, SPSs, PPSs) of an AVCDecoderConfigurationRecord."""
    try:
        if record[0] != 1:
            raise RTMPProtocolError("AVC configuration record of an unknown version")
        lengthSize = (record[4] & 0x03) + 1
        pos, sps, pps = 6, [], []
        for _ in range(record[5] & 0x1F):
            size = struct.unpack_from(">H", record, pos)[0]
            sps.append(record[pos + 2:pos + 2 + size])
            pos += 2 + size
        for _ in range(record[pos]):
            size = struct.unpack_from(">H", record, pos + 1)[0]
            pps.append(record[pos + 3:pos + 3 + size])
            pos += 2 + size
        return lengthSize, sps, pps
    except (IndexError, struct.error):
        raise RTMPProtocolError("AVC configuration record truncated") from None


def makeAVCConfig(sps: bytes, pps: bytes) -> bytes:
    return (bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]) + struct.pack(">H", len(sps)) + sps
            + bytes([1]) + struct.pack(">H", len(pps)) + pps)


def avccToAnnexB(data: bytes, lengthSize: int) -> list[bytes]:
    """The NAL units of an AVCC payload."""
    units, pos = [], 0
    while pos + lengthSize <= len(data):
        size = int.from_bytes(data[pos:pos + lengthSize], "big")
        pos += lengthSize
        if pos + size > len(data):
            raise RTMPProtocolError("H.264 NAL unit runs past its message")
        units.append(data[pos:pos + size])
        pos += size
    return units


def splitAnnexB(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B byte stream."""
    units = []
    for part in data.split(b"\x00\x00\x01"):
        part = part.rstrip(b"\x00") if part.endswith(b"\x00") else part
        if part:
            units.append(part)
    return units


class VideoToFrames:
    """FLV video bodies of one stream → Annex-B frames."""

    def __init__(self):
        self.lengthSize = 4
        self.parameterSets = b""

    def convert(self, timestamp: int, body: bytes) -> EncodedFrame | None:
        if len(body) < 5 or body[0] & 0x0F != AVC:
            return None
        if body[1] == SEQUENCE_HEADER:
            self.lengthSize, sps, pps = parseAVCConfig(body[5:])
            self.parameterSets = b"".join(START_CODE + u for u in sps + pps)
            return None
        if body[1] != NALU:
            return None
        composition = int.from_bytes(body[2:5], "big", signed=True)
        keyframe = body[0] >> 4 == KEYFRAME
        units = avccToAnnexB(body[5:], self.lengthSize)
        data = b"".join(START_CODE + u for u in units)
        if keyframe and self.parameterSets:
            data = self.parameterSets + data
        return EncodedFrame("video", "H264", data, timestamp + composition, MS, keyframe)


class AudioToFrames:
    def __init__(self):
        self.config: bytes | None = None

    def convert(self, timestamp: int, body: bytes) -> EncodedFrame | None:
        if not body:
            return None
        codec = AUDIO_FORMATS.get(body[0] >> 4)
        if codec is None:
            return None
        if codec == "AAC":
            if len(body) < 2:
                return None
            if body[1] == SEQUENCE_HEADER:
                self.config = body[2:]
                return None
            if self.config is None:
                return None
            return EncodedFrame("audio", "AAC", body[2:], timestamp, MS, True, self.config,
                                sample_rate=aacSampleRate(self.config))
        return EncodedFrame("audio", codec, body[1:], timestamp, MS, True,
                            sample_rate=flvSampleRate(body[0]))


FLV_RATES = (5512, 11025, 22050, 44100)
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000,
             11025, 8000, 7350)


def aacSampleRate(config: bytes) -> int | None:
    """The sample rate an AudioSpecificConfig names (None if it is too short)."""
    if len(config) < 2:
        return None
    index = ((config[0] & 7) << 1) | (config[1] >> 7)
    return AAC_RATES[index] if index < len(AAC_RATES) else None


def flvSampleRate(flags: int) -> int:
    """The sample rate an FLV audio tag's first byte means (fixed for some formats)."""
    fmt = flags >> 4
    if fmt == 4 or fmt == 11:  # Nellymoser 16 kHz mono; Speex is always 16 kHz
        return 16000
    if fmt == 5:
        return 8000
    return FLV_RATES[(flags >> 2) & 3]


class FramesToVideo:
    """Annex-B H.264 frames → FLV video bodies, sequence header when SPS/PPS change."""

    def __init__(self):
        self.sps = self.pps = None

    def convert(self, frame: EncodedFrame, timestamp: int) -> list[tuple[int, bytes]]:
        units = splitAnnexB(frame.data)
        out = []
        # An SPS too short for the configuration record's profile and level
        # bytes is not one (a WebRTC publisher's bytes, unchecked).
        sps = next((u for u in units if u[0] & 0x1F == NAL_SPS and len(u) >= 4), None)
        pps = next((u for u in units if u[0] & 0x1F == NAL_PPS), None)
        if sps and pps and (sps, pps) != (self.sps, self.pps):
            self.sps, self.pps = sps, pps
            out.append((timestamp, bytes([0x17, SEQUENCE_HEADER, 0, 0, 0]) + makeAVCConfig(sps, pps)))
        if self.sps is None:
            return out  # nothing decodable until parameter sets are known
        keyframe = frame.keyframe or any(u[0] & 0x1F == NAL_IDR for u in units)
        payload = b"".join(struct.pack(">I", len(u)) + u for u in units
                           if u[0] & 0x1F not in (NAL_SPS, NAL_PPS, 9))
        if payload:
            first = (KEYFRAME if keyframe else INTER) << 4 | AVC
            out.append((timestamp, bytes([first, NALU, 0, 0, 0]) + payload))
        return out


def aacSequenceHeader(config: bytes) -> bytes:
    return bytes([0xAF, SEQUENCE_HEADER]) + config


def aacBody(data: bytes) -> bytes:
    return bytes([0xAF, NALU]) + data
