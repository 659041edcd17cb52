"""
Forwarding: a L{Track} fans RTP packets out to L{Subscription}s
(wcs/media/subscription.py, each player's copy).

The hot path is L{IncomingTrack.rtpReceived} then L{Subscription.forward}
for each player: read the header fields, rewrite SSRC, sequence number,
timestamp and payload type into a fresh 12-byte header, SRTP-protect, send.
No payload is parsed beyond the keyframe check of video, nothing is
decoded, no object is made per packet but the packet's bytes and, for a
publisher's track with players, the tuple of its fields kept for a late
keyframe start (L{IncomingTrack.recent}).
"""

from __future__ import annotations

from typing import Callable

from twisted.logger import Logger

from wcs.media import rtp
from wcs.media.feedback import FeedbackPolicy, NackGenerator, RetransmitBudget
from wcs.media.internals import RtcpReceiverInfo, RtcpSrPacket
from wcs.media.liveness import LoopClock
from wcs.media.subscription import DEFAULT_POLICY, HISTORY, RESTART_SKIP, Subscription

__all__ = ["Track", "IncomingTrack", "Subscription", "HISTORY", "RESTART_SKIP", "DEFAULT_POLICY"]


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
    # The one event for "who consumes this track's packets changed" (a
    # player came or went, a frame listener was set or cleared): an
    # IncomingTrack's transport reads its sockets later while nobody does.
    consumersChanged: Callable[[], None] | None = None
    # Packets whose fan-out time is kept (fannedAt): a power of two, so
    # that the 16-bit numbering maps onto it across the wrap.
    FANNED = 1024

    def __init__(self, kind: str, codec: str, clockRate: int, clock=None,
                 policy: FeedbackPolicy = DEFAULT_POLICY):
        self.kind = kind
        self.codec = codec
        self.clockRate = clockRate
        self.clock = clock if clock is not None else LoopClock()
        self.seconds = self.clock.seconds
        self.policy = policy
        self.subscribers: tuple[Subscription, ...] = ()
        # When each recent packet (by its number & FANNED - 1) went to the
        # subscribers: once per packet, where a time per player would cost
        # the hot path (Subscription.wentAt).
        self.fannedAt = [float("-inf")] * self.FANNED
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
        self._consumersChanged()

    def unsubscribe(self, subscription: "Subscription") -> None:
        self.subscribers = tuple(s for s in self.subscribers if s is not subscription)
        self._consumersChanged()

    def _consumersChanged(self) -> None:
        if self.consumersChanged is not None:
            self.consumersChanged()

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
        self.fannedAt[seq & (self.FANNED - 1)] = self.seconds()
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


