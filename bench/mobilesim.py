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
freezes"). With C{--uplink} the publisher leg is modelled too (`mobile`
H.264, docs/networks.md): wcs's real L{IncomingTrack} and its publisher-leg
L{NackGenerator} behind an uplink and a downlink of the same loss and delay,
and a publisher that answers NACKs from the last 128 packets it sent, as
aiortc's sender does (RTP_HISTORY_SIZE); C{--packets} per frame and a
keyframe of C{--keyframe} packets every C{--gop} frames:

    .venv/bin/python bench/mobilesim.py --seconds 600            # this tree
    PYTHONPATH=/path/to/other/tree .venv/bin/python bench/mobilesim.py --seconds 600
    .venv/bin/python bench/mobilesim.py --seconds 300 --uplink --packets 4 --keyframe 12

Prints freezes (no frame released for 500 ms) per 30 s, the longest, and
the bytes resent per byte of media. Not modelled: the 2 Mbit/s rate limit
and its queue, decoding; without C{--uplink}, the publisher leg's losses.
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
from wcs.media.track import IncomingTrack, Track  # noqa: E402

FREEZE = 0.5
FPS = 30
PACKETS_PER_FRAME = 4  # ~1 Mbit/s in 1 100-byte packets
PAYLOAD = 1100


class SimTrack(Track):
    def __init__(self, clock):
        super().__init__("video", "VP8", 90000, clock)
        self.keyframeAsks: list[float] = []

    def sendKeyframeRequest(self):
        self.keyframeAsks.append(self.clock.seconds())


class SimIncoming(IncomingTrack):
    """The publisher leg: NACKs go up the link to the publisher."""

    def __init__(self, clock, publisher, link, policy=None):
        self.publisher, self.link = publisher, link
        self.pnacks: dict[int, list[float]] = {}
        self.keyframeAsks: list[float] = []
        self.keyframeArrivals: list[float] = []  # the asks that reached the publisher
        super().__init__(self, "video", "H264", 90000, 96, 0x5678, clock,
                         policy or FeedbackPolicy())
        self.rtx = True  # the lab's publisher resends on RTX: a late media packet is reordered

    def retransmitted(self, data: bytes) -> None:
        """An RTX copy, unwrapped (wcs.media.rtx.RtxReceiver)."""
        seq = int.from_bytes(data[2:4], "big")
        if seq in self.nacks.missing:
            self.nacks.received(seq, retransmission=True)
            self.rtpReceived(data)

    def readingChanged(self):
        pass

    def _sendNack(self, lost):
        for seq in lost:
            self.pnacks.setdefault(seq, []).append(self.clock.seconds())
        self.link.send(self.publisher.nacked, list(lost))

    def sendKeyframeRequest(self):
        self.keyframeAsks.append(self.clock.seconds())
        if self.link.rng.random() >= self.link.loss:  # a PLI is lost as any packet
            self.keyframeArrivals.append(self.clock.seconds())


class Publisher:
    """aiortc's sender: answers a NACK from its last 128 packets (RTP_HISTORY_SIZE)."""

    HISTORY = 128

    def __init__(self, link):
        self.link, self.history, self.track = link, {}, None
        self.resent = 0

    def send(self, data: bytes) -> None:
        seq = int.from_bytes(data[2:4], "big")
        self.history[seq % self.HISTORY] = data
        self.link.send(self.track.rtpReceived, data)

    def nacked(self, lost) -> None:
        for seq in lost:
            data = self.history.get(seq % self.HISTORY)
            if data is not None and int.from_bytes(data[2:4], "big") == seq:
                self.resent += 1
                self.link.send(self.track.retransmitted, data)


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
        self.delays: list[float] = []
        self.arrivals = 0
        self.releasedBy: list[int] = []  # the packet whose arrival let each frame out
        self.resets = 0  # copies 100 or more behind the buffer's origin (MAX_MISORDER)
        self.subscription = None

    def received(self, data: bytes) -> None:
        packet = RtpPacket.parse(data)
        self.arrivals += 1
        if self.nacks.add(packet):
            self.uplink.send(self.subscription.nackReceived, sorted(self.nacks.missing))
        packet._data = packet.payload
        origin = self.buffer._origin
        if origin is not None and 100 <= (origin - packet.sequence_number) & 0xFFFF < 0x8000:
            self.resets += 1  # aiortc's buffer drops everything and waits from this packet
        _, frame = self.buffer.add(packet)
        if frame is not None:
            self.frames.append(self.clock.seconds())
            # Frame n is made at n / FPS: how late it came out of the buffer.
            sent = (frame.timestamp - self.subscription.tsDelta) & 0xFFFFFFFF
            self.delays.append(self.clock.seconds() - sent / 90000)
            self.releasedBy.append(packet.sequence_number)


