"""
A player that cannot decode gets a keyframe (docs/networks.md, "Players
that cannot decode get a keyframe").

A receiver that lost a packet it never gets back cannot decode past it:
webrtc.org asks for a keyframe by itself, but aiortc keeps every later
frame behind the hole in its jitter buffer (512 packets: 4-30 s of video)
and asks for one only when that overflows. It NACKs a packet again only
when a new gap shows up, listing every packet still missing up to 128
behind its newest; a lost retransmission, a lost NACK or a NACK answered
too late leaves it frozen.

So the server keeps, for each video player, the holes it reported (the
sequence numbers of its NACKs) until it shows they are filled, and reads
what the player tells it afterwards:

- a later NACK that leaves a hole out while the hole is still within the
  player's list (L{LISTED} behind our newest) filled it;
- a resent hole that no NACK mentions again for two round trips (and half
  the stall wait: a NACK for a new gap usually comes meanwhile and tells)
  is resent once more (L{PROBES}, from spare budget only, and only while
  it is at most L{MAX_BEHIND} behind our newest): a tail probe, since the
  copy may have been lost and the player will not ask before its next
  gap. A duplicate costs a receiver nothing, but one 100 or more behind
  the oldest packet aiortc holds makes it drop its jitter buffer and ask
  for a keyframe: probes sent later froze the lab's players for seconds;
- the player **stalled** on a hole that nothing will fill when, C{wait}
  (C{media_player_stall}) after it first asked: it lists the hole again a
  round trip after our second copy or later (two copies lost), or we never
  had the packet (lost on the publisher's leg and no longer NACKed there),
  or it dropped the hole from its list (L{FORGOTTEN} behind) before we
  ever sent it;
- a hole the budget would not resend (or held, or asked again too soon)
  is resent when the wait is over, if the budget allows then: not a
  stall, the player asks again at its next gap (dropped to a keyframe each
  time its budget ran short, a lossy player froze more, not less);
- a keyframe request of the player that its own limit did not pass on is
  asked again when that limit allows, unless a keyframe started meanwhile.

A stalled player drops to the next keyframe (L{Subscription.restart} with
the numbering skip, which makes aiortc let go of its holes) asked for on
its behalf, once its own keyframe limit allows it (a player that keeps
asking is a narrow link, served by C{player_narrow_link}; dropped before,
it would see nothing until a keyframe it may not ask for); the stream's
one request per C{media_keyframe_interval} applies as to any.
"""

from __future__ import annotations

from collections import Counter

from twisted.logger import Logger

from wcs.config import Key, declare
from wcs.media import rtp

declare(
    # Off by default: on the lab's lossy and mobile profiles it made aiortc
    # players freeze longer (docs/networks.md), for a reason not found yet.
    Key("media_player_stall", "int", 0,
        "ms a video player may wait for a hole it reported that nothing will fill (listed "
        "after two lost copies, never forwarded, or forgotten before we sent it) before it "
        "drops to a keyframe asked for on its behalf; 0: never (the default: see "
        "docs/networks.md)"),
)


class _Hole:
    __slots__ = ("firstAt", "sends", "sentAt", "probes", "forgotten")

    def __init__(self, now: float):
        self.firstAt = now
        self.sends = 0  # copies we sent after it was first asked for (resends, probes)
        self.sentAt = float("-inf")  # the last of them
        self.probes = 0
        self.forgotten = False  # out of the player's list before we sent it


