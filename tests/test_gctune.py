"""wcs.gctune: the collector's settings applied once the reactor runs."""

from __future__ import annotations

import gc

import pytest

from wcs.config import Settings
from wcs.gctune import GCPauses, GCTuning


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


def test_pauses_are_counted_per_generation_and_reset_when_taken():
    now = [0.0]
    pauses = GCPauses(clock=lambda: now[0])
    for generation, spent in ((0, 0.001), (0, 0.003), (2, 0.040)):
        pauses("start", {"generation": generation})
        now[0] += spent
        pauses("stop", {"generation": generation})
    assert pauses.take() == {"passes": (2, 0, 1), "longest": (3.0, 0.0, 40.0),
                             "total": 44.0}
    assert pauses.take() == {"passes": (0, 0, 0), "longest": (0.0, 0.0, 0.0), "total": 0.0}


def test_each_pass_is_told_when_asked():
    now, told = [0.0], []
    pauses = GCPauses(clock=lambda: now[0], ended=lambda *a: told.append(a))
    pauses("start", {"generation": 1})
    now[0] += 0.002
    pauses("stop", {"generation": 1, "collected": 7})
    assert told == [(1, 0.002, {"generation": 1, "collected": 7})]


def test_gc_report_logs_every_interval_from_after_the_start_up_pass(restored):
    from twisted.internet.task import Clock
    from twisted.logger import globalLogPublisher

    class Running(Clock):
        def callWhenRunning(self, f, *args):
            f(*args)

    settings = Settings()
    settings.set("gc_report", 5)
    clock, events = Running(), []
    globalLogPublisher.addObserver(events.append)
    service = GCTuning(clock, settings)
    try:
        service.startService()
        assert service.pauses in gc.callbacks
        assert service.pauses.take()["passes"] == (0, 0, 0)  # tune's collect not counted
        gc.collect()
        clock.advance(5)
        lines = [e for e in events if e.get("log_format", "").startswith("gc over")]
        assert len(lines) == 1 and lines[0]["passes"][2] >= 1
        clock.advance(5)
        assert len([e for e in events if e.get("log_format", "").startswith("gc over")]) == 2
    finally:
        globalLogPublisher.removeObserver(events.append)
        service.stopService()
    assert service.pauses is None and not clock.getDelayedCalls()
