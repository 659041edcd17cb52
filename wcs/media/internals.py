"""
Everything of aiortc and aioice that the media engine uses, in one place.

The engine overrides and reads internals of both libraries (the table in
docs/media.md says which and why). A rename upstream would raise nothing:
media would silently stop. So this is the only module of wcs that imports
them; it hides each private hook behind a name of ours (L{DtlsTransport},
L{IceAgent}, L{jitterPacket}) and, at import, checks that every piece still
exists with the signature we rely on. When one does not,
L{IncompatibleMediaLibrary} says so in one line, naming the piece and the
versions the engine is tested with; C{twistd wcs} stops with that line.
"""


from __future__ import annotations

import asyncio
from typing import Callable

from wcs.media.compat import (  # noqa: F401  (re-exported: the tests and twistd use them here)
    NEEDS,
    TESTED,
    IncompatibleMediaLibrary,
    Need,
    problems,
    verify,
    version,
)
from wcs.lag import GridPhases
from wcs.media.liveness import Consent, LoopClock

verify()

# Only now import: a missing piece has been named above, not in a traceback.
from aioice import Candidate, Connection  # noqa: E402
from aioice.candidate import candidate_foundation, candidate_priority  # noqa: E402
from aioice import stun  # noqa: E402
from aioice.ice import StunProtocol, get_host_addresses  # noqa: E402
from aiortc import sdp  # noqa: E402
from aiortc.codecs import get_decoder, get_encoder, h264_depayload, vp8_depayload  # noqa: E402
from aiortc.jitterbuffer import JitterBuffer, JitterFrame  # noqa: E402
from aiortc.rtcdtlstransport import (  # noqa: E402
    RTCCertificate,
    RTCDtlsParameters,
    RTCDtlsTransport,
    State,
)
from aiortc.rtcicetransport import RTCIceParameters, candidate_from_aioice  # noqa: E402
from aiortc.rtcpeerconnection import and_direction, reverse_direction  # noqa: E402
from aiortc.rtcrtpparameters import (  # noqa: E402
    RTCRtcpFeedback,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
)
from aiortc.rtp import (  # noqa: E402
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpByePacket,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtpPacket,
)

DEPAYLOADERS = {"H264": h264_depayload, "VP8": vp8_depayload}

__all__ = [
    "Candidate", "DEPAYLOADERS", "DtlsTransport", "IceAgent", "IncompatibleMediaLibrary",
    "JitterBuffer", "JitterFrame", "RTCCertificate", "RTCDtlsParameters", "RTCIceParameters",
    "RTCP_PSFB_FIR", "RTCP_PSFB_PLI", "RTCP_RTPFB_NACK", "RTCRtcpFeedback",
    "RTCRtpCodecParameters", "RTCRtpHeaderExtensionParameters", "RTCRtpParameters", "RtcpByePacket", "RtcpPacket",
    "RtcpPsfbPacket", "RtcpReceiverInfo", "RtcpRrPacket", "RtcpRtpfbPacket", "RtcpSenderInfo",
    "RtcpSrPacket", "and_direction", "candidate_from_aioice", "get_decoder", "get_encoder",
    "get_host_addresses", "jitterPacket", "reverse_direction", "sdp",
]

from wcs.media.srtpout import Protector, Unprotector  # noqa: E402

RECEIVE_SIZE = 65536  # the largest UDP datagram fits
# The sessions read later (IceAgent.readEvery), spread over a period's grid.
READ_PHASES = GridPhases(4)


def jitterPacket(seq: int, timestamp: int, data: bytes, marker: bool = False) -> RtpPacket:
    """
    A packet for L{JitterBuffer.add}: it joins the C{_data} of a frame's
    packets (the depayloaded bytes aiortc's receiver stores there); the
    marker bit says a frame's last packet (L{wcs.media.source.heldFrames}).
    """
    packet = RtpPacket(marker=int(bool(marker)), sequence_number=seq, timestamp=timestamp)
    packet._data = data
    return packet


