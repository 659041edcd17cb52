"""
The network lab itself: the link model, and the namespace + NFQUEUE
impairer proven by the probe (and the probe catching a lab that does not
impair).
"""

import random

import pytest

from tests.netlab.impairer import Impairer, Link
from tests.netlab.lab import NetLab, playerAddress, publisherAddress
from tests.netlab.nfqueue import Packet
from tests.netlab.profiles import PROFILES, proveInLab

CLIENTS = [("publisher0", publisherAddress(0)), ("player0", playerAddress(0)),
           ("player1", playerAddress(1))]


def test_loss_is_bernoulli_per_packet():
    link = Link("l", loss=0.05)
    rng = random.Random(1)
    kept = sum(link.admit(0.0, 100, rng) is not None for _ in range(20000))
    assert link.counters.lost == 20000 - kept
    assert 0.045 < link.counters.lost / 20000 < 0.055


def test_delay_and_jitter_are_uniform_around_the_delay():
    link = Link("l", delayMs=50, jitterMs=20)
    rng = random.Random(2)
    delays = [link.admit(10.0, 100, rng) - 10.0 for _ in range(5000)]
    assert 0.030 <= min(delays) < 0.032 and 0.068 < max(delays) <= 0.070
    assert abs(sum(delays) / len(delays) - 0.050) < 0.001


def test_rate_serializes_and_tail_drops_past_the_queue():
    # 800 kbit/s: a 1000-byte packet takes 10 ms; the queue holds 50 ms.
    link = Link("l", rateKbit=800, queueMs=50)
    rng = random.Random(3)
    departures = [link.admit(0.0, 1000, rng) for _ in range(10)]
    assert departures[:6] == pytest.approx([0.01 * i for i in range(1, 7)])
    assert departures[6:] == [None] * 4
    assert link.counters.tailDropped == 4
    # Once the backlog drains, the link takes packets again.
    assert link.admit(0.06, 1000, rng) == pytest.approx(0.07)


class FakeQueue:
    def __init__(self):
        self.verdicts = []

    def verdict(self, packetId, accept):
        self.verdicts.append((packetId, accept))


def ipv4(src, dst, length=128):
    import socket
    import struct
    return (struct.pack("!BBHHHBBH", 0x45, 0, length, 0, 0, 64, 17, 0)
            + socket.inet_aton(src) + socket.inet_aton(dst))


def test_impairer_holds_packets_until_due_and_counts_per_link():
    now = [100.0]
    queue = FakeQueue()
    impairer = Impairer(queue, [Link("p.up", src="127.0.1.1", delayMs=30),
                                Link("p.down", dst="127.0.1.1", loss=1.0)],
                        random.Random(0), clock=lambda: now[0])
    impairer.onPackets([Packet(1, ipv4("127.0.1.1", "127.0.0.1")),
                        Packet(2, ipv4("127.0.0.1", "127.0.1.1")),
                        Packet(3, ipv4("127.0.0.1", "127.0.0.9"))])
    assert queue.verdicts == [(2, False), (3, True)]  # lost; matched by no link
    assert impairer.releaseDue() == pytest.approx(0.030)
    now[0] += 0.031
    assert impairer.releaseDue() is None
    assert queue.verdicts[-1] == (1, True)
    stats = impairer.stats()
    assert stats["links"]["p.up"]["deliveredBytes"] == 128
    assert stats["links"]["p.down"]["lost"] == 1 and stats["unmatched"] == 1


@pytest.mark.parametrize("name", ["lossy", "narrow"])
def test_the_probe_proves_the_profile_in_the_lab(name):
    profile = PROFILES[name]
    with NetLab() as lab:
        lab.setLinks(profile.links(CLIENTS))
        report, problems = proveInLab(lab, profile, CLIENTS)
        stats = lab.stats()
    print(name, report)
    assert problems == []
    impaired = [spec["name"] for spec in profile.links(CLIENTS) if spec.get("delayMs")]
    assert all(stats["links"][link]["packets"] > 0 for link in impaired)
    if name == "lossy":
        assert report["pooledLoss"]["0.03"]["loss"] > 0.015
    else:
        assert 480 <= report["links"]["player0.down"]["rateKbit"] <= 660


def test_the_probe_fails_a_lab_that_does_not_impair():
    with NetLab() as lab:
        lab.setLinks(PROFILES["clean"].links(CLIENTS))
        _, problems = proveInLab(lab, PROFILES["wifi"], CLIENTS)
    assert any("median delay" in p for p in problems)
    assert any("loss over all links at 0.01" in p for p in problems)
