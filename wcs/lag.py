"""
How late the event loop runs: a timer every C{period} seconds notes how much
later than asked it fired (whatever held the reactor thread meanwhile). Each
delay goes to an observer (the C{wcs_event_loop_lag_seconds} histogram of
L{wcs.metrics}), and with C{loop_lag_report} set, one log line every that many
seconds gives their p50, p99 and max. One probe serves both, so the log and
the metric never disagree.

Each wake-up of an idle Python loop costs far more than the probe's own
work (docs/performance.md, "Idle and ingest, sixth pass"), so the probe
wakes the loop as little as it can: its timer falls on the grid of
multiples of its period (L{gridTime}), where other timers on the same grid
(a publisher read later, L{wcs.media.internals.DemuxProtocol.readEvery})
run in the same wake-up; and while the loop does nothing else (the thread
used under C{IDLE_CPU} of CPU since the last tick) the period doubles up
to C{loop_lag_idle_period}: an idle loop has no lag to see, and the first
tick that finds work brings the period back.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from wcs.config import Key, declare
from wcs.logs import Logger

log = Logger()

declare(
    Key("loop_lag_report", "int", 0,
        "every this many seconds, log the event loop's lag (p50, p99, max of a "
        "timer every 20 ms); 0: off"),
    Key("loop_lag_idle_period", "int", 4000,
        "ms: the longest period of the lag probe while the server does nothing else "
        "(without loop_lag_report it ticks every 500 ms, doubling while idle up to this); "
        "500: never longer"),
)

PERIOD = 0.02  # s between two probes when the log reports (fine-grained)
# s between two probes for the metric alone: each wake-up of an otherwise idle
# loop costs ~0.15 ms on the 2-core machine (0.1 s was 1.5-1.9 ms/s of an idle
# server's CPU). A stall longer than this is always seen; a shorter one only
# if it holds the loop when the probe is due.
QUIET_PERIOD = 0.5
# s of the thread's CPU between two ticks under which the loop counts as idle:
# a tick (or a keep-alive) costs ~0.1-0.3 ms on this machine, any client's
# traffic more.
IDLE_CPU = 0.002


def gridTime(now: float, period: float) -> float:
    """
    The next multiple of C{period} after C{now}: timers of the same period
    on one loop fall due together and run in one wake-up. C{now} within 1 %
    of a period before a multiple counts as on it (a timer that fired a
    float's hair early is not due again at once).
    """
    return (math.floor(now / period + 0.01) + 1) * period


class GridPhases:
    """
    Spreads timers of one period over C{count} shifts of its grid
    (L{gridTime}): members share C{count} wake-ups a period whatever their
    number, and no one wake-up serves them all. A member takes the least
    used phase (a lone one the first, on the grid itself, with the lag
    probe) and keeps it until it leaves or is gone (weakly held).
    """

    def __init__(self, count: int):
        self._members = [weakref.WeakSet() for _ in range(count)]

    def __len__(self) -> int:
        return sum(len(members) for members in self._members)

    def take(self, member) -> int:
        """C{member}'s phase, given it now if it had none."""
        for phase, members in enumerate(self._members):
            if member in members:
                return phase
        phase = min(range(len(self._members)), key=lambda p: len(self._members[p]))
        self._members[phase].add(member)
        return phase

    def leave(self, member) -> None:
        for members in self._members:
            members.discard(member)

    def nextTime(self, now: float, period: float, phase: int) -> float:
        """The next time after C{now} on C{period}'s grid shifted to C{phase}."""
        shift = period * phase / len(self._members)
        return gridTime(now - shift, period) + shift


@implementer(IReactorTime)
class LoopClock:
    """
    An asyncio loop as an L{IReactorTime} (C{seconds} and C{callLater}):
    C{loop}, or the one running when C{callLater} is called. Its timer is
    one handle in the loop's heap; a Twisted C{callLater} that wakes an idle
    loop also runs the reactor's C{runUntilCurrent} and re-arms its own
    asyncio timer twice (C{_onTimer}, C{_reschedule}). The media engine
    runs on it too (its tests on a bare asyncio loop).
    """

    def __init__(self, loop=None):
        self.loop = loop

    def seconds(self) -> float:
        return time.monotonic()  # what asyncio's loop.time() reads

    def callLater(self, delay, callable, *args, **kw):
        loop = self.loop or asyncio.get_running_loop()
        return loop.call_later(delay, lambda: callable(*args, **kw))

    def getDelayedCalls(self):
        return []


def percentile(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of an ordered, non-empty list."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


class LagProbe(Service):
    """
    @param report: seconds between two log lines; 0 for none.
    @param observe: called with every delay, in seconds (or L{None}).
    """

    def __init__(self, clock, report: float, period: float = PERIOD, observe=None,
                 idlePeriod: float = 0.0, cpu=time.thread_time):
        self.clock = clock
        self.report = report
        self.period = self.base = period
        self.idlePeriod = idlePeriod if not report else 0.0  # a report asks for every tick
        self.cpu = cpu
        self.cpuAt = 0.0
        self.observe = observe
        self.samples: list[float] = []
        self.call = None
        self.expected = 0.0
        self.since = 0.0
        self.last: dict | None = None  # the last report's figures, in ms

    def startService(self) -> None:
        super().startService()
        self.since = self.clock.seconds()
        self.cpuAt = self.cpu()
        self._schedule(self.since)

    def stopService(self):
        super().stopService()
        call, self.call = self.call, None
        if call is not None:  # pending: _tick unsets it first
            call.cancel()

    def _schedule(self, now: float) -> None:
        self.expected = gridTime(now, self.period)
        self.call = self.clock.callLater(self.expected - now, self._tick)

    def _pace(self) -> None:
        """Double the period while the loop did nothing else, back at once when it does."""
        used = self.cpu()
        busy, self.cpuAt = used - self.cpuAt >= IDLE_CPU, used
        self.period = (self.base if busy
                       else min(2 * self.period, max(self.base, self.idlePeriod)))

    def _tick(self) -> None:
        self.call = None
        now = self.clock.seconds()
        delay = max(0.0, now - self.expected)
        if self.idlePeriod > self.base:
            self._pace()
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
