"""
Transport-wide congestion control feedback (draft-holmer-rmcat-transport-
wide-cc-extensions-01): what a publisher's browser needs to run its
delay-based bandwidth estimate on our uplink.

The publisher numbers every RTP packet of a transport in a header extension
(L{URI}); we note when each arrived and send, every L{INTERVAL}, an RTCP
transport feedback packet (PT 205, FMT 15) saying which numbers arrived
and when. Its estimator (GoogCC in Chrome) turns the growth of the delays
into a bitrate before the bottleneck queue overflows.

Sans-I/O: L{transportSequence} reads the extension from packet bytes,
L{FeedbackPacket} encodes one feedback packet the way libwebrtc does (its
chunk choice, padding and rounding), L{parseFeedback} decodes one (tests,
diagnostics), L{TwccRecorder} turns arrivals into feedback packets, and
L{TwccFeedback} runs it on an injected clock.
"""

from __future__ import annotations

import struct
from typing import Callable

URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"

RTPFB = 205
FMT_TWCC = 15
NOT_RECEIVED, SMALL, LARGE = 0, 1, 2  # status symbols
TICK = 250  # µs per receive-delta unit
REFERENCE = 64000  # µs per reference-time unit
REFERENCE_TICKS = REFERENCE // TICK
_HEADER = struct.Struct("!BBHIIHHI")  # V/P/FMT, PT, length, sender, media, base, count, ref|fb
_EXT = struct.Struct("!HH")  # profile, length in words


def transportSequence(data: bytes, extensionId: int) -> int | None:
    """
    The transport-wide sequence number of RTP packet C{data} in extension
    C{extensionId} (RFC 8285 one- or two-byte headers), or None.
    """
    if len(data) < 16 or not data[0] & 0x10:
        return None
    offset = 12 + ((data[0] & 0x0F) << 2)
    if offset + 4 > len(data):
        return None
    profile, words = _EXT.unpack_from(data, offset)
    pos = offset + 4
    end = pos + (words << 2)
    if end > len(data):
        return None
    if profile == 0xBEDE:
        while pos < end:
            byte = data[pos]
            if byte == 0:  # padding
                pos += 1
                continue
            ident, length = byte >> 4, (byte & 0x0F) + 1
            if ident == 15:
                return None
            if ident == extensionId:
                return (data[pos + 1] << 8 | data[pos + 2]) if length == 2 and pos + 3 <= end \
                    else None
            pos += 1 + length
    elif profile & 0xFFF0 == 0x1000:
        while pos + 1 < end:
            ident = data[pos]
            if ident == 0:
                pos += 1
                continue
            length = data[pos + 1]
            if ident == extensionId:
                return (data[pos + 2] << 8 | data[pos + 3]) if length == 2 and pos + 4 <= end \
                    else None
            pos += 2 + length
    return None


class _Chunker:
    """
    libwebrtc's choice of packet status chunks (LastChunk in
    transport_feedback.cc): a run while the symbols are all the same, else
    a vector of 14 one-bit or 7 two-bit symbols.
    """

    RUN_MAX, ONE_BIT, TWO_BIT = 0x1FFF, 14, 7

    def __init__(self) -> None:
        self.chunks: list[int] = []
        self.symbols: list[int] = []  # the first ONE_BIT symbols of the pending chunk
        self.size = 0
        self.allSame = True
        self.hasLarge = False

    def add(self, symbol: int) -> None:
        if not self._canAdd(symbol):
            self._emit()
        if self.size < self.ONE_BIT:
            self.symbols.append(symbol)
            self.allSame = self.allSame and symbol == self.symbols[0]
            self.hasLarge = self.hasLarge or symbol == LARGE
        self.size += 1

    def _canAdd(self, symbol: int) -> bool:
        if self.size < self.TWO_BIT:
            return True
        if self.size < self.ONE_BIT and not self.hasLarge and symbol != LARGE:
            return True
        return self.size < self.RUN_MAX and self.allSame and self.symbols[0] == symbol

    def _emit(self) -> None:
        if self.allSame:
            self.chunks.append(self._run())
            self._clear()
        elif self.size == self.ONE_BIT:
            self.chunks.append(self._vector(1, self.symbols))
            self._clear()
        else:
            self.chunks.append(self._vector(2, self.symbols[:self.TWO_BIT]))
            rest = self.symbols[self.TWO_BIT:]
            self._clear()
            for symbol in rest:
                self.add(symbol)

    def _clear(self) -> None:
        self.symbols = []
        self.size = 0
        self.allSame = True
        self.hasLarge = False

    def _run(self) -> int:
        return self.symbols[0] << 13 | self.size

    @staticmethod
    def _vector(bits: int, symbols: list[int]) -> int:
        capacity = 14 // bits
        chunk = 0x8000 | (0x4000 if bits == 2 else 0)
        for i, symbol in enumerate(symbols):
            chunk |= symbol << (bits * (capacity - 1 - i))
        return chunk

    def finish(self) -> list[int]:
        if self.size:
            if self.allSame:
                self.chunks.append(self._run())
            elif self.size <= self.TWO_BIT:
                self.chunks.append(self._vector(2, self.symbols))
            else:
                self.chunks.append(self._vector(1, self.symbols))
            self._clear()
        return self.chunks


