"""The hooks' HTTP client (wcs.access.http) on a StringTransport: each way an answer ends."""

import pytest
from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from wcs.access.http import Client, HTTPError, _Connection


def connection(maxBody=100, keep=2):
    client = Client(MemoryReactorClock(), "http://backend.example:8080/hook/", 1.0, keep, maxBody)
    conn = _Connection(client)
    conn.makeConnection(StringTransport())
    return client, conn


def answer(conn, *parts):
    results = []
    d = conn.request(b"POST /hook/x HTTP/1.1\r\n\r\n{}")
    d.addBoth(results.append)
    for part in parts:
        conn.dataReceived(part)
    return results


def test_a_request_is_one_write_with_the_path_and_host():
    client, conn = connection()
    client.idle.append(conn)
    client.post("joinRoom", b'{"a":1}')
    sent = conn.transport.value()
    assert sent.startswith(b"POST /hook/joinRoom HTTP/1.1\r\nHost: backend.example:8080\r\n")
    assert sent.endswith(b"Content-Length: 7\r\n\r\n{\"a\":1}")


def test_content_length_in_pieces_and_the_connection_kept():
    client, conn = connection()
    results = answer(conn, b"HTTP/1.1 200 OK\r\nContent-Le", b"ngth: 11\r\n\r\n{\"login\"",
                     b":1}")
    assert results == [(200, b'{"login":1}')]
    assert client.idle == [conn]


def test_chunked_and_close_delimited_bodies():
    client, conn = connection()
    results = answer(conn, b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"4\r\n{\"re\r\n", b"a\r\nason\":\"x\"}\r\n0\r\n\r\n")
    assert results == [(403, b'{"reason":"x"}')]
    client, conn = connection()
    assert answer(conn, b"HTTP/1.1 204 No Content\r\n\r\n") == [(204, b"")]
    client, conn = connection()
    results = answer(conn, b"HTTP/1.0 200 OK\r\n\r\n{}")
    assert results == []
    conn.connectionLost(None)
    assert results == [(200, b"{}")] and client.idle == []


@pytest.mark.parametrize("reply", [
    b"SMTP ready\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 5000,
])
def test_bad_or_long_answers_fail_and_close(reply):
    client, conn = connection()
    results = answer(conn, reply)
    assert len(results) == 1 and results[0].check(HTTPError)
    assert conn.transport.disconnecting and client.idle == []


def test_connection_close_is_not_kept_and_a_cancel_aborts():
    client, conn = connection()
    assert answer(conn, b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}") \
        == [(200, b"{}")]
    assert client.idle == [] and conn.transport.disconnecting
    client, conn = connection()
    d = conn.request(b"x")
    d.addErrback(lambda f: None)
    d.cancel()
    assert conn.transport.disconnecting


@pytest.mark.parametrize("reply", [
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1_0\r\n\r\n0123456789",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\n{}\r\n0\r\n\r\n",
])
def test_lengths_that_are_not_plain_numbers_fail(reply):
    client, conn = connection()
    results = answer(conn, reply)
    assert len(results) == 1 and results[0].check(HTTPError), results


def test_chunk_framing_without_end_is_bounded():
    """A size line (or extension) that never ends fails at MAX_CHUNKED, not at memory's end."""
    client, conn = connection()
    results = answer(conn, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                     *[b"1" * 1000] * 5)
    assert len(results) == 1 and results[0].check(HTTPError)
    assert conn.transport.disconnecting


def test_many_small_chunks_are_read_once():
    client, conn = connection(maxBody=5000)
    results = answer(conn, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                     *[b"1\r\nx\r\n"] * 4000, b"0\r\n\r\n")
    assert results == [(200, b"x" * 4000)]
    assert len(conn.buffer) < 16


def test_a_kept_connection_closed_unanswered_goes_again_on_a_new_one():
    """Closed before any byte of its second answer: the request goes once
    more, on a new connection (tests/access/test_hook_transport.py runs it
    against a real backend); a first request's close fails (the backend is
    down, not stale)."""
    client, conn = connection()
    answer(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    again = []
    client.connect = again.append
    results = answer(conn)
    conn.connectionLost(Failure(ConnectionDone()))
    assert results == [] and [r.data for r in again] == [b"POST /hook/x HTTP/1.1\r\n\r\n{}"]
    client, conn = connection()
    results = answer(conn)
    conn.connectionLost(Failure(ConnectionDone()))
    assert len(results) == 1 and results[0].check(ConnectionDone)


def idleClient(count: int, keep: int):
    """A client with C{count} kept connections on StringTransports."""
    client = Client(MemoryReactorClock(), "http://backend.example:8080/hook/", 1.0, keep, 100)
    conns = [_Connection(client) for _ in range(count)]
    for conn in conns:
        conn.makeConnection(StringTransport())
    client.idle.extend(conns)
    return client, conns


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


def test_beyond_keep_requests_wait_their_turn_in_order():
    client, conns = idleClient(2, keep=2)
    results = {name: [] for name in "abc"}
    for name in "abc":
        client.post(name, b"{}").addBoth(results[name].append)
    sent = [conn.transport.value() for conn in conns]
    assert sorted(s.split(b" ")[1] for s in sent) == [b"/hook/a", b"/hook/b"]
    assert client.busy == 2 and [r.data.split(b" ")[1] for r in client.waiting] == [b"/hook/c"]
    first = next(conn for conn in conns if b"/hook/a " in conn.transport.value())
    first.transport.clear()
    first.dataReceived(OK)
    # a's answer freed its connection, and c went out on it before a's result.
    assert results["a"] == [(200, b"{}")] and results["c"] == []
    assert first.transport.value().startswith(b"POST /hook/c ")
    assert client.busy == 2 and not client.waiting


def test_a_request_cancelled_in_its_turn_is_skipped():
    client, [conn] = idleClient(1, keep=1)
    results = {name: [] for name in "abc"}
    for name in "abc":
        client.post(name, b"{}").addBoth(results[name].append)
    waitingB = client.waiting[0].deferred
    waitingB.cancel()
    assert results["b"][0].check(defer.CancelledError) and not conn.transport.disconnecting
    conn.transport.clear()
    conn.dataReceived(OK)
    assert conn.transport.value().startswith(b"POST /hook/c ") and client.busy == 1
    conn.dataReceived(OK)
    assert results["c"] == [(200, b"{}")] and client.busy == 0 and client.idle == [conn]


def test_a_request_cancelled_on_its_connection_closes_it_and_frees_its_turn():
    client, [conn] = idleClient(1, keep=1)
    results = []
    client.post("a", b"{}").addBoth(results.append).cancel()
    assert results[0].check(defer.CancelledError) and conn.transport.disconnecting
    conn.connectionLost(Failure(ConnectionDone()))
    assert client.busy == 0 and client.idle == []
