"""wcs.lag.LagProbe with an injected clock: how late its timer fires, reported."""

import pytest
from twisted.internet.task import Clock

from wcs.lag import LagProbe, percentile


def test_percentile_is_nearest_rank():
    ordered = [float(i) for i in range(1, 101)]
    assert percentile(ordered, 0.5) == 50 and percentile(ordered, 0.99) == 99
    assert percentile([3.0], 0.99) == 3.0


def test_the_probe_reports_how_late_its_timer_fired():
    clock = Clock()
    probe = LagProbe(clock, report=1, period=0.02)
    probe.startService()
    for _ in range(47):  # on time
        clock.advance(0.02)
    clock.advance(0.02 + 0.030)  # something held the loop for 30 ms
    assert probe.last is None  # not a second yet
    clock.advance(0.02)
    assert probe.last["samples"] == 49
    assert probe.last["p50"] == pytest.approx(0) and probe.last["max"] == pytest.approx(30)
    assert probe.last["p99"] == pytest.approx(30)
    probe.stopService()
    assert clock.getDelayedCalls() == []  # nothing left scheduled


def test_every_delay_goes_to_the_observer_even_without_a_report():
    clock = Clock()
    delays = []
    probe = LagProbe(clock, report=0, period=0.1, observe=delays.append)
    probe.startService()
    clock.advance(0.1)
    clock.advance(0.1 + 0.25)  # the loop was held for 250 ms
    assert delays == [pytest.approx(0), pytest.approx(0.25)]
    assert probe.samples == [] and probe.last is None  # nothing kept for a report
    probe.stopService()
    assert clock.getDelayedCalls() == []


def test_the_loop_clock_runs_the_probe_on_asyncio_timers():
    """In the server the probe's timer is an asyncio handle, not a reactor call."""
    import asyncio

    from wcs.lag import LoopClock

    async def run():
        loop = asyncio.get_running_loop()
        delays = []
        probe = LagProbe(LoopClock(loop), report=0, period=0.01, observe=delays.append)
        probe.startService()
        assert isinstance(probe.call.handle, asyncio.TimerHandle)  # one handle, no DelayedCall
        for _ in range(200):  # bounded: at most 2 s
            if len(delays) >= 3:
                break
            await asyncio.sleep(0.01)
        probe.stopService()
        assert len(delays) >= 3 and all(d >= 0 for d in delays)
        count = len(delays)
        await asyncio.sleep(0.05)
        assert len(delays) == count  # stopped: no tick after stopService

    asyncio.run(run())
