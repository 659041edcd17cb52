"""
RTX (L{wcs.media.rtx}): a publisher's retransmission unwrapped to its
original packet (packets of 12 bytes or more, as the transport
hands them on), and the offer's RTX pieces (L{rtx.offered}, L{rtx.peerSsrc})
of every m-line and codec of a parsed offer.

Input: a first byte 0 means the rest is an RTP packet (RTX), else an SDP
offer.
"""

from wcs.errors import StreamError
from wcs.media import negotiate, rtp, rtx

EXPECTED = (StreamError,)
MAX_LEN = 8192


def packet(data: bytes) -> None:
    if len(data) < 12:
        return  # the transport drops those before any handler
    original = rtx.unwrap(data, 96, 0x1234)
    if original is None:
        return
    offset = rtp.payloadOffset(data)
    if offset < 12 or len(original) != len(data) - 2 or original[1] & 0x7F != 96 \
            or original[2:4] != data[offset:offset + 2] or original[8:12] != b"\0\0\x12\x34":
        raise AssertionError(f"{data!r} unwrapped to {original!r}")
    again = rtx.wrap(original[:12] + original[rtp.payloadOffset(original):], 97,
                     0xFFFF, 0x5678)
    if again[12:14] != original[2:4]:
        raise AssertionError(f"{original!r} wrapped to {again!r}")


def offer(text: str) -> None:
    parsed = negotiate.parseOffer(text)
    for media in parsed.media:
        ssrc = rtx.peerSsrc(media)
        if ssrc is not None and not 0 <= ssrc <= 0xFFFFFFFF:
            raise AssertionError(f"RTX SSRC {ssrc}")
        for codec in [None, *media.rtp.codecs]:
            for ours in (None, rtx.RTX_TIME):
                found = rtx.offered(media, codec, ours)
                if found is None:
                    continue
                time = found.parameters.get("rtx-time")
                if found.payloadType not in media.fmt or \
                        not (time is None or isinstance(time, int)):
                    raise AssertionError(f"offered {found!r}")


def fuzz(data: bytes) -> None:
    if data[:1] == b"\0":
        packet(data[1:])
    else:
        offer(data.decode("utf-8", "replace"))
