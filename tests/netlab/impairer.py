"""
The user-space link emulator of the network lab: netem's loss, delay with
jitter and rate, done on packets held in a netfilter queue.

Run as `python -m tests.netlab.impairer` by L{tests.netlab.lab.NetLab},
inside the lab's fresh network namespace (`unshare --net`): it sets the
namespace up (127.0.0.0/8 on a veth, one iptables rule sending every UDP
packet to queue 0), prints C{ready}, then reads JSON commands on stdin, one
a line, and answers each with one JSON line on stdout:

  {"cmd": "links", "links": [{"name": ..., "src": ..., "dst": ...,
                               "loss": ..., "delayMs": ..., "jitterMs": ...,
                               "rateKbit": ..., "queueMs": ...}, ...]}
  {"cmd": "stats"}      the counters of every link
  {"cmd": "reset"}      zero the counters

With C{NETLAB_LINK_TRACE} naming a file, every RTP packet a link meets is
a line there (L{LinkTrace}): what became of it, to tell a copy the link
lost from one a client dropped after it came.

It ends on EOF (its parent went away) or SIGTERM, and the namespace with it
once nothing else runs there.
"""

from __future__ import annotations

import heapq
import json
import os
import random
import select
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field

from tests.netlab.nfqueue import NetfilterQueue, udpAddresses

IFACE = "lab0"
TRACE = "NETLAB_LINK_TRACE"
SETUP = [
    ["ip", "link", "set", "lo", "up"],
    # The veth trick (as ../shared/bench/sfu_load.py): 127.0.0.0/8 on an
    # interface that is not IFF_LOOPBACK, so that servers which refuse
    # loopback candidates (Janus) still offer 127.0.0.1.
    ["ip", "link", "add", IFACE, "type", "veth", "peer", "name", IFACE + "p"],
    ["ip", "link", "set", IFACE + "p", "up"],
    ["ip", "link", "set", IFACE, "up"],
    ["ip", "addr", "del", "127.0.0.1/8", "dev", "lo"],
    ["ip", "addr", "add", "127.0.0.1/8", "dev", IFACE],
    # On lo the kernel makes all of 127/8 local; on the veth only 127.0.0.1
    # is: the clients' own 127.0.1.N / 127.0.2.N addresses need this route.
    ["ip", "route", "add", "local", "127.0.0.0/8", "dev", IFACE, "table", "local"],
]
# Every UDP packet is queued once, on its way out (local delivery passes
# OUTPUT then INPUT: queueing in OUTPUT only sees each packet once).
RULE = ["iptables", "-A", "OUTPUT", "-p", "udp", "-j", "NFQUEUE", "--queue-num", "0"]


@dataclass
class Counters:
    packets: int = 0      # offered to the link
    bytes: int = 0
    lost: int = 0         # random loss
    tailDropped: int = 0  # over the rate limit's queue
    delivered: int = 0
    deliveredBytes: int = 0


@dataclass
class Link:
    """
    One direction of one client's link, matched by IPv4 source and/or
    destination. Loss is Bernoulli per packet; a rate limit serializes
    packets at C{rateKbit} behind a queue of at most C{queueMs} of backlog
    (tail drop); then each packet waits C{delayMs} +- C{jitterMs} (uniform,
    as netem's default, so jitter may reorder packets as netem does).
    """

    name: str
    src: str | None = None
    dst: str | None = None
    loss: float = 0.0
    delayMs: float = 0.0
    jitterMs: float = 0.0
    rateKbit: float = 0.0
    queueMs: float = 200.0
    counters: Counters = field(default_factory=Counters)
    busyUntil: float = 0.0

    def matches(self, src: str, dst: str) -> bool:
        return (self.src is None or self.src == src) and (self.dst is None or self.dst == dst)

    def admit(self, now: float, size: int, rng: random.Random) -> float | None:
        """When a packet of C{size} bytes offered at C{now} leaves, or None if dropped."""
        self.counters.packets += 1
        self.counters.bytes += size
        if self.loss and rng.random() < self.loss:
            self.counters.lost += 1
            return None
        depart = now
        if self.rateKbit:
            start = max(now, self.busyUntil)
            if start - now > self.queueMs / 1000:
                self.counters.tailDropped += 1
                return None
            self.busyUntil = depart = start + size * 8 / (self.rateKbit * 1000)
        delay = self.delayMs
        if self.jitterMs:
            delay += rng.uniform(-self.jitterMs, self.jitterMs)
        return depart + max(0.0, delay) / 1000

    def released(self, size: int) -> None:
        self.counters.delivered += 1
        self.counters.deliveredBytes += size


def makeLinks(specs: list[dict]) -> list[Link]:
    return [Link(**spec) for spec in specs]


