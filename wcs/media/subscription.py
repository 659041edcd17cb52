"""
A player's copy of a L{wcs.media.track.Track}: renumbering, the history
that NACKs are answered from, and the budgets of its feedback (NACKs and
keyframe requests). L{Subscription.forward} is the per-player half of the
forwarding hot path (docs at the top of wcs/media/track.py).
"""

from __future__ import annotations

from typing import Callable

from wcs.media import rtp
from wcs.media.crossing import CopiesOut, StartHold
from wcs.media.feedback import FeedbackPolicy, RetransmitBudget, RoundTrip
from wcs.media.internals import RtcpSenderInfo, RtcpSrPacket
from wcs.media.keyframeask import KeyframeAsking
from wcs.media.reorder import NackHold
from wcs.media.rtcpguard import nackWindow
from wcs.media.stall import StallWatch

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
_pack = rtp.HEADER.pack


class Subscription(KeyframeAsking):
    """
    One player's copy of a track (a L{wcs.media.track.Track}, not imported:
    track.py imports this module): its SSRC, payload type and sequence and
    timestamp offsets. A video subscription starts at a keyframe.

    Its feedback is answered within budgets: a NACKed packet is resent at
    most once per RTT (measured from the player's receiver reports; a
    browser's repeat within it gets one early copy) and while retransmissions
    stay within C{policy.playerShare} of what the player receives (a
    browser's first NACKs leave it C{policy.playerNackReserve}); its
    keyframe requests reach the track at most once per
    C{policy.playerKeyframeInterval}, doubling (up to 4 times) while it
    keeps asking sooner; a PLI right after we resent packets it asked for
    waits one RTT, for the repair to land.
    """

    # s between a late packet's two copies (repeatCopy): apart, so that a
    # burst of loss that takes the first does not take both.
    REPEAT_AFTER = 0.02
    # s: a resend this soon after the slot's last copy is a second copy (a
    # slot is reused 512 packets later: over a second below ~4 Mbit/s).
    AGAIN_WITHIN = 1.0
    REPORTS_KEPT = 4  # our last sender reports, to match receiver reports with
    # Of the budget's bucket a second copy leaves: spare copies half; a
    # known lost packet's (media_repeat_waited) a quarter, for first
    # answers (with none kept, three times as many were refused over the
    # budget on `mobile`, each a keyframe asked for).
    SPARE, KNOWN_LOST_KEEP = 0.5, 0.25
    # s: a repeat sooner than this after our copy is the same NACK read twice
    # (a duplicate), not a webrtc.org player's timer (100 ms, or its RTT).
    EARLY_AFTER = 0.02

    def __init__(self, track, transport, ssrc: int, payloadType: int,
                 started: Callable[[], None] | None = None,
                 policy: FeedbackPolicy = DEFAULT_POLICY):
        self.track = track
        self.clock = track.clock
        self.policy = policy
        self.transport = transport
        self.send = transport.sendRtp
        self.sendParts = transport.sendRtpParts
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
        # The last keyframe start sent, and self.packets then: a NACK for a
        # packet before it needs no repair (the player decodes from it).
        self.keyframeSeq = 0
        self.keyframePacket = -0x10000
        # Where it started (our number): what is older is not sent (forward).
        self.startSeq = self.nextSeq
        self.startLongAgo = False  # half the number space sent since (_beforeStart)
        self.beforeStart = 0  # late packets from before its start, not sent
        # What was sent, for NACKs: the header, ours, and the payload, which
        # is the same object for every player of the track (a copy per
        # player was 500 KB of each player's memory at 1 Mbit/s).
        self.headers: list[bytes | None] = [None] * HISTORY
        self.payloads: list[bytes | None] = [None] * HISTORY
        self.resentAt = [float("-inf")] * HISTORY
        # When a repeat within the round trip was answered (playerEarlyCopy):
        # once per copy of resentAt.
        self.earlyAt = [float("-inf")] * HISTORY
        self.packets = 0
        self.octets = 0
        self.rtt = RoundTrip()
        self.budget = RetransmitBudget(policy.playerShare, policy.burst)
        # bytes of credit a packet's first NACK leaves for the repeated ones
        self.reserve = policy.playerNackReserve * policy.burst
        self.hold = NackHold(self.clock, self.resend, self.rtt, policy.playerReorderWait,
                             self._roomy)
        self.copiesOut = CopiesOut()  # an eager player's copies on their way (crossing)
        self.startHold = StartHold(self.clock, self._forwardHeld)
        self.jumping = False  # restarted with the skip: the keyframe start is a jump
        self.rtx = None  # a wcs.media.rtx.RtxSender when the player takes RTX
        self.trace = policy.trace if track.kind == "video" else None  # wcs.media.trace
        # Holes it reported until filled (video; wcs.media.stall).
        self.stall = StallWatch(self.clock, self, policy.playerStall) \
            if track.kind == "video" and policy.playerStall > 0 else None
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
        self.keyframesForRefused = 0  # keyframe asks on a player's behalf after that
        self.retransmitTooSoon = 0  # NACKed again within an RTT of the last resend
        self.resentEarly = 0  # ... of those, answered with one more copy (playerEarlyCopy)
        self.nacksDeferred = 0  # first NACKs that found only the reserve: left for the repeat
        self.nacksTooOld = 0  # NACKs for packets gone from the history
        self.nacksBeforeKeyframe = 0  # ... of them for packets before its last keyframe: ignored
        self.farRepeats = 0  # NACKed again far behind, not resent: a copy it has or may have
        self.keyframeRequestsReceived = 0  # PLI and FIR from the player
        self.keyframeRequestsLimited = 0  # its requests (of any cause) not passed on
        self.nacksReceived = 0  # NACK packets from the player (wcs.metrics)
        self.reportedLost = 0  # cumulative loss in its last receiver report (wcs.metrics)
        self.skipped = 0  # numbers skipped by restarts: the player reports them lost
        self.repairsRepeated = 0  # late packets sent twice (repeatCopy)

    def attach(self) -> None:
        self.transport.senders[self.ssrc] = self
        self.track.subscribe(self)

    def detach(self) -> None:
        self.track.unsubscribe(self)
        self.transport.senders.pop(self.ssrc, None)
        self._stopWatching()

    def _stopWatching(self) -> None:
        self._cancelHeld()
        self.startHold.cancel()
        self.hold.stop()
        if self.stall is not None:
            self.stall.stop()

    def forward(self, padding: int, marker: int, seq: int, timestamp: int,
                payload: bytes, keyframe: bool) -> None:
        if not self.started:
            if self.startHold.held is not None:  # a held start: not started meanwhile
                self.startHold.add((padding, marker, seq, timestamp, payload, keyframe))
                return
            if not keyframe:
                return
            if self.jumping and self.hold.eager:
                until = self.copiesOut.lastSentAt() + StartHold.AFTER_COPY
                if until > self.clock.seconds():
                    self.startHold.hold(until, (padding, marker, seq, timestamp, payload, True))
                    return
            self._begin(seq, timestamp)
        outSeq = (seq + self.seqDelta) & 0xFFFF
        slot = outSeq % HISTORY
        if self._beforeStart(outSeq):
            # A late repair from before the keyframe it started on: no use to
            # it, and 100 or more behind, aiortc drops all it holds for it.
            self.beforeStart += 1
            return
        late = rtp.seqNewer(self.lastSeq, outSeq)
        if late and self.hold.eager:
            # A repair or reordering on the way in: as good as a resend, so
            # a NACK that crossed it within a round trip is not answered.
            self.hold.forwardedLate(outSeq)
            self.resentAt[slot] = now = self.clock.seconds()
            self.copiesOut.sent(outSeq, now, self.lastSeq)
        if keyframe and not self._beforeKeyframe(outSeq):
            self.keyframeSeq, self.keyframePacket = outSeq, self.packets
        outTs = (timestamp + self.tsDelta) & 0xFFFFFFFF
        if not late:  # the newest sent: a late packet does not move them back
            self.lastSeq, self.lastTs = outSeq, outTs
        header = _pack(0x80 | padding, marker | self.payloadType, outSeq, outTs, self.ssrc)
        self.headers[slot] = header
        self.payloads[slot] = payload
        self.packets += 1
        self.octets += len(payload)
        if self.trace is not None:
            self.trace.event("fwd", self.ssrc, outSeq, seq, getattr(self.track, "ssrc", 0) or 0,
                             self.trace.cpu())
        # Header and payload apart: SRTP joins them in its own buffer.
        if not self.sendParts(header, payload) and self.transport.connected:
            # A player that cannot keep up loses packets up to the next
            # keyframe rather than queueing them (or slowing anyone else).
            self.restart(skip=True)
            self.askKeyframe(self.clock.seconds())

    def _forwardHeld(self, *packet) -> None:
        self.jumping = False  # its copies had their time: start
        self.forward(*packet)

    def _begin(self, seq: int, timestamp: int) -> None:
        # Continue our own numbering from where it stopped, so that a restart
        # (a new publisher SSRC) looks like a gap-free stream to the player.
        self.seqDelta = (self.nextSeq - seq) & 0xFFFF
        self.tsDelta = (self.nextTs - timestamp) & 0xFFFFFFFF
        self.startSeq = self.lastSeq = self.nextSeq  # a span of 0 for _beforeStart
        self.startLongAgo = False
        self.started = True
        self.jumping = False
        if self.track.lastSenderReport is not None:
            # Lip sync from the first picture, not from the next report.
            self.sendSenderReport(*self.track.lastSenderReport)
        if self.onStarted is not None:
            started, self.onStarted = self.onStarted, None
            started()

    def _beforeStart(self, outSeq: int) -> bool:
        if self.startLongAgo:
            return False
        # Measured from the newest: numbers run on past lost packets.
        span = (self.lastSeq - self.startSeq) & 0xFFFF
        if span >= 0x8000:
            # Half the numbers since the start: no repair reaches back that
            # far, and the span would wrap (once per 65 536 numbers, every
            # late packet read as older than the start and was not sent: a
            # 3-4 s stall every 8 minutes at 1 Mbit/s, docs/networks.md).
            self.startLongAgo = True
            return False
        behind = (self.lastSeq - outSeq) & 0xFFFF
        return behind < 0x8000 and behind > span

    def isBeforeStart(self, seq: int) -> bool:
        """Whether the track's packet C{seq} is older than where this player started."""
        return self._beforeStart((seq + self.seqDelta) & 0xFFFF)

    def restart(self, skip: bool = False) -> None:
        """
        The track's numbering starts over: wait for a keyframe again. With
        C{skip} (the player lost packets it will not get: it drops to the
        keyframe) our numbering jumps L{RESTART_SKIP} ahead, so that the
        player's buffer gives up on its holes when the keyframe comes;
        without, it goes on gap-free (a publisher's new stream).
        """
        self.startHold.cancel()
        if self.started:
            self.started = False
            self.jumping = skip
            gap = RESTART_SKIP if skip else 0
            self.skipped += gap
            if skip and self.stall is not None:
                self.stall.reset()
            self.nextSeq = (self.lastSeq + 1 + gap) & 0xFFFF
            self.nextTs = (self.lastTs + self.track.clockRate // 10) & 0xFFFFFFFF
            if skip:
                # A NACK sent before the jump must not be answered after it:
                # a copy 100 or more behind aiortc's buffer makes it drop
                # everything, the keyframe included, and wait from that copy.
                self.headers = [None] * HISTORY

    def sentPacket(self, seq: int) -> bytes | None:
        """The packet sent as C{seq}, while the history keeps it."""
        slot = seq % HISTORY
        header = self.headers[slot]
        if header is None or rtp.SEQ_TS.unpack_from(header, 2)[0] != seq:
            return None
        return header + self.payloads[slot]

    def _beforeKeyframe(self, seq: int) -> bool:
        """
        Whether C{seq} was sent before the last keyframe start, when that
        start is within half the numbering (older, the comparison wraps).
        """
        return self.packets - self.keyframePacket < 0x8000 and rtp.seqNewer(self.keyframeSeq, seq)

    def nackReceived(self, lost: list[int]) -> None:
        self.nacksReceived += 1
        lost = nackWindow(lost, self.lastSeq, HISTORY)  # at most HISTORY + 1 (rtcpguard)
        if self.trace is not None:
            self.trace.event("nack", self.ssrc, *lost)
        if self.stall is not None:
            self.stall.nacked(lost)
        answer = self.hold.filter(lost)
        if self.hold.eager:
            self.copiesOut.listed(lost, self.clock.seconds())
        self.resend(answer)

    def _roomy(self, answering: int) -> bool:
        """Whether one more resend beside C{answering} leaves the budget half full."""
        size = self.octets // self.packets + 12 if self.packets else 1200
        return self.budget.roomy(self.octets, (answering + 1) * size)

    def resend(self, lost: list[int]) -> None:
        """Answer NACKed packets C{lost}, within the budgets."""
        tooOld = refused = False
        now = self.clock.seconds()
        retry = self.rtt.retry
        # A copy we resent may be on its way for one round trip: a NACK later
        # than that left the player after the copy should have come. Not the
        # retry (RTT + 2 variations): aiortc players re-ask every few tens of
        # ms, so that margin went into every repair whose first copy was lost
        # (`mobile`: the ~0.5 s freezes, docs/networks.md); a copy only late
        # costs a duplicate, within the budget, but beyond the reach of
        # StallWatch.MAX_BEHIND one lands 100 behind the oldest packet an
        # aiortc player holds once the frames behind the hole are released,
        # and it drops its whole jitter buffer (4.6 s frozen on `mobile`):
        # there the retry. Never longer than the retry (capped at 1 s: a
        # loaded player's reports can read seconds).
        onItsWay = min(self.rtt.smoothed, retry)
        # A webrtc.org player re-asks each round trip it estimates (100 ms
        # until it has one), from a timer: a repeat before our copy could
        # come says the packet was lost, not reordered (nine in ten of
        # Chromium's first NACKs on a jittery link are for packets still on
        # their way, docs/networks.md). One more copy then, in case ours is
        # lost too: otherwise its repair waits our round trip and another.
        early = self.policy.playerEarlyCopy and not self.hold.eager
        # Those first NACKs may not spend the reserve, which the repeats need
        # (media_player_nack_reserve).
        asked = self.hold.asked if self.reserve and not self.hold.eager else {}
        # Still listed after the reordering wait: lost on its link, as a
        # resend may be too (mobile's 5 %), which costs another round trip
        # and a freeze (docs/networks.md): its resend goes twice.
        waited = self.hold.takeReleased()
        for seq in lost:
            # aiortc's parser does not wrap a bitmask that spans 65535 -> 0.
            seq &= 0xFFFF
            slot = seq % HISTORY
            header = self.headers[slot]
            if header is None:
                continue  # never sent: lost on the way in, NACKed to the publisher
            kept = rtp.SEQ_TS.unpack_from(header, 2)[0]
            if kept == seq and self.hold.eager and not self._near(seq) \
                    and self.copiesOut.needless(seq):
                # Far behind, a copy it has drops an eager player's buffer.
                self.farRepeats += 1
                if self.trace is not None:
                    self.trace.event("far", self.ssrc, seq)
            elif kept == seq:
                data = header + self.payloads[slot]
                since = now - self.resentAt[slot]
                first = now - asked.get(seq, float("-inf")) < NackHold.SOONEST  # in this very NACK
                near = self._near(seq)
                # Its lists show the copy lost: not the retry's wait, in which
                # aiortc forgets the hole (128 behind its newest) and then
                # holds every frame behind it for seconds.
                stillMissing = not near and self.hold.eager and self.copiesOut.lost(seq)
                wait = 0.0 if stillMissing else onItsWay if near else retry
                if since < wait:
                    if early and since >= self.EARLY_AFTER \
                            and self.earlyAt[slot] < self.resentAt[slot] \
                            and self._resendPacket(seq, data, now, again=True):
                        self.earlyAt[slot] = now
                        self.resentEarly += 1
                        event = "early"
                    else:
                        self.retransmitTooSoon += 1  # the last copy may still be on its way
                        event = "soon"
                elif self._resendPacket(seq, data, now, self.reserve if first else 0):
                    self.repairingUntil = now + retry
                    event = "rs"
                    if since < self.AGAIN_WITHIN and self.policy.repeatRepairs:
                        # A copy we sent (or forwarded late) was lost: this
                        # one is a round trip later still, so it goes twice.
                        self.clock.callLater(self.REPEAT_AFTER, self.repeatCopy, seq,
                                             stillMissing)
                    elif seq in waited and self.policy.repeatWaited:
                        self.clock.callLater(self.REPEAT_AFTER, self.repeatCopy, seq,
                                             False, False)
                    elif self.policy.repeatOverdue and self.hold.eager \
                            and now - self.wentAt(seq) > retry:
                        # First NACKed a round trip and two variations after
                        # it went: more often lost than the sooner ones, most
                        # of which are for packets still on their way; a
                        # loss of this resend would cost another round
                        # trip, a freeze (docs/networks.md).
                        self.clock.callLater(self.REPEAT_AFTER, self.repeatCopy, seq)
                elif first:
                    self.nacksDeferred += 1  # it asks again if the packet does not come
                    event = "defer"
                else:
                    self.retransmitDropped += 1
                    refused = True
                    event = "budget"
                if self.trace is not None:  # with ms since its last resend, and the wait in force
                    self.trace.event(event, self.ssrc, seq, round(min(since, 99) * 1000),
                                     round(wait * 1000))
            elif rtp.seqNewer(kept, seq):
                # Gone from the history. Before the last keyframe it was
                # sent, nothing needs it (a webrtc.org receiver stops asking
                # once it decodes a later frame, aiortc's buffer skips it):
                # a late repeat, which must not drop a picture that moves
                # again. After it, only a keyframe repairs it.
                if self._beforeKeyframe(seq):
                    self.nacksBeforeKeyframe += 1
                else:
                    tooOld = True
        if tooOld:
            # Too far behind for the history: drop to the next keyframe,
            # asked for within this player's own limit.
            self.nacksTooOld += 1
            self.restart(skip=True)
            self.askKeyframe(now)
        elif refused:
            # An unrepaired loss: aiortc asks for a keyframe only when its
            # jitter buffer overflows (128 packets later, seconds on a slow
            # stream), so ask on its behalf, within its own limit.
            self.keyframesForRefused += 1
            self.askKeyframe(now)

    def _resendPacket(self, seq: int, data: bytes, now: float, keep: float = 0,
                      again: bool = False) -> bool:
        # Within the budget, leaving C{keep} bytes of it; False when over it.
        # C{again}: a second copy, the round trip still counted from the first.
        if not self.budget.spend(self.octets, len(data), keep):
            return False
        if not again:
            self.resentAt[seq % HISTORY] = now
        if self.hold.eager:
            self.copiesOut.sent(seq, now, self.lastSeq)
        self.retransmitted += 1
        self.retransmittedOctets += len(data)
        if self.rtx is None:
            self.send(data)
        else:
            if self.trace is not None:  # which RTX number carries it (the lab's link trace)
                self.trace.event("cp", self.ssrc, seq, self.rtx.seq)
            self.send(self.rtx.wrap(data))
        if self.stall is not None:
            self.stall.resent(seq, now)
        return True

    def resendProbe(self, seq: int, keep: float = 0.0) -> bool | None:
        """
        Resend C{seq} unasked (wcs.media.stall, repeatCopy), within the
        budget, while C{keep} of its bucket stays (L{SPARE}: only from
        spare credit). None when it cannot be: gone from the history,
        never sent, or over the budget.
        """
        data = self.sentPacket(seq)
        if data is None or not self._resendPacket(seq, data, self.clock.seconds(),
                                                   self.budget.burst * keep):
            return None
        return True

    def repeatRepair(self, seq: int) -> None:
        """
        A second copy of the track's packet C{seq}, forwarded late as a
        repair from the way in (L{wcs.media.track.IncomingTrack}).
        """
        self.repeatCopy((seq + self.seqDelta) & 0xFFFF)

    def wentAt(self, seq: int) -> float:
        """
        When our C{seq} was fanned out by the track (-inf: nothing in its
        place yet). Only a second copy hangs on it, so a near miss is
        harmless: a packet C{Track.FANNED} or more ago reads as the newer
        one in its place, and one from before a restart of our numbering
        as another packet.
        """
        return self.track.fannedAt[(seq - self.seqDelta) & (self.track.FANNED - 1)]

    def _near(self, seq: int) -> bool:
        """
        Whether our C{seq} is less than L{StallWatch.MAX_BEHIND} behind the
        newest sent: a copy the player already has lands there without
        making aiortc drop its buffer.
        """
        return (self.lastSeq - seq) & 0xFFFF < StallWatch.MAX_BEHIND

    def repeatCopy(self, seq: int, stillMissing: bool = False, spare: bool = True) -> None:
        """
        Send C{seq} (ours) once more: from spare budget (unless not
        C{spare}: a packet known lost, while a quarter of the bucket stays
        for first answers), and only while it is not far behind our
        newest (where a copy the player has makes aiortc drop its buffer)
        unless C{stillMissing}: its lists showed the last copy lost, the
        hole is open, and the two copies come within the link's jitter of
        each other (docs/media.md).
        """
        if self.started and (stillMissing or self._near(seq)):
            if self.resendProbe(seq, self.SPARE if spare else self.KNOWN_LOST_KEEP):
                self.repairsRepeated += 1
                if self.trace is not None:
                    self.trace.event("rep", self.ssrc, seq)
            elif self.trace is not None:  # no budget to spare (or gone from the history)
                self.trace.event("norep", self.ssrc, seq)

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
        self._stopWatching()