class DemuxProtocol(StunProtocol):
    """
    aioice's socket protocol with a short cut for an established session.

    aioice tries to parse every datagram as STUN, queues what is not STUN on
    an C{asyncio.Queue}, and aiortc's receive task takes it from there to
    tell DTLS from SRTP and unprotect it: three steps and a task switch per
    media packet. Once DTLS-SRTP is up, C{srtpReceived} is set and a
    datagram whose first byte says SRTP/SRTCP (128..191, RFC 7983) goes to
    it directly; STUN (0..3) and DTLS (20..63) still take aioice's path.
    """

    srtpReceived: Callable[[bytes], None] | None = None
    # The socket itself (L{IceAgent.openSocket}): asyncio reads one datagram
    # per wake-up, but a video frame's packets arrive together, so an
    # established session reads the rest of the burst here, up to C{batch}
    # in all (each wake-up is one more loop iteration and epoll_wait).
    sock = None
    batch = 16
    # Reading later (L{readEvery}): the timer, and datagrams per turn of it.
    _later = None
    _period = 0.0
    _phase = 0
    laterBatch = 256

    def datagram_received(self, data, addr) -> None:
        self._burst(data, addr, self.batch, True)

    def _burst(self, data, addr, batch: int, frame: bool) -> bool:
        """
        Handle C{data} and read on, C{batch} in all; True if the batch ran
        out. With C{frame}, stop after a packet whose marker bit ends a
        video frame (or RTCP, whose second byte has that bit too): the
        burst is over, and reading on would cost a C{recvfrom} that fails
        (EAGAIN, an exception) per frame; whatever came meanwhile is still
        in the poll, read in the loop's next turn.
        """
        sock = self.sock
        for left in range(batch - 1, -1, -1):
            receiver = self.srtpReceived
            if receiver is not None and data and 127 < data[0] < 192:
                receiver(data)
                if frame and data[1] > 127:
                    return False
            else:
                super().datagram_received(data, addr)
                if receiver is None:
                    return False  # no session (or it ended meanwhile): asyncio's path
            if sock is None:
                return False
            if not left:
                return True
            try:
                data, addr = sock.recvfrom(RECEIVE_SIZE)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError as e:  # what asyncio's reader does with it
                self.error_received(e)
                return False
        return False

    def readEvery(self, period: float, phase: int = 0) -> None:
        """
        0: read each datagram as it comes (asyncio's reader, the default).
        Else nothing needs this session's packets at once (a publisher
        nobody plays, records or measures the arrival of): take the socket
        out of the loop's poll and read what it queued once a C{period}, on
        the period's grid shifted to C{phase} of L{READ_PHASES}: one wake-up
        per period instead of one per frame, shared with the other
        publishers read later.
        """
        transport = self.transport
        self._period, self._phase = period, phase
        later, self._later = self._later, None
        if later is not None:
            later.cancel()
        if transport is None or transport.is_closing() or self.sock is None:
            return
        if period > 0 and self.srtpReceived is not None:
            transport.pause_reading()
            loop = asyncio.get_running_loop()
            self._later = loop.call_at(READ_PHASES.nextTime(loop.time(), period, phase),
                                       self._readLater)
        else:
            transport.resume_reading()  # what came meanwhile is read at once

    def _readLater(self) -> None:
        self._later = None
        more = False
        try:
            data, addr = self.sock.recvfrom(RECEIVE_SIZE)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as e:
            self.error_received(e)
        else:
            more = self._burst(data, addr, self.laterBatch, False)
        if self._later is not None or not self._period:
            return  # reading was set anew meanwhile (a player came)
        if self.srtpReceived is None:
            self.readEvery(0)  # the session ended meanwhile
        elif more:  # a stream faster than a batch a period: the rest at the next turn
            self._later = asyncio.get_running_loop().call_soon(self._readLater)
        else:
            self.readEvery(self._period, self._phase)

    def connection_lost(self, exc) -> None:
        later, self._later = self._later, None
        if later is not None:
            later.cancel()
        super().connection_lost(exc)


