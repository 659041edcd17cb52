"""
The REST hook client's HTTP/1.1 answer reader (L{wcs.access.http}): a
hostile or broken backend's bytes, in pieces, after a request on a
C{StringTransport}. The request's Deferred must fire exactly once, with
C{(status, body)} within the body limit or an error; what the connection
buffers stays bounded by the head and body limits whatever the backend
sends; and a connection kept for reuse must be one that read a whole
answer.

Input: C{[u8 piece size][answer bytes]}; the connection then closes.
"""

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from wcs.access import http

EXPECTED = ()
MAX_LEN = 8192
MAX_BODY = 1024


def fuzz(data: bytes) -> None:
    if not data:
        return
    client = http.Client(MemoryReactorClock(), "http://127.0.0.1:9/hooks", 1.0, keep=4, maxBody=MAX_BODY)
    connection = http._Connection(client)
    transport = StringTransport()
    connection.makeConnection(transport)
    results: list = []
    d = connection.request(b"POST /hooks/connect HTTP/1.1\r\n\r\n")
    d.addBoth(results.append)
    step = data[0] + 1
    answer = data[1:]
    for start in range(0, len(answer), step):
        if transport.disconnecting or getattr(transport, "disconnected", False):
            break
        connection.dataReceived(answer[start:start + step])
        # What a connection may hold beyond the last read: a head; then a
        # body, with one chunk's framing (bounded by http.MAX_CHUNKED).
        bound = http.MAX_HEAD if connection.head is None else MAX_BODY + http.MAX_CHUNKED
        if len(connection.buffer) > bound + step:
            raise AssertionError(f"{len(connection.buffer)} bytes buffered")
    kept = connection in client.idle
    connection.connectionLost(Failure(ConnectionError("closed by the backend")))
    if len(results) != 1:
        raise AssertionError(f"the request fired {len(results)} times")
    result = results[0]
    if isinstance(result, Failure):
        result.trap(http.HTTPError, ConnectionError)
        if kept:
            raise AssertionError("a connection that failed was kept")
        return
    code, body = result
    if not isinstance(code, int) or not isinstance(body, bytes) or len(body) > MAX_BODY:
        raise AssertionError(f"answer {code!r} with {len(body)} bytes")
