"""
A small HTTP/1.1 client for the REST hooks: JSON POSTs on kept-alive
connections to one backend, at most C{keep} requests at once (one per
connection; the others wait their turn in order).

Twisted's C{Agent} cost about a millisecond of the reactor per request
(request and response objects, header maps, producers, a dozen Deferreds);
a join costs a fifth of that, so a hook made joins several times dearer
(docs/performance.md). Here a request is one Deferred and one write of
prepared bytes, straight to the socket when Twisted holds nothing unsent
for it (no C{epoll_ctl} registration and no wait for the next loop
iteration), and its answer one parse: the status, the headers the answer
needs, and a body by C{Content-Length}, chunks or the connection's end.
"""

from __future__ import annotations

import re
from collections import deque
from urllib.parse import urlsplit

from twisted.internet import defer, protocol
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.ssl import optionsForClientTLS

from wcs.transports.outbox import writeNow

MAX_HEAD = 16384
MAX_CHUNKED = 4096  # bytes of chunk framing (size lines, extensions) beyond the body
_CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,8}")


class HTTPError(Exception):
    """An answer that is not HTTP/1.x, or too long."""


class _Request:
    """One POST: its bytes, its Deferred, and where it is (waiting for a
    turn, connecting, or on a connection) for a cancel to undo."""

    __slots__ = ("data", "deferred", "connection", "attempt")

    def __init__(self, data: bytes):
        self.data = data
        self.deferred = defer.Deferred(self._cancel)
        self.connection: _Connection | None = None
        self.attempt: defer.Deferred | None = None

    def _cancel(self, _) -> None:
        # Waiting: skipped when its turn comes. Connecting: the attempt is
        # cancelled. Sent: the connection closes (its answer is lost).
        if self.connection is not None:
            self.connection.transport.abortConnection()
        elif self.attempt is not None:
            self.attempt.cancel()


class _Connection(protocol.Protocol):
    """One connection; one request at a time."""

    def __init__(self, client: "Client"):
        self.client = client
        self.pending: _Request | None = None
        self.reusable = False
        self.requests = 0

    def connectionMade(self) -> None:
        transport = self.transport
        while transport is not None and not hasattr(transport, "setTcpNoDelay"):
            transport = getattr(transport, "transport", None)  # under TLS
        if transport is not None:
            transport.setTcpNoDelay(True)

    def request(self, data: bytes) -> defer.Deferred:
        """Send C{data} now, outside the client's turns (for tests)."""
        request = _Request(data)
        self.client.busy += 1
        self.send(request)
        return request.deferred

    def send(self, request: _Request) -> None:
        self.buffer = b""
        self.head: dict[bytes, bytes] | None = None
        self.code = 0
        self.reusable = False
        self.chunks: list[bytes] = []
        self.chunked = 0  # bytes of body in self.chunks
        self.heard = False  # any byte of the answer
        self.requests += 1
        self.pending = request
        request.connection = self
        request.attempt = None
        writeNow(self.transport, request.data)

    def dataReceived(self, data: bytes) -> None:
        if self.pending is None:
            self.transport.abortConnection()  # an answer to nothing
            return
        self.heard = True
        self.buffer += data
        try:
            body = self._parse()
        except (HTTPError, ValueError, IndexError) as e:
            self._finish(failure=HTTPError(str(e)))
            self.transport.abortConnection()
            return
        if body is not None:
            self._finish((self.code, body))

    def _parse(self) -> bytes | None:
        """The body once complete, else None."""
        if self.head is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    raise HTTPError("headers too long")
                return None
            # Lowered once: the names are matched, the values compared.
            lines = self.buffer[:end].lower().split(b"\r\n")
            version, code = lines[0].split(b" ", 2)[:2]
            if not version.startswith(b"http/1."):
                raise HTTPError("not an HTTP/1 answer")
            self.code = int(code)
            self.head = head = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                head[name.strip()] = value.strip()
            self.buffer = self.buffer[end + 4:]
            self.reusable = head.get(b"connection") != b"close" and version != b"http/1.0"
        limit = self.client.maxBody
        if self.code in (204, 304):
            return b""  # no body, whatever the headers say
        if b"chunked" in self.head.get(b"transfer-encoding", b""):
            return self._chunks(limit)
        length = self.head.get(b"content-length")
        if length is None:
            self.reusable = False  # the body ends with the connection
            if len(self.buffer) > limit:
                raise HTTPError("answer too long")
            return None
        if not length.isdigit():
            raise HTTPError("bad Content-Length")
        if int(length) > limit:
            raise HTTPError("answer too long")
        return self.buffer[:int(length)] if len(self.buffer) >= int(length) else None

    def _chunks(self, limit: int) -> bytes | None:
        """Complete chunks move from the buffer to C{self.chunks} as they
        come: each byte is read once, and what waits is bounded."""
        while True:
            end = self.buffer.find(b"\r\n")
            if end < 0:
                if len(self.buffer) > MAX_CHUNKED:
                    raise HTTPError("chunk size line too long")
                return None
            field = self.buffer[:end].split(b";")[0].strip()
            if end > MAX_CHUNKED or not _CHUNK_SIZE.fullmatch(field):
                raise HTTPError("bad chunk size")
            size = int(field, 16)
            if size == 0:
                # No trailers from a hook backend: the last chunk, then CRLF.
                if self.buffer.find(b"\r\n", end + 2) >= 0:
                    return b"".join(self.chunks)
                if len(self.buffer) > MAX_CHUNKED:
                    raise HTTPError("chunked trailer too long")
                return None
            if self.chunked + size > limit:
                raise HTTPError("answer too long")
            if len(self.buffer) < end + 2 + size + 2:
                return None
            self.chunks.append(self.buffer[end + 2:end + 2 + size])
            self.chunked += size
            self.buffer = self.buffer[end + 2 + size + 2:]

    def _finish(self, result=None, failure=None) -> None:
        request, self.pending = self.pending, None
        if request is None:
            return
        request.connection = None
        client = self.client
        if failure is None and self.reusable and len(client.idle) < client.keep:
            client.idle.append(self)
        elif failure is None:
            self.transport.loseConnection()
        # The next request goes out (on this connection, if kept) before
        # this answer's action runs: the backend works on it meanwhile.
        client.free()
        deferred = request.deferred
        if deferred.called:
            return  # cancelled
        if failure is not None:
            deferred.errback(failure)
        else:
            deferred.callback(result)

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        if self in self.client.idle:
            self.client.idle.remove(self)
        request = self.pending
        if request is not None and self.requests > 1 and not self.heard \
                and not request.deferred.called:
            # The backend may close a kept-alive connection as idle just as
            # the request arrives (keep-alive timeouts of servers are
            # short): once more on a new connection, in the same turn.
            self.pending = request.connection = None
            self.client.connect(request)
        elif self.pending is not None and self.head is not None and \
                self.head.get(b"content-length") is None and \
                b"chunked" not in self.head.get(b"transfer-encoding", b""):
            self._finish((self.code, self.buffer))  # a body ended by the close
        else:
            self._finish(failure=reason)


