"""
One ICE + DTLS-SRTP transport of a peer, with RTP routed to our own handlers.

L{MediaTransport} is aiortc's L{RTCDtlsTransport} (handshake, SRTP keys,
receive loop; through L{wcs.media.internals.DtlsTransport}) with its two
routing hooks overridden: decrypted RTP goes,
as bytes, to the handler registered for its SSRC, and RTCP feedback to the
handler of the SSRC it is about. Nothing goes through aiortc's
RTCRtpReceiver (jitter buffer, decoder thread) or RTCRtpSender (encoder).
Sending is synchronous: SRTP-protect and C{sendto}, no coroutine per packet.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Protocol

import pylibsrtp
from twisted.logger import Logger

from wcs.errors import StreamError
from wcs.media import info
from wcs.media.ice import IceConnection
from wcs.media.internals import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    DtlsTransport,
    RTCCertificate,
    RTCDtlsParameters,
    RTCIceParameters,
    RtcpByePacket,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
)
from wcs.logs import LogLimiter
from wcs.media.liveness import LoopClock, Silence
from wcs.media.rtp import SSRC, random32


class RtpHandler(Protocol):
    """Receives the RTP of one incoming SSRC."""

    ssrc: int | None

    def rtpReceived(self, data: bytes) -> None: ...

    def senderReport(self, packet: RtcpSrPacket) -> None: ...


class FeedbackHandler(Protocol):
    """Receives the RTCP feedback about one SSRC we send."""

    def keyframeRequested(self) -> None: ...

    def nackReceived(self, lost: list[int]) -> None: ...

    def receptionReported(self, lsr: int, dlsr: int) -> None: ...


class MediaTransport(DtlsTransport):
    log = Logger()
    limited = LogLimiter(log)
    # What the peer's RTCP may cost (wcs.media.rtcpguard.RtcpBudget); None: no limit.
    rtcpBudget = None
    owner = None  # the media session, for log lines
    # Periodic work run on a packet's wake-up when nearly due (liveness.Periodic).
    awake = None
    # s between two reads of the sockets while no receiver needs its
    # packets at once (readingChanged); 0: always at once.
    readLater = 0.0

    def __init__(self, connection: IceConnection, certificate: RTCCertificate):
        super().__init__(connection, certificate)
        self.ice = connection
        self.receivers: dict[int, RtpHandler] = {}
        # Handlers for SSRCs the offer did not announce, by payload type.
        self.receiversByType: dict[int, RtpHandler] = {}
        self.senders: dict[int, FeedbackHandler] = {}
        self.rtcpSsrc = random32()
        self.connected = False
        self.closing = False
        self.lost: Callable[[str], None] | None = None
        # Sees every RTP packet first, whatever its SSRC (wcs.media.twcc).
        self.transportWide = None
        # Signs of life (see watchedBy); unwatched until a session says.
        self.peer = self.rtp = Silence(LoopClock(), 0)

    def watchedBy(self, peer: Silence, rtp: Silence | None = None) -> None:
        """
        Record signs of life in C{peer} (any SRTP/SRTCP packet that
        authenticates, and authenticated STUN requests) and in C{rtp} (RTP
        for one of our receivers).
        """
        self.peer = self.ice.peer = peer
        if rtp is not None:
            self.rtp = rtp

    # Connection

    async def connect(self, remoteIce: RTCIceParameters, remoteDtls: RTCDtlsParameters,
                      role: str, timeout: float) -> None:
        """
        Run ICE, then the DTLS handshake as C{role}, within C{timeout}
        seconds; raise L{StreamError} with the SDK's info string otherwise.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.ice.remote_username = remoteIce.usernameFragment
        self.ice.remote_password = remoteIce.password
        try:
            await asyncio.wait_for(self.ice.connect(), timeout)
        except asyncio.TimeoutError:
            raise StreamError(info.ICE_TIMEOUT) from None
        except ConnectionError:
            raise StreamError(info.ICE_ERROR) from None
        self.setDtlsRole(role)
        try:
            await asyncio.wait_for(self.start(remoteDtls), max(deadline - loop.time(), 1.0))
        except asyncio.TimeoutError:
            raise StreamError(info.DTLS_ERROR) from None
        if not self.dtlsConnected:
            raise StreamError(info.DTLS_ERROR)
        self.connected = True

    async def close(self) -> None:
        """Free the sockets and tasks. Safe to call at any stage."""
        self.closing = True
        try:
            await self.stop()
        except Exception:  # a half-made DTLS session: still free the sockets
            self.log.failure("closing DTLS")
        await self.ice.close()

    def dtlsEnded(self) -> None:
        if self.connected and not self.closing:
            self.connected = False
            reason = info.ICE_ERROR if self.ice.consentLost else info.DTLS_ERROR
            if self.lost is not None:
                self.lost(reason)

    def readingChanged(self) -> None:
        """
        Read the sockets every L{readLater} seconds while none of our
        receivers has a consumer of its packets (a player, a sink) and no
        transport-wide feedback times their arrival; else at once.
        """
        if not self.readLater and not self.ice.readingLater:
            return
        handlers = (*self.receivers.values(), *self.receiversByType.values())
        idle = self.transportWide is None and not any(
            getattr(handler, "track", handler).wanted() for handler in handlers)
        self.ice.readEvery(self.readLater if idle else 0)
        awake = self.awake
        if awake is not None:
            # Read later, packets come one wake-up a period: the periodic
            # work (receiver reports) rides one if it may run a period early,
            # instead of a timer of its own. Read at once, as before.
            awake.early = max(awake.EARLY, self.readLater) if idle else awake.EARLY

    # Sending

    def sendRtp(self, data: bytes) -> bool:
        """Protect and send at once; False if the packet could not go."""
        protected = self.protectRtp(data)
        return protected is not None and self.ice.sendNow(protected)

    def sendRtcp(self, data: bytes) -> None:
        try:
            protected = self.protectRtcp(data)
        except pylibsrtp.Error:
            self.log.debug("SRTCP protect failed")
            return
        if protected is not None:
            self.ice.sendNow(protected)

    # Receiving: called by aiortc's receive loop.

    def rtpReceived(self, data: bytes) -> None:
        # Silence.heard and Periodic.poll inline, on one reading of the
        # clock: this runs for every packet a publisher sends.
        peer = self.peer
        peer.last = now = peer.seconds()
        awake = self.awake
        if awake is not None and now >= awake.ripe:
            awake.poll()
        if len(data) < 12:
            return
        if self.transportWide is not None:
            self.transportWide.rtpReceived(data)
        handler = self.receivers.get(SSRC.unpack_from(data, 8)[0])
        if handler is None:
            handler = self._learn(data)
            if handler is None:
                return
        self.rtp.last = now
        try:
            handler.rtpReceived(data)
        except Exception:
            # Never let one bad packet end the receive loop of the peer.
            self.log.failure("RTP handler failed")

    def _learn(self, data: bytes) -> RtpHandler | None:
        handler = self.receiversByType.get(data[1] & 0x7F)
        if handler is not None:
            ssrc = SSRC.unpack_from(data, 8)[0]
            if handler.ssrc is not None:
                self.receivers.pop(handler.ssrc, None)
            handler.ssrc = ssrc
            self.receivers[ssrc] = handler
        return handler

    def rtcpReceived(self, data: bytes) -> None:
        peer = self.peer
        peer.heard()  # receiver reports are a player's heartbeat
        budget = self.rtcpBudget
        if budget is not None and not budget.admit(peer.last, len(data)):
            # Unread: parsing is what costs (wcs.media.rtcpguard).
            self.limited.warn(("rtcp", id(self)), "RTCP from {owner} over {rate} KiB/s: "
                              "dropped unread ({dropped} packets so far)", owner=self.owner,
                              rate=budget.rate / 1024, dropped=budget.dropped)
            return
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            return
        try:
            for packet in packets:
                self._route(packet)
        except Exception:
            self.log.failure("RTCP handler failed")

    def _route(self, packet) -> None:
        if isinstance(packet, (RtcpSrPacket, RtcpRrPacket)):
            if isinstance(packet, RtcpSrPacket):
                receiver = self.receivers.get(packet.ssrc)
                if receiver is not None:
                    receiver.senderReport(packet)
            # Report blocks about what we send: a player's round trip.
            for block in packet.reports:
                sender = self.senders.get(block.ssrc)
                if sender is None:
                    continue
                sender.reportedLost = max(0, block.packets_lost)  # for wcs.metrics
                if block.lsr:
                    sender.receptionReported(block.lsr, block.dlsr)
        elif isinstance(packet, RtcpPsfbPacket):
            if packet.fmt == RTCP_PSFB_PLI:
                self._keyframe(packet.media_ssrc)
            elif packet.fmt == RTCP_PSFB_FIR:
                # FIR names its target in the FCI entries (RFC 5104 4.3.1).
                for pos in range(0, len(packet.fci) - 7, 8):
                    self._keyframe(SSRC.unpack_from(packet.fci, pos)[0])
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            sender = self.senders.get(packet.media_ssrc)
            if sender is not None:
                sender.nackReceived(packet.lost)
        elif isinstance(packet, RtcpByePacket):
            pass  # the inactivity timers decide

    def _keyframe(self, ssrc: int) -> None:
        sender = self.senders.get(ssrc)
        if sender is not None:
            sender.keyframeRequested()
