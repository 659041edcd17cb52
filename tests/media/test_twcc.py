"""
Transport-wide congestion control feedback (wcs.media.twcc): the encoder
against packets Chrome sent (from pion/rtcp's tests, which decode them) and
the draft's examples, the decoder, the extension reader and the recorder on
an injected clock.
"""

import random
import struct

import pytest
from twisted.internet.task import Clock

from wcs.media import twcc
from wcs.media.twcc import (
    LARGE,
    NOT_RECEIVED,
    SMALL,
    FeedbackPacket,
    TwccFeedback,
    TwccRecorder,
    parseFeedback,
    transportSequence,
)

# Chrome's feedback packets as pion/rtcp's transport_layer_cc_test.go has them.
CHROME_ONE = bytes([
    0xaf, 0xcd, 0x0, 0x5, 0xfa, 0x17, 0xfa, 0x17, 0x43, 0x3, 0x2f, 0xa0,
    0x0, 0x99, 0x0, 0x1, 0x3d, 0xe8, 0x2, 0x17, 0x20, 0x1, 0x94, 0x1])
CHROME_SEVEN = bytes([
    0xaf, 0xcd, 0x0, 0x7, 0xfa, 0x17, 0xfa, 0x17, 0x19, 0x3d, 0xd8, 0xbb,
    0x0, 0x4, 0x0, 0x7, 0x10, 0x63, 0x6e, 0x1, 0x20, 0x7, 0x4c, 0x24,
    0x24, 0x10, 0xc, 0xc, 0x10, 0x0, 0x0, 0x3])
CHROME_VECTOR_AND_LARGE = bytes([
    0xaf, 0xcd, 0x0, 0x7, 0x9b, 0x74, 0xf6, 0x1f, 0x93, 0x71, 0xdc, 0xbc,
    0x85, 0x3c, 0x0, 0x9, 0x63, 0xf9, 0x16, 0xb3, 0xd5, 0x52, 0x0, 0x30,
    0x9b, 0xaa, 0x6a, 0xaa, 0x7b, 0x1, 0x9, 0x1])


def build(base, reference, arrivals, sender, media, fbCount):
    """A FeedbackPacket of C{arrivals}: (offset from base, µs after the reference) pairs."""
    packet = None
    for offset, after in arrivals:
        at = reference * twcc.REFERENCE + after
        if packet is None:
            packet = FeedbackPacket(base, at)
        assert packet.add(base + offset, at)
    return packet.encode(sender, media, fbCount)


def test_oneReceivedPacketAsChrome():
    assert build(153, 4057090, [(0, 37000)], 4195875351, 1124282272, 23) == CHROME_ONE


def test_runOfSmallDeltasAsChrome():
    times, at = [], 0
    for delta in (19000, 9000, 9000, 4000, 3000, 3000, 4000):
        at += delta
        times.append(at)
    assert build(4, 1074030, list(enumerate(times)), 4195875351, 423483579, 1) == CHROME_SEVEN


def test_twoBitVectorWithLossAndLargeDeltaAsChrome():
    """Five packets, one lost, a large delta: one two-bit vector, then the rest."""
    decoded = parseFeedback(CHROME_VECTOR_AND_LARGE)
    assert decoded["base"] == 34108 and decoded["count"] == 9
    assert [t is None for _, t in decoded["packets"][:7]] == [False] * 5 + [True, False]
    arrivals = [(seq - 34108, t) for seq, t in decoded["packets"][:7] if t is not None]
    again = build(34108, decoded["reference"], arrivals, decoded["senderSsrc"],
                  decoded["mediaSsrc"], decoded["fbCount"])
    # Our packet ends at the last packet received: 7 statuses, one chunk.
    mine = parseFeedback(again)
    assert mine["packets"] == decoded["packets"][:7]
    assert again[20:22] == CHROME_VECTOR_AND_LARGE[20:22]  # the same two-bit chunk
    assert again[22:29] == CHROME_VECTOR_AND_LARGE[24:31]  # the same deltas


def test_decodeChrome():
    one = parseFeedback(CHROME_ONE)
    assert one["senderSsrc"] == 4195875351 and one["mediaSsrc"] == 1124282272
    assert one["base"] == 153 and one["reference"] == 4057090 and one["fbCount"] == 23
    assert one["packets"] == [(153, 37000)]
    seven = parseFeedback(CHROME_SEVEN)
    assert [t for _, t in seven["packets"]] == [19000, 28000, 37000, 41000, 44000, 47000, 51000]


@pytest.mark.parametrize("symbols, chunk", [
    # draft-holmer-rmcat-transport-wide-cc-extensions-01 3.1.3 and 3.1.4
    ([NOT_RECEIVED] * 221, 0x00DD),
    ([0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0], 0x9F1C),
    ([SMALL, LARGE, SMALL], 0xC000 | 1 << 12 | 2 << 10 | 1 << 8),
])
def test_chunks(symbols, chunk):
    chunker = twcc._Chunker()
    for symbol in symbols:
        chunker.add(symbol)
    assert chunker.finish() == [chunk]


