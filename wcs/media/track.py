"""
Forwarding: a L{Track} fans RTP packets out to L{Subscription}s.

The hot path is L{IncomingTrack.rtpReceived} then L{Subscription.forward}
for each player: read the header fields, rewrite SSRC, sequence number,
timestamp and payload type into a fresh 12-byte header, SRTP-protect, send.
No payload is parsed beyond the keyframe check of video, nothing is
decoded, no object is made per packet but the packet's bytes.
"""

from __future__ import annotations

import time
from typing import Callable

from twisted.logger import Logger

from wcs.media import rtp
from wcs.media.internals import RtcpReceiverInfo, RtcpSenderInfo, RtcpSrPacket

HISTORY = 512  # packets kept per player for NACKs: ~4 s of 1 Mbit/s video
MISSING_MAX = 256  # ingest sequence numbers remembered as lost


class Track:
    """
    A stream of RTP packets of one kind and codec, forwarded to subscribers.

    Subclasses feed L{fanout} and say how to get a keyframe.
    """

    log = Logger()
    KEYFRAME_INTERVAL = 0.3  # s between two keyframe requests
    KEYFRAME_RETRY = 1.0  # s after which a request a player still waits on is repeated

    def __init__(self, kind: str, codec: str, clockRate: int):
        self.kind = kind
        self.codec = codec
        self.clockRate = clockRate
        self.subscribers: tuple[Subscription, ...] = ()
        self.lastKeyframeRequest = float("-inf")
        self.lastKeyframe = float("-inf")  # when the last keyframe started
        self.ended = False
        self.lastSenderReport: tuple[int, int] | None = None  # NTP, RTP timestamp
        self.keyframeRequests = 0  # sent: read by wcs.metrics at scrape time

    def subscribe(self, subscription: "Subscription") -> None:
        # A tuple, replaced on change: the hot loop iterates it without a copy.
        self.subscribers = (*self.subscribers, subscription)
        if self.kind == "video":
            self.requestKeyframe()

    def unsubscribe(self, subscription: "Subscription") -> None:
        self.subscribers = tuple(s for s in self.subscribers if s is not subscription)

    def requestKeyframe(self, force: bool = False) -> None:
        # Players joining together share one request; a request whose
        # keyframe already went by is not pending any more.
        now = time.monotonic()
        if force or now - self.lastKeyframeRequest >= self.KEYFRAME_INTERVAL \
                or self.lastKeyframe >= self.lastKeyframeRequest:
            self.lastKeyframeRequest = now
            self.keyframeRequests += 1
            self.sendKeyframeRequest()

    def sendKeyframeRequest(self) -> None:
        raise NotImplementedError

    def fanout(self, padding: int, marker: int, seq: int, timestamp: int,
               payload: bytes, keyframe: bool) -> None:
        for subscription in self.subscribers:
            try:
                subscription.forward(padding, marker, seq, timestamp, payload, keyframe)
            except Exception:
                # One player's failure must not stop the others or the publisher.
                self.log.failure("forwarding to {s}", s=subscription)

    def keepWaitersServed(self, now: float) -> None:
        """Repeat a keyframe request that a waiting player may have lost."""
        if now - self.lastKeyframeRequest >= self.KEYFRAME_RETRY:
            if any(not s.started for s in self.subscribers):
                self.requestKeyframe()

    def relaySenderReport(self, ntp: int, timestamp: int) -> None:
        self.lastSenderReport = (ntp, timestamp)
        for subscription in self.subscribers:
            subscription.sendSenderReport(ntp, timestamp)

    def end(self) -> None:
        self.ended = True
        for subscription in self.subscribers:
            subscription.trackEnded()
        self.subscribers = ()


