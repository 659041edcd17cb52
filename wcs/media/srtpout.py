"""
SRTP protect and unprotect for the forwarding hot path (L{Subscription.forward},
once per packet and player; L{DtlsTransport._srtpReceived}, once per packet
received), without pylibsrtp's per-call overhead.

C{pylibsrtp.Session.protect} takes whole packet bytes, checks their type,
allocates an C{int *} with cffi and copies the packet into its buffer on
every call. A forwarded packet is a fresh 12-byte header and a payload
shared by every player: L{Protector.protect} writes both into the session's
buffer (no C{header + payload} copy), reuses one C{int *} and calls
C{srtp_protect} directly. Same library call, same output bytes
(tests/media/test_srtpout.py checks them against C{Session.protect}).
L{Unprotector} does the same for the receive side: no type check, no
C{int *} allocated per packet, and a failure is C{None}, not an exception
(a forged or replayed packet is dropped quietly either way).
"""

from __future__ import annotations

from pylibsrtp import ERRORS, SRTP_MAX_TRAILER_LEN, Error, Session
from pylibsrtp._binding import ffi, lib

_protect = lib.srtp_protect
_unprotect = lib.srtp_unprotect
_unprotectRtcp = lib.srtp_unprotect_rtcp


class Protector:
    """RTP protect of one pylibsrtp C{Session} from a header and a payload."""

    __slots__ = ("session", "_srtp", "_cdata", "_buffer", "_length", "_room")

    def __init__(self, session: Session):
        self.session = session  # holds the context and buffer alive
        self._srtp = session._srtp[0]
        self._cdata = session._cdata
        self._buffer = session._buffer
        self._room = len(session._cdata) - SRTP_MAX_TRAILER_LEN
        self._length = ffi.new("int *")

    def protect(self, header: bytes, payload: bytes) -> bytes:
        """The SRTP packet of C{header + payload}; raises pylibsrtp.Error."""
        start = len(header)
        end = start + len(payload)
        if end > self._room:
            raise ValueError("packet is too long")
        buffer = self._buffer
        buffer[0:start] = header
        buffer[start:end] = payload
        length = self._length
        length[0] = end
        rc = _protect(self._srtp, self._cdata, length)
        if rc:
            raise Error(ERRORS[rc])
        return buffer[0:length[0]]


class Unprotector:
    """SRTP and SRTCP unprotect of one pylibsrtp C{Session}; None when it fails."""

    __slots__ = ("session", "_srtp", "_cdata", "_buffer", "_length", "_room")

    def __init__(self, session: Session):
        self.session = session
        self._srtp = session._srtp[0]
        self._cdata = session._cdata
        self._buffer = session._buffer
        self._room = len(session._cdata)
        self._length = ffi.new("int *")

    def unprotect(self, data: bytes) -> bytes | None:
        """The RTP packet of SRTP C{data}, or None (forged, replayed, too long)."""
        return self._process(data, _unprotect)

    def unprotectRtcp(self, data: bytes) -> bytes | None:
        """The RTCP compound packet of SRTCP C{data}, or None."""
        return self._process(data, _unprotectRtcp)

    def _process(self, data: bytes, function) -> bytes | None:
        end = len(data)
        if end > self._room:
            return None
        buffer = self._buffer
        buffer[0:end] = data
        length = self._length
        length[0] = end
        if function(self._srtp, self._cdata, length):
            return None
        return buffer[0:length[0]]
