"""
What became of every copy of each packet on the way to a lab player: the
link's own record (C{NETLAB_LINK_TRACE}, tests/netlab/impairer.py), the
server's (C{media_trace_file}: its C{cp} lines name the RTX number that
carried each copy) and the player's (C{NETLAB_PLAYER_TRACE}).

Per player it prints how often a copy was lost given that every copy
before it was (with independent loss each stays near the profile's), the
packets whose every copy the link lost, the copies the link delivered but
the player never saw (the kernel's or aiortc's drop: SRTP refusals are in
the player's trace), and for each hole aiortc's buffer overflowed on
(bench/jitterreplay.py) the copies of its packet, when and their fate.

    NETLAB_LINK_TRACE=/tmp/links NETLAB_PLAYER_TRACE=/tmp/pv .venv/bin/python \\
        bench/network.py --profile mobile --codec h264 --server wcs --players 4 \\
        --seconds 600 --size 320x240 --set media_trace_file=/tmp/server.trace
    .venv/bin/python bench/linktrace.py /tmp/server.trace /tmp/links /tmp/pv
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
from collections import Counter, defaultdict

from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from bench.jitterreplay import JUMP

IN_FLIGHT = 1.0  # s: a copy the link let go this close to the window's end may not have come
LAP = 5.0  # s: copies of one number further apart are of another lap of the numbering


class HoleWatch(JitterBuffer):
    """aiortc's video buffer, noting the first missing packet each time it overflows."""

    def __init__(self):
        super().__init__(capacity=512, is_video=True)
        self.holes: list[int] = []

    def smart_remove(self, count: int) -> bool:
        for i in range(self.capacity):
            seq = (self._origin + i) & 0xFFFF
            if self._packets[seq % self.capacity] is None:
                if not self.holes or self.holes[-1] != seq:
                    self.holes.append(seq)
                break
        return super().smart_remove(count)


def overflowHoles(rtp: list, media: int) -> list[tuple[float, int]]:
    """
    (time, packet) of each hole the player's buffer overflowed on (not
    our numbering's jump to a keyframe, which empties it on purpose).
    """
    buffer, found = HoleWatch(), []
    for t, _, ssrc, seq, ts, pt, osn in rtp:
        number = seq if ssrc == media else osn
        packet = RtpPacket(payload_type=pt, sequence_number=number, timestamp=ts)
        packet._data = b""
        origin = buffer._origin
        jump = origin is not None and JUMP <= (number - origin) & 0xFFFF < 0x8000
        before = len(buffer.holes)
        buffer.add(packet)
        if len(buffer.holes) > before and not jump:
            found.append((t, buffer.holes[-1]))
    return found


def copiesByRtx(serverTrace: str) -> dict[tuple[int, int], int]:
    """(player SSRC, RTX number) -> our number, from the server's C{cp} lines."""
    found = {}
    with open(serverTrace) as f:
        for line in f:
            if " cp " in line:
                _, _, ssrc, seq, rtxSeq = line.split()
                found[(int(ssrc), int(rtxSeq) & 0xFFFF)] = int(seq)
    return found


def linkLines(linkTrace: str) -> dict[str, list[tuple]]:
    """Per link: (time, SSRC, number, outcome) with outcome C{lost}, C{tail} or ms held."""
    found = defaultdict(list)
    with open(linkTrace) as f:
        for line in f:
            t, link, ssrc, seq, _, _, outcome = line.split()
            found[link].append((float(t), int(ssrc), int(seq), outcome))
    return found


def player(path: str, links: dict, copies: dict) -> None:
    name = os.path.basename(path)[:-5]
    with open(path) as f:
        view = json.load(f)
    start, end = view["window"]
    rtp = [w for w in view["wire"] if w[1] == "rtp"]
    (media, _), (rtx, _) = Counter(w[2] for w in rtp).most_common(2)
    got = {(w[2], w[3]) for w in rtp}
    fates = defaultdict(list)  # our number -> [(time, lost?)] of its latest lap, in order
    groups = []  # (our number, its copies) of the numbers' earlier laps
    unseen = 0
    for t, ssrc, seq, outcome in links.get(f"{name}.down", []):
        if not start <= t < end:
            continue
        ours = seq if ssrc == media else copies.get((media, seq)) if ssrc == rtx else None
        if ours is None:
            continue
        lost = outcome in ("lost", "tail")
        if fates[ours] and t - fates[ours][0][0] > LAP:  # the numbering wrapped since
            groups.append((ours, fates.pop(ours)))
        fates[ours].append((t, lost))
        if not lost and t < end - IN_FLIGHT and (ssrc, seq) not in got:
            unseen += 1
    groups += fates.items()
    every = [v for _, v in groups]
    sent = sum(len(v) for v in every)
    chain = []
    for k in range(1, 6):
        runs = [v for v in every if len(v) > k and all(lost for _, lost in v[:k])]
        if runs:
            chain.append(f"{sum(v[k][1] for v in runs)}/{len(runs)}")
    everyCopy = sum(all(lost for _, lost in v) and len(v) > 2 for v in every)
    refused = Counter(w[4] for w in view["wire"] if w[1] == "srtp")
    print(f"{name}: {sent} copies, {sum(l for v in every for _, l in v) / sent:.3f} lost"
          f" on the link; copy k+1 lost when copies 1..k were (k = 1, 2, ...): "
          f"{', '.join(chain)}; every copy (3 or more) lost: {everyCopy}; delivered but"
          f" not seen by the player: {unseen}; SRTP refusals: {dict(refused) or 0}")
    for t, hole in overflowHoles(rtp, media):
        if start <= t < end:
            found = next((v for number, v in groups
                          if number == hole and v[0][0] <= t < v[0][0] + LAP), None)
            fate = " ".join(f"+{c - found[0][0]:.3f}{'x' if lost else 'ok'}"
                            for c, lost in found) if found else "none in the window"
            print(f"  overflow at +{t - start:.1f} s on hole {hole}: its copies {fate}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("server", help="the server's media_trace_file")
    parser.add_argument("links", help="the NETLAB_LINK_TRACE file")
    parser.add_argument("players", help="the NETLAB_PLAYER_TRACE folder")
    args = parser.parse_args()
    copies, links = copiesByRtx(args.server), linkLines(args.links)
    paths = sorted(glob.glob(os.path.join(args.players, "player*.json")),
                   key=lambda p: int(re.sub(r"\D", "", os.path.basename(p)) or 0))
    for path in paths:
        player(path, links, copies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
