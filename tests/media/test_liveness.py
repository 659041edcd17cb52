"""
Liveness of WebRTC peers on an injected clock: what counts as a sign of
life (fed through a real MediaTransport and IceConnection), and when the
silence of a peer has lasted too long.
"""

import asyncio
from types import SimpleNamespace

import pytest
from aioice import stun
from aiortc.rtcdtlstransport import RTCCertificate, State
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket
from twisted.internet.task import Clock

from wcs.media import rtp
from tests.media.test_wrap import _srtpPair
from wcs.media.ice import IceConnection, PortRange
from wcs.media.internals import DemuxProtocol
from wcs.media.liveness import LoopClock, Periodic, Silence
from wcs.media.track import IncomingTrack
from wcs.media.transport import MediaTransport

TIMEOUT = 10.0
PUBLISHER_SSRC = 0x1234


def test_silentPeerExpires():
    """Total silence fails the peer once, C{timeout} after the watch starts."""
    clock = Clock()
    expired = []
    silence = Silence(clock, TIMEOUT)
    silence.watch(lambda: expired.append(clock.seconds()))
    clock.advance(TIMEOUT - 0.1)
    assert expired == []
    clock.advance(0.1)
    assert expired == [TIMEOUT]
    clock.advance(100)
    assert expired == [TIMEOUT]
    assert clock.getDelayedCalls() == []


def test_heardPeerStaysWithOneTimer():
    """
    A peer heard every 3 s never expires, the watch holds one timer, and
    once the peer falls silent it expires C{timeout} after its last sign.
    """
    clock = Clock()
    expired = []
    silence = Silence(clock, TIMEOUT)
    silence.watch(lambda: expired.append(clock.seconds()))
    for _ in range(100):
        clock.advance(3)
        silence.heard()
        assert len(clock.getDelayedCalls()) == 1
    last = clock.seconds()
    clock.pump([1] * 30)
    assert expired == [last + TIMEOUT]


def test_zeroNeverAndStop():
    clock = Clock()
    expired = []
    never = Silence(clock, 0)
    never.watch(lambda: expired.append("never"))
    assert clock.getDelayedCalls() == []
    stopped = Silence(clock, TIMEOUT)
    stopped.watch(lambda: expired.append("stopped"))
    stopped.stop()
    stopped.stop()
    clock.advance(TIMEOUT * 10)
    assert expired == [] and clock.getDelayedCalls() == []


def test_loopClock():
    """Without a Twisted reactor the engine's watches run on asyncio's loop."""
    async def main():
        clock = LoopClock()
        expired = asyncio.Event()
        silence = Silence(clock, 0.05)
        silence.watch(expired.set)
        await asyncio.wait_for(expired.wait(), 5)
        assert silence.silentFor() >= 0.05
    asyncio.run(main())


class StunRecorder:
    """Where aioice sends the answers to the requests fed in (no socket)."""

    local_candidate = None

    def __init__(self):
        self.sent = []

    def send_stun(self, message, addr):
        self.sent.append(message)


def _stunRequest(connection: IceConnection, password: str) -> stun.Message:
    request = stun.Message(message_method=stun.Method.BINDING,
                           message_class=stun.Class.REQUEST)
    request.attributes["USERNAME"] = f"{connection.local_username}:peer"
    request.attributes["PRIORITY"] = 1
    request.attributes["ICE-CONTROLLING"] = 1
    request.add_message_integrity(password.encode("utf8"))
    request.add_fingerprint()
    return stun.parse_message(bytes(request))


def _rtp(seq: int) -> bytes:
    return rtp.HEADER.pack(0x80, 111, seq, seq * 960, PUBLISHER_SSRC) + b"\x01" * 40


def _receiverReport() -> bytes:
    return bytes(RtcpRrPacket(ssrc=0x5678, reports=[RtcpReceiverInfo(
        ssrc=0x9ABC, fraction_lost=0, packets_lost=0, highest_sequence=1,
        jitter=0, lsr=0, dlsr=0)]))