def test_roundTripRandom():
    rng = random.Random(5)
    for _ in range(200):
        base = rng.randrange(0, 70000)
        start = rng.randrange(0, 1 << 40)
        packet, expected, at, seq = None, [], start, base
        for _ in range(rng.randrange(1, 400)):
            seq += 1 + (rng.randrange(20) if rng.random() < 0.1 else 0)
            at += rng.choice([0, 250, 1000, 30000, 70000, -5000, 3000000])
            at = max(at, 0)
            if packet is None:
                packet, first = FeedbackPacket(seq, at), seq
            if not packet.add(seq, at):
                break
            expected.append((seq, at))
        decoded = parseFeedback(packet.encode(1, 2, 3))
        reference = decoded["reference"]
        assert reference == (start // twcc.REFERENCE) & 0xFFFFFF or packet.referenceTime == reference
        received = [(s, t) for s, t in decoded["packets"] if t is not None]
        assert [s for s, _ in received] == [s & 0xFFFF for s, _ in expected]
        assert decoded["packets"][0][0] == first & 0xFFFF
        origin = (expected[0][1] // twcc.REFERENCE) * twcc.REFERENCE
        for (_, got), (_, want) in zip(received, expected):
            assert abs(origin + got - want) <= twcc.TICK // 2


def test_deltaTooLargeStartsAnotherPacket():
    packet = FeedbackPacket(10, 0)
    assert packet.add(10, 0)
    assert not packet.add(11, 9_000_000)  # 9 s: over a large delta
    assert packet.count == 1


def extensionPacket(seq, ident=5, twoByte=False, ssrc=1234):
    header = struct.pack("!BBHII", 0x90, 96, 1, 0, ssrc)
    if twoByte:
        body = bytes([ident, 2]) + struct.pack("!H", seq)
        body += bytes(-len(body) % 4)
        return header + struct.pack("!HH", 0x1000, len(body) // 4) + body + b"payload"
    body = bytes([0x10, 0xAA, 0, ident << 4 | 1]) + struct.pack("!H", seq)  # another, padding
    body += bytes(-len(body) % 4)
    return header + struct.pack("!HH", 0xBEDE, len(body) // 4) + body + b"payload"


def test_transportSequence():
    assert transportSequence(extensionPacket(4242), 5) == 4242
    assert transportSequence(extensionPacket(4242, twoByte=True), 5) == 4242
    assert transportSequence(extensionPacket(4242), 3) is None
    assert transportSequence(struct.pack("!BBHII", 0x80, 96, 1, 0, 1) + b"x" * 20, 5) is None
    # Lengths that run past the packet are not read.
    broken = bytearray(extensionPacket(1))
    broken[14:16] = b"\x00\x40"
    assert transportSequence(bytes(broken), 5) is None
    assert transportSequence(extensionPacket(1)[:17], 5) is None


def test_recorderReportsLossThenLateArrival():
    recorder = TwccRecorder()
    for seq, at in ((65534, 1000), (65535, 2000), (1, 5000)):  # 0 missing, across the wrap
        recorder.record(seq, at, 99)
    [packet] = recorder.feedback(7)
    decoded = parseFeedback(packet)
    assert decoded["base"] == 65534 and decoded["mediaSsrc"] == 99
    assert [t is not None for _, t in decoded["packets"]] == [True, True, False, True]
    assert recorder.feedback(7) == []  # nothing new
    recorder.record(0, 6000, 99)  # reported lost: reported again, received
    [late] = recorder.feedback(7)
    decoded = parseFeedback(late)
    assert decoded["base"] == 0 and decoded["fbCount"] == 1
    assert [s for s, t in decoded["packets"] if t is not None] == [0, 1]


def test_recorderBounded():
    recorder = TwccRecorder()
    for seq in range(20000):
        recorder.record(seq & 0xFFFF, seq * 1000, 1)
        if seq % 50 == 0:
            recorder.feedback(7)
    assert len(recorder.arrivals) <= 2 * TwccRecorder.WINDOW
    recorder.record(40000, 10**9, 1)  # a jump: what is older is not reported
    packets = recorder.feedback(7)
    assert 1 <= len(packets) <= TwccRecorder.MAX_PACKETS
    total = sum(parseFeedback(p)["count"] for p in packets)
    assert total <= TwccRecorder.WINDOW + 60
    # A flood of numbers between two feedbacks is forgotten as it comes.
    for seq in range(0, 60000, 7):
        recorder.record(seq, 10**9 + seq, 1)
        assert len(recorder.arrivals) <= 4 * TwccRecorder.WINDOW + 1
    packets = recorder.feedback(7)
    assert packets and all(parseFeedback(p)["count"] <= TwccRecorder.WINDOW + 1 for p in packets)


def test_feedbackOnClock():
    clock = Clock()
    sent = []
    feedback = TwccFeedback(clock, 5, 77, sent.append)
    for seq in range(10):
        feedback.rtpReceived(extensionPacket(seq))
        clock.advance(0.01)
    # A feedback 50 ms after the first packet not yet reported.
    assert len(sent) == 1
    seqs = [s for p in sent for s, t in parseFeedback(p)["packets"] if t is not None]
    assert seqs == list(range(len(seqs))) and 5 <= len(seqs) <= 6
    clock.advance(1)
    assert len(sent) == 2
    assert [s for p in sent for s, t in parseFeedback(p)["packets"]] == list(range(10))
    feedback.stop()
    feedback.rtpReceived(extensionPacket(10))
    assert not clock.getDelayedCalls()
