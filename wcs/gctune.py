"""
The garbage collector tuned for a server's steady state.

CPython's cyclic collector runs a young-generation pass every 700 net
container allocations and, now and then, a full pass over every tracked
object. Under chat load (4 000 deliveries/s, a few dicts and lists per
delivery) that is several passes a second, and a full pass walks the whole
start-up heap (Twisted, Autobahn, aiortc, av: a few hundred thousand
objects) on the reactor thread: the tail of the delivery latency. Two cheap
changes: what exists once the server is started is moved out of the
collector's sight (C{gc.freeze()}: it is never garbage), and the young
generation is collected less often (C{gc_gen0_threshold}). Neither changes
what is collected: cycles are still found, in the same generations.
"""

from __future__ import annotations

import gc

from twisted.application.service import Service

from wcs.config import Key, declare
from wcs.logs import Logger

declare(
    Key("gc_gen0_threshold", "int", 20000,
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