class StallWatch:
    """
    The holes one video L{wcs.media.subscription.Subscription} reported,
    and the keyframe requests its own limit held back. A timer runs every
    L{INTERVAL} only while there is something to watch.
    """

    log = Logger()
    INTERVAL = 0.1  # s
    LISTED = 96  # a hole this close to our newest is in an aiortc NACK while missing (128)
    FORGOTTEN = 160  # a hole this far behind the newest listed is out of its list (128)
    PROBES = 1
    MAX_HOLES = 64  # the oldest is forgotten beyond: a link that bad is for the budgets
    MAX_AGE = 10.0  # s a hole is watched at most
    # A copy sent unasked only while the hole is this close to our newest
    # (and, beyond it, an asked one only after the retry: Subscription.resend):
    # aiortc drops its whole jitter buffer (and asks a keyframe) when a
    # packet comes 100 or more behind the oldest it holds; below 100 by
    # what goes out while a copy is on its way.
    MAX_BEHIND = 64

    def __init__(self, clock, subscription, wait: float):
        self.clock = clock
        self.subscription = subscription
        self.wait = wait
        self.holes: dict[int, _Hole] = {}  # seq -> hole, oldest first
        self.floor: int | None = None  # numbers older than this were skipped, not lost
        self.deniedAt: float | None = None  # a keyframe request of the player held back
        self._call = None
        # Counters (docs/media.md).
        self.stalls = 0  # drops to a keyframe for a player that could not decode
        self.causes: Counter[str] = Counter()  # of the stalls (logged at the end)
        self.probes = 0  # holes resent without being asked again
        self.stopped = False

    # Events from the subscription

    def nacked(self, lost: list[int]) -> None:
        """The player's NACK, as it listed it (before the reorder hold)."""
        if not lost or not self.subscription.started:
            return
        now = self.clock.seconds()
        s = self.subscription
        newest = s.lastSeq
        if self.floor is not None and ((newest - self.floor) & 0xFFFF) >= 0x4000:
            self.floor = None  # long past: before numbers wrap around it
        listed = set()
        newestListed = None
        for seq in lost:
            seq &= 0xFFFF
            if rtp.seqNewer(seq, newest) or (
                    self.floor is not None and rtp.seqNewer(self.floor, seq)):
                continue  # not a number we used: skipped at a drop to a keyframe
            listed.add(seq)
            if newestListed is None or rtp.seqNewer(seq, newestListed):
                newestListed = seq
        retry = s.rtt.retry
        for seq, hole in list(self.holes.items()):
            if seq in listed:
                if now - hole.firstAt < self.wait:
                    continue
                if hole.sends >= 2 and now - hole.sentAt >= retry:
                    cause = "copies lost"
                elif s.sentPacket(seq) is None and not self._upstream(seq):
                    cause = "never forwarded"
                else:
                    continue
                if self.stalled(now, cause):
                    return
            elif ((newest - seq) & 0xFFFF) <= self.LISTED:
                del self.holes[seq]  # left out while it would be listed: filled
            elif newestListed is not None and \
                    ((newestListed - seq) & 0xFFFF) >= self.FORGOTTEN:
                # Out of the player's list: filled, or never will be.
                if not self._sent(seq, hole) and now - hole.firstAt >= self.wait:
                    if self.stalled(now, "forgotten unsent"):
                        return
                    hole.forgotten = True  # kept until its keyframe may be asked for
                    continue
                del self.holes[seq]
        for seq in listed:
            if seq not in self.holes:
                if len(self.holes) >= self.MAX_HOLES:
                    del self.holes[next(iter(self.holes))]
                self.holes[seq] = _Hole(now)
        self._schedule()

    def resent(self, seq: int, now: float) -> None:
        hole = self.holes.get(seq)
        if hole is not None:
            hole.sends += 1
            hole.sentAt = now

    def keyframeDenied(self, now: float) -> None:
        if self.deniedAt is None:
            self.deniedAt = now
            self._schedule()

    def reset(self) -> None:
        """The player drops to a keyframe: what it missed before no longer matters."""
        self.holes.clear()
        self.floor = self.subscription.nextSeq

    def stop(self) -> None:
        if (self.stalls or self.probes) and not self.stopped:
            self.stopped = True  # a detach after the track ended stops it again
            self.log.info("{player}: {stalls} drops to a keyframe for holes it could not "
                          "decode past ({causes}), {probes} holes probed",
                          player=self.subscription, stalls=self.stalls, probes=self.probes,
                          causes=", ".join(f"{n} {c}" for c, n in self.causes.items()))
        self.holes.clear()
        self.deniedAt = None
        call, self._call = self._call, None
        if call is not None:  # cleared when it fires: still pending
            call.cancel()

    # The rule

    def stalled(self, now: float, cause: str) -> bool:
        """
        The player cannot decode past a hole: drop it to a keyframe, when one
        may be asked for on its behalf now. Until then (its own limit: a
        player that keeps losing is a narrow link) it keeps what it gets,
        which may still fill the hole: dropped to a keyframe that is not
        asked for, it would see nothing for seconds. False: not now.
        """
        s = self.subscription
        if now < s.keyframeAllowedAt:
            return False
        self.stalls += 1
        self.causes[cause] += 1
        s.restart(skip=True)  # calls reset()
        self.reset()
        self.deniedAt = None
        s.askKeyframe(now)
        return True

    def _sent(self, seq: int, hole: _Hole) -> bool:
        # Resent, or forwarded late (a repair on the publisher's leg) since
        # it was first asked for.
        if hole.sends == 0:
            s = self.subscription
            at = s.resentAt[seq % len(s.resentAt)]
            if at >= hole.firstAt and s.sentPacket(seq) is not None:
                hole.sends, hole.sentAt = 1, at
        return hole.sends > 0

    def _near(self, seq: int) -> bool:
        return ((self.subscription.lastSeq - seq) & 0xFFFF) <= self.MAX_BEHIND

    def _upstream(self, seq: int) -> bool:
        # Still NACKed to the publisher: its repair may come (then it is
        # forwarded to the player), or be given up (then the track asks a
        # keyframe for everyone, and the hole is ours to act on).
        nacks = getattr(self.subscription.track, "nacks", None)
        return nacks is not None and \
            ((seq - self.subscription.seqDelta) & 0xFFFF) in nacks.missing

    def _schedule(self) -> None:
        if self._call is None and (self.holes or self.deniedAt is not None):
            self._call = self.clock.callLater(self.INTERVAL, self._tick)

    def _tick(self) -> None:
        self._call = None
        now = self.clock.seconds()
        s = self.subscription
        retry = s.rtt.retry
        for seq, hole in list(self.holes.items()):
            age = now - hole.firstAt
            if age >= self.MAX_AGE:
                del self.holes[seq]
            elif hole.forgotten:
                if self.stalled(now, "forgotten unsent"):
                    return
            elif not self._sent(seq, hole):
                if age < self.wait or self._upstream(seq):
                    continue
                if s.sentPacket(seq) is None:
                    # Lost on the publisher's leg and given up there.
                    if self.stalled(now, "never forwarded"):
                        return
                elif self._near(seq):
                    # Held, refused by the budget, or asked again too soon:
                    # one copy now if the budget allows. Not a stall: the
                    # player asks again at its next gap, and dropped to a
                    # keyframe each time the budget runs short, a lossy
                    # player froze more, not less (docs/networks.md).
                    s.resendProbe(seq)
            elif hole.probes < self.PROBES and self._near(seq) and \
                    now - hole.sentAt >= max(2 * retry, self.wait / 2):
                hole.probes += 1
                # Only from spare credit: what the player asks for comes first.
                if s.resendProbe(seq, s.SPARE):
                    self.probes += 1
        if self.deniedAt is not None and now >= s.keyframeAllowedAt:
            # After the holes: a player that cannot decode past one is
            # dropped to the keyframe, which would otherwise land behind it.
            deniedAt, self.deniedAt = self.deniedAt, None
            if s.track.lastKeyframe < deniedAt and not s.track.ended:
                s.askKeyframe(now)
        self._schedule()