def run(seconds: float, seed: int, loss: float, delay: float, jitter: float,
        uplink: bool = False, packets: int = PACKETS_PER_FRAME, keyframe: int = 0,
        gop: int = 0, pubPolicy: FeedbackPolicy | None = None) -> dict:
    rng = random.Random(seed)
    clock = Clock()
    down = Link(clock, rng, loss, delay, jitter)
    up = Link(clock, rng, loss, delay, jitter)
    player = Player(clock, up)
    publisher = None
    if uplink:
        # Its own random streams, so that the player leg's draws stay those of
        # a run without the publisher leg.
        pubRng = random.Random(seed + 1000)
        publisher = Publisher(Link(clock, pubRng, loss, delay, jitter))
        track = SimIncoming(clock, publisher, Link(clock, pubRng, loss, delay, jitter),
                            pubPolicy)
        publisher.track = track
    else:
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
    clock.callLater(0.5, report)
    sps = bytes([0x67]) + bytes(PAYLOAD - 1)  # an H.264 SPS: a keyframe starts
    asked = 0
    for frame in range(int(seconds * FPS)):
        # A keyframe request reaches the publisher one way (100 ms) later.
        asks = getattr(track, "keyframeArrivals", track.keyframeAsks)
        due = [t for t in asks[asked:] if t + delay <= clock.seconds()]
        asked += len(due)
        key = frame == 0 or (gop and frame % gop == 0) or bool(due)
        count = keyframe if key and keyframe else packets
        # aiortc sends a frame's packets at once; the model spreads them
        # over the frame's time, as before (the links' jitter reorders them).
        step = 1 / FPS / count
        for i in range(count):
            marker = 0x80 if i == count - 1 else 0
            ts = (frame * 3000) & 0xFFFFFFFF
            if publisher is not None:
                payload = sps if key and i == 0 else bytes(PAYLOAD)
                publisher.send(bytes([0x80, marker | 96]) + (seq & 0xFFFF).to_bytes(2, "big")
                               + ts.to_bytes(4, "big") + (0x5678).to_bytes(4, "big") + payload)
            else:
                track.fanout(0, marker, seq & 0xFFFF, ts, bytes(PAYLOAD), bool(key) and i == 0)
            seq += 1
            clock.advance(step)
    clock.advance(2)
    kept = [(t, by) for t, by in zip(player.frames, player.releasedBy) if 3 <= t < seconds]
    times = [t for t, _ in kept]  # after a warm-up
    delays = [d for t, d in zip(player.frames, player.delays) if 3 <= t < seconds]
    gaps = [b - a for a, b in zip(times, times[1:])]
    freezes = [g for g in gaps if g > FREEZE]
    causes, refusals = {}, []
    for (a, _), (b, by) in zip(kept, kept[1:]):
        if b - a > FREEZE:
            # What the packet that ended it went through on our side.
            got = [name for at, name in trace.events.get(by, []) if at <= b]
            copies = wire.copies.get(by, [])
            way = ""
            if publisher is not None:
                # Its number on the way in (the subscription's offset), and our NACKs for it.
                asked = len(track.pnacks.get((by - subscription.seqDelta) & 0xFFFF, []))
                way = f"way in: {asked} NACK(s); " if asked else "way in: came; "
            cause = (way + f"{'lost' if copies and not copies[0] else 'arrived'}, "
                     f"{got.count('rs')} resent ({copies[1:].count(False)} of them lost)"
                     + (", over the budget" if "budget" in got else "")
                     + (", held" if "held" in got else ""))
            refusals.append(got.count("soon"))
            causes[cause] = causes.get(cause, 0) + 1
    window = seconds - 3
    return {"freezesPer30s": round(len(freezes) * 30 / window, 2),
            "longest": round(max(gaps), 3) if gaps else None,
            "framesPerS": round(len(times) / window, 1),
            "delayMs": "{} / {}".format(*(round(1000 * sorted(delays)[int(q * (len(delays) - 1))])
                                          for q in (0.5, 0.95))),
            "resentPerMedia": round(subscription.retransmittedOctets / subscription.octets, 3),
            "refusedSoon": subscription.retransmitTooSoon, "held": subscription.hold.heldPackets,
            "bufferResets": player.resets, "keyframes": len(track.keyframeAsks),
            "rttMs": round(subscription.rtt.smoothed * 1000),
            "retryMs": round(subscription.rtt.retry * 1000),
            "refusedWithinRoundTripPerFreeze": round(sum(refusals) / len(refusals), 1)
            if refusals else None,
            **({"wayIn": {"nacked": track.nacks.nacksSent, "givenUp": track.nacks.nacksGivenUp,
                          "keyframeAsks": len(track.keyframeAsks),
                          "rttMs": round(track.nacks.rtt.smoothed * 1000),
                          "retryMs": round(track.nacks.rtt.retry * 1000),
                          "resent": publisher.resent}} if publisher is not None else {}),
            "freezesEndedBy": dict(sorted(causes.items(), key=lambda kv: -kv[1]))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--loss", type=float, default=0.05)
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--jitter", type=float, default=0.04)
    parser.add_argument("--uplink", action="store_true",
                        help="model the publisher leg too (wcs's IncomingTrack, its NACKs)")
    parser.add_argument("--packets", type=int, default=PACKETS_PER_FRAME, help="per frame")
    parser.add_argument("--keyframe", type=int, default=0, help="packets of a keyframe")
    parser.add_argument("--gop", type=int, default=0, help="frames between keyframes (0: one)")
    parser.add_argument("--share", type=int, default=20,
                        help="media_retransmit_share of the publisher leg (5: it gives packets up)")
    args = parser.parse_args()
    tree = os.path.dirname(os.path.dirname(os.path.abspath(sys.modules["wcs"].__file__)))
    print(f"wcs from {tree}")
    for seed in range(1, args.seeds + 1):
        print(f"seed {seed}: {run(args.seconds, seed, args.loss, args.delay, args.jitter, args.uplink, args.packets, args.keyframe, args.gop, FeedbackPolicy(share=args.share / 100))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
