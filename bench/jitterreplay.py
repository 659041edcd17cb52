"""
A lab player's RTP arrivals (C{NETLAB_PLAYER_TRACE}, tests/netlab/media.py)
replayed through aiortc's own video JitterBuffer (512 packets): which
frames it let out when, and what ended each freeze (no frame for 500 ms):
a late packet that filled the hole, an overflow (a hole never filled: the
buffer drops frames only once 512 packets are behind it, and aiortc sends a
PLI on every packet while it does), or a reset (a copy 100 or more behind
its origin: aiortc drops every packet it holds and waits from that one).
Load-independent where the lab's glass-to-glass figures are not: it reads
the order packets came in (docs/networks.md, "`mobile` H.264").

    NETLAB_PLAYER_TRACE=/tmp/pv .venv/bin/python bench/network.py --profile mobile \\
        --codec h264 --server wcs --players 4 --seconds 20 --size 320x240
    .venv/bin/python bench/jitterreplay.py /tmp/pv/player*.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from aiortc.jitterbuffer import MAX_MISORDER, JitterBuffer
from aiortc.rtp import RtpPacket

FREEZE = 0.5
JUMP = 900  # packets ahead of the origin: wcs skipped its numbering (RESTART_SKIP, 1024)


def replay(path: str) -> dict:
    with open(path) as f:
        view = json.load(f)
    start, end = view["window"]
    rtp = [w for w in view["wire"] if w[1] == "rtp"]
    media = Counter(w[2] for w in rtp).most_common(1)[0][0]
    buffer = JitterBuffer(capacity=512, is_video=True)
    released, events = [], []  # (t, packet that let a frame out), (t, kind)
    for t, _, ssrc, seq, ts, pt, osn in rtp:
        number = seq if ssrc == media else osn  # RTX: its original number
        packet = RtpPacket(payload_type=pt, sequence_number=number, timestamp=ts)
        packet._data = b""
        origin = buffer._origin
        if origin is not None:
            behind, ahead = (origin - number) & 0xFFFF, (number - origin) & 0xFFFF
            if behind < ahead and behind >= MAX_MISORDER:
                events.append((t, "reset"))
            elif JUMP <= ahead < 0x8000:
                events.append((t, "jump"))  # our numbering's jump to a keyframe (RESTART_SKIP)
            elif buffer.capacity <= ahead < 0x8000:
                events.append((t, "overflow"))
        _, frame = buffer.add(packet)
        if frame is not None:
            released.append(t)
    kinds = Counter()
    for a, b in zip(released, released[1:]):
        if b - a > FREEZE and start <= a < end:
            got = {kind for t, kind in events if a < t <= b}
            kinds["reset" if "reset" in got else "overflow" if "overflow" in got
                  else "jump to a keyframe" if "jump" in got else "late packet"] += 1
    return {"frames": sum(start <= t < end for t in released),
            "freezes": sum(kinds.values()), "endedBy": dict(kinds),
            "resets": sum(start <= t < end for t, k in events if k == "reset"),
            "overflowPackets": sum(start <= t < end for t, k in events if k == "overflow"),
            "jumps": sum(start <= t < end for t, k in events if k == "jump")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("players", nargs="+", help="playerN.json files")
    args = parser.parse_args()
    for path in args.players:
        print(path, replay(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
