"""
Retransmission and keyframe budgets: what the forwarding path may ask for
and resend on links that have the least room for it (docs/media.md,
"Loss, retransmission and keyframes").

Small pieces, each on an injected clock (an L{IReactorTime}):
L{RoundTrip} (a smoothed RTT and the delay before asking again),
L{RetransmitBudget} (retransmissions as a share of the media they repair),
L{NackGenerator} (the publisher leg: which missing packets to NACK, when,
and when to give up). The player leg and the keyframe limits live in
L{wcs.media.track}, using these.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Callable

from wcs.config import Key, declare
from wcs.media import rtp
from wcs.media.trace import PacketTrace

declare(
    Key("media_retransmit_share", "int", 20,
        "percent of a stream's bitrate that retransmissions may add on the publisher's "
        "leg (what we NACK); 0: no retransmission"),
    Key("media_player_retransmit_share", "int", 60,
        "percent of the bytes a player was sent that we may resend to it on its NACKs; "
        "0: no retransmission to players"),
    Key("media_retransmit_burst", "int", 32,
        "KiB of retransmission credit a leg may save up (each leg's budget is a token bucket): "
        "how many NACKed packets one batch may have answered at once"),
    Key("media_retransmit_refund", "bool", True,
        "publisher leg (RTX publishers): the budget gets back, 1 s after a NACK, the bytes of "
        "NACK entries the publisher's RTX did not answer, so that it is charged for what the "
        "uplink carried; false: charged per NACK entry"),
    Key("media_repeat_repairs", "bool", True,
        "a video packet that reaches a player a round trip late (repaired on the publisher's "
        "leg, late by itself a round trip after our NACK for it, or resent to the player "
        "again after a lost copy) goes to it a second time 20 ms "
        "after the first, from spare retransmission budget: a loss on the player's link would "
        "add another round trip (docs/networks.md); false: once"),
    Key("media_repeat_waited", "bool", True,
        "a packet an aiortc-like player (one that lists every missing packet in each NACK) "
        "still lists after the reordering wait (media_player_reorder_wait) was lost, not "
        "reordered: its resend goes twice, 20 ms apart, from the player's retransmission "
        "budget while a quarter of it stays for first answers, so that a loss of the resend "
        "does not cost it another round trip (docs/networks.md); false: once"),
    Key("media_repeat_overdue", "bool", True,
        "a packet an aiortc-like player first NACKs more than a round trip and two "
        "variations after it went was more often lost than reordered: its resend goes "
        "twice, 20 ms apart, the second from spare retransmission budget, so that a loss "
        "of the resend does not cost it another round trip (docs/networks.md); false: once"),
    Key("media_nack_twice", "bool", True,
        "each NACK to a publisher that resends on RTX goes a second time 10 ms later, "
        "charged to the publisher leg's budget, so that a lost NACK or a lost resend does "
        "not cost the packet another round trip (docs/networks.md); false: once"),
    Key("media_player_early_copy", "bool", True,
        "a webrtc.org player (a browser) that NACKs a packet again before our resend could "
        "reach it lost the packet itself (a reordered one would have come): it gets one more "
        "copy at once, charged to its budget, so that a lost resend does not cost it another "
        "round trip (docs/networks.md); false: such a repeat is refused until our round trip "
        "has passed"),
    Key("media_player_nack_reserve", "int", 50,
        "percent of a webrtc.org player's retransmission credit (media_retransmit_burst) that "
        "a packet's first NACK may not spend: kept for the NACKs it repeats, which are for "
        "packets really lost, where most first NACKs on a jittery link are for packets still "
        "on their way; such a first NACK is left for its repeat; 0: every NACK may spend all"),
    Key("media_keyframe_interval", "int", 500,
        "ms between two keyframe requests (PLI) to a publisher, whatever the number of players"),
    Key("media_player_keyframe_interval", "int", 2000,
        "ms between two keyframe requests of one player that reach the publisher; a player "
        "that keeps asking waits up to 4 times longer"),
)


@dataclass(frozen=True)
class FeedbackPolicy:
    """The settings above, in the units the forwarding path uses."""

    share: float = 0.2  # of the media bytes, publisher leg
    playerShare: float = 0.6  # of the bytes sent to one player
    keyframeInterval: float = 0.5  # s
    playerKeyframeInterval: float = 2.0  # s
    playerReorderWait: float = 0.15  # s (wcs.media.reorder)
    burst: int = 32768  # bytes a budget may save up (RetransmitBudget.BURST)
    trace: PacketTrace | None = None  # the lab's per-packet trace (wcs.media.trace)
    playerStall: float = 0.0  # s (wcs.media.stall); 0: off, as the setting's default
    refund: bool = True  # NackGenerator.answered (media_retransmit_refund)
    repeatRepairs: bool = True  # IncomingTrack, Subscription (media_repeat_repairs)
    nackTwice: bool = True  # NackGenerator.copies for RTX publishers (media_nack_twice)
    playerEarlyCopy: bool = True  # Subscription.resend (media_player_early_copy)
    playerNackReserve: float = 0.5  # of the burst kept from first NACKs (media_player_nack_reserve)
    repeatWaited: bool = True  # Subscription.resend (media_repeat_waited)
    repeatOverdue: bool = True  # Subscription.resend (media_repeat_overdue)

    @classmethod
    def fromSettings(cls, settings) -> "FeedbackPolicy":
        return cls(settings.media_retransmit_share / 100,
                   settings.media_player_retransmit_share / 100,
                   settings.media_keyframe_interval / 1000,
                   settings.media_player_keyframe_interval / 1000,
                   settings.media_player_reorder_wait / 1000,
                   settings.media_retransmit_burst * 1024,
                   PacketTrace.fromSettings(settings),
                   settings.media_player_stall / 1000,
                   settings.media_retransmit_refund,
                   settings.media_repeat_repairs,
                   settings.media_nack_twice,
                   settings.media_player_early_copy,
                   settings.media_player_nack_reserve / 100,
                   settings.media_repeat_waited,
                   settings.media_repeat_overdue)


class RoundTrip:
    """
    A smoothed round-trip time (RFC 6298's estimator) and L{retry}, how
    long to wait for a retransmission before asking again: the default
    RTT until a sample comes, then the smoothed RTT plus twice its
    variation, so that jitter does not make us ask twice.
    """

    DEFAULT = 0.1  # s, while nothing was measured
    MIN_RETRY, MAX_RETRY = 0.02, 1.0

    def __init__(self) -> None:
        self.smoothed = self.DEFAULT
        self.variation = 0.0
        self.samples = 0
        self.retry = self.DEFAULT

    def sample(self, rtt: float) -> None:
        if rtt <= 0 or rtt > 5:
            return  # a clock step or a report about something else
        if self.samples == 0:
            self.smoothed, self.variation = rtt, rtt / 4
        else:
            self.variation += (abs(self.smoothed - rtt) - self.variation) / 4
            self.smoothed += (rtt - self.smoothed) / 8
        self.samples += 1
        self.retry = min(self.MAX_RETRY, max(self.MIN_RETRY, self.smoothed + 2 * self.variation))


class RetransmitBudget:
    """
    Retransmitted bytes as a share of the media bytes they belong to: a
    token bucket filled by the media (C{share} of each byte), emptied by
    retransmissions, holding at most L{BURST} bytes so that a quiet
    minute does not pay for a storm. Nothing happens per media packet:
    the owner counts its octets anyway and the bucket catches up from that
    count when asked.
    """

    # bytes: one batch of NACKs (Chromium asks for 10-30 packets at once on a
    # jittery link; 8 KiB cut those batches), not seconds of a stream.
    BURST = 32768
    START = 4096  # bytes: a stream's first loss may be repaired before it earned any

    def __init__(self, share: float, burst: int = BURST):
        self.share = share
        self.burst = burst
        self.credit = float(self.START) if share > 0 else 0.0
        self.seen = 0  # media octets already turned into credit

    def _refill(self, mediaOctets: int) -> None:
        self.credit = min(self.burst, self.credit + (mediaOctets - self.seen) * self.share)
        self.seen = mediaOctets

    def roomy(self, mediaOctets: int, size: int) -> bool:
        """Whether C{size} more bytes would leave the bucket half full (not short of budget)."""
        self._refill(mediaOctets)
        return self.credit - size >= self.burst / 2

    def refund(self, mediaOctets: int, size: int) -> None:
        """C{size} bytes charged were not spent after all (never exceeding the burst)."""
        self._refill(mediaOctets)
        self.credit = min(self.burst, self.credit + size)

    def spend(self, mediaOctets: int, size: int, keep: float = 0) -> bool:
        """
        Whether C{size} more bytes may go, with C{mediaOctets} of media so far,
        leaving at least C{keep} bytes of credit.
        """
        self._refill(mediaOctets)
        if self.credit - keep < size:
            return False
        self.credit -= size
        return True


class NackGenerator:
    """
    What to NACK to a publisher. A missing packet is asked for on the next
    tick (every L{INTERVAL}, a timer per track that runs only while
    something is missing), again only after L{RoundTrip.retry}, at most
    L{MAX_TRIES} times, and only while the budget allows (an estimated
    packet size per request); then it is given up and C{gaveUp} is called
    (once per tick): the frame it belonged to cannot be completed.

    The RTT is measured here: from a NACK to the retransmission it asked for
    (first tries only, as RFC 6298 does with retransmitted segments).

    The budget is charged per NACK entry when it goes. With C{answered}
    (the RTX octets received so far: C{media_retransmit_refund}, set by the
    publish session for a publisher that resends on RTX), what was charged
    L{REFUND_AFTER} ago and more but not answered is paid back: the budget
    counts what the uplink carried (under load the lab's publisher answered
    20-80 % of our entries, and the budget gave up hundreds of packets with
    the uplink at 1.1-1.2x its media: docs/networks.md, branch `uplinkwait`).

    A packet that comes late by itself (reordered: before we asked, or on
    the media SSRC when the publisher resends on RTX, or sooner after the
    NACK than half a round trip) was not lost: how late it was is a sample
    of L{reorderWait}, how long a missing packet waits before its first
    NACK: the L{REORDER_QUANTILE} of the samples of the last
    L{REORDER_WINDOW} seconds, at most L{MAX_REORDER_WAIT}. On a link that
    reorders, NACKs for packets still on their way would spend the budget
    that lost ones need; waiting for the latest of them (the lab's `wifi`:
    60-90 ms where 95 % came within 20) delayed every repair of the way in.

    A packet lost with C{keyframe} (of a keyframe, or while players wait
    for one) is asked for first and whatever the budget (without spending
    credit it lacks), and not given up for want of budget: giving it up
    drops every player to a new keyframe, one more round trip and one more
    chance of the same (the lab's `mobile` H.264, docs/networks.md).

    @ivar missing: sequence number -> [noticed at, last asked at or None, tries]
    @ivar keyframe: the missing sequence numbers of keyframes
    """

    INTERVAL = 0.02  # s between two batches at most
    SOONEST = 0.01  # s: the least wait before a first NACK (a burst's own reordering)
    BATCH = 0.002  # s: what is due this much later goes in the same NACK
    MAX_TRIES = 10
    MAX_WAIT = 1.0  # s a packet may wait for budget before it is given up
    MAX_GAP = 64  # a larger gap is not NACKed: only a keyframe repairs it
    MAX_MISSING = 256  # sequence numbers behind the newest that are still wanted
    MAX_REORDER_WAIT = 0.15  # s: the longest wait for a late packet before its first NACK
    REORDER_WINDOW = 2.0  # s of late packets the wait is taken from
    REORDER_KEPT = 128  # samples at most
    REORDER_QUANTILE = 0.95  # of them: the rest is NACKed, and its resend is wasted
    REFUND_AFTER = 1.0  # s: a NACK entry not answered by then will not be
    COPY_AFTER = 0.01  # s: a NACK's copy after it (apart: a link's losses come in bursts)

    def __init__(self, clock, send: Callable[[list[int]], None], gaveUp: Callable[[], None],
                 budget: RetransmitBudget, media: Callable[[], tuple[int, int]]):
        self.clock = clock
        self.send = send
        self.gaveUp = gaveUp
        self.budget = budget
        self.media = media  # octets and packets of media received so far
        self.rtt = RoundTrip()
        self.reorderWait = 0.0  # s a missing packet waits before its first NACK
        self.lateSamples: deque[tuple[float, float]] = deque(maxlen=self.REORDER_KEPT)
        self.missing: dict[int, list] = {}
        self.keyframe: set[int] = set()
        # What the last gaveUp() was for (empty: a gap too large to list).
        self.lastGivenUp: list[int] = []
        self._call = None
        self._callAt = 0.0  # when _call fires
        # Counters (docs/media.md).
        self.nacksSent = 0  # sequence numbers asked for, each try counted
        self.retransmitsReceived = 0  # missing packets that came after all
        self.nacksGivenUp = 0  # missing packets given up
        self.nacksOverBudget = 0  # requests held back by the budget, each tick counted
        self.reordered = 0  # missing packets that came late by themselves
        self.lateAsRepairs = 0  # of those, after our NACK and a round trip late
        self.keyframeNacks = 0  # keyframe packets asked for past the budget
        # Set (a callable: the RTX octets received so far) to charge the
        # budget for what the publisher answered, not for what we asked:
        # a NACK entry unanswered after REFUND_AFTER is paid back.
        self.answered: Callable[[], int] | None = None
        self.charges: deque[tuple[float, int]] = deque()
        self.charged = 0  # octets charged REFUND_AFTER ago or more
        self.refunded = 0  # octets paid back
        # Set True for a publisher that answers each NACK entry on RTX: each
        # NACK goes again COPY_AFTER later, within the budget, so that a
        # lost NACK or resend does not cost a retry and another round trip
        # (a second resend is dropped as unasked, wcs.media.rtx).
        self.copies = False
        # Where the copies go (the trace tells them from the tries); None: send.
        self.sendCopy: Callable[[list[int]], None] | None = None
        self._copyCalls: dict[int, object] = {}
        self.nacksCopied = 0  # sequence numbers asked for a second time at once

    def lost(self, newest: int, gap: int, keyframe: bool = False) -> bool:
        """
        C{newest} arrived C{gap} after the previous newest: the packets
        between are missing (with C{keyframe}, packets a keyframe may need).
        False when the gap is too large to repair.
        """
        missing = self.missing
        if missing:
            # Entries are in the order they went missing: the oldest first.
            oldest = (newest - self.MAX_MISSING) & 0xFFFF
            evicted = []
            while missing:
                seq = next(iter(missing))
                if rtp.seqNewer(seq, oldest):
                    break
                del missing[seq]
                self.keyframe.discard(seq)
                evicted.append(seq)
            if evicted:
                # Given up as surely as after MAX_TRIES (a late loop, the
                # lab at load 20: players waited on these holes until
                # aiortc's buffer overflowed): the players must know.
                self.nacksGivenUp += len(evicted)
                self.lastGivenUp = evicted
                self.gaveUp()
        if gap > self.MAX_GAP:
            self.nacksGivenUp += gap - 1
            self.lastGivenUp = []
            self.gaveUp()
            return False
        now = self.clock.seconds()
        for i in range(gap - 1, 0, -1):
            missing[(newest - i) & 0xFFFF] = [now, None, 0]
        if keyframe:
            self.keyframe.update((newest - i) & 0xFFFF for i in range(gap - 1, 0, -1))
        self._expireLate(now)
        # The first NACK when the reordering wait is over, not on the next
        # tick: a repair of the way in delays every player's frames.
        self._schedule(now, now + max(self.SOONEST, self.reorderWait) - self.BATCH)
        return True

    def _schedule(self, now: float, due: float) -> None:
        delay = min(self.INTERVAL, max(self.BATCH, due - now))
        call = self._call
        if call is not None:
            if self._callAt <= now + delay:
                return
            call.cancel()  # (asyncio's handles, as LoopClock's, have no reset)
        self._callAt = now + delay
        self._call = self.clock.callLater(delay, self._tick)

    def received(self, seq: int, retransmission: bool | None = None) -> bool:
        """
        A packet older than the newest arrived: a retransmission or a late
        one. C{retransmission}: which, when the stream tells (RTX); None
        when it cannot (plain retransmissions come on the media SSRC).
        True when it was missing and came as late as a repair: as the
        answer to our NACK, or by itself after our NACK for it went and a
        round trip after it went missing (the players have waited for it
        as long: a loss on a player's link now costs a second round trip,
        so it goes to them twice, C{media_repeat_repairs}).
        """
        entry = self.missing.pop(seq, None)
        if entry is None:
            return False
        self.keyframe.discard(seq)
        self.retransmitsReceived += 1
        now = self.clock.seconds()
        noticed, asked, tries = entry
        if tries == 0 or retransmission is False or (
                retransmission is None and now - asked < self.rtt.smoothed / 2):
            self.reordered += 1
            self.lateSamples.append((now, now - noticed))
            self._expireLate(now, changed=True)
            if tries and now - noticed >= self.rtt.smoothed:
                self.lateAsRepairs += 1
                return True
            return False
        if tries == 1:
            self.rtt.sample(now - asked)
        return True

    def _sendCopy(self, key: int, batch: list[int], size: int) -> None:
        """The NACK of C{batch} again: what is still missing and the budget pays for."""
        del self._copyCalls[key]
        octets = self.media()[0]
        copy = [seq for seq in batch if seq in self.missing and self.budget.spend(octets, size)]
        if copy:
            self.nacksCopied += len(copy)
            (self.sendCopy or self.send)(copy)
            self._charged(self.clock.seconds(), len(copy) * size)

    def _charged(self, now: float, octets: int) -> None:
        """A NACK's entries, paid back by L{_refund} if the publisher does not answer them."""
        if self.answered is not None:
            self.charges.append((now, octets))

    def _refund(self, now: float, octets: int) -> None:
        charges = self.charges
        while charges and charges[0][0] <= now - self.REFUND_AFTER:
            self.charged += charges.popleft()[1]
        owed = self.charged - self.answered() - self.refunded
        if owed > 0:
            self.refunded += owed
            self.budget.refund(octets, owed)

    def _pastBudget(self) -> bool:
        """A keyframe's packet asked for without the credit: counted."""
        self.keyframeNacks += 1
        return True

    def _expireLate(self, now: float, changed: bool = False) -> None:
        """L{reorderWait} from the samples of the last L{REORDER_WINDOW}."""
        samples = self.lateSamples
        while samples and samples[0][0] < now - self.REORDER_WINDOW:
            samples.popleft()
            changed = True
        if changed:
            late = sorted(sample for _, sample in samples)
            # Few samples: the latest (a quantile of three is not one).
            index = math.ceil(self.REORDER_QUANTILE * len(late)) - 1
            self.reorderWait = min(self.MAX_REORDER_WAIT, late[index]) if late else 0.0

    def reset(self) -> None:
        self.missing = {}
        self.keyframe = set()
        self.stop()

    def stop(self) -> None:
        call, self._call = self._call, None
        if call is not None:  # cleared when it fires: still pending
            call.cancel()
        calls, self._copyCalls = self._copyCalls, {}
        for call in calls.values():
            call.cancel()

    def _tick(self) -> None:
        self._call = None
        now = self.clock.seconds()
        retry = self.rtt.retry
        octets, packets = self.media()
        # The mean packet size (octets go on across a new SSRC, packets not).
        size = min(octets // packets, 1500) if packets else 1200
        batch = []
        givenUp = []
        due = now + self.INTERVAL
        firstWait = max(self.SOONEST, self.reorderWait) - self.BATCH
        retry -= self.BATCH
        keyframe = self.keyframe
        # A keyframe's packets first: they spend the credit before the rest.
        order = sorted(self.missing.items(), key=lambda item: item[0] not in keyframe) \
            if keyframe else self.missing.items()
        for seq, entry in order:
            noticed, asked, tries = entry
            if asked is not None and now - asked < retry:
                due = min(due, asked + retry)
                continue
            if asked is None and now - noticed < firstWait:
                due = min(due, noticed + firstWait)
                continue  # may still come by itself
            precious = seq in keyframe
            if tries >= self.MAX_TRIES or (
                    asked is None and now - noticed >= self.MAX_WAIT and not precious):
                givenUp.append(seq)
            elif self.budget.spend(octets, size) or precious and self._pastBudget():
                entry[1] = now
                entry[2] = tries + 1
                batch.append(seq)
            else:
                self.nacksOverBudget += 1
                if now - noticed >= self.MAX_WAIT:
                    givenUp.append(seq)
        for seq in givenUp:
            del self.missing[seq]
            keyframe.discard(seq)
        if batch:
            self.nacksSent += len(batch)
            self.send(batch)
            self._charged(now, len(batch) * size)
            if self.copies:
                key = id(batch)
                self._copyCalls[key] = self.clock.callLater(
                    self.COPY_AFTER, self._sendCopy, key, batch, size)
        if self.answered is not None:
            self._refund(now, octets)
        if self.missing:
            self._schedule(now, due)
        if givenUp:
            self.nacksGivenUp += len(givenUp)
            self.lastGivenUp = givenUp
            self.gaveUp()
