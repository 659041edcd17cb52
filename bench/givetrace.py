"""
What the players waited for after the way in gave packets up: for each
C{giveup} event of the server's trace (C{media_trace_file}) and each lab
player (C{NETLAB_PLAYER_TRACE}), a timeline from the give-up: our keyframe
requests to the publisher (C{pli}), the keyframe's first
packet (C{key}; in an older trace, the first packet forwarded after the
give-up), the packets after it that reached us before it (a waiting player
dropped those: on main it never got them), what we forwarded to the player
and which of its numbers we never sent, its NACKs of them and PLIs, and its
next decoded frame (docs/networks.md, "`mobile` H.264: the freeze after a
give-up").

    .venv/bin/python bench/givetrace.py /tmp/m.trace /tmp/pv
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from collections import defaultdict


def readServer(path):
    ev = defaultdict(list)  # name -> [(t, fields)]
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[1] in ("giveup", "pli", "key", "in", "pnack", "fwd"):
                ev[parts[1]].append((float(parts[0]), [int(x) for x in parts[2:]]))
    return ev


def ms(t, t0):
    return f"{round((t - t0) * 1000):+d}"


def timeline(ev, players, giveAt, keyframeGap=0.05):
    print(f"== give-up at {giveAt:.3f}")
    plis = [t for t, _ in ev["pli"] if giveAt - 0.6 <= t <= giveAt + 5]
    print("  our PLIs to the publisher (ms from the give-up):", [ms(t, giveAt) for t in plis]
          or "(not traced: an older tree)")
    # The keyframe's first packet: traced, or the first packet forwarded after.
    keys = [(t, f[1]) for t, f in ev["key"] if t > giveAt]
    if keys:
        keyAt, keySeq = keys[0]
    else:
        after = [(t, f[2]) for t, f in ev["fwd"] if t > giveAt]
        if not after:
            print("  nothing forwarded after it")
            return
        keyAt, keySeq = after[0]
    arrivals = {}
    for t, f in ev["in"]:
        if f[1] not in arrivals and t > giveAt - 2:
            arrivals[f[1]] = t
    early = sorted(s for s, t in arrivals.items()
                   if 0 < (s - keySeq) & 0xFFFF < 40 and t < keyAt)
    print(f"  keyframe start #{keySeq} arrived {ms(keyAt, giveAt)} ms; later packets that came "
          f"before it: {early or 'none'}")
    nacked = sorted({s for t, f in ev["pnack"] if giveAt < t < keyAt + 2
                     for s in f[1:] if 0 <= (s - keySeq) & 0xFFFF < 40})
    print(f"  of the keyframe's first 40 numbers NACKed to the publisher: "
          + ", ".join(f"#{s} (came {ms(arrivals[s], giveAt) if s in arrivals else 'never'})"
                      for s in nacked) if nacked else "  none of its first 40 NACKed")
    for name, data in players:
        w0 = data["window"][0]
        mine = [(t, f) for t, f in ev["fwd"] if t > giveAt]
        ssrcs = {f[0] for _, f in mine}
        ssrc = next((f[0] for t, f in mine
                     if any(e[1] == "rtp" and e[2] == f[0] for e in data["wire"][:50])), None)
        if ssrc is None or ssrc not in ssrcs:
            continue
        out = [(t, f[1], f[2]) for t, f in mine if f[0] == ssrc]
        first = out[0][1]
        sent = {o for _, o, _ in out}
        holes = [(first + i) & 0xFFFF for i in range(40) if (first + i) & 0xFFFF not in sent]
        lastSent = max((first + i) & 0xFFFF for i in range(40) if (first + i) & 0xFFFF in sent)
        holes = [h for h in holes if (lastSent - h) & 0xFFFF < 0x8000]
        nacks = [(t, f) for t, f in ((e[0], e[3]) for e in data["wire"]
                                     if e[1] == "nack" and e[0] > giveAt)]
        askedHoles = sum(1 for _, lst in nacks for s in lst if s in holes)
        plisOf = [ms(e[0], giveAt) for e in data["wire"] if e[1] == "pli" and giveAt < e[0] < giveAt + 15]
        decoded = [t for t, *_ in data["decoded"] if t > out[0][0]]  # from the keyframe on
        last = [t for t, *_ in data["decoded"] if t <= giveAt]
        print(f"  {name}: last frame {ms(last[-1], giveAt) if last else '-'} ms, first sent after "
              f"#{first} (from #{out[0][2]}) at {ms(out[0][0], giveAt)}, first frame from it "
              f"{ms(decoded[0], giveAt) if decoded else 'never'} ms (window from "
              f"{ms(w0, giveAt)}); numbers we never sent in its first 40: {holes or 'none'} "
              f"(NACKed {askedHoles} times); its PLIs {plisOf[:12]}{'...' if len(plisOf) > 12 else ''}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("trace")
    parser.add_argument("players", help="NETLAB_PLAYER_TRACE folder")
    args = parser.parse_args()
    ev = readServer(args.trace)
    players = [(os.path.basename(p)[:-5], json.load(open(p)))
               for p in sorted(glob.glob(os.path.join(args.players, "player*.json")))]
    gives = [t for t, _ in ev["giveup"]]
    print(f"{len(gives)} give-up(s); {len(ev['pli'])} PLIs to the publisher, "
          f"{len(ev['key'])} keyframe starts traced")
    for t in gives:
        timeline(ev, players, t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
