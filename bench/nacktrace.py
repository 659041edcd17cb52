"""
Where a repaired packet's delay comes from: reads the per-packet trace a
wcs server writes with C{media_trace_file} (wcs/media/trace.py) and prints,
per publisher stream and per player (docs/networks.md, "Where the delay
comes from"):

- publisher leg: packets that went missing, how many came by themselves
  before a NACK, how long from the gap being seen to our first NACK, from
  that NACK to the packet, and from the gap to the packet;
- player leg: packets the player NACKed, how many of their first NACKs were
  answered at once (within 2 ms), held, refused as too soon (once per round
  trip) or over the player's share, or came before we had the packet; the
  delay from the first NACK to the resend; and from the publisher's packet
  arriving to the copy that repaired the player leaving.

    .venv/bin/python bench/network.py --profile wifi --codec h264 --server wcs \\
        --set media_trace_file=/tmp/wifi.trace ...
    .venv/bin/python bench/nacktrace.py /tmp/wifi.trace
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

from tests.netlab.numbers import Unwrap

AT_ONCE = 0.002  # s: an answer this soon after the NACK is "at once"


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def ms(values) -> str:
    if not values:
        return "-"
    return f"{pct(values, 50) * 1000:.0f} / {pct(values, 95) * 1000:.0f}"


class Publisher:
    def __init__(self):
        self.unwrap = Unwrap()
        self.arrived: dict[int, float] = {}  # extended seq -> first arrival
        self.newest = None
        self.missingAt: dict[int, float] = {}  # seq -> gap seen at
        self.nacked: dict[int, float] = {}  # seq -> first NACK
        self.nacks = 0
        self.wrap = {}  # 16-bit -> extended, for NACK lists

    def packet(self, t, seq):
        ext = self.unwrap(seq)
        self.wrap[seq] = ext
        if ext in self.arrived:
            return
        self.arrived[ext] = t
        if self.newest is None:
            self.newest = ext
        elif ext > self.newest:
            for missing in range(self.newest + 1, ext):
                self.missingAt.setdefault(missing, t)
                self.wrap[missing & 0xFFFF] = missing
            self.newest = ext

    def nack(self, t, seqs):
        for seq in seqs:
            self.nacks += 1
            ext = self.wrap.get(seq)
            if ext is not None:
                self.nacked.setdefault(ext, t)

    def report(self, name):
        missing = self.missingAt
        came = {s: self.arrived[s] for s in missing if s in self.arrived}
        byThemselves = [s for s in came if s not in self.nacked or came[s] < self.nacked[s]]
        repaired = [s for s in came if s in self.nacked and came[s] >= self.nacked[s]]
        toNack = [self.nacked[s] - missing[s] for s in self.nacked if s in missing]
        nackToCame = [came[s] - self.nacked[s] for s in repaired]
        gapToCame = [came[s] - missing[s] for s in repaired]
        late = [came[s] - missing[s] for s in byThemselves]
        print(f"publisher {name}: {len(self.arrived)} packets, {len(missing)} went missing: "
              f"{len(byThemselves)} came by themselves before a NACK (late p50/p95 {ms(late)} ms), "
              f"{len(self.nacked)} NACKed ({self.nacks} NACK entries), {len(repaired)} repaired, "
              f"{len(missing) - len(came)} never came")
        print(f"  gap seen -> first NACK p50/p95 {ms(toNack)} ms; first NACK -> packet "
              f"{ms(nackToCame)} ms; gap seen -> repaired packet {ms(gapToCame)} ms")


class Player:
    def __init__(self):
        self.unwrap = Unwrap()
        self.sent: dict[int, tuple[float, int, int]] = {}  # ext out -> (t, src, pub ssrc)
        self.wrap = {}
        self.firstNack: dict[int, float] = {}
        self.nackEntries = 0
        self.firstAnswer: dict[int, tuple[float, str]] = {}  # ext -> (t, rs|soon|budget) of the first
        self.resent: dict[int, float] = {}
        self.refused = defaultdict(int)  # event -> count (entries)
        self.pub = None

    def forward(self, t, out, src, pub):
        ext = self.unwrap(out)
        self.wrap[out] = ext
        self.sent.setdefault(ext, (t, src, pub))
        self.pub = pub

    def nack(self, t, seqs):
        for seq in seqs:
            self.nackEntries += 1
            ext = self.wrap.get(seq)
            if ext is None:  # not sent yet: the nearest number
                ext = self.unwrap.last + ((seq - self.unwrap.last) & 0xFFFF) \
                    if self.unwrap.last is not None else seq
                if ext - (self.unwrap.last or 0) > 0x8000:
                    ext -= 0x10000
            self.firstNack.setdefault(ext, t)

    def answer(self, t, event, seq):
        ext = self.wrap.get(seq)
        if ext is None:
            return
        self.firstAnswer.setdefault(ext, (t, event))
        if event == "rs":
            self.resent.setdefault(ext, t)
        else:
            self.refused[event] += 1

    def report(self, name, publishers):
        first = self.firstNack
        atOnce = held = soon = budget = notYet = never = 0
        nackToResend, inToResend, sentToNack = [], [], []
        pubArrivals = publishers.get(self.pub).arrived if self.pub in publishers else {}
        pubUnwrap = {}
        if self.pub in publishers:
            pubUnwrap = publishers[self.pub].wrap
        for ext, t in first.items():
            sent = self.sent.get(ext)
            if sent is None or sent[0] > t:
                notYet += 1  # lost on the way in: not ours to send yet
                continue
            sentToNack.append(t - sent[0])
            answer = self.firstAnswer.get(ext)
            resent = self.resent.get(ext)
            if answer is None:
                never += 1
            elif answer[0] - t <= AT_ONCE and answer[1] == "rs":
                atOnce += 1
            elif answer[1] == "soon":
                soon += 1
            elif answer[1] == "budget":
                budget += 1
            else:
                held += 1
            if resent is not None:
                nackToResend.append(resent - t)
                srcExt = pubUnwrap.get(sent[1])
                arrived = pubArrivals.get(srcExt) if srcExt is not None else None
                if arrived is not None:
                    inToResend.append(resent - arrived)
        print(f"player {name}: {len(self.sent)} sent, {len(first)} packets NACKed "
              f"({self.nackEntries} entries), resent {len(self.resent)}; first NACKs: "
              f"{atOnce} answered at once, {held} held then resent, {soon} refused as too soon, "
              f"{budget} over the share, {notYet} before we had the packet, {never} never "
              f"answered; refusals of any NACK: soon {self.refused['soon']}, budget "
              f"{self.refused['budget']}")
        print(f"  sent -> first NACK p50/p95 {ms(sentToNack)} ms; first NACK -> resend "
              f"{ms(nackToResend)} ms; publisher's packet in -> resent copy out {ms(inToResend)} ms")


def events(path):
    """The trace's lines as (time, event, stream, [numbers])."""
    with open(path) as lines:
        for line in lines:
            parts = line.split()
            if len(parts) >= 3:
                yield float(parts[0]), parts[1], int(parts[2]), [int(v) for v in parts[3:]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("trace", nargs="+")
    args = parser.parse_args()
    publishers: dict[int, Publisher] = defaultdict(Publisher)
    players: dict[int, Player] = defaultdict(Player)
    for path in args.trace:
        for t, event, stream, numbers in events(path):
            if event == "in":
                publishers[stream].packet(t, numbers[0])
            elif event == "pnack":
                publishers[stream].nack(t, numbers)
            elif event == "fwd":
                players[stream].forward(t, *numbers[:3])
            elif event == "nack":
                players[stream].nack(t, numbers)
            elif event in ("rs", "soon", "budget"):
                players[stream].answer(t, event, numbers[0])
    for ssrc, publisher in publishers.items():
        publisher.report(ssrc)
        for pssrc, player in players.items():
            if player.pub == ssrc:
                player.report(pssrc, publishers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
