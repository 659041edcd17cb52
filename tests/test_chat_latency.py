"""
bench/chat_latency.py's readers against bench/minimal_chat_server.py and wcs:
every message sent reaches every other participant and each delivery gets a
latency (correctness of the bench, not speed), with the Python readers and
with the C reader (bench/chat_reader.c, built with gcc here).
"""

import shutil
from types import SimpleNamespace

import pytest

from bench.chat_latency import runOnce


def arguments(**extra):
    return SimpleNamespace(**dict(dict(
        players=12, rate=1.0, seconds=2.0, readers=3, warmup=0.2, drain=10.0,
        join_timeout=20.0, shared="", nice=0, py_spy=None, server_log=None), **extra))


def checkEveryDelivery(r, readers):
    assert r.get("error") is None
    assert r["readers"] == readers
    assert r["sent"] == r["planned"] == 24
    assert r["delivered"] == r["expected"] == 24 * 11
    assert r["stale"] == 0 and r["refused"] == 0 and r["echo"] == 0 and r["rejoined"] == 0
    # Latencies are real durations: positive, ordered, under the run's bound.
    assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] <= r["max_ms"] < 10_000
    assert r["server_cpu_ms_per_1000"] is not None and r["readers_cpu_pct"] > 0
    assert 0 <= r["messages_over_20ms"] <= r["sent"]
    assert r["ok"]


def test_everyDeliveryArrivesWithItsLatency():
    r = runOnce("minimal", arguments(), readerKind="python")
    assert r["reader"] == "python"
    checkEveryDelivery(r, 3)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="the C reader is built with gcc")
@pytest.mark.parametrize("server", ["minimal", "wcs"])
def test_theCReaderTimesEveryDelivery(server):
    """Built, joined to a real server, every delivery timed, and its own
    counters of reads and wake-ups reported."""
    r = runOnce(server, arguments(readers=None), readerKind="c")
    assert r["reader"] == "c"
    checkEveryDelivery(r, 1)
    assert r["reader_reads_per_1000"] > 0 and r["reader_wakeups_per_1000"] > 0
