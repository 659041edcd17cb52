"""The hooks' shared timeout (wcs.access.hooks.Deadlines, RestHook) on a Clock."""

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock, StringTransport

from wcs.access.hooks import ALLOW, NO_ANSWER, Deadlines, RestHook
from wcs.access.http import _Connection


def test_each_deferred_is_cancelled_at_its_own_deadline_with_one_timer():
    clock = MemoryReactorClock()
    deadlines = Deadlines(clock, 3.0)
    first, answered, second = defer.Deferred(), defer.Deferred(), defer.Deferred()
    for d in (first, answered, second):
        d.addErrback(lambda f: f.trap(defer.CancelledError) and "cancelled")
    deadlines.add(first)
    clock.advance(1)
    deadlines.add(answered)
    deadlines.add(second)
    assert len(clock.getDelayedCalls()) == 1
    answered.callback("answer")
    clock.advance(1.99)
    assert not first.called
    clock.advance(0.01)
    assert first.result == "cancelled" and not second.called
    assert [c.getTime() for c in clock.getDelayedCalls()] == [4.0]
    clock.advance(1)
    assert second.result == "cancelled" and answered.result == "answer"
    assert clock.getDelayedCalls() == [] and not deadlines.entries


def test_answered_deferreds_are_dropped_as_new_ones_come():
    clock = MemoryReactorClock()
    deadlines = Deadlines(clock, 3.0)
    for _ in range(1000):
        d = defer.succeed(None)
        deadlines.add(d)
    assert len(deadlines.entries) == 1
    deadlines.stop()
    assert clock.getDelayedCalls() == []


def hookOn(clock, timeout=1.0):
    hook = RestHook("http://backend.example:8080/hook", timeout, clock, connections=1)
    conn = _Connection(hook.client)
    conn.makeConnection(StringTransport())
    hook.client.idle.append(conn)
    return hook, conn


def test_no_answer_in_time_denies_and_closes_the_connection():
    clock = MemoryReactorClock()
    hook, conn = hookOn(clock)
    results = []
    hook.ask("joinRoom", {"login": "x"}).addCallback(results.append)
    queued = []
    hook.ask("joinRoom", {"login": "y"}).addCallback(queued.append)  # waits its turn
    clock.advance(0.999)
    assert results == [] and queued == []
    clock.advance(0.001)
    assert [d.reason for d in results + queued] == [NO_ANSWER, NO_ANSWER]
    assert conn.transport.disconnecting


def test_a_plain_200_allows_and_a_body_is_read():
    clock = MemoryReactorClock()
    hook, conn = hookOn(clock)
    results = []
    hook.ask("connect", {"login": "x", "text": "привет"}).addCallback(results.append)
    assert conn.transport.value().endswith('{"login": "x", "text": "привет"}'.encode())
    conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    body = b'{"login": "renamed", "record": true}'
    hook.ask("connect", {"login": "x"}).addCallback(results.append)
    conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    assert results[0] is ALLOW
    assert (results[1].allowed, results[1].login, results[1].record) == (True, "renamed", True)
    clock.advance(5)
    assert not conn.transport.disconnecting and not hook.deadlines.entries
