"""
Transport-wide congestion control (L{wcs.media.twcc}): the sequence number
read from a publisher's RTP header extension (one- and two-byte forms), the
arrivals recorded on a clock, and the feedback packets made of them, which
must decode again (L{parseFeedback}) to exactly the arrivals recorded; and
L{parseFeedback} itself on the input's bytes (its documented error is
ValueError).

Input: packets as C{[u8 tick][u16 length][RTP packet]}, C{tick} the
milliseconds since the previous one.
"""

import struct

from twisted.internet.task import Clock

from wcs.media import twcc

EXPECTED = ()
MAX_LEN = 8192
EXTENSION_ID = 3
SENDER = 0x5EED


def packets(data: bytes):
    pos = 0
    while pos + 3 <= len(data):
        tick, size = data[pos], struct.unpack_from("!H", data, pos + 1)[0]
        pos += 3
        yield tick, data[pos:pos + size]
        pos += size


def fuzz(data: bytes) -> None:
    try:
        twcc.parseFeedback(data)
    except ValueError:
        pass
    clock = Clock()
    sent: list[bytes] = []
    feedback = twcc.TwccFeedback(clock, EXTENSION_ID, SENDER, sent.append)
    arrivals: dict[int, int] = {}  # wrapped sequence number -> µs, last write wins
    for tick, packet in packets(data):
        clock.advance(tick / 1000)
        seq = twcc.transportSequence(packet, EXTENSION_ID)
        if seq is not None and not 0 <= seq <= 0xFFFF:
            raise AssertionError(f"sequence number {seq}")
        feedback.rtpReceived(packet)
        if seq is not None:
            arrivals.setdefault(seq, int(clock.seconds() * 1e6))
        if len(feedback.recorder.arrivals) > 4 * twcc.TwccRecorder.WINDOW + 1:
            raise AssertionError(f"{len(feedback.recorder.arrivals)} arrivals kept")
    clock.advance(1)
    feedback.stop()
    if len(sent) > twcc.TwccRecorder.MAX_PACKETS * (len(data) // 3 + 1):
        raise AssertionError(f"{len(sent)} feedback packets")
    for packet in sent:
        decoded = twcc.parseFeedback(packet)  # what we send must decode
        for seq, delta in decoded["packets"]:
            if delta is None:
                continue
            # Reported received: it arrived, at that time to the 250 µs tick.
            if seq not in arrivals:
                raise AssertionError(f"{seq} reported received, never arrived")
