"""
The player leg's reordering allowance (docs/media.md, "Loss, retransmission
and keyframes").

webrtc.org's receivers (Chromium, Firefox) wait for reordering before they
NACK a packet and ask again only after a round trip. Others (aiortc) NACK
a packet as soon as a later one arrives and list every packet still
missing in each NACK, one per new gap: on a link that reorders, most of
what they ask for is still on its way, and answering it at once spends
the retransmission budget that the real losses need.

Such a player shows itself by asking again for a packet within half a
round trip (at most 50 ms, at least 10), which a webrtc.org receiver
never does by itself; but two of its NACKs sent a round trip apart are
read here back to back when the server or the player ran late (a loaded
machine: Chromium did so in 1-6% of its NACKs, aiortc in ~40%, on
`wifi`), so a player is eager only while such re-askings are at least
L{NackHold.EAGER_SHARE} of its NACKs (docs/networks.md, "Chromium on
`wifi`"). While it is,
L{NackHold} reads its NACKs as lists of what is still missing: a packet
first asked for is resent only after L{NackHold.wait}, unless a later list
left it out meanwhile (it arrived by itself: how long it was still listed is a
sample of the wait). Players that never re-ask so soon are answered at
once, as before.

The wait is measured, not assumed: it starts at 0 (an eager player's NACKs
are answered at once while nothing has been seen to come late) and is
MARGIN times the latest packet that came by itself, decaying with
HALF_LIFE, at most the setting. A packet answered at once still teaches
it: left out of a later list sooner than one round trip after it was
answered, it came by itself (the resend could not have).

Only while the player's budget is short: with room in it (a resend leaves
its bucket at least half full) a first NACK is answered at once, as Janus
answers every NACK, and the packets still on their way cost bytes, not
the real losses' delay.

A packet late on the way in is not this player's link reordering: one we
forwarded after a newer one (a repair or a reordering upstream,
L{NackHold.forwardedLate}) is not held when listed, and its coming after
it was listed is no sample of the wait.
"""

from __future__ import annotations

from typing import Callable

from wcs.config import Key, declare

declare(
    Key("media_player_reorder_wait", "int", 150,
        "ms: the longest a player's first NACK for a packet is held when that player NACKs "
        "packets still on their way (it re-asks within half a round trip); 0: never held"),
)


