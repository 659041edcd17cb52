"""
Which of a Chromium player's freezes are ours: joins the freezes the lab's
Chromium pages saw (`bench/network.py --player chromium --json RUN.jsonl`:
`freezeSpans`, `stats.ssrc`, `windowStart`) with the server's per-packet
trace (`--set media_trace_file=TRACE`, wcs/media/trace.py), both on the
machine's monotonic clock (docs/networks.md, "Chromium on `mobile`:
which freezes are ours").

For each freeze (no new painted frame for 500 ms) of each player: which
other players were frozen at the same time (a loss on the way in stops
them all), the packets the player NACKed while frozen, and the one of
them repaired last (what the picture waited for): when we forwarded it
(late: lost on the publisher's uplink, NACKed by us), the player's NACKs
for it and our answers (resent, refused as too soon, over the budget).
Then a count by cause.

    .venv/bin/python bench/chromefreeze.py RUN.jsonl TRACE
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict

from bench.nacktrace import Unwrap, events
from wcs.media.feedback import RoundTrip

STARTED = 0.25  # s after the last frame: a NACK then is for what the picture waits for
LATE_IN = 0.15  # s: forwarded this much after the packet that followed it: late on the way in
RESENT = ("rs", "rep", "early")  # trace events that sent the player a copy


class Leg:
    """One player's packets in the trace, by our (extended) sequence number."""

    def __init__(self):
        self.unwrap = Unwrap()
        self.wrap: dict[int, int] = {}
        self.sent: dict[int, tuple[float, int]] = {}  # ext -> (forwarded at, publisher seq)
        self.nacks: dict[int, list[float]] = defaultdict(list)
        self.answers: dict[int, list[tuple[float, str]]] = defaultdict(list)

    def ext(self, seq: int) -> int:
        ext = self.wrap.get(seq)
        if ext is None:
            last = self.unwrap.last or seq
            delta = (seq - last) & 0xFFFF
            ext = last + (delta - 0x10000 if delta >= 0x8000 else delta)
        return ext

    def forwardedLate(self, ext: int) -> float:
        """How much later than the next packet we forwarded C{ext} (s; 0: in order)."""
        sent = self.sent.get(ext)
        after = self.sent.get(ext + 1)
        return max(0.0, sent[0] - after[0]) if sent and after else 0.0