class IceAgent(Connection):
    """
    aioice's L{Connection} with its private hooks turned into ours: override
    L{bindCandidates}, L{consentExpired} and L{stunRequestReceived}; send
    with L{sendNow}.
    """

    # Bytes asyncio may hold for the socket before sendNow drops instead.
    writeBufferLimit = 256 * 1024
    # RFC 7675: a check every 4-6 s; consent ends 30 s after the last answer.
    consentInterval = 5.0
    consentLifetime = 30.0
    _consent = None
    _sendPair = None  # the pair sendNow's (transport, address) are of
    readingLater = False  # whether readEvery set a period

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._checks: list[tuple[float, object, bytes]] = []  # sent at, protocol, id

    async def get_component_candidates(self, component: int, addresses: list[str],
                                       timeout: int = 5) -> list[Candidate]:
        return await self.bindCandidates(component)

    async def bindCandidates(self, component: int) -> list[Candidate]:
        """Our host candidates of C{component}, from L{openSocket}."""
        raise NotImplementedError

    async def openSocket(self, sock, component: int, announce: str) -> Candidate:
        """
        Serve ICE on bound socket C{sock}, announced as host C{announce};
        registered at once, so that close() frees it even if a later
        binding of the same gathering fails.
        """
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(lambda: DemuxProtocol(self), sock=sock)
        protocol.sock = sock
        protocol.local_candidate = Candidate(
            foundation=candidate_foundation("host", "udp", announce),
            component=component,
            transport="udp",
            priority=candidate_priority(component, "host"),
            host=announce,
            port=sock.getsockname()[1],
            type="host",
        )
        self._protocols.append(protocol)
        return protocol.local_candidate

    def receiveSrtp(self, receiver: Callable[[bytes], None] | None) -> None:
        """SRTP/SRTCP datagrams go to C{receiver} from now on (None: aioice's path)."""
        for protocol in self._protocols:
            protocol.srtpReceived = receiver
        if receiver is None:
            self.readEvery(0)

    def readEvery(self, period: float) -> None:
        """L{DemuxProtocol.readEvery} on each socket, all in this session's phase."""
        self.readingLater = period > 0
        if self.readingLater:
            phase = READ_PHASES.take(self)
        else:
            READ_PHASES.leave(self)
            phase = 0
        for protocol in self._protocols:
            protocol.readEvery(period, phase)

    async def close(self) -> None:
        READ_PHASES.leave(self)
        await super().close()

    def socketCount(self) -> int:
        return len(self._protocols)

    async def query_consent(self) -> None:
        # aioice starts this once connected and cancels it on close. Ours
        # replaces its loop: consent lasts while some check of the last
        # consentLifetime seconds was answered, however late (Consent).
        expired = asyncio.get_running_loop().create_future()
        consent = self._consent = Consent(
            LoopClock(), self._checkConsent, lambda: expired.done() or expired.set_result(None),
            self.consentInterval, self.consentLifetime)
        consent.start()
        try:
            await expired
        finally:
            consent.stop()
            self._forgetChecks(float("inf"))
        self._query_consent_task = None  # so that close() does not cancel us
        self.consentExpired()
        await self.close()

    def _checkConsent(self) -> None:
        """Send one consent check on each nominated pair; an answer counts until dropped."""
        now = self._consent.clock.seconds()
        self._forgetChecks(now - self.consentLifetime)
        key = self.remote_password.encode("utf8")
        for pair in list(self._nominated.values()):
            request = self.build_request(pair, nominate=False)
            request.add_message_integrity(key)
            # aioice hands a response to the transaction of its id, if any.
            pair.protocol.transactions[request.transaction_id] = _ConsentCheck(
                self._consent, key)
            self._checks.append((now, pair.protocol, request.transaction_id))
            pair.protocol.send_stun(request, pair.remote_addr)

    def _forgetChecks(self, before: float) -> None:
        checks = self._checks
        while checks and checks[0][0] <= before:
            _, protocol, transactionId = checks.pop(0)
            protocol.transactions.pop(transactionId, None)

    def consentExpired(self) -> None:
        """The peer stopped answering consent checks (RFC 7675)."""

    def request_received(self, message, addr, protocol) -> None:
        self.stunRequestReceived(message)
        super().request_received(message, addr, protocol)

    def stunRequestReceived(self, message) -> None:
        """A STUN request (check or consent) came in; aioice answers it next."""

    def sendNow(self, data: bytes) -> bool:
        """
        Send a datagram on the selected pair without a coroutine: the
        forwarding hot path calls this once per packet and player. False
        when the datagram was dropped because the socket is backed up.
        """
        pair = self._nominated.get(1)
        if pair is not self._sendPair:
            if pair is None:
                return False
            # Once per pair, not per packet (remote_addr builds a tuple).
            self._sendPair = pair
            protocol = pair.protocol
            self._sendTo = protocol.transport, pair.remote_addr, protocol.sock
        transport, addr, sock = self._sendTo
        if sock is None or transport.get_write_buffer_size():
            if transport.get_write_buffer_size() > self.writeBufferLimit:
                return False
            transport.sendto(data, addr)  # behind what asyncio holds: in order
            return True
        # The socket directly: asyncio's sendto makes the same call after
        # checks that cost more than the call itself, per packet and player.
        try:
            sock.sendto(data, addr)
        except OSError:
            # EAGAIN and the rest: asyncio's way (queue it and wait for the
            # socket to drain; or tell the protocol).
            transport.sendto(data, addr)
        return True


