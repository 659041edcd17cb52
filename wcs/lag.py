"""
How late the event loop runs: a timer every C{period} seconds notes how much
later than asked it fired (whatever held the reactor thread meanwhile). Each
delay goes to an observer (the C{wcs_event_loop_lag_seconds} histogram of
L{wcs.metrics}), and with C{loop_lag_report} set, one log line every that many
seconds gives their p50, p99 and max. One probe serves both, so the log and
the metric never disagree.
"""

from __future__ import annotations

import math

from twisted.application.service import Service

from wcs.config import Key, declare
from wcs.logs import Logger

log = Logger()

declare(
    Key("loop_lag_report", "int", 0,
        "every this many seconds, log the event loop's lag (p50, p99, max of a "
        "timer every 20 ms); 0: off"),
)

PERIOD = 0.02  # s between two probes when the log reports (fine-grained)
# s between two probes for the metric alone: each wake-up of an otherwise idle
# loop costs ~0.15 ms on the 2-core machine (0.1 s was 1.5-1.9 ms/s of an idle
# server's CPU). A stall longer than this is always seen; a shorter one only
# if it holds the loop when the probe is due.
QUIET_PERIOD = 0.5


class LoopClock:
    """
    The asyncio loop's own timers as a clock for the probe. A Twisted
    C{callLater} that wakes an idle loop also runs the reactor's
    C{runUntilCurrent} and re-arms its one asyncio timer twice (C{_onTimer},
    C{_reschedule}); an asyncio timer is one handle in the loop's heap.
    """

    def __init__(self, loop):
        self.loop = loop

    def seconds(self) -> float:
        return self.loop.time()

    def callLater(self, delay: float, f, *args) -> "_LoopCall":
        return _LoopCall(self.loop.call_later(delay, f, *args))


class _LoopCall:
    """An asyncio timer handle with the part of C{IDelayedCall} the probe uses."""

    __slots__ = ("handle",)

    def __init__(self, handle):
        self.handle = handle

    def active(self) -> bool:  # cancel() of a handle that already ran is harmless
        return not self.handle.cancelled()

    def cancel(self) -> None:
        self.handle.cancel()


def percentile(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of an ordered, non-empty list."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


class LagProbe(Service):
    """
    @param report: seconds between two log lines; 0 for none.
    @param observe: called with every delay, in seconds (or L{None}).
    """

    def __init__(self, clock, report: float, period: float = PERIOD, observe=None):
        self.clock = clock
        self.report = report
        self.period = period
        self.observe = observe
        self.samples: list[float] = []
        self.call = None
        self.expected = 0.0
        self.since = 0.0
        self.last: dict | None = None  # the last report's figures, in ms

    def startService(self) -> None:
        super().startService()
        self.since = self.clock.seconds()
        self._schedule(self.since)

    def stopService(self):
        super().stopService()
        if self.call is not None and self.call.active():
            self.call.cancel()
        self.call = None

    def _schedule(self, now: float) -> None:
        self.expected = now + self.period
        self.call = self.clock.callLater(self.period, self._tick)

    def _tick(self) -> None:
        now = self.clock.seconds()
        delay = max(0.0, now - self.expected)
        if self.observe is not None:
            self.observe(delay)
        if not self.report:
            self._schedule(now)
            return
        self.samples.append(delay)
        if now - self.since >= self.report:
            self._report(now - self.since)
            self.since = now
        self._schedule(now)

    def _report(self, seconds: float) -> None:
        ordered = sorted(self.samples)
        self.samples = []
        self.last = {"p50": 1000 * percentile(ordered, 0.5),
                     "p99": 1000 * percentile(ordered, 0.99),
                     "max": 1000 * ordered[-1], "samples": len(ordered)}
        log.info("event loop lag over {seconds:.1f}s: p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
                 "max {max:.2f} ms ({samples} samples)", seconds=seconds, **self.last)
