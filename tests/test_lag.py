"""wcs.lag.LagProbe with an injected clock: how late its timer fires, reported."""

import pytest
from twisted.internet.task import Clock

from wcs.lag import GridPhases, LagProbe, gridTime, percentile


def test_percentile_is_nearest_rank():
    ordered = [float(i) for i in range(1, 101)]
    assert percentile(ordered, 0.5) == 50 and percentile(ordered, 0.99) == 99
    assert percentile([3.0], 0.99) == 3.0


def test_the_probe_reports_how_late_its_timer_fired():
    clock = Clock()
    period = 1 / 32  # a binary fraction: the Clock's sums stay on the ticks' grid
    probe = LagProbe(clock, report=1, period=period)
    probe.startService()
    for _ in range(30):  # on time
        clock.advance(period)
    clock.advance(period + 0.030)  # something held the loop for 30 ms
    assert probe.last is None  # not a second yet
    clock.advance(1 - clock.seconds())  # the next tick, on time, at 1 s
    assert probe.last["samples"] == 32
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
        assert isinstance(probe.call, asyncio.TimerHandle)  # one handle, no DelayedCall
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


def test_ticks_fall_on_the_period_grid():
    """Timers of one period on one loop fall due together: one wake-up for all."""
    assert gridTime(0.3, 0.5) == 0.5 and gridTime(0.5, 0.5) == 1.0
    assert gridTime(0.4999999, 0.5) == 1.0  # a hair early counts as on the grid
    assert gridTime(1.23, 0.1) == pytest.approx(1.3)
    clock = Clock()
    clock.advance(0.3)
    ticks = []
    probe = LagProbe(clock, report=0, period=0.5, observe=lambda d: ticks.append(clock.seconds()))
    probe.startService()
    for step in (0.2, 0.5, 0.5):
        clock.advance(step)
    assert ticks == [pytest.approx(0.5), pytest.approx(1.0), pytest.approx(1.5)]
    probe.stopService()


def test_grid_phases_spread_members_over_the_period():
    """The least used phase first; a member keeps its phase; the gone leave by themselves."""
    import gc

    class Member:
        pass

    phases = GridPhases(4)
    members = [Member() for _ in range(5)]
    assert [phases.take(m) for m in members] == [0, 1, 2, 3, 0]
    assert phases.take(members[2]) == 2 and len(phases) == 5
    phases.leave(members[1])
    assert phases.take(Member()) == 1  # the least used; that Member is gone at once
    gc.collect()
    assert len(phases) == 4
    assert phases.nextTime(0.31, 0.4, 0) == pytest.approx(0.4)
    assert phases.nextTime(0.31, 0.4, 1) == pytest.approx(0.5)  # shifted a quarter period
    assert phases.nextTime(0.51, 0.4, 1) == pytest.approx(0.9)


def test_an_idle_loop_is_probed_less_often_until_it_works():
    """The period doubles up to idlePeriod while the thread used no CPU; work resets it."""
    clock = Clock()
    used = [1.0]
    ticks = []
    probe = LagProbe(clock, report=0, period=0.5, idlePeriod=2.0, cpu=lambda: used[0],
                     observe=lambda d: ticks.append((clock.seconds(), d)))
    probe.startService()
    for _ in range(8):  # 4 s of an idle loop
        clock.advance(0.5)
    assert [t for t, _ in ticks] == [0.5, 1.0, 2.0, 4.0]
    used[0] += 0.010  # a client came: 10 ms of work, seen by the next tick (at 6 s)
    for step in (2.0, 0.5, 0.5):
        clock.advance(step)
    assert [t for t, _ in ticks][4:] == [6.0, 6.5, 7.0]
    assert all(d == 0 for _, d in ticks)  # on time, on the grid
    probe.stopService()
    assert clock.getDelayedCalls() == []


def test_a_report_keeps_every_tick():
    """loop_lag_report asks for the fine-grained probe: no idle back-off."""
    clock = Clock()
    probe = LagProbe(clock, report=1, period=0.25, idlePeriod=4.0, cpu=lambda: 0.0)
    probe.startService()
    for _ in range(4):
        clock.advance(0.25)
    assert probe.last["samples"] == 4
    probe.stopService()
