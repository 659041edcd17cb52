"""
bench/chat_latency.py's readers against bench/minimal_chat_server.py: every
message sent reaches every other participant and each delivery gets a
latency (correctness of the bench, not speed).
"""

from types import SimpleNamespace

from bench.chat_latency import runOnce


def test_everyDeliveryArrivesWithItsLatency():
    args = SimpleNamespace(players=12, rate=1.0, seconds=2.0, readers=3, warmup=0.2, drain=10.0,
                           join_timeout=20.0, shared="", nice=0, py_spy=None,
                           server_log=None)
    r = runOnce("minimal", args)
    assert r.get("error") is None
    assert r["sent"] == r["planned"] == 24
    assert r["delivered"] == r["expected"] == 24 * 11
    assert r["stale"] == 0 and r["refused"] == 0 and r["echo"] == 0 and r["rejoined"] == 0
    # Latencies are real durations: positive, ordered, under the run's bound.
    assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] <= r["max_ms"] < 10_000
    assert r["server_cpu_ms_per_1000"] is not None and r["readers_cpu_pct"] > 0
    assert 0 <= r["messages_over_20ms"] <= r["sent"]
    assert r["ok"]
