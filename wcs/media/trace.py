"""
A per-packet trace of the video repair path, for the network lab's delay
analysis (docs/networks.md, "Where the delay comes from"; read by
C{bench/nacktrace.py}). Off unless C{media_trace_file} names a file: it
costs a line per packet and per player, which no production server wants.

One event a line, space-separated: the monotonic time in seconds, the
event, the stream (the publisher's SSRC for the way in, the player's SSRC
for the way out), then numbers:

- C{in SSRC SEQ}: a publisher's video packet arrived (C{late SSRC SEQ}:
  one older than the newest, a repair or reordered; C{gap SSRC FIRST N}:
  N packets from FIRST went missing);
- C{pnack SSRC SEQ...}: we NACKed the publisher (C{pcopy}: that NACK's
  copy 10 ms later, C{media_nack_twice}); C{giveup SSRC N}: we gave
  up packets of its (N given up so far); C{pli SSRC}: we asked it for a keyframe;
  C{key SSRC SEQ}: a keyframe started with its packet SEQ;
- C{fwd PLAYER OUT SRC SSRC CPU}: sent to a player as its number OUT (the
  publisher's SRC on its SSRC; CPU: the server thread's CPU time in
  microseconds, so that a wait between two sends reads as work of ours
  or as the thread not running); C{nack PLAYER OUT...}: the player's NACK as received;
  C{rs PLAYER OUT SINCE WAIT}: resent (C{cp PLAYER OUT RTXSEQ}, before
  it and before every other copy: the RTX number that carries it); C{early}: a repeat within the
  round trip answered once more (C{media_player_early_copy}); C{defer}:
  a first NACK left for its repeat (C{media_player_nack_reserve}); C{soon},
  C{budget}: refused as sent
  within a round trip, or over the player's share (SINCE: ms since its
  last resend, WAIT: the round trip waited, ms); C{held PLAYER OUT}:
  its first NACK held for reordering; C{rep PLAYER OUT}: a late copy's
  second copy (C{media_repeat_repairs}), or of a resend after the
  reordering wait (C{media_repeat_waited}), or of one first NACKed a
  retry after it went (C{media_repeat_overdue}); C{norep PLAYER OUT}: such a
  second copy not sent (no budget to spare, or gone from the history);
  C{far PLAYER OUT}: NACKed again far behind, by a NACK that crossed our copy or after
  one that left it out: not resent to an eager player (wcs.media.crossing);
- C{gc GEN US COLLECTED}: a garbage collection of generation GEN ended,
  having taken US microseconds (the line's time is its end).
"""

from __future__ import annotations

import gc
import time

from wcs.config import Key, declare
from wcs.gctune import GCPauses

declare(
    Key("media_trace_file", "str", "",
        "a file for a per-packet trace of the video repair path (the network lab's delay "
        "analysis, bench/nacktrace.py); empty: none. A line per packet and player: not for "
        "production"),
)


class PacketTrace:
    """Events appended to one file, buffered (the lab reads it after the server stopped)."""

    def __init__(self, path: str):
        self.file = open(path, "a", buffering=1 << 16)
        self.collections = GCPauses(time.monotonic, self._collected)
        gc.callbacks.append(self.collections)

    def _collected(self, generation: int, seconds: float, info: dict) -> None:
        self.event("gc", generation, round(seconds * 1e6), info["collected"])

    @staticmethod
    def cpu() -> int:
        """The calling thread's CPU time, microseconds."""
        return time.thread_time_ns() // 1000

    @classmethod
    def fromSettings(cls, settings) -> "PacketTrace | None":
        path = getattr(settings, "media_trace_file", "")
        return cls(path) if path else None

    def event(self, name: str, stream: int, *numbers: int) -> None:
        self.file.write(f"{time.monotonic():.4f} {name} {stream} "
                        f"{' '.join(map(str, numbers))}\n")

    def flush(self) -> None:
        self.file.flush()
