"""
Proof that the lab's links are impaired as the profile says, measured before
any media flows: a UDP echo between a client's address and the server's.

The echo server stamps each probe with its own arrival time before sending
it back, and both ends run in this process on one monotonic clock, so each
direction is measured on its own: the uplink by what the echo server got
(and when), the downlink by the replies. A rate probe sends one way faster
than the limit and measures what gets through.
"""

from __future__ import annotations

import asyncio
import math
import struct
import time
from dataclasses import dataclass, field

from tests.netlab.lab import SERVER

_PROBE = struct.Struct("!Idd")  # sequence, sent at, echoed at


@dataclass
class Direction:
    sent: int = 0
    delays: list[float] = field(default_factory=list)  # ms, one per packet that arrived

    @property
    def loss(self) -> float:
        return 1 - len(self.delays) / self.sent if self.sent else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.delays)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else math.nan

    def summary(self) -> dict:
        return {"sent": self.sent, "loss": round(self.loss, 4),
                "p5": round(self.percentile(0.05), 1), "p50": round(self.percentile(0.5), 1),
                "p95": round(self.percentile(0.95), 1)}


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, onDatagram):
        self.onDatagram = onDatagram

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.onDatagram(self.transport, data, addr)


async def _bind(address: str, onDatagram):
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Endpoint(onDatagram), local_addr=(address, 0))
    return transport


async def echoProbe(client: str, server: str = SERVER, count: int = 1000,
                    interval: float = 0.002, payload: int = 48,
                    settle: float = 1.0) -> dict[str, Direction]:
    """Loss and one-way delays of the link between C{client} and C{server}."""
    up, down = Direction(), Direction()
    padding = bytes(max(0, payload - _PROBE.size))

    def echo(transport, data, addr):
        seq, sentAt, _ = _PROBE.unpack_from(data)
        now = time.monotonic()
        up.delays.append((now - sentAt) * 1000)
        transport.sendto(_PROBE.pack(seq, sentAt, now) + padding, addr)

    def reply(transport, data, addr):
        _, _, echoedAt = _PROBE.unpack_from(data)
        down.delays.append((time.monotonic() - echoedAt) * 1000)

    echoer = await _bind(server, echo)
    prober = await _bind(client, reply)
    try:
        target = echoer.get_extra_info("sockname")
        start = time.monotonic()
        for seq in range(count):
            # Paced by the clock, not by the sleeps: a late wake-up sends the
            # packets it owes at once rather than stretching the probe.
            await asyncio.sleep(max(0.0, start + seq * interval - time.monotonic()))
            prober.sendto(_PROBE.pack(seq, time.monotonic(), 0.0) + padding, target)
            up.sent += 1
        await asyncio.sleep(settle)
        down.sent = len(up.delays)
    finally:
        echoer.close()
        prober.close()
    return {"up": up, "down": down}


async def rateProbe(source: str, destination: str, kbit: float, seconds: float = 1.5,
                    size: int = 1000) -> float:
    """kbit/s delivered from C{source} to C{destination} when sent at 1.5 x C{kbit}."""
    arrivals: list[tuple[float, int]] = []
    receiver = await _bind(destination, lambda t, data, a: arrivals.append(
        (time.monotonic(), len(data) + 28)))
    sender = await _bind(source, lambda *a: None)
    try:
        target = receiver.get_extra_info("sockname")
        interval = (size + 28) * 8 / (1.5 * kbit * 1000)
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds:
            await asyncio.sleep(max(0.0, start + n * interval - time.monotonic()))
            sender.sendto(bytes(size), target)
            n += 1
        await asyncio.sleep(1.0)
    finally:
        receiver.close()
        sender.close()
    if len(arrivals) < 3:
        return 0.0
    # Bytes after the first arrival over the time they took to come in.
    span = arrivals[-1][0] - arrivals[0][0]
    return sum(size for _, size in arrivals[1:]) * 8 / span / 1000 if span > 0 else 0.0


def lossTolerance(expected: float, samples: int) -> float:
    """How far measured loss may stray from C{expected}: 4 sigma of the binomial, + 0.5%."""
    return 4 * math.sqrt(max(expected * (1 - expected), 1e-9) / max(samples, 1)) + 0.005


def delayProblems(name: str, direction: Direction, delayMs: float, jitterMs: float) -> list[str]:
    """What is wrong with a link's measured delay; a loaded machine may add, not remove, time."""
    problems = []
    p50 = direction.percentile(0.5)
    if math.isnan(p50):
        return [f"{name}: no probe came through"]
    low, high = delayMs - 3 - 0.2 * jitterMs, delayMs + 15 + 0.2 * jitterMs
    if not low <= p50 <= high:
        problems.append(f"{name}: median delay {p50:.1f} ms, expected {delayMs} "
                        f"(within {low:.0f}..{high:.0f})")
    spread = direction.percentile(0.95) - direction.percentile(0.05)
    if jitterMs and spread < jitterMs:
        problems.append(f"{name}: delay spread p5..p95 {spread:.1f} ms, expected about "
                        f"{1.8 * jitterMs:.0f} for +-{jitterMs} ms jitter")
    return problems
