"""
What the publisher leg's reordering wait costs and buys: reads the server's
per-packet trace (C{media_trace_file}, wcs/media/trace.py) and prints, per
publisher stream (docs/networks.md, "`mobile`: the publisher leg's
reordering wait and budget (branch `uplinkwait`)"):

- the wait each missing packet had before its first NACK (p50/p95), the
  packets that came late by themselves and how late, and the NACKed ones
  whose original came after the NACK anyway (sooner than L{REPAIR} after
  it: a needless NACK, the publisher's RTX of it wasted);
- the repairs: how many of our NACKs went at least L{REPAIR} before the
  packet came (1: the first try repaired it; 2 or more: a later try, or
  the first with the next sent before its answer could come), gap to repair p50/p95, and how many came more than L{SLOW}
  after their gap (what freezes the players);
- for a fixed wait of W ms instead (each of C{--waits}): the NACKs the late
  packets would have cost (late by more than W) and how much sooner each
  repair would have come, so how many slow repairs would not have been;
- the packets never NACKed that never came (given up for want of budget),
  and the give-ups (trace event C{giveup}). Gaps of more than 64 (not NACKed:
  only a keyframe repairs them) are left out, as bench/chromefreeze.py does.

    .venv/bin/python bench/network.py --profile mobile --codec vp8 --server wcs \\
        --players 4 --seconds 20 --size 320x240 --set media_trace_file=/tmp/m.trace
    .venv/bin/python bench/waittrace.py /tmp/m.trace
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.chromefreeze import WayIn, readTrace  # noqa: E402
from bench.nacktrace import ms  # noqa: E402

REPAIR = 0.1  # s: an answer to a NACK cannot come sooner (mobile: 2 x 60 ms at least)
HELD = 0.17  # s: a first NACK later than the wait's cap (150 ms) and a tick
SLOW = 0.4  # s from the gap: a repair this late leaves ~100 ms before a 500 ms freeze


def figures(way: WayIn, waits: list[float]) -> dict:
    """What the trace says of one stream's missing packets (see the module's docstring)."""
    missing, arrived, nacks = way.missingAt, way.arrived, way.nacks
    late, needless, repaired, never = {}, {}, {}, []
    for ext, seen in missing.items():
        came = arrived.get(ext)
        asked = nacks.get(ext, [])
        if came is None:
            never.append(ext)
        elif not asked or came < asked[0]:
            late[ext] = came - seen
        elif came - asked[0] < REPAIR:
            needless[ext] = came - seen  # the original, late, after our NACK
        else:
            repaired[ext] = came - seen
    waited = [nacks[e][0] - missing[e] for e in missing if nacks.get(e)]
    lateness = sorted(list(late.values()) + list(needless.values()))
    slow = [e for e, d in repaired.items() if d > SLOW]
    fixed = {}
    for wait in waits:
        saved = {e: max(0.0, nacks[e][0] - missing[e] - wait) for e in repaired}
        fixed[wait] = (sum(d > wait for d in lateness), list(saved.values()),
                       sum(repaired[e] - saved[e] <= SLOW for e in slow))
    return {
        "packets": len(arrived), "missing": len(missing), "waited": waited,
        "held": sum(w > HELD for w in waited),
        "unasked": sum(e not in nacks for e in never),
        "late": list(late.values()), "needless": len(needless),
        "repaired": list(repaired.values()),
        "tries": Counter(min(3, sum(t <= arrived[e] - REPAIR for t in nacks[e]) or 1)
                         for e in repaired),
        "slow": len(slow), "never": len(never),
        "entries": sum(len(nacks[e]) for e in missing if e in nacks),
        "giveups": len(way.giveups), "fixed": fixed,
    }


def report(name, way: WayIn, waits: list[float]) -> None:
    f = figures(way, waits)
    tries = f["tries"]
    print(f"publisher {name}: {f['packets']} packets, {f['missing']} went missing; "
          f"wait before the first NACK p50/p95 {ms(f['waited'])} ms, {f['held']} first "
          f"NACKs later than {HELD * 1000:.0f} ms (held by the budget or a late loop); "
          f"{f['unasked']} never NACKed nor came (given up unasked)")
    print(f"  came late by themselves {len(f['late'])} (late p50/p95 {ms(f['late'])} ms); "
          f"NACKed but the original came after the NACK {f['needless']}; repaired "
          f"{len(f['repaired'])} (NACKs before it could come 1: {tries[1]}, 2: {tries[2]}, "
          f"3+: {tries[3]}), gap to repair p50/p95 {ms(f['repaired'])} ms, {f['slow']} over "
          f"{SLOW * 1000:.0f} ms; never came {f['never']}; NACK entries {f['entries']}; "
          f"give-ups {f['giveups']}")
    for wait, (extra, saved, fixed) in f["fixed"].items():
        print(f"  a fixed wait of {wait * 1000:.0f} ms: {extra} NACKs for late packets "
              f"({f['needless']} now; {extra / max(1, f['packets']):.1%} of the packets), "
              f"repairs sooner by {ms(saved)} ms (p50/p95), {fixed} of {f['slow']} slow "
              f"repairs under {SLOW * 1000:.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("trace", nargs="+")
    parser.add_argument("--waits", default="10,20,30,40,60",
                        help="ms, comma-separated: fixed waits to compare with")
    args = parser.parse_args()
    waits = [int(w) / 1000 for w in args.waits.split(",") if w]
    for path in args.trace:
        for ssrc, way in readTrace(path)[2].items():
            report(ssrc, way, waits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