def rtpFields(packet: bytes) -> tuple[int, int, int] | None:
    """
    (SSRC, sequence number, timestamp) of the RTP packet in the first bytes
    of an IPv4 UDP packet, or None (RTCP, STUN, DTLS). SRTP leaves the
    header in the clear; an RTX copy shows its own SSRC and number.
    """
    start = (packet[0] & 0x0F) * 4 + 8 if packet else 0
    if len(packet) < start + 12:
        return None
    first, kind = packet[start], packet[start + 1]
    if not 127 < first < 192 or 191 < kind < 224:  # RTP version 2; RTCP types (RFC 5761)
        return None
    seq, timestamp, ssrc = struct.unpack_from("!HII", packet, start + 2)
    return ssrc, seq, timestamp


class LinkTrace:
    """
    A line per RTP packet a link met: the monotonic time (the same clock
    as the server's C{media_trace_file} and the lab player's trace), the
    link, SSRC, number, timestamp, IP length, then C{lost} (random loss),
    C{tail} (over the rate limit's queue) or the ms it was held.
    """

    def __init__(self, path: str):
        self.file = open(path, "a", buffering=1 << 16)

    def packet(self, now: float, link: "Link", data: bytes, size: int,
               release: float | None, lost: bool) -> None:
        fields = rtpFields(data)
        if fields is None:
            return
        outcome = ("lost" if lost else "tail") if release is None \
            else round((release - now) * 1000, 1)
        self.file.write(f"{now:.4f} {link.name} {fields[0]} {fields[1]} {fields[2]} "
                        f"{size} {outcome}\n")

    def close(self) -> None:
        self.file.close()


def kernelUdp(path: str = "/proc/net/snmp") -> dict[str, int]:
    """
    This namespace's UDP counters: datagrams the kernel dropped at a
    socket (a full receive buffer, a bad checksum), apart from the links.
    """
    with open(path) as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    names, values = rows[0][1:], rows[1][1:]
    return {name: int(value) for name, value in zip(names, values)
            if name in ("InErrors", "RcvbufErrors", "SndbufErrors", "NoPorts")}


class Impairer:
    """Holds queued packets until their links let them go."""

    def __init__(self, queue, links: list[Link], rng: random.Random, clock=time.monotonic,
                 trace: LinkTrace | None = None):
        self.queue = queue
        self.trace = trace
        self.links = links
        self.rng = rng
        self.clock = clock
        self.held: list[tuple[float, int, int, Link, int]] = []
        self.order = 0
        self.unmatched = Counters()

    def onPackets(self, packets) -> None:
        now = self.clock()
        for packet in packets:
            parsed = udpAddresses(packet.data)
            link = parsed and next((l for l in self.links if l.matches(parsed[0], parsed[1])), None)
            if link is None:
                self.unmatched.packets += 1
                self.queue.verdict(packet.id, True)
                continue
            size = parsed[2]
            lostBefore = link.counters.lost
            release = link.admit(now, size, self.rng)
            if self.trace is not None:
                self.trace.packet(now, link, packet.data, size, release,
                                  link.counters.lost > lostBefore)
            if release is None:
                self.queue.verdict(packet.id, False)
            elif release <= now:
                link.released(size)
                self.queue.verdict(packet.id, True)
            else:
                self.order += 1
                heapq.heappush(self.held, (release, self.order, packet.id, link, size))

    def releaseDue(self) -> float | None:
        """Let go of every packet due; the seconds until the next one (None: none held)."""
        now = self.clock()
        while self.held and self.held[0][0] <= now:
            _, _, packetId, link, size = heapq.heappop(self.held)
            link.released(size)
            self.queue.verdict(packetId, True)
        return self.held[0][0] - now if self.held else None

    def stats(self) -> dict:
        return {"links": {l.name: vars(l.counters) for l in self.links},
                "unmatched": self.unmatched.packets, "held": len(self.held),
                "overruns": getattr(self.queue, "overruns", 0), "kernelUdp": kernelUdp()}

    def command(self, line: str) -> dict:
        request = json.loads(line)
        if request["cmd"] == "links":
            self.links = makeLinks(request["links"])
        elif request["cmd"] == "reset":
            for link in self.links:
                link.counters = Counters()
        return self.stats()


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    for command in SETUP:
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    queue = NetfilterQueue()  # bound before the rule: no packet meets an empty queue
    subprocess.run(RULE, check=True, stdout=subprocess.DEVNULL)
    trace = LinkTrace(os.environ[TRACE]) if os.environ.get(TRACE) else None
    impairer = Impairer(queue, [], random.Random(int(os.environ.get("NETLAB_SEED", "0")) or None),
                        trace=trace)
    print("ready", flush=True)
    try:
        serve(impairer, queue)
    finally:  # EOF or SIGTERM: what the trace holds is the run's end
        if trace is not None:
            trace.close()


def serve(impairer: Impairer, queue) -> None:
    stdin = sys.stdin.fileno()
    pending = b""
    while True:
        wait = impairer.releaseDue()
        readable, _, _ = select.select([queue, stdin], [], [], wait)
        if queue in readable:
            impairer.onPackets(queue.receive())
        if stdin in readable:
            chunk = os.read(stdin, 65536)
            if not chunk:
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                try:
                    answer = impairer.command(line.decode())
                except (ValueError, KeyError, TypeError) as e:
                    answer = {"error": f"{type(e).__name__}: {e}"}
                print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