class _ConsentCheck:
    """Stands in aioice's transactions for one consent check: takes its answer."""

    __slots__ = ("consent", "key")

    def __init__(self, consent: Consent, key: bytes):
        self.consent = consent
        self.key = key

    def response_received(self, message, addr) -> None:
        if message.message_class is stun.Class.RESPONSE and \
                message.check_message_integrity(self.key):
            self.consent.answered()


class IceTransport:
    """
    The little of L{aiortc.RTCIceTransport} that L{RTCDtlsTransport} uses
    (C{_recv}, C{_send}, C{role}), without its gatherer, STUN defaults and
    monitor task.
    """

    def __init__(self, connection: IceAgent):
        self._connection = connection
        self._recv = connection.recv
        self._send = connection.send

    @property
    def role(self) -> str:
        return "controlling" if self._connection.ice_controlling else "controlled"


_CONNECTED = State.CONNECTED
_ENDED = (State.CLOSED, State.FAILED)


class DtlsTransport(RTCDtlsTransport):
    """
    aiortc's DTLS-SRTP transport over an L{IceAgent}, with its private
    hooks turned into ours: override L{rtpReceived}, L{rtcpReceived} and
    L{dtlsEnded}; send with L{protectRtp}/L{protectRtcp}.
    """

    def __init__(self, connection: IceAgent, certificate: RTCCertificate):
        super().__init__(IceTransport(connection), [certificate])
        self._agent = connection

    @property
    def dtlsConnected(self) -> bool:
        return self._state is _CONNECTED

    def setDtlsRole(self, role: str) -> None:
        """C{"client"} or C{"server"}, before L{start}."""
        self._set_role(role)

    def protectRtp(self, data: bytes) -> bytes | None:
        """SRTP-protected C{data}, or None when not connected."""
        if self._state is _CONNECTED:
            return self._tx_srtp.protect(data)
        return None

    _protector = None

    def sendRtpParts(self, header: bytes, payload: bytes) -> bool:
        """
        Protect C{header + payload} without joining them first and send it
        at once (the forwarding hot path: one call per packet and player).
        False when not connected or the packet could not go.
        """
        if self._state is not _CONNECTED:
            return False
        protector = self._protector
        if protector is None or protector.session is not self._tx_srtp:
            protector = self._protector = Protector(self._tx_srtp)
        return self._agent.sendNow(protector.protect(header, payload))

    def protectRtcp(self, data: bytes) -> bytes | None:
        """SRTCP-protected C{data}, or None when not connected; raises pylibsrtp.Error."""
        if self._state is _CONNECTED:
            return self._tx_srtp.protect_rtcp(data)
        return None

    async def stop(self) -> None:
        self._agent.receiveSrtp(None)
        await super().stop()

    # SRTP from the socket (DemuxProtocol), once connected: no queue, no task.

    _unprotector = None

    def _srtpReceived(self, data: bytes) -> None:
        unprotector = self._unprotector
        if unprotector is None or unprotector.session is not self._rx_srtp:
            unprotector = self._unprotector = Unprotector(self._rx_srtp)
        if len(data) > 1 and 191 < data[1] < 209:  # RTCP packet types (RFC 5761)
            data = unprotector.unprotectRtcp(data)
            if data is not None:  # else forged, replayed or not for this session
                self.rtcpReceived(data)
        else:
            data = unprotector.unprotect(data)
            if data is not None:
                self.rtpReceived(data)

    # aiortc's receive loop calls these for each decrypted packet (before
    # the short cut is in place, and for packets it had queued).

    async def _handle_rtp_data(self, data: bytes, arrival_time_ms: int) -> None:
        self.rtpReceived(data)

    async def _handle_rtcp_data(self, data: bytes) -> None:
        self.rtcpReceived(data)

    def _set_state(self, state: State) -> None:
        super()._set_state(state)
        if state is _CONNECTED:
            self._agent.receiveSrtp(self._srtpReceived)  # SRTP keys are set by now
        elif state in _ENDED:
            self._agent.receiveSrtp(None)
            self.dtlsEnded()

    def rtpReceived(self, data: bytes) -> None:
        """One decrypted RTP packet."""

    def rtcpReceived(self, data: bytes) -> None:
        """One decrypted RTCP compound packet."""

    def dtlsEnded(self) -> None:
        """The DTLS session closed or failed (called for each such state change)."""