class WayIn:
    """
    One publisher stream in the trace: what the publisher leg did for a
    packet lost on the uplink (when the gap showed, our NACKs, when the
    packet came, the RTT estimate then, give-ups and keyframe requests).
    """

    def __init__(self):
        self.unwrap = Unwrap()
        self.wrap: dict[int, int] = {}
        self.arrived: dict[int, float] = {}  # ext -> first arrival
        self.newest = None
        self.missingAt: dict[int, float] = {}  # ext -> gap seen at
        self.nacks: dict[int, list[float]] = defaultdict(list)  # ext -> our NACKs
        self.giveups: list[float] = []
        self.plis: list[float] = []
        self.rtt = RoundTrip()  # replayed as NackGenerator measures it (first tries)
        self.estimates: list[tuple[float, float, float]] = []  # (t, smoothed, retry)

    def packet(self, t: float, seq: int) -> None:
        ext = self.unwrap(seq)
        self.wrap[seq] = ext
        if ext in self.arrived:
            return
        self.arrived[ext] = t
        nacks = self.nacks.get(ext)
        if nacks and len(nacks) == 1 and t - nacks[0] >= self.rtt.smoothed / 2:
            self.rtt.sample(t - nacks[0])
            self.estimates.append((t, self.rtt.smoothed, self.rtt.retry))
        if self.newest is None or ext > self.newest:
            for missing in range(ext - 1, self.newest, -1) if self.newest is not None else ():
                if missing in self.arrived or ext - missing > 64:
                    break
                self.missingAt.setdefault(missing, t)
                self.wrap[missing & 0xFFFF] = missing
            self.newest = ext

    def nack(self, t: float, seqs: list[int]) -> None:
        for seq in seqs:
            ext = self.wrap.get(seq)
            if ext is not None:
                self.nacks[ext].append(t)

    def estimate(self, t: float) -> tuple[float, float]:
        """The (smoothed, retry) RTT estimate in force at C{t}, s."""
        now = (RoundTrip.DEFAULT, RoundTrip.DEFAULT)
        for at, smoothed, retry in self.estimates:
            if at > t:
                break
            now = (smoothed, retry)
        return now

    def summary(self) -> str:
        """The leg's repairs: on which try they came, and how long after the gap."""
        nacked = [e for e, nacks in self.nacks.items() if e in self.missingAt]
        repaired = [e for e in nacked if self.arrived.get(e, -1) >= self.nacks[e][0]]
        tries = Counter(min(3, sum(n <= self.arrived[e] for n in self.nacks[e])) for e in repaired)
        never = sum(e not in self.arrived for e in nacked)

        def ms(values):
            values = sorted(values)
            return "/".join(f"{values[int(q * (len(values) - 1))] * 1000:.0f}" if values else "-"
                            for q in (0.5, 0.95))
        return (f"{len(self.arrived)} packets, {len(nacked)} NACKed: {len(repaired)} repaired "
                f"({tries[1]} on the first try, {tries[2]} on the second, {tries[3]} later; "
                f"{100 * tries[1] / max(1, len(repaired)):.0f} % first), {never} never came; "
                f"gap to first NACK p50/p95 {ms(self.nacks[e][0] - self.missingAt[e] for e in nacked)}"
                f" ms, gap to repaired {ms(self.arrived[e] - self.missingAt[e] for e in repaired)} ms")

    def story(self, src: int, t0: float, t1: float) -> tuple[str, str]:
        """(verdict, details) of publisher packet C{src}, for a freeze from t0 to t1."""
        ext = self.wrap.get(src)
        seen = self.missingAt.get(ext)
        if ext is None or seen is None:
            return "not missing", "publisher leg: never missing (late only)"
        came = self.arrived.get(ext)
        nacks = self.nacks.get(ext, [])
        smoothed, retry = self.estimate(nacks[0] if nacks else seen)
        given = [g for g in self.giveups if seen <= g <= seen + 2]
        plis = [p for p in self.plis if t0 - 1 <= p <= t1]
        if came is None:
            verdict = "given up" if given else "never came"
        elif not nacks or came < nacks[0]:
            verdict = "came by itself"
        else:
            verdict = f"repaired on try {sum(n <= came for n in nacks)}"
        rel = lambda t: f"{(t - seen) * 1000:+.0f}"  # noqa: E731
        details = (f"publisher leg: gap seen {(seen - t0) * 1000:+.0f} ms from the freeze's "
                   f"start; our NACKs at {', '.join(map(rel, nacks)) or '-'} ms after it "
                   f"({len(nacks)} tries); the packet "
                   + (f"came at {rel(came)} ms" if came is not None else "never came")
                   + f"; RTT estimate {smoothed * 1000:.0f} ms, retry {retry * 1000:.0f} ms; "
                   f"give-ups {', '.join(map(rel, given)) or 'none'}; "
                   f"PLIs to the publisher during the freeze {len(plis)}")
        return verdict, details


def readTrace(path: str) -> tuple[dict[int, Leg], dict[int, list[float]], dict[int, WayIn]]:
    legs: dict[int, Leg] = defaultdict(Leg)
    pnacks: dict[int, list[float]] = defaultdict(list)  # publisher seq -> our NACKs
    ways: dict[int, WayIn] = defaultdict(WayIn)  # publisher SSRC -> its way in
    for t, name, stream, numbers in events(path):
        if name == "in":
            ways[stream].packet(t, numbers[0])
        elif name == "giveup":
            ways[stream].giveups.append(t)
        elif name == "pli":
            ways[stream].plis.append(t)
        elif name == "fwd":
            leg = legs[stream]
            ext = leg.unwrap(numbers[0])
            leg.wrap[numbers[0]] = ext
            leg.sent.setdefault(ext, (t, numbers[1], numbers[2]))
        elif name == "nack":
            leg = legs[stream]
            for seq in numbers:
                leg.nacks[leg.ext(seq)].append(t)
        elif name in ("rs", "rep", "early", "soon", "budget", "defer"):
            leg = legs[stream]
            leg.answers[leg.ext(numbers[0])].append((t, name))
        elif name == "pnack":
            ways[stream].nack(t, numbers)
            for seq in numbers:
                pnacks[seq].append(t)
    return legs, pnacks, ways


