"""
Forwarding: a L{Track} fans RTP packets out to L{Subscription}s.

The hot path is L{IncomingTrack.rtpReceived} then L{Subscription.forward}
for each player: read the header fields, rewrite SSRC, sequence number,
timestamp and payload type into a fresh 12-byte header, SRTP-protect, send.
No payload is parsed beyond the keyframe check of video, nothing is
decoded, no object is made per packet but the packet's bytes.
"""

from __future__ import annotations

from typing import Callable

from twisted.logger import Logger

from wcs.media import rtp
from wcs.media.feedback import FeedbackPolicy, NackGenerator, RetransmitBudget, RoundTrip
from wcs.media.reorder import NackHold
from wcs.media.internals import RtcpReceiverInfo, RtcpSenderInfo, RtcpSrPacket
from wcs.media.liveness import LoopClock

HISTORY = 512  # packets kept per player for NACKs: ~4 s of 1 Mbit/s video
# How far a player's numbering jumps when it drops to a keyframe after
# losing packets (L{Subscription.restart}): past what a receiver holds
# behind a hole. aiortc's video jitter buffer (512 packets) keeps every
# later frame behind a packet that never comes until 512 packets passed
# (4-8 s of video), then lets the backlog out one frame per packet
# received; a packet 1024 ahead of its oldest makes it drop them at once.
# webrtc.org's NACK module clears its list past 1000 missing packets and
# asks for a keyframe, which is under way anyway.
RESTART_SKIP = 1024
DEFAULT_POLICY = FeedbackPolicy()


class Track:
    """
    A stream of RTP packets of one kind and codec, forwarded to subscribers.

    Subclasses feed L{fanout} and say how to get a keyframe. Keyframe
    requests reach the source at most once per C{policy.keyframeInterval},
    whoever asks: one asked for meanwhile waits for the end of the interval
    (later ones join it) and is dropped if a keyframe started meanwhile.
    """

    log = Logger()
    KEYFRAME_RETRY = 1.0  # s after which a request a player still waits on is repeated

    def __init__(self, kind: str, codec: str, clockRate: int, clock=None,
                 policy: FeedbackPolicy = DEFAULT_POLICY):
        self.kind = kind
        self.codec = codec
        self.clockRate = clockRate
        self.clock = clock if clock is not None else LoopClock()
        self.seconds = self.clock.seconds
        self.policy = policy
        self.subscribers: tuple[Subscription, ...] = ()
        self.lastKeyframeRequest = float("-inf")
        self.lastKeyframe = float("-inf")  # when the last keyframe started
        self.waitersCheckedAt = float("-inf")
        self._heldKeyframe = None  # the delayed call of a request made too soon
        self._heldAskedAt = float("-inf")  # the latest ask it answers
        self.ended = False
        self.lastSenderReport: tuple[int, int] | None = None  # NTP, RTP timestamp
        # Counters (docs/media.md).
        self.keyframeRequests = 0  # sent to the source
        self.keyframeRequestsLimited = 0  # asked for within the interval (joined a held one)
        self.keyframeRequestsServed = 0  # held, then answered by a keyframe meanwhile

    def subscribe(self, subscription: "Subscription") -> None:
        # A tuple, replaced on change: the hot loop iterates it without a copy.
        self.subscribers = (*self.subscribers, subscription)
        if self.kind == "video":
            subscription.askKeyframe(self.seconds())

    def unsubscribe(self, subscription: "Subscription") -> None:
        self.subscribers = tuple(s for s in self.subscribers if s is not subscription)

    def requestKeyframe(self, force: bool = False) -> None:
        now = self.seconds()
        if force or now - self.lastKeyframeRequest >= self.policy.keyframeInterval:
            self._sendKeyframe(now)
        elif self._heldKeyframe is None:
            self._heldAskedAt = now
            self._heldKeyframe = self.clock.callLater(
                self.lastKeyframeRequest + self.policy.keyframeInterval - now,
                self._releaseKeyframe)
        else:
            # Only a keyframe that starts after this ask serves it: one that
            # came between the held ask and this one is no use to this asker
            # (an RTMP feed that attached meanwhile never got it).
            self._heldAskedAt = now
            self.keyframeRequestsLimited += 1

    def _sendKeyframe(self, now: float) -> None:
        self.cancelHeldKeyframe()
        self.lastKeyframeRequest = now
        self.keyframeRequests += 1
        self.sendKeyframeRequest()

    def _releaseKeyframe(self) -> None:
        self._heldKeyframe = None
        if self.lastKeyframe >= self._heldAskedAt:
            self.keyframeRequestsServed += 1  # a keyframe started after it was asked for
        elif not self.ended:
            self._sendKeyframe(self.seconds())

    def cancelHeldKeyframe(self) -> None:
        call, self._heldKeyframe = self._heldKeyframe, None
        if call is not None:  # cleared when it fires: still pending
            call.cancel()

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
        """
        Repeat a keyframe request that a waiting player may have lost, within
        that player's own limit (a player that keeps losing its start is not
        served by keyframes for everyone).
        """
        if now - self.lastKeyframeRequest >= self.KEYFRAME_RETRY \
                and now - self.waitersCheckedAt >= self.KEYFRAME_RETRY:
            self.waitersCheckedAt = now
            for subscription in self.subscribers:
                if not subscription.started and now >= subscription.keyframeAllowedAt:
                    subscription.askKeyframe(now)

    def relaySenderReport(self, ntp: int, timestamp: int) -> None:
        self.lastSenderReport = (ntp, timestamp)
        for subscription in self.subscribers:
            subscription.sendSenderReport(ntp, timestamp)

    def end(self) -> None:
        self.ended = True
        self.cancelHeldKeyframe()
        for subscription in self.subscribers:
            subscription.trackEnded()
        self.subscribers = ()