class Subscription:
    """
    One player's copy of a track: its SSRC, payload type and sequence and
    timestamp offsets. A video subscription starts at a keyframe.
    """

    def __init__(self, track: Track, transport, ssrc: int, payloadType: int,
                 started: Callable[[], None] | None = None):
        self.track = track
        self.transport = transport
        self.send = transport.sendRtp
        self.ssrc = ssrc
        self.payloadType = payloadType
        self.started = False
        self.onStarted = started
        self.seqDelta = 0
        self.tsDelta = 0
        self.nextSeq = rtp.firstSequence()
        self.nextTs = rtp.random32()
        self.lastTs = self.nextTs
        self.lastSeq = self.nextSeq
        self.history: list[bytes | None] = [None] * HISTORY
        self.packets = 0
        self.octets = 0
        self.nacks = 0  # NACK packets from the player
        self.reportedLost = 0  # cumulative loss in the player's last receiver report

    def attach(self) -> None:
        self.transport.senders[self.ssrc] = self
        self.track.subscribe(self)

    def detach(self) -> None:
        self.track.unsubscribe(self)
        self.transport.senders.pop(self.ssrc, None)

    def forward(self, padding: int, marker: int, seq: int, timestamp: int,
                payload: bytes, keyframe: bool) -> None:
        if not self.started:
            if not keyframe:
                return
            self._begin(seq, timestamp)
        self.lastSeq = outSeq = (seq + self.seqDelta) & 0xFFFF
        self.lastTs = outTs = (timestamp + self.tsDelta) & 0xFFFFFFFF
        data = rtp.HEADER.pack(0x80 | padding, marker | self.payloadType, outSeq, outTs,
                               self.ssrc) + payload
        self.history[outSeq % HISTORY] = data
        self.packets += 1
        self.octets += len(payload)
        if not self.send(data) and self.transport.connected:
            # A player that cannot keep up loses packets up to the next
            # keyframe rather than queueing them (or slowing anyone else).
            self.restart()
            self.track.requestKeyframe()

    def _begin(self, seq: int, timestamp: int) -> None:
        # Continue our own numbering from where it stopped, so that a restart
        # (a new publisher SSRC) looks like a gap-free stream to the player.
        self.seqDelta = (self.nextSeq - seq) & 0xFFFF
        self.tsDelta = (self.nextTs - timestamp) & 0xFFFFFFFF
        self.started = True
        if self.track.lastSenderReport is not None:
            # Lip sync from the first picture, not from the next report.
            self.sendSenderReport(*self.track.lastSenderReport)
        if self.onStarted is not None:
            started, self.onStarted = self.onStarted, None
            started()

    def restart(self) -> None:
        """The track's numbering starts over: wait for a keyframe again."""
        if self.started:
            self.started = False
            self.nextSeq = (self.lastSeq + 1) & 0xFFFF
            self.nextTs = (self.lastTs + self.track.clockRate // 10) & 0xFFFFFFFF

    # RTCP from the player

    def keyframeRequested(self) -> None:
        self.track.requestKeyframe()

    def nackReceived(self, lost: list[int]) -> None:
        self.nacks += 1
        tooOld = False
        for seq in lost:
            # aiortc's parser does not wrap a bitmask that spans 65535 -> 0.
            seq &= 0xFFFF
            data = self.history[seq % HISTORY]
            if data is None:
                continue  # never sent: lost on the way in, NACKed to the publisher
            kept = rtp.SEQ_TS.unpack_from(data, 2)[0]
            if kept == seq:
                self.send(data)
            elif rtp.seqNewer(kept, seq):
                tooOld = True  # gone from the history: only a keyframe repairs it
        if tooOld:
            self.track.requestKeyframe()

    def sendSenderReport(self, ntp: int, timestamp: int) -> None:
        if self.started:
            self.transport.sendRtcp(bytes(RtcpSrPacket(
                ssrc=self.ssrc,
                sender_info=RtcpSenderInfo(
                    ntp_timestamp=ntp,
                    rtp_timestamp=(timestamp + self.tsDelta) & 0xFFFFFFFF,
                    packet_count=self.packets & 0xFFFFFFFF,
                    octet_count=self.octets & 0xFFFFFFFF))))

    def trackEnded(self) -> None:
        self.transport.senders.pop(self.ssrc, None)


class IncomingTrack(Track):
    """
    A track a publisher sends us: packets arrive from its transport as
    decrypted bytes and are forwarded as they are, renumbered per player.
    """

    def __init__(self, transport, kind: str, codec: str, clockRate: int,
                 payloadType: int, ssrc: int | None):
        super().__init__(kind, codec, clockRate)
        self.transport = transport
        self.payloadType = payloadType
        self.ssrc = ssrc
        self.lastPacket: float | None = None
        self.firstPacket: Callable[[], None] | None = None
        self.frameListener: Callable[[int, int, int, bytes], None] | None = None
        # Totals for wcs.metrics, never reset: two additions per packet
        # (packetsIn, octets).
        self.packetsIn = 0
        self.nacksSent = 0
        self.lostEarlier = 0  # lost under the SSRCs before this one
        # Receive statistics for our receiver reports and NACKs; octets
        # (whole packets) for operators.
        self.received = 0
        self.octets = 0
        self.baseSeq: int | None = None
        self.maxSeq = 0
        self.cycles = 0
        self.missing: set[int] = set()
        self.lastTimestamp: int | None = None
        self.reported = (0, 0)  # expected, received at the last report
        self.senderReportAt: tuple[int, float] | None = None
        isVideo = kind == "video"
        self._startsKeyframe = {
            "VP8": lambda payload, newFrame: rtp.vp8StartsKeyframe(payload),
            "H264": rtp.h264StartsKeyframe,
        }.get(codec) if isVideo else None

    def rtpReceived(self, data: bytes) -> None:
        if self.lastPacket is None and self.firstPacket is not None:
            self.firstPacket()
        self.lastPacket = time.monotonic()
        self.packetsIn += 1
        self.octets += len(data)
        second = data[1]
        if second & 0x7F != self.payloadType:
            return
        offset = rtp.payloadOffset(data)
        if offset < 0:
            return  # CSRCs or extension longer than the packet: not RTP we can read
        seq, timestamp = rtp.SEQ_TS.unpack_from(data, 2)
        payload = data[offset:]
        self._count(seq)
        keyframe = True
        if self._startsKeyframe is not None:
            keyframe = self._startsKeyframe(payload, timestamp != self.lastTimestamp)
            if keyframe:
                self.lastKeyframe = self.lastPacket
            elif self.subscribers:
                self.keepWaitersServed(self.lastPacket)
        self.lastTimestamp = timestamp
        marker = second & rtp.MARKER_BIT
        if self.subscribers:
            self.fanout(data[0] & rtp.PADDING_BIT, marker, seq, timestamp, payload, keyframe)
        if self.frameListener is not None:
            self.frameListener(seq, timestamp, marker, payload)

    def _count(self, seq: int) -> None:
        self.received += 1
        if self.baseSeq is None:
            self.baseSeq = self.maxSeq = seq
            return
        delta = (seq - self.maxSeq) & 0xFFFF
        if delta == 0 or delta >= 0x8000:
            self.missing.discard(seq)  # a late or retransmitted packet
            return
        if seq < self.maxSeq:
            self.cycles += 1 << 16
        if delta > 1 and self.kind == "video":
            self._lost(delta)
        self.maxSeq = seq

    def _lost(self, delta: int) -> None:
        # Ask the publisher to resend what went missing on the way in; a gap
        # too large to repair is left to the keyframe requests.
        if delta <= 64:
            self.missing.update((self.maxSeq + i) & 0xFFFF for i in range(1, delta))
        oldest = (self.maxSeq + delta - MISSING_MAX) & 0xFFFF
        self.missing = {s for s in self.missing if rtp.seqNewer(s, oldest)}
        if self.missing and self.ssrc is not None:
            self.nacksSent += 1
            self.transport.sendRtcp(rtp.nack(self.transport.rtcpSsrc, self.ssrc,
                                             sorted(self.missing)))

    def senderReport(self, packet: RtcpSrPacket) -> None:
        info = packet.sender_info
        self.senderReportAt = ((info.ntp_timestamp >> 16) & 0xFFFFFFFF, time.monotonic())
        self.relaySenderReport(info.ntp_timestamp, info.rtp_timestamp)

    def lost(self) -> int:
        """Packets of the current SSRC that never came (RFC 3550 A.3 cumulative loss)."""
        if self.baseSeq is None:
            return 0
        return max(0, self.cycles + self.maxSeq - self.baseSeq + 1 - self.received)

    def receptionReport(self) -> RtcpReceiverInfo | None:
        if self.baseSeq is None or self.ssrc is None:
            return None
        highest = self.cycles + self.maxSeq
        expected = highest - self.baseSeq + 1
        # RFC 3550 A.3: the fraction lost since the previous report, which
        # a browser's loss-based bandwidth estimate feeds on.
        expectedNow = expected - self.reported[0]
        lostNow = expectedNow - (self.received - self.reported[1])
        self.reported = (expected, self.received)
        fraction = (lostNow << 8) // expectedNow if expectedNow > 0 and lostNow > 0 else 0
        lsr = dlsr = 0
        if self.senderReportAt is not None:
            lsr = self.senderReportAt[0]
            dlsr = int((time.monotonic() - self.senderReportAt[1]) * 65536)
        return RtcpReceiverInfo(
            ssrc=self.ssrc, fraction_lost=min(fraction, 255),
            packets_lost=max(0, min(expected - self.received, (1 << 23) - 1)),
            highest_sequence=highest & 0xFFFFFFFF, jitter=0, lsr=lsr, dlsr=dlsr)

    def lost(self) -> int:
        """Packets lost on the way in, as our receiver reports count them."""
        if self.baseSeq is None:
            return self.lostEarlier
        expected = self.cycles + self.maxSeq - self.baseSeq + 1
        return self.lostEarlier + max(0, expected - self.received)

    def sendKeyframeRequest(self) -> None:
        if self.ssrc is not None:
            self.transport.sendRtcp(rtp.pli(self.transport.rtcpSsrc, self.ssrc))

    @property
    def ssrc(self) -> int | None:
        return self._ssrc

    @ssrc.setter
    def ssrc(self, value: int | None) -> None:
        # A new SSRC (the publisher restarted its encoder) restarts numbering:
        # every player waits for the new stream's keyframe.
        old = getattr(self, "_ssrc", None)
        self._ssrc = value
        if old is not None and value != old:
            # The new stream's statistics start over, as its numbers do.
            self.lostEarlier = self.lost()
            self.baseSeq = None
            self.cycles = self.received = 0
            self.reported = (0, 0)
            self.missing = set()
            self.senderReportAt = None
            self.lastTimestamp = None
            for subscription in self.subscribers:
                subscription.restart()
            self.requestKeyframe(force=True)