class Peer:
    """A session's transport, watched on a task.Clock, fed one kind of sign."""

    def __init__(self):
        self.clock = Clock()
        connection = IceConnection(PortRange(0, 0), [("127.0.0.1", "127.0.0.1")])
        self.transport = MediaTransport(connection, RTCCertificate.generateCertificate())
        self.track = IncomingTrack(self.transport, "audio", "opus", 48000, 111,
                                   PUBLISHER_SSRC, self.clock)
        self.transport.receivers[PUBLISHER_SSRC] = self.track
        self.peer = Silence(self.clock, TIMEOUT)
        self.rtp = Silence(self.clock, TIMEOUT)
        self.transport.watchedBy(self.peer, self.rtp)
        self.expired = []
        self.peer.watch(lambda: self.expired.append("peer"))
        self.rtp.watch(lambda: self.expired.append("rtp"))
        self.seq = 0
        self.stun = StunRecorder()

    async def send(self, sign: str) -> None:
        if sign == "rtp":
            self.seq += 1
            await self.transport._handle_rtp_data(_rtp(self.seq), 0)
        elif sign == "rtcp":
            await self.transport._handle_rtcp_data(_receiverReport())
        elif sign == "stun":
            ice = self.transport.ice
            ice.request_received(_stunRequest(ice, ice.local_password),
                                 ("127.0.0.1", 9), self.stun)
        elif sign == "forged stun":
            ice = self.transport.ice
            ice.request_received(_stunRequest(ice, "not-the-password"),
                                 ("127.0.0.1", 9), self.stun)

    async def live(self, sign: str, seconds: float, every: float) -> None:
        for _ in range(int(seconds / every)):
            self.clock.advance(every)
            await self.send(sign)


@pytest.mark.parametrize("sign, expired", [
    # A publisher sending only media: alive, and its stream too.
    ("rtp", []),
    # A player sending only receiver reports: alive (no RTP: the rtp watch,
    # which only a publisher arms, would fail).
    ("rtcp", ["rtp"]),
    # Only STUN consent checks: the peer is alive (a publisher's stream
    # still fails for want of RTP).
    ("stun", ["rtp"]),
    # STUN without our password's integrity proves nothing.
    ("forged stun", ["peer", "rtp"]),
])
def test_whatCountsAsLife(sign, expired):
    async def main():
        peer = Peer()
        await peer.live(sign, 60, 2.5)
        assert sorted(peer.expired) == expired
        if sign == "stun":
            assert peer.stun.sent[0].message_class == stun.Class.RESPONSE
        # Then silence: whatever was still alive expires TIMEOUT later.
        peer.clock.advance(TIMEOUT)
        assert sorted(peer.expired) == ["peer", "rtp"]
        await peer.transport.close()
    asyncio.run(main())


class Datagrams:
    """A datagram transport that keeps what is sent (no socket)."""

    def __init__(self, protocol):
        self.protocol = protocol
        self.sent = []

    def sendto(self, data, addr):
        self.sent.append(data)

    def get_write_buffer_size(self):
        return 0

    def close(self):
        self.protocol.connection_lost(None)


class WirePeer(Peer):
    """
    The same, fed as datagrams through the socket's L{DemuxProtocol} of a
    connected session: SRTP/SRTCP protected with the session's keys, STUN
    as bytes.
    """

    def __init__(self):
        super().__init__()
        self.srtp, self.transport._rx_srtp = _srtpPair()
        ice = self.transport.ice
        self.protocol = DemuxProtocol(ice)
        self.protocol.local_candidate = SimpleNamespace(component=1)
        self.wire = Datagrams(self.protocol)
        self.protocol.connection_made(self.wire)
        ice._protocols.append(self.protocol)
        self.queued = []  # what took aioice's path to aiortc's receive task
        ice.data_received = lambda data, component: self.queued.append(data)
        self.transport._set_state(State.CONNECTED)

    async def send(self, sign: str) -> None:
        ice, addr = self.transport.ice, ("127.0.0.1", 9)
        if sign == "rtp":
            self.seq += 1
            self.protocol.datagram_received(self.srtp.protect(_rtp(self.seq)), addr)
        elif sign == "rtcp":
            self.protocol.datagram_received(self.srtp.protect_rtcp(_receiverReport()), addr)
        elif sign in ("stun", "forged stun"):
            password = ice.local_password if sign == "stun" else "not-the-password"
            self.protocol.datagram_received(bytes(_stunRequest(ice, password)), addr)
            self.stun.sent = [stun.parse_message(d) for d in self.wire.sent]
        elif sign == "forged srtp":
            forger, _ = _srtpPair()  # other keys
            self.protocol.datagram_received(forger.protect(_rtp(1000)), addr)


