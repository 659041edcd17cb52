"""
What each freeze of a lab run waited for: joins the players' own view
(C{NETLAB_PLAYER_TRACE}, tests/netlab/media.py: every RTP packet as it came,
their NACKs and PLIs, their decoded frames) with the server's per-packet
trace (C{media_trace_file}, wcs/media/trace.py), both on the machine's
monotonic clock (docs/networks.md, "Mobile VP8 freezes").

For each freeze (no new frame for 500 ms) of each player: the packet whose
arrival ended it (the last late packet before the next frame), when the
player first missed it and how often it NACKed it, and on the server: was
it lost on the way in (the publisher's gap, our NACKs, its repair) or on
the player's link (the player's NACKs as received and each answer: resent,
refused within a round trip, over the budget, held).

    NETLAB_PLAYER_TRACE=/tmp/pv .venv/bin/python bench/network.py --profile mobile \\
        --codec vp8 --server wcs --players 4 --seconds 20 --size 320x240 \\
        --set media_trace_file=/tmp/m.trace
    .venv/bin/python bench/freezetrace.py /tmp/m.trace /tmp/pv
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter, defaultdict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.nacktrace import Unwrap, events, ms, pct  # noqa: E402

FREEZE = 0.5


def readServer(path):
    """Per-stream events keyed by 16-bit sequence number (a 20 s window does not wrap twice)."""
    pubIn = defaultdict(dict)  # pub ssrc -> seq -> first arrival
    pubNack = defaultdict(lambda: defaultdict(list))  # pub ssrc -> seq -> [t]
    pubOrder = defaultdict(list)  # pub ssrc -> [(t, seq)] arrivals
    fwd = defaultdict(dict)  # player ssrc -> out -> (t, src, pub)
    nacks = defaultdict(lambda: defaultdict(list))  # player ssrc -> out -> [t]
    answers = defaultdict(lambda: defaultdict(list))  # player ssrc -> out -> [(t, event)]
    for t, event, stream, numbers in events(path):
        if not numbers:
            continue
        if event in ("in", "late"):
            pubIn[stream].setdefault(numbers[0], t)
            pubOrder[stream].append((t, numbers[0]))
        elif event == "pnack":
            for seq in numbers:
                pubNack[stream][seq].append(t)
        elif event == "fwd":
            fwd[stream].setdefault(numbers[0], (t, numbers[1], numbers[2]))
        elif event == "nack":
            for seq in numbers:
                nacks[stream][seq & 0xFFFF].append(t)
        elif event in ("rs", "soon", "budget", "held", "rep"):
            # (resends and refusals carry the ms since its last resend and the wait in force)
            answers[stream][numbers[0]].append((t, event, numbers[2] if len(numbers) > 2
                                                else None))
    return pubIn, pubNack, pubOrder, fwd, nacks, answers


def pubGap(order, seq):
    """When a newer packet than C{seq} first reached us (the gap seen), or None."""
    unwrap = Unwrap()
    target = None
    for t, s in order:
        ext = unwrap(s)
        if s == seq and target is None:
            target = ext
    unwrap = Unwrap()
    for t, s in order:
        ext = unwrap(s)
        if target is not None and ext > target:
            return t
    return None


def rel(times, zero):
    return "[" + ", ".join(f"{(t - zero) * 1000:+.0f}" for t in times) + "]"


def analyse(server, folder):
    pubIn, pubNack, pubOrder, fwd, nacks, answers = server
    kinds = Counter()
    for name in sorted(os.listdir(folder)):
        if not (name.startswith("player") and name.endswith(".json")):
            continue
        with open(os.path.join(folder, name)) as f:
            view = json.load(f)
        start, end = view["window"]
        rtp = [w for w in view["wire"] if w[1] == "rtp"]
        media = Counter(w[2] for w in rtp).most_common(1)[0][0]
        unwrap = Unwrap()
        arrivals = []  # (t, ext seq, rtx, first time missed)
        newest = None
        missedAt = {}
        for t, _, ssrc, seq, ts, pt, osn in rtp:
            rtx = ssrc != media
            s = osn if rtx else seq
            ext = unwrap(s)
            late = newest is not None and ext < newest
            if newest is None or ext > newest:
                if newest is not None:
                    for m in range(newest + 1, ext):
                        missedAt.setdefault(m, t)
                newest = ext
            arrivals.append((t, ext, s, rtx, late))
        nackTimes = defaultdict(list)
        for w in view["wire"]:
            if w[1] == "nack":
                for s in w[3]:
                    nackTimes[s & 0xFFFF].append(w[0])
        plis = [w[0] for w in view["wire"] if w[1] == "pli"]
        decoded = [d for d in view["decoded"] if start <= d[0] < end]
        for a, b in zip(decoded, decoded[1:]):
            if b[0] - a[0] <= FREEZE:
                continue
            # The packet that let the next frame out: the last late one before it.
            ended = [x for x in arrivals if a[0] - 0.2 <= x[0] <= b[0] and x[4]]
            print(f"{name[:-5]} freeze {b[0] - a[0]:.3f} s at +{a[0] - start:.2f} s "
                  f"(frames {a[1]} -> {b[1]}, pts {a[2]} -> {b[2]}); PLIs in it: "
                  f"{sum(a[0] - 0.5 <= p <= b[0] for p in plis)}")
            if not ended:
                print("  no late packet before the next frame")
                kinds["no late packet"] += 1
                continue
            t, ext, s, rtx, _ = ended[-1]
            missed = missedAt.get(ext, t)
            print(f"  ended by #{s} ({'RTX' if rtx else 'media'}) {(b[0] - t) * 1000:.0f} ms "
                  f"before the frame; player missed it at {(missed - a[0]) * 1000:+.0f} ms "
                  f"after the last frame, got it {(t - missed) * 1000:.0f} ms later; its NACKs "
                  f"(from the miss) {rel([n for n in nackTimes[s] if n <= t], missed)}")
            sent = fwd[media].get(s)
            if sent is None:
                print("  server: never forwarded it")
                kinds["not forwarded"] += 1
                continue
            ft, src, pub = sent
            arrivedIn = pubIn[pub].get(src)
            gap = pubGap(pubOrder[pub], src)
            pn = pubNack[pub].get(src, [])
            upLost = bool(pn) and arrivedIn is not None and arrivedIn > pn[0]
            reordered = not upLost and gap is not None and arrivedIn is not None \
                and arrivedIn > gap
            print(f"  server (ms from the player's miss): forwarded as #{s} at "
                  f"{(ft - missed) * 1000:+.0f}; publisher #{src}: gap seen "
                  f"{'-' if gap is None else f'{(gap - missed) * 1000:+.0f}'}, arrived "
                  f"{'-' if arrivedIn is None else f'{(arrivedIn - missed) * 1000:+.0f}'}, "
                  f"our NACKs {rel(pn, missed)}; the player's NACKs as received "
                  f"{rel(nacks[media].get(s, []), missed)}; answers "
                  + "[" + ", ".join(f"{e} {(at - missed) * 1000:+.0f}"
                                     + (f" (wait {r})" if e == "soon" else "")
                                     for at, e, r in answers[media].get(s, [])) + "]")
            if upLost:
                kind = f"uplink, {len(pn)} NACK(s) to the publisher"
            elif reordered and not any(e == "rs" for _, e, _ in answers[media].get(s, [])):
                kind = "way in, late by itself (reordered), not NACKed by the player in time"
            else:
                got = [e for _, e, _ in answers[media].get(s, [])]
                kind = "downlink, answers " + (",".join(dict.fromkeys(got)) or "none") \
                    + f" ({got.count('rs')} resent)"
            kinds[kind] += 1
            print(f"  => lost on the {kind}")
    # Every packet resent to a player more than once (its copy lost, or late):
    # how long after the first copy the second went, and the refusals between.
    again, refusals, retries = [], [], []
    for player, bySeq in answers.items():
        for seq, events in bySeq.items():
            sent = [i for i, (_, e, _) in enumerate(events) if e == "rs"]
            if len(sent) >= 2:
                first, second = sent[0], sent[1]
                again.append(events[second][0] - events[first][0])
                soon = [r for _, e, r in events[first:second] if e == "soon"]
                refusals.append(len(soon))
                retries += [r for r in soon if r is not None]
    print(f"packets resent twice to a player: {len(again)}; first copy -> second "
          f"p50/p95 {ms(again)} ms; refused as within a round trip between them: "
          f"{sum(refusals)} (the wait in force p50 {pct(retries, 50)} ms)")
    print("freezes by cause: " + "; ".join(f"{k}: {v}" for k, v in kinds.most_common()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("trace")
    parser.add_argument("players", help="the NETLAB_PLAYER_TRACE folder")
    args = parser.parse_args()
    analyse(readServer(args.trace), args.players)
    return 0


if __name__ == "__main__":
    sys.exit(main())
