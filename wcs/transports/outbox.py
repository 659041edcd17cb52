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
import math
import time
from typing import Callable

from twisted.internet.tcp import Connection

from wcs.logs import Logger

log = Logger()

# What a non-blocking send may say that means "nothing taken yet", as
# Twisted's writeSomeData treats them.
_RETRY_LATER = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS)


class Outboxes:
    """The connections with frames queued in this turn."""

    def __init__(self, callLater: Callable):
        self.callLater = callLater
        self.pending: list = []
        self.reading = 0  # inside a protocol's dataReceived: it flushes at its end
        self.call = None
        self.delays: SendDelays | None = None  # measured only when a report is asked for

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
        self._write(pending)

    def flushOthers(self, reader) -> None:
        """
        In the middle of C{reader}'s read: send what the others have queued
        so far (each connection's frames stay in order: later ones queue
        anew); C{reader}'s own stay for the end of its read.
        """
        pending, self.pending = self.pending, []
        others = [protocol for protocol in pending if protocol is not reader]
        if len(others) < len(pending):
            self.pending.append(reader)
        self._write(others)

    def flushOne(self, protocol) -> None:
        self._write((protocol,))

    def _write(self, protocols) -> None:
        """
        Each connection's queued frames in one C{send}: one loop for all
        of a turn's connections, not a call per connection (at 10 in a room
        that call, made on cold caches once a burst, was 13 % of the
        server's GIL samples: py-spy, docs/performance.md, branch `chat10`).
        """
        delays = self.delays
        for protocol in protocols:
            frames, protocol.outbox = protocol.outbox, None
            if not frames or protocol.dropped:
                continue
            writeNow(protocol.transport, frames[0] if len(frames) == 1 else b"".join(frames))
            if delays is not None and delays.readAt is not None:
                delays.sent(len(frames))


class SendDelays:
    """
    The server's own part of a delivery's delay: from the start of the read
    that carried a client's message (the transport's C{dataReceived}) to the
    C{send} of each frame it produced, one sample per frame (a recipient's
    delivery, or the sender's own answer). Frames sent from a timer are not
    counted. What it leaves out: the time the bytes waited in the socket
    before the loop read them (the loop's lag: C{loop_lag_report}).

    Every C{report} seconds, one log line: frames, p50, p90, p99 and max.
    """

    def __init__(self, clock, report: float, now: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.report = report
        self.now = now
        self.readAt: float | None = None  # set by the transport while it reads
        # (delay, frames) per send: one append per connection per flush.
        self.samples: list[tuple[float, int]] = []
        self.last: dict | None = None  # the last report's figures, in ms
        self.call = None

    def start(self) -> None:
        self.call = self.clock.callLater(self.report, self._report)

    def stop(self) -> None:
        if self.call is not None and self.call.active():
            self.call.cancel()
        self.call = None

    def sent(self, frames: int) -> None:
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append((self.now() - self.readAt, frames))

    def figures(self) -> dict | None:
        """p50, p90, p99, max in ms and the number of frames; None without any."""
        ordered = sorted(self.samples)
        total = sum(frames for _, frames in ordered)
        if not total:
            return None
        wanted = {name: max(1, math.ceil(fraction * total))
                  for name, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))}
        result: dict = {"frames": total, "max": 1000 * ordered[-1][0]}
        seen = 0
        for delay, frames in ordered:
            seen += frames
            for name, rank in wanted.items():
                if name not in result and seen >= rank:
                    result[name] = 1000 * delay
        return result

    def _report(self) -> None:
        self.call = self.clock.callLater(self.report, self._report)
        figures, self.samples = self.figures(), []
        if figures is None:
            return
        self.last = figures
        log.info("send delay over {seconds}s: {frames} frames, p50 {p50:.2f} ms, "
                 "p90 {p90:.2f} ms, p99 {p99:.2f} ms, max {max:.2f} ms",
                 seconds=self.report, **figures)


# Sends counted per report: a bound on the samples' memory (a 200-room at
# 4 000 deliveries/s makes ~24 000 sends in 5 s).
MAX_SAMPLES = 200_000


def writeNow(transport, data: bytes) -> None:
    """
    C{data} straight to the socket when Twisted holds nothing unsent for
    it, else (and whatever the socket does not take) by C{transport.write}.
    """
    # A plain TCP connection (not through attributes alone: a TLS wrapper
    # forwards unknown ones to the connection under it) holding nothing
    # unsent; tested here, not in a function of its own: once per connection
    # and turn.
    if (isinstance(transport, Connection) and not transport.TLS and not transport._tempDataLen
            and len(transport.dataBuffer) <= transport.offset
            and not transport.disconnecting and transport.connected):
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
