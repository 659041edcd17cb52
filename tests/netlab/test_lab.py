"""
The network lab itself: the link model, and the namespace + NFQUEUE
impairer proven by the probe (and the probe catching a lab that does not
impair).
"""

import random
import struct

import pytest

from tests.netlab.impairer import Impairer, Link, LinkTrace, kernelUdp, rtpFields
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


def rtp(src, dst, seq, ssrc, timestamp=7, kind=96):
    """An IPv4 UDP packet's first bytes with an RTP header (as SRTP leaves it in the clear)."""
    return ipv4(src, dst) + bytes(8) + struct.pack("!BBHII", 0x80, kind, seq, timestamp, ssrc)


def test_rtp_fields_are_read_after_the_ip_and_udp_headers():
    assert rtpFields(rtp("127.0.0.1", "127.0.2.1", 65000, 0xDEADBEEF, 90000)) == \
        (0xDEADBEEF, 65000, 90000)
    assert rtpFields(rtp("127.0.0.1", "127.0.2.1", 1, 2, kind=201)) is None  # RTCP
    assert rtpFields(ipv4("127.0.0.1", "127.0.2.1") + bytes(8) + b"\x16\xfe\xfd") is None  # DTLS
    assert rtpFields(b"") is None


def test_the_link_trace_says_what_became_of_each_rtp_packet(tmp_path):
    now = [50.0]
    queue = FakeQueue()
    path = tmp_path / "links.trace"
    trace = LinkTrace(str(path))
    impairer = Impairer(queue, [Link("player0.down", dst="127.0.2.1", delayMs=20,
                                     rateKbit=80, queueMs=15)],
                        random.Random(0), clock=lambda: now[0], trace=trace)
    # 128 bytes at 80 kbit/s take 12.8 ms: the third would wait 25.6 ms, past the 15 ms queue.
    impairer.onPackets([Packet(1, rtp("127.0.0.1", "127.0.2.1", 10, 5)),
                        Packet(2, rtp("127.0.0.1", "127.0.2.1", 11, 5)),
                        Packet(3, rtp("127.0.0.1", "127.0.2.1", 12, 5)),
                        Packet(4, rtp("127.0.0.1", "127.0.2.1", 1, 5, kind=200))])
    impairer.links[0].loss = 1.0
    impairer.onPackets([Packet(5, rtp("127.0.0.1", "127.0.2.1", 13, 5))])
    trace.close()
    lines = [line.split() for line in path.read_text().splitlines()]
    assert [line[1:] for line in lines] == [
        ["player0.down", "5", "10", "7", "128", "32.8"],
        ["player0.down", "5", "11", "7", "128", "45.6"],
        ["player0.down", "5", "12", "7", "128", "tail"],
        ["player0.down", "5", "13", "7", "128", "lost"]]  # the RTCP packet is not there
    assert all(float(line[0]) == 50.0 for line in lines)


def test_the_kernels_udp_drops_are_read_from_snmp(tmp_path):
    snmp = tmp_path / "snmp"
    snmp.write_text("Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors "
                    "SndbufErrors InCsumErrors IgnoredMulti MemErrors\n"
                    "Udp: 100 2 7 90 5 1 0 0 0\n"
                    "UdpLite: InDatagrams NoPorts InErrors\nUdpLite: 0 0 0\n")
    assert kernelUdp(str(snmp)) == {"NoPorts": 2, "InErrors": 7, "RcvbufErrors": 5,
                                    "SndbufErrors": 1}
    assert set(kernelUdp()) == {"NoPorts", "InErrors", "RcvbufErrors", "SndbufErrors"}


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