class IncomingTrack(Track):
    """
    A track a publisher sends us: packets arrive from its transport as
    decrypted bytes and are forwarded as they are, renumbered per player.
    Video packets lost on the way in are NACKed by a L{NackGenerator}.

    The keyframe players wait for is looked after (docs/networks.md,
    "`mobile` H.264: the freeze after a give-up"): its lost packets are
    NACKed before the others and past the budget; one asked for after a
    give-up is asked for again every L{keyframeRetry} until it starts (the
    request or the keyframe's first packet may be lost); and a player that
    starts on a keyframe's first packet repaired late gets the packets that
    came after it meanwhile (L{RECENT}), which it would otherwise never get.
    """

    RECENT = 256  # packets kept for a late keyframe start (NackGenerator.MAX_MISSING)
    REPEAT_AFTER = Subscription.REPEAT_AFTER  # s between a repair's two copies
    # s without a packet read after which the next ones count as a burst
    # (L{lastSilence}): 10 frame intervals at 30 fps.
    SILENCE = 0.3

    def __init__(self, transport, kind: str, codec: str, clockRate: int,
                 payloadType: int, ssrc: int | None, clock=None,
                 policy: FeedbackPolicy = DEFAULT_POLICY):
        super().__init__(kind, codec, clockRate, clock, policy)
        self.transport = transport
        self.consumersChanged = transport.readingChanged
        self.payloadType = payloadType
        self.ssrc = ssrc
        self.lastPacket: float | None = None
        # When packets were last read after SILENCE without any: our reactor
        # stalled (the socket held them) or the publisher's uplink paused;
        # either way what follows goes on to every player at once, a burst
        # into their links that is not their link's doing (wcs.media.narrow).
        self.lastSilence = float("-inf")
        self.firstPacket: Callable[[], None] | None = None
        self._frameListener: Callable[[int, int, int, bytes], None] | None = None
        self.packetsIn = 0
        # Receive statistics for our receiver reports and NACKs; octets
        # (whole packets) for operators.
        self.received = 0
        self.octets = 0
        self.baseSeq: int | None = None
        self.maxSeq = 0
        self.cycles = 0
        self.keyframes = 0  # keyframe starts received (a keyframe split in slices counts once)
        self.keyframeTimestamp: int | None = None  # RTP time of the last keyframe start
        self.keyframeAwaited = False  # asked for after a give-up, not started yet
        self.keyframeRetries = 0  # ... asked for again (counted)
        self.lateStarts = 0  # players started on a late keyframe start, caught up
        self.restarts = 0  # ... started again on an earlier packet of their first frame
        self.repairsRepeated = 0  # repairs from the way in sent to the players twice
        # The RTP time of the last keyframe packet and who started on which
        # of its numbers (L{_keyframeArrived}).
        self.begun: tuple[int | None, dict] = (None, {})
        # The last RECENT packets as forwarded (seq, then fanout's arguments).
        self.recent: list[tuple | None] = [None] * self.RECENT
        self.rtx = None  # a wcs.media.rtx.RtxReceiver when the publisher resends as RTX
        self.nacks = NackGenerator(self.clock, self._sendNack, self._wayInGivenUp,
                                   RetransmitBudget(policy.share, policy.burst),
                                   lambda: (self.octets, self.received))
        self.nacks.sendCopy = self._sendNackCopy
        self.trace = policy.trace if kind == "video" else None  # wcs.media.trace
        self.lastTimestamp: int | None = None
        self.reported = (0, 0)  # expected, received at the last report
        self.senderReportAt: tuple[int, float] | None = None
        isVideo = kind == "video"
        self._startsKeyframe = {
            "VP8": lambda payload, newFrame: rtp.vp8StartsKeyframe(payload),
            "H264": rtp.h264StartsKeyframe,
        }.get(codec) if isVideo else None

    def wanted(self) -> bool:
        """Whether something needs this track's packets as they come."""
        return bool(self.subscribers) or self._frameListener is not None

    @property
    def frameListener(self) -> Callable[[int, int, int, bytes], None] | None:
        return self._frameListener

    @frameListener.setter
    def frameListener(self, listener) -> None:
        self._frameListener = listener
        self._consumersChanged()

    def rtpReceived(self, data: bytes, repaired: bool = False) -> None:
        """
        A packet of this track, as the publisher sent it. C{repaired}: it
        was missing and came on RTX as the answer to our NACK.
        """
        now = self.seconds()
        if self.lastPacket is None:
            if self.firstPacket is not None:
                self.firstPacket()
        elif now - self.lastPacket > self.SILENCE:
            self.lastSilence = now
        self.lastPacket = now
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
        repaired = self._count(seq, timestamp) or repaired
        if self.trace is not None:
            self.trace.event("in", self.ssrc or 0, seq)
        keyframe = True
        if self._startsKeyframe is not None:
            keyframe = self._startsKeyframe(payload, timestamp != self.lastTimestamp)
            if keyframe:
                self.lastKeyframe = self.lastPacket
                self.keyframes += 1
                self.keyframeTimestamp = timestamp
                self.keyframeAwaited = False
                if self.trace is not None:
                    self.trace.event("key", self.ssrc or 0, seq)
            elif self.subscribers:
                self.keepWaitersServed(self.lastPacket)
        self.lastTimestamp = timestamp
        marker = second & rtp.MARKER_BIT
        if self.subscribers:
            args = (data[0] & rtp.PADDING_BIT, marker, seq, timestamp, payload, keyframe)
            self.recent[seq % self.RECENT] = args
            if keyframe and self._startsKeyframe is not None:
                self._keyframeArrived(args)
            else:
                self.fanout(*args)
            if repaired and self.policy.repeatRepairs:
                self.clock.callLater(self.REPEAT_AFTER, self._repeatRepair, seq)
        if self._frameListener is not None:
            self._frameListener(seq, timestamp, marker, payload)

    def _keyframeArrived(self, args: tuple) -> None:
        """
        Forward a packet a player may start on (C{args}: fanout's). On a
        jittery link it may come after later packets of its frame: a
        waiting player that starts on it gets those (L{_catchUp}); and a
        player that started on a later one of this frame (the start of an
        IDR's second slice that came first: it lacks the first slice and
        the SPS) starts again from this one, its numbering jumping past
        what it has (L{Subscription.restart}).
        """
        seq, timestamp = args[2], args[3]
        subscribers = self.subscribers
        waiting = [s for s in subscribers if not s.started]
        begun = self.begun
        if begun[0] == timestamp:
            for subscription, first in begun[1].items():
                if subscription.started and rtp.seqNewer(first, seq) and subscription in subscribers:
                    subscription.restart(skip=True)
                    self.restarts += 1
                    waiting.append(subscription)
        else:
            begun = self.begun = (timestamp, {})
        self.fanout(*args)
        for subscription in waiting:
            if subscription.started:
                begun[1][subscription] = seq
                if seq != self.maxSeq:
                    self._catchUp(subscription, seq)

    def _catchUp(self, subscription: Subscription, start: int) -> None:
        """
        C{subscription} started on C{start}, a keyframe's first packet that
        came after later ones (a repair): send it those, in order. Without
        them its buffer has a hole behind the keyframe that no NACK fills
        (we never sent those numbers), and aiortc's holds every frame until
        512 packets passed (the lab's 7.9 s freeze, docs/networks.md).
        """
        self.lateStarts += 1
        recent = self.recent
        for offset in range(1, min((self.maxSeq - start) & 0xFFFF, self.RECENT - 1) + 1):
            seq = (start + offset) & 0xFFFF
            args = recent[seq % self.RECENT]
            if args is not None and args[2] == seq:
                subscription.forward(*args)

    def keepWaitersServed(self, now: float) -> None:
        # The keyframe a give-up asked for has not started: the request, or
        # the keyframe's first packet, may be lost (5 % each on `mobile`).
        if self.keyframeAwaited and now - self.lastKeyframeRequest >= self.keyframeRetry():
            self.keyframeRetries += 1
            self.requestKeyframe()
        super().keepWaitersServed(now)

    def keyframeRetry(self) -> float:
        """
        How long a keyframe asked for may take to start: a round trip to
        the publisher (its NACK repairs measure it), a frame or two, and no
        sooner than the publisher's keyframe limit.
        """
        return max(self.policy.keyframeInterval, self.nacks.rtt.retry + 0.1)

    def _repeatRepair(self, seq: int) -> None:
        """
        The second copy of a repair from the way in (C{media_repeat_repairs}):
        it reached the players a round trip late, so a loss on a player's
        link would add a second round trip (NACK, resend), which on
        `mobile` was each of the lab's short freezes (docs/networks.md).
        """
        self.repairsRepeated += 1
        for subscription in self.subscribers:
            try:
                subscription.repeatRepair(seq)
            except Exception:
                # As in fanout: one player's failure must not stop the others.
                self.log.failure("repeating a repair to {s}", s=subscription)

    def _count(self, seq: int, timestamp: int) -> bool:
        # True for a packet our NACK repaired (on the media SSRC).
        self.received += 1
        if self.baseSeq is None:
            self.baseSeq = self.maxSeq = seq
            return False
        delta = (seq - self.maxSeq) & 0xFFFF
        if delta == 0 or delta >= 0x8000:
            # A late or retransmitted packet; on the media SSRC of a
            # publisher that resends on RTX, a late one.
            return bool(self.nacks.missing) and \
                self.nacks.received(seq, False if self.rtx is not None else None)
        if seq < self.maxSeq:
            self.cycles += 1 << 16
        if delta > 1 and self.kind == "video":
            self.nacks.lost(seq, delta, self._keyframeGap(timestamp))
        self.maxSeq = seq
        return False

    def _keyframeGap(self, timestamp: int) -> bool:
        """
        Whether a gap before a packet of RTP time C{timestamp} may hold a
        keyframe's packets: a player waits for one (its first packet may be
        in the gap), or the keyframe's frame is on either side of the gap.
        """
        key = self.keyframeTimestamp
        return (key is not None and (timestamp == key or self.lastTimestamp == key)) \
            or self.keyframeAwaited or any(not s.started for s in self.subscribers)

    @property
    def missing(self) -> set[int]:
        """Sequence numbers still wanted from the publisher."""
        return set(self.nacks.missing)

    def _wayInGivenUp(self) -> None:
        """
        Packets lost on the way in will not come: every player has a hole
        there. aiortc's jitter buffer keeps every later frame behind a hole,
        the keyframe asked for included, until 512 packets passed (the lab's
        `mobile` H.264: each give-up froze all players 1.3-2.8 s, then their
        buffers let out undecodable frames; docs/networks.md), so the players
        drop to that keyframe: their numbering jumps past the hole. Not a
        player that started after every packet given up (on a keyframe
        since): it needs none of them, and dropping it again for packets
        of before its start made give-ups cascade (the lab's `mobile` VP8,
        docs/networks.md).
        """
        if self.trace is not None:
            self.trace.event("giveup", self.ssrc or 0, self.nacks.nacksGivenUp)
        given = self.nacks.lastGivenUp
        dropped = 0
        for subscription in self.subscribers:
            if given and subscription.started and all(
                    subscription.isBeforeStart(seq) for seq in given):
                continue
            subscription.restart(skip=True)
            dropped += 1
        self.keyframeAwaited = dropped > 0
        if dropped or self._frameListener is not None or not self.subscribers:
            self.requestKeyframe()

    def _sendNack(self, lost: list[int], event: str = "pnack") -> None:
        if self.ssrc is not None:
            if self.trace is not None:
                self.trace.event(event, self.ssrc, *lost)
            self.transport.sendRtcp(rtp.nack(self.transport.rtcpSsrc, self.ssrc, lost))

    def _sendNackCopy(self, lost: list[int]) -> None:
        # Traced apart: the lab's tools count our tries from pnack alone.
        self._sendNack(lost, "pcopy")

    # s: a publisher's sender reports go on to the players at most this
    # often. Each one is a report to every player: a publisher sending
    # hundreds a second (28 bytes each, within any RTCP budget) had the
    # server build and send hundreds times the players. Browsers send one
    # every 1-5 s; the ones between still count for our reports to it and
    # for a player that starts.
    SR_INTERVAL = 0.25
    _srRelayedAt = float("-inf")
    senderReportsHeld = 0

    def senderReport(self, packet: RtcpSrPacket) -> None:
        info = packet.sender_info
        now = self.seconds()
        self.senderReportAt = ((info.ntp_timestamp >> 16) & 0xFFFFFFFF, now)
        if now - self._srRelayedAt < self.SR_INTERVAL:
            self.lastSenderReport = (info.ntp_timestamp, info.rtp_timestamp)
            self.senderReportsHeld += 1
            return
        self._srRelayedAt = now
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
            if self.trace is not None:
                self.trace.event("pli", self.ssrc)
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
            self.lastTimestamp = self.keyframeTimestamp = None
            self.recent = [None] * self.RECENT
            for subscription in self.subscribers:
                subscription.restart()
            self.requestKeyframe(force=True)
