"""
One player's leg of the lab's `mobile` profile on a virtual clock: wcs's
real L{Subscription} (its history, once-per-round-trip rule, NackHold and
budget) sends to an aiortc player modelled with aiortc's own NackGenerator
and video JitterBuffer, over a downlink and an uplink of 5 % loss and
100 ms +- 40 ms (uniform) each; the player's receiver reports give the
subscription a round-trip sample (a downlink plus an uplink delay) every
0.5-1.5 s, as aiortc sends them. The publisher leg is perfect: what is
left is what the player leg adds. No CPU, no load: the same seed gives the
same run, so two trees compare exactly (docs/networks.md, "Mobile VP8
freezes"):

    .venv/bin/python bench/mobilesim.py --seconds 600            # this tree
    PYTHONPATH=/path/to/other/tree .venv/bin/python bench/mobilesim.py --seconds 600

Prints freezes (no frame released for 500 ms) per 30 s, the longest, and
the bytes resent per byte of media. Not modelled: the 2 Mbit/s rate limit
and its queue, decoding, the publisher leg's losses.
"""

from __future__ import annotations

import argparse
import os
import random
import sys

try:
    import wcs  # noqa: F401  (PYTHONPATH may name another tree: compare it)
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aiortc.jitterbuffer import JitterBuffer  # noqa: E402
from aiortc.rtcrtpreceiver import NackGenerator  # noqa: E402
from aiortc.rtp import RtpPacket  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402

from wcs.media.feedback import FeedbackPolicy  # noqa: E402
from wcs.media.subscription import Subscription  # noqa: E402
from wcs.media.track import Track  # noqa: E402

FREEZE = 0.5
FPS = 30
PACKETS_PER_FRAME = 4  # ~1 Mbit/s in 1 100-byte packets
PAYLOAD = 1100


class SimTrack(Track):
    def __init__(self, clock):
        super().__init__("video", "VP8", 90000, clock)

    def sendKeyframeRequest(self):
        pass


class Link:
    def __init__(self, clock, rng, loss, delay, jitter):
        self.clock, self.rng = clock, rng
        self.loss, self.delay, self.jitter = loss, delay, jitter

    def oneWay(self) -> float:
        return self.delay + self.rng.uniform(-self.jitter, self.jitter)

    def send(self, deliver, *args) -> bool:
        """Whether it will arrive."""
        if self.rng.random() < self.loss:
            return False
        self.clock.callLater(self.oneWay(), deliver, *args)
        return True


class Trace:
    """The subscription's per-packet trace (wcs.media.trace's events), kept per number."""

    def __init__(self, clock):
        self.clock = clock
        self.events: dict[int, list[tuple[float, str]]] = {}

    def event(self, name, stream, *numbers):
        if name == "nack":
            return  # a list: kept by the player's side
        self.events.setdefault(numbers[0], []).append((self.clock.seconds(), name))


class Wire:
    """The subscription's transport: RTP goes down the link to the player."""

    connected = True

    def __init__(self, link, player):
        self.link, self.player, self.senders = link, player, {}
        self.copies: dict[int, list[bool]] = {}  # seq -> each copy: did it arrive

    def sendRtp(self, data):
        seq = int.from_bytes(data[2:4], "big")
        self.copies.setdefault(seq, []).append(self.link.send(self.player.received, data))
        return True

    def sendRtpParts(self, header, payload):
        return self.sendRtp(header + payload)

    def sendRtcp(self, data):
        pass


class Player:
    """aiortc's receiver: a NACK of every packet still missing on each new gap."""

    def __init__(self, clock, uplink):
        self.clock, self.uplink = clock, uplink
        self.nacks = NackGenerator()
        self.buffer = JitterBuffer(capacity=512, is_video=True)
        self.frames: list[float] = []
        self.arrivals = 0
        self.releasedBy: list[int] = []  # the packet whose arrival let each frame out
        self.subscription = None

    def received(self, data: bytes) -> None:
        packet = RtpPacket.parse(data)
        self.arrivals += 1
        if self.nacks.add(packet):
            self.uplink.send(self.subscription.nackReceived, sorted(self.nacks.missing))
        packet._data = packet.payload
        _, frame = self.buffer.add(packet)
        if frame is not None:
            self.frames.append(self.clock.seconds())
            self.releasedBy.append(packet.sequence_number)


def run(seconds: float, seed: int, loss: float, delay: float, jitter: float) -> dict:
    rng = random.Random(seed)
    clock = Clock()
    down = Link(clock, rng, loss, delay, jitter)
    up = Link(clock, rng, loss, delay, jitter)
    player = Player(clock, up)
    track = SimTrack(clock)
    trace = Trace(clock)
    wire = Wire(down, player)
    subscription = Subscription(track, wire, ssrc=0x1234, payloadType=96,
                                policy=FeedbackPolicy(trace=trace))
    player.subscription = subscription
    subscription.attach()

    def report():
        subscription.rtt.sample(down.oneWay() + up.oneWay())
        clock.callLater(0.5 + rng.random(), report)

    seq = 0
    step = 1 / FPS / PACKETS_PER_FRAME
    clock.callLater(0.5, report)
    for frame in range(int(seconds * FPS)):
        for i in range(PACKETS_PER_FRAME):
            track.fanout(0, 0x80 if i == PACKETS_PER_FRAME - 1 else 0, seq & 0xFFFF,
                         (frame * 3000) & 0xFFFFFFFF, bytes(PAYLOAD), frame == 0)
            seq += 1
            clock.advance(step)
    clock.advance(2)
    kept = [(t, by) for t, by in zip(player.frames, player.releasedBy) if 3 <= t < seconds]
    times = [t for t, _ in kept]  # after a warm-up
    gaps = [b - a for a, b in zip(times, times[1:])]
    freezes = [g for g in gaps if g > FREEZE]
    causes, refusals = {}, []
    for (a, _), (b, by) in zip(kept, kept[1:]):
        if b - a > FREEZE:
            # What the packet that ended it went through on our side.
            got = [name for at, name in trace.events.get(by, []) if at <= b]
            copies = wire.copies.get(by, [])
            cause = (f"{'lost' if copies and not copies[0] else 'arrived'}, "
                     f"{got.count('rs')} resent ({copies[1:].count(False)} of them lost)"
                     + (", over the budget" if "budget" in got else "")
                     + (", held" if "held" in got else ""))
            refusals.append(got.count("soon"))
            causes[cause] = causes.get(cause, 0) + 1
    window = seconds - 3
    return {"freezesPer30s": round(len(freezes) * 30 / window, 2),
            "longest": round(max(gaps), 3) if gaps else None,
            "framesPerS": round(len(times) / window, 1),
            "resentPerMedia": round(subscription.retransmittedOctets / subscription.octets, 3),
            "refusedSoon": subscription.retransmitTooSoon, "held": subscription.hold.heldPackets,
            "rttMs": round(subscription.rtt.smoothed * 1000),
            "retryMs": round(subscription.rtt.retry * 1000),
            "refusedWithinRoundTripPerFreeze": round(sum(refusals) / len(refusals), 1)
            if refusals else None,
            "freezesEndedBy": dict(sorted(causes.items(), key=lambda kv: -kv[1]))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--loss", type=float, default=0.05)
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--jitter", type=float, default=0.04)
    args = parser.parse_args()
    tree = os.path.dirname(os.path.dirname(os.path.abspath(sys.modules["wcs"].__file__)))
    print(f"wcs from {tree}")
    for seed in range(1, args.seeds + 1):
        print(f"seed {seed}: {run(args.seconds, seed, args.loss, args.delay, args.jitter)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
