"""
When a node calls another gone (wcs/cluster/liveness.py), on an injected
clock: a missing key counts only while Redis kept this node's own.
"""

from __future__ import annotations

from twisted.internet.task import Clock

from wcs.cluster.liveness import GRACE_TTLS, Liveness

TTL = 3.0
BEAT = 1.0


def liveFor(seconds: float) -> tuple[Clock, Liveness]:
    clock = Clock()
    liveness = Liveness(clock, TTL, BEAT)
    assert liveness.beaten(kept=False)  # the first heartbeat: live
    clock.advance(seconds)
    return clock, liveness


def test_no_judging_for_the_grace_after_going_live():
    clock, liveness = liveFor(GRACE_TTLS * TTL - 0.1)
    assert not liveness.judging()
    clock.advance(0.1)
    assert liveness.judging()


def test_a_key_missing_at_two_checks_a_heartbeat_apart_is_a_gone_node():
    clock, liveness = liveFor(60)
    known = {"b": "b-1", "c": "c-1"}
    assert liveness.judge({"b": None, "c": "c-1"}, known) == []
    clock.advance(0.2)  # a check soon after (a slow Redis, a late loop)
    assert liveness.judge({"b": None, "c": "c-1"}, known) == []
    clock.advance(BEAT)
    assert liveness.judge({"b": None, "c": "c-1"}, known) == ["b"]


def test_a_key_back_in_time_or_under_another_incarnation():
    clock, liveness = liveFor(60)
    known = {"b": "b-1", "c": "c-1"}
    assert liveness.judge({"b": None}, known) == []
    clock.advance(BEAT)
    assert liveness.judge({"b": "b-1"}, known) == []  # it beat again: not gone
    clock.advance(BEAT)
    assert liveness.judge({"b": None}, known) == []  # missing counts from anew
    assert liveness.judge({"c": "c-2"}, known) == ["c"]  # restarted: gone at once


def test_redis_losing_this_nodes_key_restarts_the_grace_and_forgets_the_missing():
    # Redis restarted empty or paused past the TTL: this node's heartbeat
    # still "succeeds" (the client retried), but its own key was gone; the
    # others' keys are gone through no fault of theirs.
    clock, liveness = liveFor(60)
    known = {"b": "b-1"}
    assert liveness.judge({"b": None}, known) == []
    assert not liveness.beaten(kept=False)  # live all along, no "live" line again
    assert not liveness.judging()
    clock.advance(GRACE_TTLS * TTL)
    assert liveness.judging()
    assert liveness.judge({"b": None}, known) == []  # the first miss since
    clock.advance(BEAT)
    assert liveness.judge({"b": None}, known) == ["b"]


def test_a_failed_heartbeat_holds_judging_until_a_grace_after_the_next():
    clock, liveness = liveFor(60)
    assert liveness.failed() and not liveness.failed()  # said once
    assert not liveness.judging()
    clock.advance(600)  # Redis away ten minutes
    assert not liveness.judging()
    assert liveness.beaten(kept=True)  # back (even with its key: it kept it on disk)
    assert not liveness.judging()
    clock.advance(GRACE_TTLS * TTL)
    assert liveness.judging()
