"""
The bytes of one reactor turn for a connection, written together: the
WebSocket transport's frames, the RTMP transport's chunks.

A chat message costs one frame to its recipient and one status frame to its
sender; a client's burst of messages (one C{sendMessage} per recipient, the
SDK has no broadcast) arrives in one read. Handing each frame to Twisted's
C{transport.write} registers the socket for writing (C{epoll_ctl}), waits
for the next loop iteration, sends, and unregisters it (C{epoll_ctl} again):
two system calls and a loop wake-up per connection per turn beside the
C{send} itself, and the frames of one turn to one client may go in several
segments (TCP_NODELAY is on). Profiled under the shared chat harness, the
registration was a third of the system calls. An RTMP player gets the
audio and video messages of each of its publisher's reads the same way.

Here the frames queued for a connection during a turn are joined and sent
once, at the end of the read that produced them (or in a C{callLater(0)} for
frames sent from a timer or another transport), straight to the socket when
Twisted holds nothing unsent for it; whatever the socket does not take goes
to C{transport.write} and the ordinary path (and its producer, which counts
the client's backlog) takes over.
"""

from __future__ import annotations

import errno
from typing import Callable

from twisted.internet.tcp import Connection

# What a non-blocking send may say that means "nothing taken yet", as
# Twisted's writeSomeData treats them.
_RETRY_LATER = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS)


def _unsent(transport) -> bool | None:
    """
    Whether Twisted's TCP transport still holds bytes to write; None for a
    transport whose buffer is not a plain socket's (TLS, test transports).
    """
    # Not through attributes alone: a TLS wrapper forwards unknown ones to
    # the TCP connection under it.
    if not isinstance(transport, Connection) or transport.TLS:
        return None
    try:
        return bool(transport._tempDataLen or len(transport.dataBuffer) > transport.offset
                    or transport.disconnecting or not transport.connected)
    except AttributeError:
        return None


class Outboxes:
    """The connections with frames queued in this turn."""

    def __init__(self, callLater: Callable):
        self.callLater = callLater
        self.pending: list = []
        self.reading = 0  # inside a protocol's dataReceived: it flushes at its end
        self.call = None

    def add(self, protocol) -> None:
        """C{protocol.outbox} just got its first frame of this turn."""
        self.pending.append(protocol)
        if not self.reading and self.call is None:
            self.call = self.callLater(0, self._later)

    def _later(self) -> None:
        self.call = None
        self.flush()

    def flush(self) -> None:
        if self.reading:
            return
        pending, self.pending = self.pending, []
        for protocol in pending:
            self.flushOne(protocol)

    def flushOthers(self, reader) -> None:
        """
        In the middle of C{reader}'s read: send what the others have queued
        so far (each connection's frames stay in order: later ones queue
        anew); C{reader}'s own stay for the end of its read.
        """
        pending, self.pending = self.pending, []
        for protocol in pending:
            if protocol is reader:
                self.pending.append(protocol)
            else:
                self.flushOne(protocol)

    def flushOne(self, protocol) -> None:
        frames, protocol.outbox = protocol.outbox, None
        if not frames or protocol.dropped:
            return
        writeNow(protocol.transport, frames[0] if len(frames) == 1 else b"".join(frames))


def writeNow(transport, data: bytes) -> None:
    """
    C{data} straight to the socket when Twisted holds nothing unsent for
    it, else (and whatever the socket does not take) by C{transport.write}.
    """
    if _unsent(transport) is False:
        # The socket's own send, not Connection.writeSomeData: that one's
        # untilConcludes and lazy slicing cost as much Python as the rest of
        # a delivery's write (py-spy, 200 in a room). A writer is registered
        # (transport.write) only when the kernel does not take it all.
        try:
            sent = transport.socket.send(data)
        except InterruptedError:
            sent = 0
        except OSError as e:
            if e.errno not in _RETRY_LATER:
                # Lost: transport.write finds it out on its next attempt.
                transport.write(data)
                return
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)
