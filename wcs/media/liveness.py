"""
When a WebRTC peer has been silent too long.

The receive path only stores a timestamp (L{Silence.heard}: one attribute
store per packet); one timer per watched session wakes at the earliest
moment the silence could have lasted C{timeout} and either fails the
session or sleeps again until the new deadline. Time comes from an
injected L{IReactorTime}, so that the rule is tested with L{task.Clock}.
L{Consent} is the same kind of timer for our ICE consent checks (RFC 7675).
"""

from __future__ import annotations

import random
from typing import Callable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from wcs.lag import LoopClock  # noqa: F401  (the media modules take it from here)


class Silence:
    """
    How long since a peer was last heard, and a watch that calls
    C{expired} once when that lasted C{timeout} seconds (0: never).

    @ivar last: the clock's time of the last sign of life.
    """

    def __init__(self, clock: IReactorTime, timeout: float):
        self.clock = clock
        self.seconds = clock.seconds
        self.timeout = timeout
        self.last = clock.seconds()
        self._call = None
        self._expired: Callable[[], None] | None = None

    def heard(self) -> None:
        self.last = self.seconds()

    def silentFor(self) -> float:
        return self.seconds() - self.last

    def watch(self, expired: Callable[[], None]) -> None:
        """Start watching, counting silence from now."""
        self.stop()
        self.last = self.seconds()
        if self.timeout > 0:
            self._expired = expired
            self._call = self.clock.callLater(self.timeout, self._check)

    def stop(self) -> None:
        call, self._call = self._call, None
        self._expired = None
        if call is not None:
            call.cancel()

    @property
    def watching(self) -> bool:
        return self._call is not None

    def _check(self) -> None:
        self._call = None
        silent = self.silentFor()
        if silent >= self.timeout:
            expired, self._expired = self._expired, None
            if expired is not None:
                expired()
        else:
            # Heard meanwhile: sleep until the new deadline, no earlier.
            self._call = self.clock.callLater(self.timeout - silent, self._check)


class Consent:
    """
    RFC 7675 consent freshness, as a timer: C{check} sends one binding
    request every C{interval} (randomized 0.8-1.2 times), L{answered} is
    called for each valid response, and C{expired} once when none came for
    C{lifetime} seconds.

    aioice instead counts six checks in a row unanswered within 0.5 s each.
    A server that is behind reads its sockets late: the answers to its own
    checks wait in the receive queue behind seconds of media, and a
    publisher whose browser answered every check at once was cut with
    "Failed by ICE error" (docs/performance.md, "Capacity"). RFC 7675 asks
    only that some answer to a check of the last 30 s has come.
    """

    def __init__(self, clock: IReactorTime, check: Callable[[], None],
                 expired: Callable[[], None], interval: float = 5.0,
                 lifetime: float = 30.0, random: Callable[[], float] = random.random):
        self.clock = clock
        self.check = check
        self.expired = expired
        self.interval = interval
        self.lifetime = lifetime
        self.random = random
        self.answeredAt = clock.seconds()
        self._call = None

    def start(self) -> None:
        """Consent counts as fresh now (ICE just succeeded); check from here on."""
        self.answeredAt = self.clock.seconds()
        self._schedule()

    def stop(self) -> None:
        call, self._call = self._call, None
        if call is not None:
            call.cancel()

    def answered(self) -> None:
        self.answeredAt = self.clock.seconds()

    def _schedule(self) -> None:
        delay = self.interval * (0.8 + 0.4 * self.random())
        # Wake at the expiry itself when it comes before the next check.
        expiry = self.answeredAt + self.lifetime - self.clock.seconds()
        self._call = self.clock.callLater(max(0.0, min(delay, expiry)), self._tick)

    def _tick(self) -> None:
        self._call = None
        if self.clock.seconds() - self.answeredAt >= self.lifetime:
            self.expired()
            return
        self.check()
        self._schedule()


class Periodic:
    """
    C{work} every C{interval} seconds on one timer that rarely wakes the
    loop: while packets come, the receive path calls L{poll} and the work
    runs on that wake-up, up to C{early} seconds before it is due; the timer
    is then moved (a cancelled asyncio timer is dropped without waking
    anything). Without packets the timer runs it on time. The interval is
    thus C{interval - early} to C{interval} (docs/performance.md, "WebRTC
    ingest"). An exception from C{work} is logged; the schedule goes on.
    """

    log = Logger()
    EARLY = 0.05  # s: the default C{early}

    def __init__(self, clock: IReactorTime, interval: float, work: Callable[[], None],
                 early: float = EARLY):
        self.clock = clock
        self.seconds = clock.seconds
        self.interval = interval
        self.work = work
        self.early = early
        self.ripe = float("inf")  # from when poll() runs the work
        self._call = None
        self.stopped = True

    def start(self) -> None:
        """Run the work now, then every interval."""
        self.stopped = False
        self._run()

    def stop(self) -> None:
        self.stopped = True
        self._disarm()

    def _disarm(self) -> None:
        self.ripe = float("inf")
        call, self._call = self._call, None
        if call is not None:
            call.cancel()

    def poll(self) -> None:
        """The loop is awake anyway: run the work if it is nearly due."""
        if self.seconds() >= self.ripe:
            self._run()

    def _fire(self) -> None:
        self._call = None
        self._run()

    def _run(self) -> None:
        self._disarm()
        try:
            self.work()
        except Exception:
            self.log.failure("periodic {work}", work=self.work)
        if not self.stopped:
            self.ripe = self.seconds() + self.interval - self.early
            self._call = self.clock.callLater(self.interval, self._fire)
