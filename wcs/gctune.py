"""
The garbage collector tuned for a server's steady state.

CPython's cyclic collector now and then runs a full pass over every tracked
object, on the reactor thread. Once the server has started, that is first of
all the start-up heap (Twisted, Autobahn, aiortc, av: about 68 000 objects),
which is never garbage: a full pass over it took 30 ms of CPU on the
reference machine (loaded), more than the chat's whole p99 budget (20 ms at
4 000 deliveries/s). C{gc.freeze()} once the reactor runs moves it to the
permanent generation, which no pass walks (the same pass: 0.0 ms). What the
server allocates later is collected as before.

C{gc_gen0_threshold} is there to try fewer young passes; measured with
C{bench/chat_hotpath.py} at 200 participants it saved 0.1 µs per delivery
and made each young pass 5 ms instead of 0.4 ms, so it is off by default.
"""

from __future__ import annotations

import gc
import time

from twisted.application.service import Service

from wcs.config import Key, declare
from wcs.logs import Logger

declare(
    Key("gc_gen0_threshold", "int", 0,
        "container allocations between two young-generation passes of Python's "
        "cyclic garbage collector (Python's own default: 700); 0: leave Python's"),
    Key("gc_freeze", "bool", True,
        "once started, move every object then alive to the collector's permanent "
        "generation (gc.freeze), so that full passes skip the start-up heap"),
    Key("gc_report", "int", 0,
        "every this many seconds, log the collector's passes in that time per "
        "generation and the longest one (a pause of the reactor); 0: off"),
)

log = Logger()


def tune(gen0: int, freeze: bool) -> None:
    if gen0 > 0:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(gen0, gen1, gen2)
    if freeze:
        gc.collect()
        gc.freeze()
        log.info("gc: {count} start-up objects frozen, thresholds {thresholds}",
                 count=gc.get_freeze_count(), thresholds=gc.get_threshold())


class GCPauses:
    """
    The collector's passes, timed by C{gc.callbacks} (two clock reads a
    pass, nothing per object): counts per generation and the longest pause,
    taken and reset by L{take}; C{ended}, if given, is called with the
    generation, the seconds and the collector's info at the end of each.
    """

    def __init__(self, clock=time.perf_counter, ended=None):
        self.clock = clock
        self.ended = ended
        self.started = 0.0
        self.reset()

    def reset(self) -> None:
        self.passes = [0, 0, 0]
        self.longest = [0.0, 0.0, 0.0]
        self.total = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self.started = self.clock()
            return
        spent = self.clock() - self.started
        generation = info["generation"]
        self.passes[generation] += 1
        self.longest[generation] = max(self.longest[generation], spent)
        self.total += spent
        if self.ended is not None:
            self.ended(generation, spent, info)

    def take(self) -> dict:
        figures = {"passes": tuple(self.passes),
                   "longest": tuple(round(1000 * s, 2) for s in self.longest),
                   "total": round(1000 * self.total, 1)}
        self.reset()
        return figures


class GCTuning(Service):
    """Applies the settings once the reactor runs (every service started)."""

    def __init__(self, reactor, settings):
        self.reactor = reactor
        self.gen0 = settings.gc_gen0_threshold
        self.freeze = settings.gc_freeze
        self.report = settings.gc_report
        self.pauses = None
        self.call = None

    def startService(self) -> None:
        super().startService()
        self.reactor.callWhenRunning(tune, self.gen0, self.freeze)
        if self.report > 0:  # after tune's own full pass: the steady state's
            self.reactor.callWhenRunning(self._watch)

    def _watch(self) -> None:
        self.pauses = GCPauses()
        gc.callbacks.append(self.pauses)
        self.call = self.reactor.callLater(self.report, self._report)

    def stopService(self):
        super().stopService()
        if self.pauses is not None:
            gc.callbacks.remove(self.pauses)
            self.pauses = None
        if self.call is not None and self.call.active():
            self.call.cancel()

    def _report(self) -> None:
        log.info("gc over {seconds}s: passes per generation {passes}, longest (ms) "
                 "{longest}, in all {total} ms", seconds=self.report, **self.pauses.take())
        self.call = self.reactor.callLater(self.report, self._report)