class NackHold:
    """
    One player's NACKs, held while its packets may still be on their way.

    C{resend} is called with the sequence numbers to answer now (the
    subscription's budgets apply as before). L{filter} is called with each
    NACK's list and returns what to answer at once; a timer (every
    L{INTERVAL}, only while something is held) releases what waited long
    enough.
    """

    INTERVAL = 0.02  # s
    EAGER_AFTER = 3  # re-askings within half a round trip before its NACKs are held
    EAGER_SHARE = 0.1  # ... and at least this share of its NACKs
    # s: "half a round trip" within these bounds. webrtc.org asks again after
    # its own RTT estimate (100 ms until it has one), from a 20 ms timer.
    SOONEST, SOON = 0.01, 0.05
    HALF_LIFE = 5.0  # s: how fast the wait forgets a late packet
    MARGIN = 1.5  # wait this much longer than the latest: what comes later is not seen
    KEPT = 2.0  # s a packet's first NACK is remembered

    def __init__(self, clock, resend: Callable[[list[int]], None], rtt, maxWait: float,
                 roomy: Callable[[int], bool] = lambda answering: False):
        self.clock = clock
        self.resend = resend
        # Whether the player's budget has room for one more beside those
        # answered so far: then nothing is held.
        self.roomy = roomy
        self.rtt = rtt  # the subscription's RoundTrip
        self.maxWait = maxWait
        self.wait = 0.0  # s: MARGIN times the latest late packet (decayed), at most maxWait
        self.late = None  # s: the latest packet that came by itself, decaying
        self.lateAt = 0.0  # when it was last raised or sampled
        self.eager = False
        self.reasked = 0
        self.lists = 0  # NACKs filtered
        self.asked: dict[int, float] = {}  # seq -> first asked at (held or answered)
        self.held: dict[int, float] = {}  # seq -> first asked at, not answered yet
        self.answered: dict[int, float] = {}  # seq -> first asked at, answered at once
        self.upstream: dict[int, float] = {}  # seq -> when forwarded late (came late to us)
        self.listedAt: dict[int, float] = {}  # seq -> the last NACK that listed it (held, answered)
        # Released after the wait, still listed or not listed since: lost,
        # not reordered (Subscription.resend sends them twice; it takes them).
        self.released: set[int] = set()
        self.previous: set[int] = set()
        self.previousAt = float("-inf")
        self._call = None
        # Counters (docs/media.md, wcs.metrics).
        self.heldPackets = 0  # first NACKs held
        self.reordered = 0  # held, then left out of a later NACK: it came by itself
        self.upstreamLate = 0  # NACKs for packets that came late to us: answered, not held

    def forwardedLate(self, seq: int) -> None:
        """C{seq} was forwarded after a newer packet: late because of the way in."""
        # Expired here too, not only on NACKs: a player that stops NACKing
        # would keep every number (rtcpguard, docs/security.md). Re-inserted
        # to keep the dict in time order, which _expire relies on.
        upstream, now = self.upstream, self.clock.seconds()
        upstream.pop(seq, None)
        upstream[seq] = now
        _expire(upstream, now - self.KEPT)

    def filter(self, lost: list[int]) -> list[int]:
        now = self.clock.seconds()
        listed = {seq & 0xFFFF for seq in lost}
        self._forget(now)
        self.lists += 1
        soon = min(self.SOON, max(self.SOONEST, self.rtt.smoothed / 2))
        if self.maxWait > 0 and now - self.previousAt < soon \
                and not listed.isdisjoint(self.previous):
            self.reasked += 1
        self.previous, self.previousAt = listed, now
        # Not for good: a few NACKs read back to back after a stall are no
        # habit (what was held is still released by the timer).
        self.eager = self.reasked >= self.EAGER_AFTER \
            and self.reasked >= self.EAGER_SHARE * self.lists
        if not self.eager:
            for seq in listed:  # answered: not held once it is eager
                self.asked.setdefault(seq, now)
                if self.held:  # held while it was: answered now
                    self.held.pop(seq, None)
            return lost
        held, answered, upstream, listedAt = self.held, self.answered, self.upstream, self.listedAt
        # Left out of a list of what is still missing: it arrived, after the
        # last list that still had it. That list, not this one, is the
        # sample: the player lists only on a new gap, and counting the time
        # to its next one made the wait as long as its longest pause
        # (~150 ms on `wifi`, whose packets are at most 20 ms late).
        for seq in [s for s in held if s not in listed]:
            first = held.pop(seq)
            last = listedAt.pop(seq, first)
            if upstream.get(seq, float("-inf")) < first:  # not forwarded late since
                self._sample(now, last - first)
        for seq in [s for s in answered if s not in listed]:
            first = answered.pop(seq)
            last = listedAt.pop(seq, first)
            if now - first < self.rtt.smoothed \
                    and upstream.get(seq, float("-inf")) < first:
                self._sample(now, last - first)  # before our resend could have come
        self._decay(now)
        answer = []
        for seq in dict.fromkeys(seq & 0xFFFF for seq in lost):
            first = self.asked.get(seq)
            if first is None and seq in upstream:
                # Late on the way in, not on this player's link: holding
                # would only delay a repair.
                self.upstreamLate += 1
                answer.append(seq)
            elif first is None and (self.wait <= 0 or self.roomy(len(answer))):
                # Nothing came late lately, or the budget has room for what
                # is on its way as well: holding would only delay repairs.
                self.asked[seq] = answered[seq] = now
                answer.append(seq)
            elif first is None:
                self.asked[seq] = self.held[seq] = now
                self.heldPackets += 1
            elif seq not in held:
                answer.append(seq)  # answered before: the subscription's once-per-RTT rule
            elif now - first >= self.wait or seq in upstream:
                del held[seq]  # waited enough, or forwarded late since
                listedAt.pop(seq, None)
                answer.append(seq)
                if seq not in upstream:
                    self.released.add(seq)
        for seq in listed:
            if seq in held or seq in answered:
                listedAt[seq] = now
        if held and self._call is None:
            self._call = self.clock.callLater(self.INTERVAL, self._tick)
        return answer

    def takeReleased(self) -> set[int]:
        """What was released after the wait since the last call (bounded by the held)."""
        released, self.released = self.released, set()
        return released

    def stop(self) -> None:
        call, self._call = self._call, None
        if call is not None:  # cleared when it fires: still pending
            call.cancel()

    def _sample(self, now: float, late: float) -> None:
        self.reordered += 1
        # The latest of the last seconds (as the publisher leg's wait): most
        # late packets are only a little late. A packet later than the wait
        # is resent and never seen late, hence the margin, which lets the
        # wait grow when the link reorders more.
        if self.late is None:
            self.late = late
        else:
            decayed = self.late * 0.5 ** ((now - self.lateAt) / self.HALF_LIFE)
            self.late = max(decayed, late)
        self.lateAt = now
        self.wait = min(self.maxWait, self.late * self.MARGIN)

    def _decay(self, now: float) -> None:
        """A link that stopped reordering stops being waited for."""
        if self.late is not None:
            late = self.late * 0.5 ** ((now - self.lateAt) / self.HALF_LIFE)
            self.wait = min(self.maxWait, late * self.MARGIN)
            if self.wait < self.INTERVAL / 2:
                self.wait = 0.0

    def _forget(self, now: float) -> None:
        for seq in _expire(self.asked, now - self.KEPT):
            self.held.pop(seq, None)
            self.answered.pop(seq, None)
            self.listedAt.pop(seq, None)
        _expire(self.upstream, now - self.KEPT)

    def _tick(self) -> None:
        self._call = None
        now = self.clock.seconds()
        due = [seq for seq, first in self.held.items() if now - first >= self.wait]
        for seq in due:
            del self.held[seq]
            self.listedAt.pop(seq, None)
        if self.held:
            self._call = self.clock.callLater(self.INTERVAL, self._tick)
        if due:
            self.released.update(due)
            self.resend(due)


def _expire(times: dict[int, float], before: float) -> list[int]:
    """Remove and return the keys of C{times} (in time order) older than C{before}."""
    gone = []
    while times:
        seq = next(iter(times))
        if times[seq] >= before:
            break
        del times[seq]
        gone.append(seq)
    return gone
