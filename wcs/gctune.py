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


class GCTuning(Service):
    """Applies the settings once the reactor runs (every service started)."""

    def __init__(self, reactor, settings):
        self.reactor = reactor
        self.gen0 = settings.gc_gen0_threshold
        self.freeze = settings.gc_freeze

    def startService(self) -> None:
        super().startService()
        self.reactor.callWhenRunning(tune, self.gen0, self.freeze)