class Client:
    """
    POSTs to one backend; connections are kept for reuse, at most
    C{keep} of them idle.
    """

    def __init__(self, reactor, url: str, connectTimeout: float, keep: int,
                 maxBody: int = 65536, trustRoot=None):
        parts = urlsplit(url)
        self.host = parts.hostname or "localhost"
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        self.hostHeader = parts.netloc.rpartition("@")[2].encode("idna")
        self.path = parts.path.rstrip("/")
        self.maxBody = maxBody
        endpoint = HostnameEndpoint(reactor, self.host, port, timeout=connectTimeout)
        if tls:
            endpoint = wrapClientTLS(optionsForClientTLS(self.host, trustRoot), endpoint)
        self.endpoint = endpoint
        self.keep = keep
        self.idle: list[_Connection] = []
        self.busy = 0  # requests sent or connecting
        self.waiting: deque[_Request] = deque()
        self.prefix = b"POST %s/" % self.path.encode("utf-8")
        self.headers = b" HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n" \
                       b"Content-Length: " % self.hostHeader
        self.factory = protocol.Factory.forProtocol(lambda: _Connection(self))
        self.factory.noisy = False

    def post(self, action: str, body: bytes) -> defer.Deferred:
        """Fires with C{(status, body)}; cancel it to give up (the connection
        closes if it was sent). Beyond C{keep} at once it waits its turn."""
        request = _Request(b"%s%s%s%d\r\n\r\n%s" % (
            self.prefix, action.encode(), self.headers, len(body), body))
        if self.busy < self.keep:
            self.start(request)
        else:
            self.waiting.append(request)
        return request.deferred

    def start(self, request: _Request) -> None:
        self.busy += 1
        while self.idle:
            connection = self.idle.pop()
            if connection.transport is not None and connection.transport.connected:
                connection.send(request)
                return
        self.connect(request)

    def free(self) -> None:
        """A request ended: the next one waiting (not cancelled meanwhile) goes."""
        self.busy -= 1
        waiting = self.waiting
        while waiting:
            request = waiting.popleft()
            if not request.deferred.called:
                self.start(request)
                return

    def connect(self, request: _Request) -> None:
        def connected(connection: _Connection) -> None:
            if request.deferred.called:  # cancelled while connecting
                self.free()
                connection.transport.loseConnection()
            else:
                connection.send(request)

        def failed(failure) -> None:
            request.attempt = None
            self.free()
            if not request.deferred.called:
                request.deferred.errback(failure)

        request.attempt = self.endpoint.connect(self.factory)
        request.attempt.addCallbacks(connected, failed)

    def close(self) -> None:
        while self.idle:
            self.idle.pop().transport.loseConnection()
