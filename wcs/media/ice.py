"""
ICE for the media engine: aioice, with sockets bound where the settings say.

aioice binds one ephemeral port per interface address and has no port range
option. Its only per-socket hook is candidate gathering
(L{IceAgent.bindCandidates}, see L{wcs.media.internals}), so L{IceConnection}
overrides just that: it binds sockets from a L{PortRange} on the configured
addresses and announces C{ice_public_ip} when set. Checks, peer-reflexive
learning and consent freshness stay aioice's.
"""

from __future__ import annotations

import errno
import socket

from wcs.media.internals import Candidate, IceAgent, get_host_addresses

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


class IceConnection(IceAgent):
    """
    A controlled ICE agent (the server always answers) on our own sockets.

    The offers we answer carry no candidates and never trickle: the peer's
    address is learned from its checks as a peer-reflexive candidate, which
    aioice does in C{check_incoming}. End-of-candidates is never signalled,
    so aioice waits for checks until L{wcs.media.transport} times it out.
    """

    writeBufferLimit = WRITE_BUFFER_LIMIT

    def __init__(self, ports: PortRange, bindings: list[tuple[str, str]]):
        super().__init__(ice_controlling=False, use_ipv6=False)
        self._ports = ports
        self._bindings = bindings
        self.consentLost = False
        # Where authenticated STUN requests from the peer count as life
        # (the session's Silence, see wcs.media.liveness).
        self.peer = None

    async def bindCandidates(self, component: int) -> list[Candidate]:
        candidates = []
        for bind, announce in self._bindings:
            sock = self._ports.bind(bind)
            try:
                candidates.append(await self.openSocket(sock, component, announce))
            except BaseException:
                sock.close()
                raise
        return candidates

    def consentExpired(self) -> None:
        # Remembered to tell ICE loss from a DTLS close.
        self.consentLost = True

    def stunRequestReceived(self, message) -> None:
        # A check or consent request that carries our password's integrity
        # is the peer's own sign of life (RFC 7675: browsers send one
        # every few seconds); an unauthenticated one proves nothing.
        if self.peer is not None and "MESSAGE-INTEGRITY" in message.attributes \
                and message.check_message_integrity(self.local_password.encode("utf8")):
            self.peer.heard()