class FeedbackPacket:
    """
    One transport feedback packet in the making: packets are added in
    sequence order (gaps are reported lost) with their arrival time in µs;
    L{add} is False when one does not fit (its delta from the previous
    arrival is over ±8 s, or the packet is full): start another packet.
    """

    MAX_STATUS = 0xFFFF
    MAX_DELTAS_BYTES = 1100  # keeps the RTCP packet under a common MTU

    def __init__(self, baseSeq: int, firstArrival: int):
        self.baseSeq = baseSeq
        self.referenceTime = (firstArrival // REFERENCE) & 0xFFFFFF
        self.lastTicks = (firstArrival // REFERENCE) * REFERENCE_TICKS
        self.nextSeq = baseSeq
        self.chunker = _Chunker()
        self.deltas = bytearray()

    @property
    def count(self) -> int:
        return self.nextSeq - self.baseSeq

    def add(self, seq: int, arrival: int) -> bool:
        """C{seq}: unwrapped, at or after the next expected; C{arrival}: µs."""
        # Rounded to the nearest tick, as libwebrtc does; the running sum
        # in ticks keeps the rounding errors from adding up.
        delta = (arrival + TICK // 2) // TICK - self.lastTicks
        if not -0x8000 <= delta <= 0x7FFF or seq - self.baseSeq >= self.MAX_STATUS \
                or len(self.deltas) + 2 > self.MAX_DELTAS_BYTES:
            return False
        for _ in range(seq - self.nextSeq):
            self.chunker.add(NOT_RECEIVED)
        if 0 <= delta <= 0xFF:
            self.chunker.add(SMALL)
            self.deltas.append(delta)
        else:
            self.chunker.add(LARGE)
            self.deltas += struct.pack("!h", delta)
        self.lastTicks += delta
        self.nextSeq = seq + 1
        return True

    def encode(self, senderSsrc: int, mediaSsrc: int, feedbackCount: int) -> bytes:
        chunks = self.chunker.finish()
        body = struct.pack(f"!{len(chunks)}H", *chunks) + bytes(self.deltas)
        size = 20 + len(body)
        padding = -size % 4
        if padding:
            body += bytes(padding - 1) + bytes([padding])
        words = (size + padding) // 4 - 1
        return _HEADER.pack(0x80 | (0x20 if padding else 0) | FMT_TWCC, RTPFB, words,
                            senderSsrc, mediaSsrc, self.baseSeq & 0xFFFF, self.count,
                            self.referenceTime << 8 | feedbackCount & 0xFF) + body


def parseFeedback(data: bytes) -> dict:
    """
    A transport feedback packet decoded: C{base}, C{count}, C{reference}
    (64 ms units), C{fbCount}, C{senderSsrc}, C{mediaSsrc} and C{packets},
    one (sequence number, arrival in µs since reference or None) per status.
    Raises ValueError when it is not one or is truncated.
    """
    if len(data) < 20:
        raise ValueError("transport feedback shorter than 20 bytes")
    first, pt, words, sender, media, base, count, refFb = _HEADER.unpack_from(data)
    if first & 0xC0 != 0x80 or first & 0x1F != FMT_TWCC or pt != RTPFB:
        raise ValueError("not a transport feedback packet")
    end = (words + 1) * 4
    if end > len(data):
        raise ValueError("transport feedback truncated")
    if first & 0x20:
        end -= data[end - 1]
    pos, symbols = 20, []
    while len(symbols) < count:
        if pos + 2 > end:
            raise ValueError("transport feedback truncated in its chunks")
        chunk = data[pos] << 8 | data[pos + 1]
        pos += 2
        if not chunk & 0x8000:
            symbols += [chunk >> 13 & 0x3] * (chunk & 0x1FFF)
        elif chunk & 0x4000:
            symbols += [chunk >> (2 * (6 - i)) & 0x3 for i in range(7)]
        else:
            symbols += [chunk >> (13 - i) & 0x1 for i in range(14)]
    packets, ticks = [], 0
    for i, symbol in enumerate(symbols[:count]):
        seq = (base + i) & 0xFFFF
        if symbol == NOT_RECEIVED:
            packets.append((seq, None))
            continue
        size = 1 if symbol == SMALL else 2
        if pos + size > end:
            raise ValueError("transport feedback truncated in its deltas")
        ticks += data[pos] if size == 1 else struct.unpack_from("!h", data, pos)[0]
        pos += size
        packets.append((seq, ticks * TICK))
    return {"senderSsrc": sender, "mediaSsrc": media, "base": base, "count": count,
            "reference": refFb >> 8, "fbCount": refFb & 0xFF, "packets": packets}


class TwccRecorder:
    """
    Arrivals of one transport's packets and the feedback that reports them.

    Sequence numbers are unwrapped. A feedback starts where the previous
    one ended; a packet that arrives after a feedback reported it lost (a
    late or reordered one, within L{WINDOW} numbers) makes the next
    feedback start again from it, as libwebrtc's receiver does: the sender
    takes the packet as received after all. What is kept is bounded.
    """

    WINDOW = 1024  # sequence numbers kept behind the newest
    MAX_PACKETS = 4  # feedback packets per call to L{feedback}

    def __init__(self) -> None:
        self.arrivals: dict[int, int] = {}  # unwrapped sequence number -> µs
        self.newest: int | None = None
        self.nextReport: int | None = None
        self.mediaSsrc = 0
        self.feedbackCount = 0
        self.fresh = False  # something arrived since the last feedback

    def record(self, seq: int, arrival: int, ssrc: int) -> None:
        newest = self.newest
        if newest is None:
            unwrapped = seq
            self.nextReport = seq
        else:
            step = (seq - newest) & 0xFFFF
            unwrapped = newest + step if step < 0x8000 else newest + step - 0x10000
            if unwrapped <= newest - self.WINDOW:
                return  # far too old: its feedback is long gone
        if unwrapped not in self.arrivals:
            self.arrivals[unwrapped] = arrival
            if len(self.arrivals) > 4 * self.WINDOW:  # a flood between two feedbacks
                self._forget()
        if newest is None or unwrapped > newest:
            self.newest = unwrapped
            if unwrapped - self.WINDOW > self.nextReport:
                # A jump (or a long silence): nothing older is worth reporting.
                self.nextReport = unwrapped - self.WINDOW
        elif unwrapped < self.nextReport:
            self.nextReport = unwrapped  # reported lost: report it again, received
        self.mediaSsrc = ssrc
        self.fresh = True

    def feedback(self, senderSsrc: int) -> list[bytes]:
        """The feedback packets for what arrived since the last call."""
        if not self.fresh or self.newest is None:
            return []
        self.fresh = False
        packets: list[bytes] = []
        arrivals = self.arrivals
        seq = self.nextReport
        while seq <= self.newest and len(packets) < self.MAX_PACKETS:
            while seq not in arrivals:  # a feedback starts with a received packet
                seq += 1
            building = FeedbackPacket(seq, arrivals[seq])
            while seq <= self.newest:
                arrival = arrivals.get(seq)
                if arrival is not None and not building.add(seq, arrival):
                    break
                seq += 1
            packets.append(building.encode(senderSsrc, self.mediaSsrc, self.feedbackCount))
            self.feedbackCount = (self.feedbackCount + 1) & 0xFF
        self.nextReport = seq
        if len(arrivals) > self.WINDOW:
            self._forget()
        return packets

    def _forget(self) -> None:
        # Keep WINDOW numbers: late packets can still be reported.
        oldest = max(self.newest, self.nextReport) - self.WINDOW
        arrivals = self.arrivals
        for old in [s for s in arrivals if s <= oldest]:
            del arrivals[old]
        if self.nextReport < oldest:
            self.nextReport = oldest + 1


class TwccFeedback:
    """
    L{TwccRecorder} on a clock: C{rtpReceived} notes each packet's arrival
    (the clock's time), a timer sends the feedback every L{INTERVAL} while
    packets come (libwebrtc's receivers send every 50-250 ms).
    """

    INTERVAL = 0.05  # s

    def __init__(self, clock, extensionId: int, senderSsrc: int,
                 send: Callable[[bytes], None]):
        self.clock = clock
        self.extensionId = extensionId
        self.senderSsrc = senderSsrc
        self.send = send
        self.recorder = TwccRecorder()
        self._call = None
        self.stopped = False
        self.feedbackSent = 0  # packets, for tests and metrics

    def rtpReceived(self, data: bytes) -> None:
        seq = transportSequence(data, self.extensionId)
        if seq is None:
            return
        self.recorder.record(seq, int(self.clock.seconds() * 1e6),
                             struct.unpack_from("!I", data, 8)[0])
        if self._call is None and not self.stopped:
            self._call = self.clock.callLater(self.INTERVAL, self._tick)

    def _tick(self) -> None:
        self._call = None
        for packet in self.recorder.feedback(self.senderSsrc):
            self.feedbackSent += 1
            self.send(packet)

    def stop(self) -> None:
        self.stopped = True
        call, self._call = self._call, None
        if call is not None:
            call.cancel()
