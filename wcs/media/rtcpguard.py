"""
Bounds on what a peer's RTCP may cost us (docs/security.md, "Long sessions
and hostile feedback").

RTCP is cheap to send and dear to read: one NACK of 1.4 KB (the most SRTCP
takes, pylibsrtp's 1500-byte buffer) lists up to 5,600 packets, which
aiortc's parser turns into a list of ints (~4 ms) and the player leg then
walked number by number (~30 ms). A player sending a few hundred of those a
second held the reactor: everyone's video stalled. Browsers send a few KB/s
of RTCP (receiver reports every second, a NACK per new loss, transport-wide
feedback every 50-100 ms), so:

- L{RtcpBudget}: each transport's peer may send C{media_max_rtcp_rate} KiB/s
  of RTCP (a second's worth saved up); the rest is dropped before it is
  parsed, counted, logged once per interval;
- L{nackWindow}: a NACK's numbers are read once each, and only those a
  player could have been sent from the history (what else it lists changes
  nothing: never sent, or one older than the history, which is enough to
  drop it to a keyframe).
"""

from __future__ import annotations

from wcs.config import Key, declare

declare(
    Key("media_max_rtcp_rate", "int", 16,
        "KiB/s of RTCP one media transport's peer may send (one second's worth may be saved "
        "up); the rest is dropped unread and logged. Browsers send a few KiB/s; 0: no limit"),
)


class RtcpBudget:
    """A token bucket of RTCP bytes: C{rate} bytes/s, holding one second's worth."""

    def __init__(self, rate: float):
        self.rate = rate
        self.credit = rate
        self.at: float | None = None
        self.dropped = 0  # compound packets dropped unread
        self.droppedOctets = 0

    def admit(self, now: float, size: int) -> bool:
        """Whether a compound packet of C{size} bytes arriving at C{now} may be read."""
        if self.at is not None and now > self.at:
            self.credit = min(self.rate, self.credit + (now - self.at) * self.rate)
        self.at = now
        if self.credit < size:
            self.dropped += 1
            self.droppedOctets += size
            return False
        self.credit -= size
        return True


def nackWindow(lost: list[int], newest: int, history: int) -> list[int]:
    """
    The distinct sequence numbers of C{lost} that are at most C{history}
    behind C{newest}, and one older than that, if any: what a player's NACK
    can ask of a history of C{history} packets. At most C{history + 1}
    numbers, whatever the NACK listed.

    A NACK of a few numbers (every browser's) is read in its own order. One
    of more than L{LONG} distinct numbers is read by walking the history
    instead (oldest first), which costs the same however long the list, and
    an older number is looked for among its first L{LONG} only: only a
    hostile player lists that much, and what it loses is its own keyframe.
    """
    distinct = dict.fromkeys(lost)  # at C speed: a NACK may list a number 17 times per entry
    older = None
    if len(distinct) <= LONG:
        window: dict[int, None] = {}
        for seq in distinct:
            seq &= 0xFFFF  # aiortc does not wrap a bitmask past 65535
            behind = (newest - seq) & 0xFFFF
            if behind < history:
                window[seq] = None
            elif behind < 0x8000 and older is None:
                older = seq
        found = list(window)
    else:
        found = []
        for behind in range(history - 1, -1, -1):
            seq = (newest - behind) & 0xFFFF
            if seq in distinct or seq + 0x10000 in distinct:
                found.append(seq)
        for seq in lost[:LONG]:
            seq &= 0xFFFF
            if history <= ((newest - seq) & 0xFFFF) < 0x8000:
                older = seq
                break
    if older is not None:
        found.append(older)
    return found


LONG = 1024  # distinct numbers: a longer NACK is read by walking the history
