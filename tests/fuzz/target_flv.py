"""
FLV tag bodies of one published stream, as RTMP audio and video messages
carry them, converted to frames and (video) back to FLV as the relay does.
Input: tags as [type 8|9][u16 length][body], in order.
"""

import struct

from wcs.media import rtp
from wcs.rtmp import flv
from wcs.rtmp.errors import RTMPProtocolError

EXPECTED = (RTMPProtocolError,)
MAX_LEN = 8192


def tags(data: bytes):
    pos = 0
    while pos + 3 <= len(data):
        size = struct.unpack_from(">H", data, pos + 1)[0]
        yield data[pos], data[pos + 3:pos + 3 + size]
        pos += 3 + size


def fuzz(data: bytes) -> None:
    video, audio, back = flv.VideoToFrames(), flv.AudioToFrames(), flv.FramesToVideo()
    for timestamp, (mtype, body) in enumerate(tags(data)):
        if mtype & 1:  # VIDEO (9); any odd type, so that mutations stay on a path
            flv.isVideoKeyframe(body)
            flv.isSequenceHeader(body, True)
            frame = video.convert(timestamp, body)
            if frame is not None:
                rtp.frameIsKeyframe(frame.codec, frame.data)
                back.convert(frame, timestamp)
        else:
            flv.isSequenceHeader(body, False)
            audio.convert(timestamp, body)
