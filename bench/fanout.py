"""
Where the fan-out of a packet to its players waits: reads the server's
per-packet trace (C{media_trace_file}, wcs/media/trace.py) and times each
publisher packet from its arrival to its send to each player. A wait
between two players' sends over C{--slow} ms is put down to a garbage
collection when one ended inside it, to our own work when the thread's
CPU time grew by most of it, and otherwise to the thread not running
(another process had the core, or a system call slept).

    .venv/bin/python bench/network.py --profile wifi --codec h264 --server wcs \\
        --players 4 --seconds 30 --set media_trace_file=/tmp/f.trace
    .venv/bin/python bench/fanout.py /tmp/f.trace
"""

from __future__ import annotations

import argparse
import bisect
import os
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.nacktrace import events, pct  # noqa: E402


def fanouts(path):
    """
    (arrival, [(send time, cpu µs)], [gc (end, generation, µs)]) per
    publisher packet whose sends follow its arrival line, and all
    collections.
    """
    packets, collections = [], []
    current = None
    for t, event, stream, numbers in events(path):
        if event in ("in", "late"):
            current = (t, stream, numbers[0], [])
            packets.append(current)
        elif event == "fwd" and current is not None and len(numbers) >= 4:
            if numbers[1] == current[2] and numbers[2] == current[1]:
                current[3].append((t, numbers[3]))
        elif event == "key":
            pass
        elif event == "gc":
            collections.append((t, stream, numbers[0]))
        else:
            current = None  # something else of ours came between: not a plain fan-out
    return packets, collections


def waits(packets, collections, slow: float) -> dict:
    """
    From L{fanouts}: packets counted, each send's delay from arrival by
    place, and the waits over C{slow} s between two sends by place and by
    reason.
    """
    gcEnds = sorted(collections)
    byPlace, reasons, toNth = Counter(), Counter(), {}
    counted = 0
    for arrival, _stream, _seq, sends in packets:
        if len(sends) < 2:
            continue
        counted += 1
        for k, (t, _cpu) in enumerate(sends):
            toNth.setdefault(k, []).append(t - arrival)
        for k in range(1, len(sends)):
            (t0, c0), (t1, c1) = sends[k - 1], sends[k]
            wall = t1 - t0
            if wall <= slow:
                continue
            byPlace[k] += 1
            if next(_near(gcEnds, t0, t1), None) is not None:
                reasons["a garbage collection"] += 1
            elif (c1 - c0) / 1e6 >= 0.5 * wall:
                reasons["our work (CPU time grew)"] += 1
            else:
                reasons["not running (CPU time still)"] += 1
    return {"counted": counted, "toNth": toNth, "byPlace": byPlace, "reasons": reasons}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("trace")
    parser.add_argument("--slow", type=float, default=5.0, help="a slow wait, ms")
    args = parser.parse_args()
    packets, collections = fanouts(args.trace)
    f = waits(packets, collections, args.slow / 1000)
    counted, reasons = f["counted"], f["reasons"]
    print(f"{counted} packets sent to 2 players or more")
    for k in sorted(f["toNth"]):
        xs = sorted(f["toNth"][k])
        print(f"  arrival to player {k + 1}'s send: p50 {pct(xs, 50) * 1000:.2f} "
              f"p99 {pct(xs, 99) * 1000:.2f} max {xs[-1] * 1000:.1f} ms")
    total = sum(reasons.values())
    print(f"waits over {args.slow:g} ms between two sends: {total} "
          f"({100 * total / max(counted, 1):.2f} % of packets); after send "
          + ", ".join(f"{k}: {n}" for k, n in sorted(f["byPlace"].items())))
    for reason, n in reasons.most_common():
        print(f"  {reason}: {n}")
    generations = Counter(g for _t, g, _us in collections)
    for g in sorted(generations):
        lengths = sorted(us for _t, gen, us in collections if gen == g)
        print(f"collections of generation {g}: {len(lengths)}, p50 {pct(lengths, 50) / 1000:.2f} "
              f"p99 {pct(lengths, 99) / 1000:.2f} max {lengths[-1] / 1000:.1f} ms")
    return 0


def _near(ends, t0, t1):
    """The collections that ended between t0 and t1 (C{ends} sorted)."""
    i = bisect.bisect_left(ends, (t0,))
    while i < len(ends) and ends[i][0] <= t1:
        yield ends[i]
        i += 1


if __name__ == "__main__":
    raise SystemExit(main())