@pytest.mark.parametrize("sign, expired", [
    ("rtp", []),
    ("rtcp", ["rtp"]),
    ("stun", ["rtp"]),
    ("forged stun", ["peer", "rtp"]),
    # SRTP that does not authenticate with the session's keys: no life.
    ("forged srtp", ["peer", "rtp"]),
])
def test_whatCountsAsLifeOnTheWire(sign, expired):
    """
    Once DTLS is up, SRTP goes from the socket to the session without
    aioice's queue (and STUN still to aioice): the same signs count.
    """
    async def main():
        peer = WirePeer()
        assert peer.protocol.srtpReceived is not None
        await peer.live(sign, 60, 2.5)
        assert sorted(peer.expired) == expired
        assert peer.queued == []
        if sign == "rtp":
            assert peer.track.packetsIn == 24
        if sign == "stun":
            assert peer.stun.sent[0].message_class == stun.Class.RESPONSE
        # DTLS (a close_notify, say) still goes to aiortc's receive task.
        dtls = b"\x15\xfe\xfd" + b"\x00" * 20
        peer.protocol.datagram_received(dtls, ("127.0.0.1", 9))
        assert peer.queued == [dtls]
        peer.clock.advance(TIMEOUT)
        assert sorted(peer.expired) == ["peer", "rtp"]
        await peer.transport.close()
        assert peer.protocol.srtpReceived is None  # the session ended
    asyncio.run(main())


def test_periodicRunsOnTimeWithoutPackets():
    """No packets: the timer runs the work every interval, from start."""
    clock = Clock()
    runs = []
    periodic = Periodic(clock, 1.0, lambda: runs.append(clock.seconds()), early=0.05)
    periodic.start()
    clock.pump([0.25] * 12)
    assert runs == [0.0, 1.0, 2.0, 3.0]
    periodic.stop()
    clock.advance(5)
    assert runs == [0.0, 1.0, 2.0, 3.0] and not clock.getDelayedCalls()


def test_periodicRidesOnPackets():
    """
    A poll within C{early} of the deadline runs the work then and moves the
    timer (one pending call, never two); a poll before that runs nothing.
    """
    clock = Clock()
    runs = []
    periodic = Periodic(clock, 1.0, lambda: runs.append(clock.seconds()), early=0.05)
    periodic.start()
    clock.advance(0.9)
    periodic.poll()
    assert runs == [0.0]
    clock.advance(0.07)  # 0.97: within 0.05 of 1.0
    periodic.poll()
    assert runs == [0.0, 0.97]
    [call] = clock.getDelayedCalls()
    assert call.getTime() == pytest.approx(1.97)
    periodic.poll()  # the same wake-up again: nothing more
    assert runs == [0.0, 0.97]
    clock.advance(1.0)
    assert runs == [0.0, 0.97, 1.97]


def test_periodicWorkThatFailsOrStops():
    """A failing work is logged and rescheduled; a work that stops it ends it."""
    clock = Clock()
    runs = []

    def work():
        runs.append(clock.seconds())
        if len(runs) == 1:
            raise ValueError("once")
        if len(runs) == 3:
            periodic.stop()

    periodic = Periodic(clock, 1.0, work)
    periodic.start()
    clock.pump([1.0] * 5)
    assert runs == [0.0, 1.0, 2.0]
    assert not clock.getDelayedCalls()
