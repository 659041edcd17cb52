"""Log hygiene for client-supplied values: repr-ed, cut, rate-limited."""

from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel

from wcs.logs import LogLimiter, clip


def test_clip_escapes_newlines_and_cuts():
    assert clip("alice\nFORGED LINE") == repr("alice\nFORGED LINE")
    long = clip("x" * 10000, limit=50)
    assert len(long) < 60 and long.endswith("...")
    assert clip(3) == "3" and clip(None) == "None"


def test_clip_never_walks_containers():
    shared = [[]]
    for _ in range(60):  # 2**60 leaves if walked
        shared = [shared, shared]
    assert clip(shared) == "<list>"
    assert clip({"a": shared}) == "<dict>"


def collector():
    events = []
    return events, Logger(namespace="test", observer=events.append)


def test_limiter_writes_one_line_per_key_and_interval():
    events, log = collector()
    clock = Clock()
    limiter = LogLimiter(log, interval=10, clock=clock)
    assert limiter.warn("a", "bad input from {peer}", peer="a")
    for _ in range(1000):
        assert not limiter.warn("a", "bad input from {peer}", peer="a")
    assert limiter.warn("b", "bad input from {peer}", peer="b")  # another key: its own line
    assert len(events) == 2
    clock.advance(10)
    assert limiter.warn("a", "bad input from {peer}", peer="a")
    assert len(events) == 3
    assert events[-1]["suppressed"] == 1000
    assert events[-1]["log_level"] == LogLevel.warn


def test_limiter_state_is_bounded():
    events, log = collector()
    clock = Clock()
    limiter = LogLimiter(log, interval=10, clock=clock)
    for i in range(3 * LogLimiter.MAX_KEYS):
        limiter.warn(("peer", i), "bad")
    assert len(limiter._state) <= LogLimiter.MAX_KEYS
    assert len(events) == 3 * LogLimiter.MAX_KEYS  # new keys are always written
