"""
A netfilter queue (iptables' NFQUEUE target) spoken over raw netlink with the
standard library's AF_NETLINK socket: no C extension to build.

The kernel hands each queued packet (its first C{copyRange} bytes, enough
for the IP and UDP headers) to this socket and holds it until a verdict:
accept or drop, in any order and at any later time. That is what lets a user
space process delay, drop and rate-limit packets where the kernel has no
netem. Message layouts: linux/netfilter/nfnetlink_queue.h.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_PACKET_HDR, NFQA_VERDICT_HDR, NFQA_PAYLOAD = 1, 2, 10
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_PACKET = 2
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
NF_DROP, NF_ACCEPT = 0, 1

_NLMSGHDR = struct.Struct("=IHHII")
_NFGENMSG = struct.Struct("!BBH")  # family, version, resource id (big-endian)
_NLATTR = struct.Struct("=HH")


def _attr(kind: int, value: bytes) -> bytes:
    body = _NLATTR.pack(_NLATTR.size + len(value), kind) + value
    return body + bytes(-len(body) % 4)


def attributes(data: bytes, offset: int) -> dict[int, bytes]:
    """The netlink attributes from C{offset} on, by type (flag bits cleared)."""
    found = {}
    while offset + _NLATTR.size <= len(data):
        length, kind = _NLATTR.unpack_from(data, offset)
        if length < _NLATTR.size:
            break
        found[kind & 0x3FFF] = data[offset + _NLATTR.size:offset + length]
        offset += (length + 3) & ~3
    return found


@dataclass
class Packet:
    id: int
    data: bytes  # the first copyRange bytes of the IP packet


class NetfilterQueue:
    """One bound queue number, in the caller's network namespace."""

    def __init__(self, queue: int = 0, copyRange: int = 64, maxLength: int = 20000,
                 bufferBytes: int = 8 << 20):
        self.queue = queue
        self.seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            # SO_RCVBUFFORCE (root): a burst of packets must not overflow the
            # socket; ENOBUFS would lose the packets' ids, and so the packets.
            self.sock.setsockopt(socket.SOL_SOCKET, 33, bufferBytes)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufferBytes)
        self.sock.bind((0, 0))
        self._config(_attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, socket.AF_INET)))
        self._config(_attr(NFQA_CFG_PARAMS, struct.pack("!IB", copyRange, NFQNL_COPY_PACKET)))
        self._config(_attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", maxLength)))
        self.overruns = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def _message(self, kind: int, flags: int, payload: bytes) -> bytes:
        self.seq += 1
        body = _NFGENMSG.pack(socket.AF_UNSPEC, 0, self.queue) + payload
        return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind,
                              NLM_F_REQUEST | flags, self.seq, 0) + body

    def _config(self, payload: bytes) -> None:
        self.sock.send(self._message(NFQNL_MSG_CONFIG, NLM_F_ACK, payload))
        reply = self.sock.recv(65536)
        length, kind, _, _, _ = _NLMSGHDR.unpack_from(reply)
        if kind == NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", reply, _NLMSGHDR.size)
            if error:
                raise OSError(-error, f"nfqueue config: {os.strerror(-error)}")

    def receive(self) -> list[Packet]:
        """The packets waiting now (call when the socket is readable)."""
        try:
            data = self.sock.recv(1 << 20, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return []
        except OSError as e:
            if e.errno == errno.ENOBUFS:  # the kernel dropped some: count, go on
                self.overruns += 1
                return []
            raise
        packets = []
        offset = 0
        while offset + _NLMSGHDR.size <= len(data):
            length, kind, _, _, _ = _NLMSGHDR.unpack_from(data, offset)
            if length < _NLMSGHDR.size:
                break
            if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                found = attributes(data[:offset + length], offset + _NLMSGHDR.size + _NFGENMSG.size)
                header = found.get(NFQA_PACKET_HDR)
                if header is not None:
                    (packetId,) = struct.unpack_from("!I", header)
                    packets.append(Packet(packetId, found.get(NFQA_PAYLOAD, b"")))
            offset += (length + 3) & ~3
        return packets

    def verdict(self, packetId: int, accept: bool) -> None:
        payload = _attr(NFQA_VERDICT_HDR,
                        struct.pack("!II", NF_ACCEPT if accept else NF_DROP, packetId))
        self.sock.send(self._message(NFQNL_MSG_VERDICT, 0, payload))

    def close(self) -> None:
        self.sock.close()


def udpAddresses(packet: bytes) -> tuple[str, str, int] | None:
    """(source, destination, IP length) of an IPv4 packet, or None."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    (total,) = struct.unpack_from("!H", packet, 2)
    return socket.inet_ntoa(packet[12:16]), socket.inet_ntoa(packet[16:20]), total
