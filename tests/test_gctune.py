"""wcs.gctune: the collector's settings applied once the reactor runs."""

from __future__ import annotations

import gc

import pytest

from wcs.config import Settings
from wcs.gctune import GCTuning


class Reactor:
    def __init__(self):
        self.calls = []

    def callWhenRunning(self, f, *args):
        self.calls.append((f, args))


@pytest.fixture
def restored():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_freezes_the_start_up_heap_once_running(restored):
    settings = Settings()
    reactor = Reactor()
    service = GCTuning(reactor, settings)
    before = gc.get_threshold()
    service.startService()
    assert gc.get_freeze_count() == 0  # nothing before the reactor runs
    [(f, args)] = reactor.calls
    f(*args)
    assert gc.get_freeze_count() > 1000
    assert gc.get_threshold() == before  # gc_gen0_threshold 0: Python's own


def test_gen0_threshold_and_no_freeze(restored):
    settings = Settings()
    settings.set("gc_gen0_threshold", 5000)
    settings.set("gc_freeze", False)
    reactor = Reactor()
    GCTuning(reactor, settings).startService()
    [(f, args)] = reactor.calls
    before = gc.get_threshold()
    f(*args)
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == (5000, before[1], before[2])
