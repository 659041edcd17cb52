"""
ICE for the media engine: aioice, with sockets bound where the settings say.

aioice binds one ephemeral port per interface address and has no port range
option. Its only per-socket hook is L{Connection.get_component_candidates},
so L{IceConnection} overrides just that: it binds sockets from a L{PortRange}
on the configured addresses and announces C{ice_public_ip} when set. Checks,
peer-reflexive learning and consent freshness stay aioice's.
"""

from __future__ import annotations

import asyncio
import errno
import socket

from aioice import Candidate, Connection
from aioice.candidate import candidate_foundation, candidate_priority
from aioice.ice import StunProtocol, get_host_addresses

# As aioice does for its own sockets: a burst of video must not overflow
# the kernel's default receive buffer.
RECEIVE_BUFFER = 1 << 20
# What asyncio may hold for a socket the kernel will not take more of: past
# it a player is too slow, and its packets are dropped instead of queued.
WRITE_BUFFER_LIMIT = 256 * 1024


class PortRangeExhausted(OSError):
    pass


class PortRange:
    """
    Hands out UDP sockets bound to ports in C{[first, last]}, round robin so
    that a port just released is not reused at once. C{(0, 0)}: any port.
    """

    def __init__(self, first: int, last: int):
        if first and last and last < first:
            raise ValueError(f"media port range {first}-{last} is empty")
        self.first = first
        self.last = last
        self._next = first

    def bind(self, address: str) -> socket.socket:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        if not self.first and not self.last:
            candidates = [0]
        else:
            size = self.last - self.first + 1
            start = self._next - self.first
            candidates = [self.first + (start + i) % size for i in range(size)]
        for port in candidates:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((address, port))
            except OSError as e:
                sock.close()
                if e.errno == errno.EADDRINUSE:
                    continue
                raise
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            if port:
                self._next = port + 1 if port < self.last else self.first
            return sock
        raise PortRangeExhausted(f"no free UDP port in {self.first}-{self.last}")


def hostBindings(publicIp: str, listenAddress: str = "0.0.0.0") -> list[tuple[str, str]]:
    """
    Where to bind and what to announce, as C{(bind, announce)} pairs.

    With C{ice_public_ip} set, one socket per session: bound to that address
    when it is local, else to C{listenAddress} (a 1:1 NAT in front of us).
    Without it, one socket per IPv4 interface address, loopback only when
    there is nothing else.
    """
    if publicIp:
        probe = socket.socket(socket.AF_INET6 if ":" in publicIp else socket.AF_INET,
                              socket.SOCK_DGRAM)
        try:
            probe.bind((publicIp, 0))
            return [(publicIp, publicIp)]
        except OSError:
            return [(listenAddress, publicIp)]
        finally:
            probe.close()
    addresses = get_host_addresses(use_ipv4=True, use_ipv6=False) or ["127.0.0.1"]
    return [(address, address) for address in addresses]


class IceConnection(Connection):
    """
    A controlled ICE agent (the server always answers) on our own sockets.

    The offers we answer carry no candidates and never trickle: the peer's
    address is learned from its checks as a peer-reflexive candidate, which
    aioice does in C{check_incoming}. End-of-candidates is never signalled,
    so aioice waits for checks until L{wcs.media.transport} times it out.
    """

    def __init__(self, ports: PortRange, bindings: list[tuple[str, str]]):
        super().__init__(ice_controlling=False, use_ipv6=False)
        self._ports = ports
        self._bindings = bindings
        self.consentExpired = False
        # Where authenticated STUN requests from the peer count as life
        # (the session's Silence, see wcs.media.liveness).
        self.peer = None

    async def get_component_candidates(self, component: int, addresses: list[str],
                                       timeout: int = 5) -> list[Candidate]:
        loop = asyncio.get_running_loop()
        candidates = []
        for bind, announce in self._bindings:
            sock = self._ports.bind(bind)
            try:
                _, protocol = await loop.create_datagram_endpoint(
                    lambda: StunProtocol(self), sock=sock)
            except BaseException:
                sock.close()
                raise
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", announce),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "host"),
                host=announce,
                port=sock.getsockname()[1],
                type="host",
            )
            # Registered at once so that close() frees it even if a later
            # binding fails.
            self._protocols.append(protocol)
            candidates.append(protocol.local_candidate)
        return candidates

    async def query_consent(self) -> None:
        # aioice's loop returns only when consent expired (it is cancelled
        # otherwise): remember it to tell ICE loss from a DTLS close.
        await super().query_consent()
        self.consentExpired = True

    def request_received(self, message, addr, protocol) -> None:
        # A check or consent request that carries our password's integrity
        # is the peer's own sign of life (RFC 7675: browsers send one
        # every few seconds); an unauthenticated one proves nothing.
        if self.peer is not None and "MESSAGE-INTEGRITY" in message.attributes \
                and message.check_message_integrity(self.local_password.encode("utf8")):
            self.peer.heard()
        super().request_received(message, addr, protocol)

    def sendNow(self, data: bytes) -> bool:
        """
        Send a datagram on the selected pair without a coroutine: the
        forwarding hot path calls this once per packet and player. False
        when the datagram was dropped because the socket is backed up.
        """
        pair = self._nominated.get(1)
        if pair is None:
            return False
        transport = pair.protocol.transport
        if transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
            return False
        transport.sendto(data, pair.remote_addr)
        return True


class IceTransport:
    """
    The little of L{aiortc.RTCIceTransport} that L{aiortc.RTCDtlsTransport}
    uses, without its gatherer, STUN defaults and monitor task.
    """

    def __init__(self, connection: IceConnection):
        self._connection = connection
        self._recv = connection.recv
        self._send = connection.send

    @property
    def role(self) -> str:
        return "controlling" if self._connection.ice_controlling else "controlled"
