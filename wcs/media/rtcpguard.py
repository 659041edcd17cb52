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
    The distinct sequence numbers of C{lost} (first-listed order) that are
    at most C{history} behind C{newest}, and the first one older than that,
    if any: what a player's NACK can ask of a history of C{history} packets.
    At most C{history + 1} numbers, whatever the NACK listed.
    """
    window: dict[int, None] = {}
    older = None
    # dict.fromkeys first, at C speed: a NACK may list a number 17 times per
    # entry. aiortc does not wrap a bitmask past 65535: masked here.
    for seq in dict.fromkeys(lost):
        seq &= 0xFFFF
        behind = (newest - seq) & 0xFFFF
        if behind < history:
            window[seq] = None
        elif behind < 0x8000 and older is None:
            older = seq
    window = list(window)
    if older is not None:
        window.append(older)
    return window
