"""
Copies on their way to an eager player, and NACKs that crossed them
(docs/media.md, "Loss, retransmission and keyframes").

An eager player (aiortc, wcs.media.reorder) lists every packet it still
misses in each NACK, one NACK per new gap, every few tens of ms on a lossy
link. So NACKs it sent while our copy of a packet was on its way reach us
after the copy left, and read as if the copy was lost. Far behind the
newest sent, such a duplicate lands 100 or more behind the oldest packet
aiortc holds, and it drops its whole jitter buffer and waits for a
keyframe (3-4 s on the lab's `mobile`, docs/networks.md "Latest").

Its lists tell when a NACK left after a copy could have come: the newest
number it lists is missing, so the player had a later packet, and once
that is L{OVERTAKEN} newer than all we had sent with the copy, the copy
had its chance (a link's jitter lets a few packets sent after the copy
come before it: on the lab's `mobile`, a NACK 1 past it had still
crossed it); a list that leaves the packet out (while listing a newer
one) says it came. L{CopiesOut.needless} tells both; L{CopiesOut.lost},
that the copy had its chance and a list still has the packet: the next
copy goes at once, not a retry later, before aiortc stops listing the
hole (128 behind its newest) and holds every frame behind it for seconds.
"""

from __future__ import annotations

from typing import Callable

from wcs.media import rtp


class CopiesOut:
    """An eager player's copies (resends, late packets) of the last L{KEPT} s."""

    KEPT = 1.0  # s: a copy older than this is no longer on its way
    # Packets sent after a copy that may come before it: more than the
    # link's jitter spans. Read against a `mobile` trace (600 s, 4 players,
    # ±40 ms: 80 ms apart is 10 packets at 130 a second): at 0, 177 second
    # copies the player already had would have gone out, 8 of them 96 or
    # more behind (where one drops aiortc's buffer); at 8, 28, none that
    # far, but in an hour one went out that 9 later packets had overtaken
    # (a reset, docs/networks.md "The hour again"); 16 is 120 ms.
    OVERTAKEN = 16

    def __init__(self):
        # seq -> [sent at, the newest number sent then, left out of a NACK since]
        self.copies: dict[int, list] = {}
        self.top: int | None = None  # the newest number of the latest NACK

    def sent(self, seq: int, now: float, newest: int) -> None:
        copies = self.copies
        copies.pop(seq, None)  # re-inserted: the dict stays in time order
        copies[seq] = [now, newest, False]

    def listed(self, lost: list[int], now: float) -> None:
        """An eager player's NACK: all it still misses."""
        copies = self.copies
        while copies:
            seq, entry = next(iter(copies.items()))
            if entry[0] >= now - self.KEPT:
                break
            del copies[seq]
        if not lost:
            return
        listed = {seq & 0xFFFF for seq in lost}
        top = None
        for seq in listed:
            if top is None or rtp.seqNewer(seq, top):
                top = seq
        self.top = top
        for seq, entry in copies.items():
            if seq not in listed and rtp.seqNewer(top, seq):
                entry[2] = True

    def lastSentAt(self) -> float:
        """When the newest copy went (-inf: none in the last L{KEPT} s)."""
        if not self.copies:
            return float("-inf")
        return next(reversed(self.copies.values()))[0]

    def lost(self, seq: int) -> bool:
        """Whether the player's lists show our last copy of C{seq} lost: it had its chance."""
        return seq in self.copies and not self.needless(seq)

    def needless(self, seq: int) -> bool:
        """
        Whether another copy of C{seq} is needless now: a NACK since our
        copy left it out (it came), or the latest NACK may have left before
        our copy could come.
        """
        entry = self.copies.get(seq)
        if entry is None:
            return False
        return entry[2] or self.top is None \
            or not rtp.seqNewer(self.top, (entry[1] + self.OVERTAKEN) & 0xFFFF)


class StartHold:
    """
    The keyframe an eager player jumps to (a restart that skips our
    numbering ahead, wcs.media.subscription.RESTART_SKIP), held back while
    a copy sent before the jump may still be on its way: the link's jitter
    lets packets sent after a copy come before it, and a copy that comes
    after the keyframe's first packets is over 1 000 behind them: aiortc
    drops all it holds, those packets with it, and has counted one of them
    as come, so it never asks for it again (a 2-5 s stall, 1-3 an hour on
    the lab's `mobile`, docs/networks.md "Every copy lost"). The packets
    that come meanwhile wait here in order and go, after L{AFTER_COPY},
    to C{forward} again.
    """

    AFTER_COPY = 0.12  # s after the last copy: the link's jitter (±40 ms on `mobile`) and more

    def __init__(self, clock, forward: Callable[..., None]):
        self.clock = clock
        self.forward = forward
        self.held: list[tuple] | None = None
        self._call = None
        self.starts = 0  # keyframe starts held (a counter)

    def hold(self, until: float, packet: tuple) -> None:
        self.starts += 1
        self.held = [packet]
        self._call = self.clock.callLater(max(0.0, until - self.clock.seconds()), self._release)

    def add(self, packet: tuple) -> None:
        self.held.append(packet)

    def _release(self) -> None:
        held, self.held, self._call = self.held, None, None
        for packet in held:
            self.forward(*packet)

    def cancel(self) -> None:
        call, self._call, self.held = self._call, None, None
        if call is not None:
            call.cancel()
