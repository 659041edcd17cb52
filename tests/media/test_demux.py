"""
The socket reader of an established session (wcs.media.internals.DemuxProtocol)
on a real loopback socket: a burst is read in a few wake-ups, in order, and
what is not SRTP, or comes after the session ended, still takes aioice's path.
"""

import asyncio
import socket

import pytest

from tests.media.peers import asyncTest
from wcs.lag import gridTime
from wcs.media import rtp
from wcs.media.ice import IceConnection, PortRange
from wcs.media.internals import DemuxProtocol

BURST = 40


async def _agent():
    agent = IceConnection(PortRange(0, 0), [("127.0.0.1", "127.0.0.1")])
    await agent.gather_candidates()
    [protocol] = agent._protocols
    wakeups = []

    def counted(data, addr):
        wakeups.append(data)
        DemuxProtocol.datagram_received(protocol, data, addr)
    protocol.datagram_received = counted  # what asyncio's transport calls
    return agent, protocol, wakeups


def _burst(port: int, datagrams: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for datagram in datagrams:  # all queued before the loop runs again
            sender.sendto(datagram, ("127.0.0.1", port))


async def _until(condition, seconds=10.0):
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def _packet(seq: int) -> bytes:
    return rtp.HEADER.pack(0x80, 96, seq, seq * 3000, 0x1234) + b"\x00" * 100


@asyncTest(timeout=30)
async def test_burstInFewWakeUps():
    """A burst of 40 SRTP datagrams (and DTLS among them) in 16s, in order."""
    agent, protocol, wakeups = await _agent()
    got = []
    agent.receiveSrtp(got.append)
    dtls = b"\x16\xfe\xfd" + b"\x00" * 30
    try:
        packets = [_packet(i) for i in range(BURST)]
        _burst(protocol.local_candidate.port, packets[:20] + [dtls] + packets[20:])
        await _until(lambda: len(got) == BURST)
        assert got == packets
        assert len(wakeups) <= 2 * -(-(BURST + 1) // protocol.batch), len(wakeups)
        assert agent._queue.get_nowait() == (dtls, 1)  # aioice's, for aiortc's DTLS
    finally:
        await agent.close()


class _CountingSocket:
    """The protocol's socket, counting the reads that found nothing (EAGAIN)."""

    def __init__(self, sock):
        self.sock = sock
        self.empty = 0

    def recvfrom(self, size):
        try:
            return self.sock.recvfrom(size)
        except BlockingIOError:
            self.empty += 1
            raise


@asyncTest(timeout=30)
async def test_frameEndEndsTheBurst():
    """
    Three video frames of four packets, the last of each with the marker
    bit: one wake-up a frame, and no read that finds the socket empty (the
    marker says the frame's burst is over). A packet without a marker at
    the end is read on until EAGAIN, as before.
    """
    agent, protocol, wakeups = await _agent()
    got = []
    agent.receiveSrtp(got.append)
    counting = protocol.sock = _CountingSocket(protocol.sock)
    try:
        packets = [rtp.HEADER.pack(0x80, 96 | (0x80 if i % 4 == 3 else 0), i, i // 4 * 3000,
                                   0x1234) + bytes(100) for i in range(12)]
        _burst(protocol.local_candidate.port, packets)
        await _until(lambda: len(got) == 12)
        assert got == packets
        assert len(wakeups) == 3 and counting.empty == 0, (len(wakeups), counting.empty)
        _burst(protocol.local_candidate.port, [_packet(12)])
        await _until(lambda: len(got) == 13)
        assert counting.empty == 1
    finally:
        protocol.sock = counting.sock
        await agent.close()


@asyncTest(timeout=30)
async def test_sessionEndsWithinABurst():
    """The receiver is unset by the fifth packet: the rest go to aioice's queue."""
    agent, protocol, wakeups = await _agent()
    got = []

    def receive(data):
        got.append(data)
        if len(got) == 5:
            agent.receiveSrtp(None)
    agent.receiveSrtp(receive)
    try:
        packets = [_packet(i) for i in range(BURST)]
        _burst(protocol.local_candidate.port, packets)
        await _until(lambda: agent._queue.qsize() == BURST - 5)
        assert got == packets[:5]
        assert [agent._queue.get_nowait()[0] for _ in range(BURST - 5)] == packets[5:]
    finally:
        await agent.close()


@asyncTest(timeout=30)
async def test_readLaterBatchesAPeriod():
    """
    Read every 0.3 s: three bursts come meanwhile and asyncio's reader
    never wakes for them; they arrive together, in order, at the period
    (at a multiple of it on the loop's clock, shared with every other
    timer of that period). Reading at once again, the next burst wakes
    the reader.
    """
    agent, protocol, wakeups = await _agent()
    got = []
    loop = asyncio.get_running_loop()
    readAt = []
    agent.receiveSrtp(lambda data: (got.append(data), readAt.append(loop.time())))
    await asyncio.sleep(gridTime(loop.time(), 0.3) - loop.time() + 0.005)  # just past one
    agent.readEvery(0.3)
    try:
        start = loop.time()
        packets = [_packet(i) for i in range(30)]
        for n in range(3):
            _burst(protocol.local_candidate.port, packets[10 * n:10 * n + 10])
            await asyncio.sleep(0.03)
        assert got == [] and wakeups == []
        await _until(lambda: len(got) == 30)
        assert loop.time() - start >= 0.25
        assert got == packets and wakeups == []
        assert readAt[0] - gridTime(start, 0.3) < 0.1  # on the grid, as late as a loop is
        assert readAt[0] >= gridTime(start, 0.3) - 0.001
        agent.readEvery(0)
        assert protocol._later is None
        _burst(protocol.local_candidate.port, [_packet(30)])
        await _until(lambda: len(got) == 31)
        assert len(wakeups) == 1
    finally:
        await agent.close()
    assert protocol._later is None


@asyncTest(timeout=30)
async def test_readLaterPhases():
    """
    Publishers read later fall on PHASES shifts of the period's grid, one
    after the other: they share that many wake-ups a period, and no one
    turn reads them all.
    """
    from wcs.media.internals import READ_PHASES

    assert not len(READ_PHASES)  # every earlier test's agents are closed
    phaseCount = 4
    agents = [await _agent() for _ in range(phaseCount + 1)]
    try:
        for agent, _, _ in agents:
            agent.receiveSrtp(lambda data: None)
            agent.readEvery(0.4)
        phases = [protocol._phase for _, protocol, _ in agents]
        assert sorted(phases[:-1]) == list(range(phaseCount))
        assert phases[-1] == phases[0]  # the least used phase, the first of equals
        times = [protocol._later.when() for _, protocol, _ in agents]
        step = 0.4 / phaseCount
        for time, phase in zip(times, phases):
            off = (time / step - phase) % phaseCount  # 0 or a hair under phaseCount
            assert min(off, phaseCount - off) == pytest.approx(0, abs=1e-6)
        assert times[-1] == pytest.approx(times[0])  # the same wake-up
        agents[2][0].readEvery(0)
        agents[2][0].readEvery(0.4)
        assert agents[2][1]._phase == phases[2]  # its phase was the least used again
        for agent, _, _ in agents[1:]:
            agent.readEvery(0)
        agents[0][0].readEvery(0)
        agents[0][0].readEvery(0.4)
        assert agents[0][1]._phase == 0  # alone: the first phase, the lag probe's
    finally:
        for agent, _, _ in agents:
            await agent.close()


@asyncTest(timeout=30)
async def test_readLaterEndsWithTheSession():
    """The session ends while reading later: asyncio's reader (and aioice's path) again."""
    agent, protocol, wakeups = await _agent()
    agent.receiveSrtp(lambda data: None)
    agent.readEvery(5.0)
    try:
        agent.receiveSrtp(None)
        assert protocol._later is None and protocol.transport.is_reading()
        _burst(protocol.local_candidate.port, [_packet(1)])
        await _until(lambda: agent._queue.qsize() == 1)
    finally:
        await agent.close()


def test_readLaterOnlyWhileNobodyNeedsThePackets():
    """
    A publisher's transport reads later while its tracks have no player and
    no sink and no transport-wide feedback is on; at once otherwise.
    """
    from types import SimpleNamespace

    from aiortc.rtcdtlstransport import RTCCertificate

    from wcs.media.track import IncomingTrack
    from wcs.media.transport import MediaTransport

    transport = MediaTransport(IceConnection(PortRange(0, 0), [("127.0.0.1", "127.0.0.1")]),
                               RTCCertificate.generateCertificate())
    track = IncomingTrack(transport, "audio", "opus", 48000, 111, 5)
    transport.receivers[5] = track
    transport.readingChanged()
    assert not transport.ice.readingLater  # readLater 0: never
    transport.readLater = 0.1
    transport.readingChanged()
    assert transport.ice.readingLater
    player = SimpleNamespace()
    track.subscribe(player)
    assert not transport.ice.readingLater
    track.unsubscribe(player)
    assert transport.ice.readingLater
    track.frameListener = lambda *frame: None
    assert not transport.ice.readingLater
    track.frameListener = None
    assert transport.ice.readingLater
    transport.transportWide = object()
    transport.readingChanged()
    assert not transport.ice.readingLater


def test_receiverReportsRideTheReadsLater():
    """
    Read later, the publisher's periodic work (receiver reports) may run a
    whole read period early, on a read's wake-up; read at once, 50 ms as before.
    """
    from types import SimpleNamespace

    from aiortc.rtcdtlstransport import RTCCertificate
    from twisted.internet.task import Clock

    from wcs.media.liveness import Periodic
    from wcs.media.track import IncomingTrack
    from wcs.media.transport import MediaTransport

    transport = MediaTransport(IceConnection(PortRange(0, 0), [("127.0.0.1", "127.0.0.1")]),
                               RTCCertificate.generateCertificate())
    track = IncomingTrack(transport, "audio", "opus", 48000, 111, 5)
    transport.receivers[5] = track
    transport.awake = reports = Periodic(Clock(), 1.0, lambda: None)
    transport.readLater = 0.1
    transport.readingChanged()
    assert reports.early == 0.1
    player = SimpleNamespace()
    track.subscribe(player)
    assert reports.early == Periodic.EARLY == 0.05
    track.unsubscribe(player)
    assert reports.early == 0.1


@asyncTest(timeout=30)
async def test_readLaterKeepsUpWithAFastStream():
    """More than a batch queued: the rest is read in the next loop turns, not a period later."""
    agent, protocol, wakeups = await _agent()
    got = []
    agent.receiveSrtp(got.append)
    protocol.laterBatch = 4
    agent.readEvery(0.2)
    loop = asyncio.get_running_loop()
    try:
        packets = [_packet(i) for i in range(10)]
        _burst(protocol.local_candidate.port, packets)
        start = loop.time()
        await _until(lambda: len(got) == 10)
        assert loop.time() - start < 0.35  # one period, not three
        assert got == packets and wakeups == []
        assert protocol._later is not None  # and reading later goes on
    finally:
        await agent.close()