class Subscription:
    """
    One player's copy of a track: its SSRC, payload type and sequence and
    timestamp offsets. A video subscription starts at a keyframe.

    Its feedback is answered within budgets: a NACKed packet is resent at
    most once per RTT (measured from the player's receiver reports) and
    while retransmissions stay within C{policy.share} of what the player
    receives; its keyframe requests reach the track at most once per
    C{policy.playerKeyframeInterval}, doubling (up to 4 times) while it
    keeps asking sooner; a PLI right after we resent packets it asked for
    waits one RTT, for the repair to land.
    """

    MAX_BACKOFF = 4  # times the player keyframe interval
    REPORTS_KEPT = 4  # our last sender reports, to match receiver reports with

    def __init__(self, track: Track, transport, ssrc: int, payloadType: int,
                 started: Callable[[], None] | None = None,
                 policy: FeedbackPolicy = DEFAULT_POLICY):
        self.track = track
        self.clock = track.clock
        self.policy = policy
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
        # What was sent, for NACKs: the header, ours, and the payload, which
        # is the same object for every player of the track (a copy per
        # player was 500 KB of each player's memory at 1 Mbit/s).
        self.headers: list[bytes | None] = [None] * HISTORY
        self.payloads: list[bytes | None] = [None] * HISTORY
        self.resentAt = [float("-inf")] * HISTORY
        self.packets = 0
        self.octets = 0
        self.rtt = RoundTrip()
        self.budget = RetransmitBudget(policy.share)
        self.hold = NackHold(self.clock, self.resend, self.rtt, policy.playerReorderWait)
        self.rtx = None  # a wcs.media.rtx.RtxSender when the player takes RTX
        self.reportsSent: dict[int, float] = {}  # LSR of our sender reports -> when sent
        self.repairingUntil = float("-inf")  # a PLI before then waits for our resent packets
        self._heldKeyframe = None
        self.keyframeAllowedAt = float("-inf")
        self.keyframeBackoff = 1
        self.keptAsking = False
        # Counters (docs/media.md).
        self.retransmitted = 0  # packets resent
        self.retransmittedOctets = 0  # their bytes (header included)
        self.retransmitDropped = 0  # NACKed packets not resent: over the budget
        self.retransmitTooSoon = 0  # NACKed again within an RTT of the last resend
        self.nacksTooOld = 0  # NACKs for packets gone from the history
        self.keyframeRequestsReceived = 0  # PLI and FIR from the player
        self.keyframeRequestsLimited = 0  # its requests (of any cause) not passed on
        self.nacksReceived = 0  # NACK packets from the player (wcs.metrics)
        self.reportedLost = 0  # cumulative loss in its last receiver report (wcs.metrics)
        self.skipped = 0  # numbers skipped by restarts: the player reports them lost

    def attach(self) -> None:
        self.transport.senders[self.ssrc] = self
        self.track.subscribe(self)

    def detach(self) -> None:
        self.track.unsubscribe(self)
        self.transport.senders.pop(self.ssrc, None)
        self._cancelHeld()
        self.hold.stop()

    def forward(self, padding: int, marker: int, seq: int, timestamp: int,
                payload: bytes, keyframe: bool) -> None:
        if not self.started:
            if not keyframe:
                return
            self._begin(seq, timestamp)
        self.lastSeq = outSeq = (seq + self.seqDelta) & 0xFFFF
        self.lastTs = outTs = (timestamp + self.tsDelta) & 0xFFFFFFFF
        header = rtp.HEADER.pack(0x80 | padding, marker | self.payloadType, outSeq, outTs,
                                 self.ssrc)
        slot = outSeq % HISTORY
        self.headers[slot] = header
        self.payloads[slot] = payload
        data = header + payload
        self.packets += 1
        self.octets += len(payload)
        if not self.send(data) and self.transport.connected:
            # A player that cannot keep up loses packets up to the next
            # keyframe rather than queueing them (or slowing anyone else).
            self.restart(skip=True)
            self.askKeyframe(self.clock.seconds())

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

    def restart(self, skip: bool = False) -> None:
        """
        The track's numbering starts over: wait for a keyframe again. With
        C{skip} (the player lost packets it will not get: it drops to the
        keyframe) our numbering jumps L{RESTART_SKIP} ahead, so that the
        player's buffer gives up on its holes when the keyframe comes;
        without, it goes on gap-free (a publisher's new stream).
        """
        if self.started:
            self.started = False
            gap = RESTART_SKIP if skip else 0
            self.skipped += gap
            self.nextSeq = (self.lastSeq + 1 + gap) & 0xFFFF
            self.nextTs = (self.lastTs + self.track.clockRate // 10) & 0xFFFFFFFF

    # Keyframes for this player

    def askKeyframe(self, now: float) -> bool:
        """
        This player needs a keyframe: ask the track, unless it asked less
        than its interval ago (then it waits for the next keyframe anyone
        gets). False when not passed on.
        """
        if now < self.keyframeAllowedAt:
            self.keyframeRequestsLimited += 1
            self.keptAsking = True
            return False
        # Asking again as soon as allowed is "keeps asking": a narrow link,
        # which new keyframes do not help. A quiet interval resets it.
        quiet = now >= self.keyframeAllowedAt + self.policy.playerKeyframeInterval
        if quiet:
            self.keyframeBackoff = 1
        elif self.keptAsking:
            self.keyframeBackoff = min(self.keyframeBackoff * 2, self.MAX_BACKOFF)
        self.keptAsking = False
        self.keyframeAllowedAt = now + self.policy.playerKeyframeInterval * self.keyframeBackoff
        self.track.requestKeyframe()
        return True

    def _cancelHeld(self) -> None:
        call, self._heldKeyframe = self._heldKeyframe, None
        if call is not None:  # cleared when it fires: still pending
            call.cancel()

    def _releaseKeyframe(self, askedAt: float) -> None:
        self._heldKeyframe = None
        if self.track.lastKeyframe < askedAt:
            self.askKeyframe(self.clock.seconds())

    # RTCP from the player

    def keyframeRequested(self) -> None:
        self.keyframeRequestsReceived += 1
        now = self.clock.seconds()
        if now < self.repairingUntil:
            # Packets it asked for are on their way: they may repair the
            # picture without a keyframe for everyone.
            if self._heldKeyframe is None:
                self._heldKeyframe = self.clock.callLater(
                    self.repairingUntil - now, self._releaseKeyframe, now)
            return
        self.askKeyframe(now)

    def sentPacket(self, seq: int) -> bytes | None:
        """The packet sent as C{seq}, while the history keeps it."""
        slot = seq % HISTORY
        header = self.headers[slot]
        if header is None or rtp.SEQ_TS.unpack_from(header, 2)[0] != seq:
            return None
        return header + self.payloads[slot]

    def nackReceived(self, lost: list[int]) -> None:
        self.nacksReceived += 1
        self.resend(self.hold.filter(lost))

    def resend(self, lost: list[int]) -> None:
        """Answer NACKed packets C{lost}, within the budgets."""
        tooOld = False
        now = self.clock.seconds()
        retry = self.rtt.retry
        for seq in lost:
            # aiortc's parser does not wrap a bitmask that spans 65535 -> 0.
            seq &= 0xFFFF
            slot = seq % HISTORY
            header = self.headers[slot]
            if header is None:
                continue  # never sent: lost on the way in, NACKed to the publisher
            kept = rtp.SEQ_TS.unpack_from(header, 2)[0]
            if kept == seq:
                data = header + self.payloads[slot]
                if now - self.resentAt[slot] < retry:
                    self.retransmitTooSoon += 1  # the last copy may still be on its way
                elif self.budget.spend(self.octets, len(data)):
                    self.resentAt[slot] = now
                    self.retransmitted += 1
                    self.retransmittedOctets += len(data)
                    self.repairingUntil = now + retry
                    self.send(data if self.rtx is None else self.rtx.wrap(data))
                else:
                    self.retransmitDropped += 1
            elif rtp.seqNewer(kept, seq):
                tooOld = True  # gone from the history: only a keyframe repairs it
        if tooOld:
            # Too far behind for the history: drop to the next keyframe,
            # asked for within this player's own limit.
            self.nacksTooOld += 1
            self.restart(skip=True)
            self.askKeyframe(now)

    def receptionReported(self, lsr: int, dlsr: int) -> None:
        """A receiver report block about our stream: a round-trip sample."""
        sentAt = self.reportsSent.get(lsr)
        if sentAt is not None:
            self.rtt.sample(self.clock.seconds() - sentAt - dlsr / 65536)

    def sendSenderReport(self, ntp: int, timestamp: int) -> None:
        if self.started:
            reports = self.reportsSent
            if len(reports) >= self.REPORTS_KEPT:
                del reports[next(iter(reports))]
            reports[(ntp >> 16) & 0xFFFFFFFF] = self.clock.seconds()
            self.transport.sendRtcp(bytes(RtcpSrPacket(
                ssrc=self.ssrc,
                sender_info=RtcpSenderInfo(
                    ntp_timestamp=ntp,
                    rtp_timestamp=(timestamp + self.tsDelta) & 0xFFFFFFFF,
                    packet_count=self.packets & 0xFFFFFFFF,
                    octet_count=self.octets & 0xFFFFFFFF))))

    def trackEnded(self) -> None:
        self.transport.senders.pop(self.ssrc, None)
        self._cancelHeld()
        self.hold.stop()


class IncomingTrack(Track):
    """
    A track a publisher sends us: packets arrive from its transport as
    decrypted bytes and are forwarded as they are, renumbered per player.
    Video packets lost on the way in are NACKed by a L{NackGenerator}.
    """

    def __init__(self, transport, kind: str, codec: str, clockRate: int,
                 payloadType: int, ssrc: int | None, clock=None,
                 policy: FeedbackPolicy = DEFAULT_POLICY):
        super().__init__(kind, codec, clockRate, clock, policy)
        self.transport = transport
        self.payloadType = payloadType
        self.ssrc = ssrc
        self.lastPacket: float | None = None
        self.firstPacket: Callable[[], None] | None = None
        self.frameListener: Callable[[int, int, int, bytes], None] | None = None
        self.packetsIn = 0
        # Receive statistics for our receiver reports and NACKs; octets
        # (whole packets) for operators.
        self.received = 0
        self.octets = 0
        self.baseSeq: int | None = None
        self.maxSeq = 0
        self.cycles = 0
        self.keyframes = 0  # keyframe starts received (a keyframe split in slices counts once)
        self.rtx = None  # a wcs.media.rtx.RtxReceiver when the publisher resends as RTX
        self.nacks = NackGenerator(self.clock, self._sendNack, self.requestKeyframe,
                                   RetransmitBudget(policy.share),
                                   lambda: (self.octets, self.received))
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
        self.lastPacket = self.seconds()
        self.octets += len(data)
        self.packetsIn += 1  # never reset, unlike received (wcs.metrics)
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
                self.keyframes += 1
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
            if self.nacks.missing:
                # A late or retransmitted packet; on the media SSRC of a
                # publisher that resends on RTX, a late one.
                self.nacks.received(seq, False if self.rtx is not None else None)
            return
        if seq < self.maxSeq:
            self.cycles += 1 << 16
        if delta > 1 and self.kind == "video":
            self.nacks.lost(seq, delta)
        self.maxSeq = seq

    @property
    def missing(self) -> set[int]:
        """Sequence numbers still wanted from the publisher."""
        return set(self.nacks.missing)

    def _sendNack(self, lost: list[int]) -> None:
        if self.ssrc is not None:
            self.transport.sendRtcp(rtp.nack(self.transport.rtcpSsrc, self.ssrc, lost))

    def senderReport(self, packet: RtcpSrPacket) -> None:
        info = packet.sender_info
        self.senderReportAt = ((info.ntp_timestamp >> 16) & 0xFFFFFFFF, self.seconds())
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
            dlsr = int((self.seconds() - self.senderReportAt[1]) * 65536)
        return RtcpReceiverInfo(
            ssrc=self.ssrc, fraction_lost=min(fraction, 255),
            packets_lost=max(0, min(expected - self.received, (1 << 23) - 1)),
            highest_sequence=highest & 0xFFFFFFFF, jitter=0, lsr=lsr, dlsr=dlsr)

    def sendKeyframeRequest(self) -> None:
        if self.ssrc is not None:
            self.transport.sendRtcp(rtp.pli(self.transport.rtcpSsrc, self.ssrc))

    def end(self) -> None:
        self.nacks.stop()
        super().end()

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
            self.baseSeq = None
            self.cycles = self.received = 0
            self.reported = (0, 0)
            self.nacks.reset()
            self.senderReportAt = None
            self.lastTimestamp = None
            for subscription in self.subscribers:
                subscription.restart()
            self.requestKeyframe(force=True)
