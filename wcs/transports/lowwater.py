"""
Fewer wake-ups for an RTMP publisher's socket: its receive low-water mark.

Profiled under the shared RTMP harness (one ffmpeg publisher, one player),
the server's CPU was the reactor turn per read, not the parsing: ffmpeg
sends each message's chunk header and its body in two sends, so the socket
became readable twice per message and half the turns brought the 8 bytes of a
header the chunk reader could do nothing with. With C{SO_RCVLOWAT} the
kernel reports the socket readable only once that many bytes are in (or at
EOF or an error); the mark is set from what the chunk reader still lacks:

  - between chunks, C{floor} (9: more than a lone type-1 header);
  - once a chunk's header is in, the rest of that chunk (capped at C{cap}).

A message smaller than the mark with nothing after it (a tiny control
message as the encoder's last) would wait: a sweep every C{interval} seconds
drops the mark to 1 for a socket that has not been read since the previous
sweep, and Linux then reports it readable at once. So no byte waits more
than two intervals.
"""

from __future__ import annotations

import socket
import weakref
from typing import Callable

# The kernel caps the mark at half the receive buffer anyway.
CAP = 64 * 1024

# Every LowWater of the process, for /metrics (L{inForce}): a transport hangs
# nothing on the core's objects, and a process runs one server.
_instances: "weakref.WeakSet[LowWater]" = weakref.WeakSet()


def inForce() -> tuple[int, int]:
    """
    (sockets with a mark over 1 now, reads after which such a mark was in
    force, ever) of every L{LowWater} of this process.
    """
    instances = list(_instances)
    return (sum(len(i.marks) for i in instances), sum(i.markedReads for i in instances))


class LowWater:
    """
    The low-water marks of the sockets given to L{set}, and their sweep.

    @param callLater: C{IReactorTime.callLater} (a L{task.Clock} in tests).
    @param floor: the mark between chunks; 1 turns all this off.
    """

    def __init__(self, callLater: Callable, floor: int = 9, interval: float = 1.0,
                 cap: int = CAP):
        self.callLater = callLater
        self.floor = floor
        self.interval = interval
        self.cap = cap
        self.marks: dict[socket.socket, int] = {}  # sockets over 1: their mark
        self.reads: dict[socket.socket, int] = {}  # reads counted at the last sweep
        self.count: dict[socket.socket, int] = {}  # reads since the mark went over 1
        self.call = None
        self.markedReads = 0  # reads followed by a mark over 1, ever (for /metrics)
        _instances.add(self)

    def set(self, sock: socket.socket, wanted: int) -> None:
        """
        C{sock} was just read and parsed; C{wanted}: bytes the chunk at the
        head of the parser's buffer still lacks, 0 if its header is not in.
        """
        mark = min(wanted, self.cap) if wanted else self.floor
        if mark > 1:
            self.count[sock] = self.count.get(sock, 0) + 1
            self.markedReads += 1
        if mark != self.marks.get(sock, 1):
            self._mark(sock, mark)
        if mark > 1 and self.call is None:
            self.call = self.callLater(self.interval, self._sweep)

    def forget(self, sock: socket.socket) -> None:
        """The connection is gone (or no longer publishes)."""
        if self.marks.pop(sock, None) is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
            except OSError:
                pass
        self.reads.pop(sock, None)
        self.count.pop(sock, None)

    def _mark(self, sock: socket.socket, mark: int) -> None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, mark)
        except OSError:  # closed meanwhile: connectionLost forgets it
            return
        if mark > 1:
            self.marks[sock] = mark
        else:
            self.marks.pop(sock, None)
            self.reads.pop(sock, None)
            self.count.pop(sock, None)

    def _sweep(self) -> None:
        self.call = None
        for sock in list(self.marks):
            count = self.count.get(sock, 0)
            if self.reads.get(sock) == count:
                self._mark(sock, 1)  # not read for an interval: wake for any byte
            else:
                self.reads[sock] = count
        if self.marks:
            self.call = self.callLater(self.interval, self._sweep)

    def stop(self) -> None:
        if self.call is not None and self.call.active():
            self.call.cancel()
        self.call = None
