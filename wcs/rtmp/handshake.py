"""
The server side of the RTMP handshake, without I/O.

C0 (version 3) and C1 (1536 bytes) in; S0, S1, S2 out; then C2 (1536 bytes)
is read and ignored. A client whose C1 carries a Flash Player digest (Flash
Player, and encoders that imitate it) gets the digest answer it checks: S1
with a server digest and S2 signed with a key derived from the client's
digest. A plain client gets the plain echo.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

from wcs.rtmp.errors import RTMPProtocolError

VERSION = 3
SIZE = 1536
DIGEST = 32

_SHARED = bytes([
    0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E,
    0x7E, 0x57, 0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36,
    0xCF, 0xEB, 0x31, 0xAE,
])
FLASH_PLAYER_KEY = b"Genuine Adobe Flash Player 001" + _SHARED
MEDIA_SERVER_KEY = b"Genuine Adobe Flash Media Server 001" + _SHARED
# What the server reports as its version in S1 (4 bytes after the time).
SERVER_VERSION = bytes([4, 5, 0, 1])


def digestOffset(packet: bytes, base: int) -> int:
    """Where the digest sits in a 1536-byte packet, for scheme C{base} (8 or 772)."""
    return sum(packet[base:base + 4]) % 728 + base + 4


def digestOf(packet: bytes, offset: int, key: bytes) -> bytes:
    message = packet[:offset] + packet[offset + DIGEST:]
    return hmac.new(key, message, hashlib.sha256).digest()


def findClientDigest(c1: bytes) -> tuple[int, bytes] | None:
    """The scheme base and digest of a Flash Player C1, or None for a plain one."""
    for base in (772, 8):
        offset = digestOffset(c1, base)
        candidate = c1[offset:offset + DIGEST]
        if hmac.compare_digest(candidate, digestOf(c1, offset, FLASH_PLAYER_KEY[:30])):
            return base, candidate
    return None


def serverResponse(c1: bytes, now: int, random: bytes | None = None) -> bytes:
    """S0 + S1 + S2 for this C1. C{now} is the server's uptime in ms."""
    if len(c1) != SIZE:
        raise RTMPProtocolError("RTMP handshake C1 has the wrong size")
    random = random if random is not None else os.urandom(2 * SIZE)
    found = findClientDigest(c1) if c1[4:8] != b"\x00\x00\x00\x00" else None
    s1 = bytearray(struct.pack(">I", now & 0xFFFFFFFF) + SERVER_VERSION + random[:SIZE - 8])
    if found is None:
        # Plain: S1 says version 0 (so clients do not look for a digest),
        # S2 echoes C1.
        s1[4:8] = b"\x00\x00\x00\x00"
        return bytes([VERSION]) + bytes(s1) + c1
    base, clientDigest = found
    offset = digestOffset(s1, base)
    s1[offset:offset + DIGEST] = digestOf(bytes(s1), offset, MEDIA_SERVER_KEY[:36])
    s2 = bytearray(random[SIZE:2 * SIZE])
    key = hmac.new(MEDIA_SERVER_KEY, clientDigest, hashlib.sha256).digest()
    s2[SIZE - DIGEST:] = hmac.new(key, bytes(s2[:SIZE - DIGEST]), hashlib.sha256).digest()
    return bytes([VERSION]) + bytes(s1) + bytes(s2)


class ServerHandshake:
    """
    Feed bytes until L{done}; L{output} holds what to send, L{rest} what came
    after C2 (the first chunks).
    """

    def __init__(self, now: int = 0):
        self.now = now
        self.buffer = b""
        self.output = b""
        self.state = "c0c1"
        self.rest = b""
        self.digest = False

    @property
    def done(self) -> bool:
        return self.state == "done"

    def receive(self, data: bytes) -> None:
        self.buffer += data
        if self.state == "c0c1" and len(self.buffer) >= 1 + SIZE:
            version = self.buffer[0]
            if version != VERSION:
                raise RTMPProtocolError(f"RTMP version {version} is not supported (only 3)")
            c1 = self.buffer[1:1 + SIZE]
            self.buffer = self.buffer[1 + SIZE:]
            self.digest = c1[4:8] != b"\x00\x00\x00\x00" and findClientDigest(c1) is not None
            self.output += serverResponse(c1, self.now)
            self.state = "c2"
        elif self.state == "c0c1" and self.buffer and self.buffer[0] != VERSION:
            raise RTMPProtocolError(f"RTMP version {self.buffer[0]} is not supported (only 3)")
        if self.state == "c2" and len(self.buffer) >= SIZE:
            self.rest = self.buffer[SIZE:]
            self.buffer = b""
            self.state = "done"