def explain(leg: Leg, pnacks, ways, t0: float, t1: float) -> tuple[str, str, tuple]:
    """(cause, details) of a freeze from t0 to t1 on this leg."""
    # What the picture waited for: packets missing when it stopped (NACKed
    # from a little before to a little after its last frame: Chromium NACKs
    # within 20 ms of seeing a gap, and the gap shows one packet later).
    asked = {ext for ext, times in leg.nacks.items() if any(t0 - 0.3 <= t <= t0 + STARTED
                                                              for t in times)}
    if not asked:
        return "no NACK", "no NACK of this player around its start", ()

    def delivered(ext):  # our last copy before the end (forward or resend)
        times = [t for t, e in leg.answers.get(ext, ()) if e in RESENT and t <= t1]
        sent = leg.sent.get(ext)
        if sent and sent[0] <= t1:
            times.append(sent[0])
        return max(times) if times else float("-inf")

    culprit = max(sorted(asked), key=delivered)
    answers = Counter(e for t, e in leg.answers.get(culprit, ()) if t <= t1)
    sent = leg.sent.get(culprit)
    late = leg.forwardedLate(culprit)
    src = sent[1] if sent else None
    ours = len([t for t in pnacks.get(src, ()) if t0 - 2 <= t <= t1]) if src is not None else 0
    nacks = [t for t in leg.nacks[culprit] if t <= t1]
    first = nacks[0] if nacks else None
    resends = [t for t, e in leg.answers.get(culprit, ()) if e == "rs" and t <= t1]
    details = (f"{len(asked)} NACKed; waited for {culprit} (publisher's {src}): "
               f"forwarded {'%.0f ms late' % (late * 1000) if late else 'in order'}"
               f"{', NACKed to the publisher %d times' % ours if ours else ''}; "
               f"player NACKed it {len(nacks)} times, first at "
               f"{'%+.2f' % (first - t0) if first else '-'} s; ours: resent {len(resends)}"
               + (f" (first {(resends[0] - first) * 1000:.0f} ms after its first NACK)"
                  if resends and first else "") +
               f", their second copies {answers['rep']}, early copies {answers['early']}"
               f", too soon {answers['soon']}, over budget {answers['budget']}"
               f", left for its repeat {answers['defer']}"
               "; "
               f"its last copy out {delivered(culprit) - t1:+.2f} s from the freeze's end")
    if sent is None or sent[0] > t1:
        cause = "not forwarded before the end (keyframe drop or way in)"
    elif late >= LATE_IN or ours:
        cause = "way in (lost on the publisher's uplink)"
        verdict, story = ways[sent[2]].story(src, t0, t1)
        return cause, details + "\n    " + story, (verdict, sent[2], src)
    elif answers["budget"]:
        cause = "ours: refused over the player's budget"
    elif len(resends) >= 2:
        cause = "player's link: a resent copy lost too"
    elif len(resends) == 1:
        cause = "player's link: one resend"
    else:
        cause = "no resend before the end"
    return cause, details, ()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("json", help="bench/network.py --json file (Chromium runs)")
    parser.add_argument("trace", help="the server's media_trace_file of the same runs")
    args = parser.parse_args()
    legs, pnacks, ways = readTrace(args.trace)
    causes, verdicts = Counter(), set()
    with open(args.json) as lines:
        runs = [json.loads(line) for line in lines if line.strip()]
    for run in runs:
        if run.get("server", "wcs").split(":")[0] != "wcs" or "windowStart" not in run:
            continue
        start = run["windowStart"]
        players = run["perPlayer"]
        variant = f" ({run['variant']})" if run.get("variant") else ""
        print(f"# {run.get('server')}{variant} {run.get('profile')} {run.get('codec')}: "
              f"{len(players)} players, window {run.get('seconds')} s")
        run, alone = Counter(), 0
        for index, player in enumerate(players):
            leg = legs.get(player.get("stats", {}).get("ssrc"))
            for t0, t1 in player.get("freezeSpans", []):
                others = [str(i) for i, other in enumerate(players) if i != index and any(
                    a < t1 and b > t0 for a, b in other.get("freezeSpans", []))]
                cause, details, verdict = explain(leg, pnacks, ways, t0, t1) if leg \
                    else ("no trace", "", ())
                causes[cause] += 1
                if verdict:  # once per publisher packet, however many players waited
                    verdicts.add(verdict)
                run[cause] += 1
                alone += not others
                print(f"player {index} frozen {t0 - start:6.2f}-{t1 - start:6.2f} s "
                      f"({t1 - t0:.2f} s), also frozen: {','.join(others) or 'none'}: {cause}")
                print(f"    {details}")
        print(f"## {sum(run.values())} freezes, {alone} of one player alone; "
              + "; ".join(f"{n} {cause}" for cause, n in run.most_common()))
    print("causes: " + "; ".join(f"{n} {cause}" for cause, n in causes.most_common()))
    byVerdict = Counter(verdict for verdict, *_ in verdicts)
    for index, way in enumerate(way for way in ways.values() if way.arrived):
        print(f"publisher leg {index + 1} (in the trace's order, as the wcs runs): {way.summary()}")
    print("packets lost on the way in that freezes waited for: " + "; ".join(
        f"{n} {verdict}" for verdict, n in byVerdict.most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
