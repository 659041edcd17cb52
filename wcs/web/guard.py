"""
Limits of the web server, which mostly serves GETs: no request bodies
(Twisted would spool any size to a temporary file) except under the paths of
drop-ins that take them (WHIP/WHEP offers), bounded there and sent with a
Content-Length; bounded request lines and headers, and connections per
address.

A refused request gets a short plain-text answer and C{Connection: close};
the server then closes its side and reads on only to let the answer arrive
(a close with unread data would reset the connection and lose it), a little
and briefly.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.web.http import HTTPChannel, datetimeToLogString
from twisted.web.server import Site

from wcs.config import Key, declare
from wcs.transports.peers import DROP, REFUSE, PeerConnections

declare(
    Key("http_max_connections_per_address", "int", 32,
        "HTTP(S) connections from one address at once; beyond, 503; 0: no limit"),
    Key("http_max_connections", "int", 2000, "HTTP(S) connections at once; 0: no limit"),
    Key("http_max_request_line", "int", 8192,
        "bytes of an HTTP request line (method, path, version); beyond, 414"),
    Key("http_max_header_size", "int", 16384,
        "bytes of an HTTP request's header lines together; beyond, 431"),
    Key("http_max_headers", "int", 64, "header lines of an HTTP request; beyond, 431"),
)

# After a refusal: what is read (and dropped) at most, and for how long.
LINGER_BYTES = 256 * 1024
LINGER_SECONDS = 2.0


@dataclass(frozen=True)
class HTTPLimits:
    requestLine: int
    headerSize: int
    headers: int


class GuardedChannel(HTTPChannel):
    host = None  # the peer's address while it counts against the caps
    refused = False
    _inHead = False
    _headBytes = 0
    _headCount = 0
    _lingerCall = None

    def connectionMade(self) -> None:
        super().connectionMade()
        limits: HTTPLimits = self.site.limits
        # Ours answer first; Twisted's own checks (a bare 400) stay behind them.
        self.MAX_LENGTH = limits.requestLine
        self.totalHeadersSize = limits.requestLine + limits.headerSize + 1
        self.maxHeaders = limits.headers + 1
        self.host = self.transport.getPeer().host
        verdict, reason = self.site.peers.connect(self.host)
        if verdict == DROP:
            self._badInput("flood", f"closed at once: {reason}")
            self.transport.abortConnection()
        elif verdict == REFUSE:
            self.refuse(503, b"Service Unavailable", reason, "connections")

    def connectionLost(self, reason) -> None:
        if self.host is not None:
            self.site.peers.disconnect(self.host)
            self.host = None
        if self._lingerCall is not None and self._lingerCall.active():
            self._lingerCall.cancel()
        super().connectionLost(reason)

    # Parsing, in front of HTTPChannel's

    def dataReceived(self, data: bytes) -> None:
        if self.refused:
            self._discard(data)
        else:
            super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if self.refused:
            return
        limits: HTTPLimits = self.site.limits
        if not self._inHead:
            if line:  # a request line (an empty line before one is tolerated)
                self._inHead, self._headBytes, self._headCount = True, 0, 0
                self.MAX_LENGTH = limits.headerSize
        elif not line:
            self._inHead = False
            self.MAX_LENGTH = limits.requestLine
        else:
            self._headBytes += len(line)
            self._headCount += 1
            if self._headBytes > limits.headerSize or self._headCount > limits.headers:
                self._headersTooLarge()
                return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        if self._inHead:
            self._headersTooLarge()
        else:
            self.refuse(414, b"URI Too Long", "request line longer than "
                        f"{self.site.limits.requestLine} bytes", "request line")

    def _headersTooLarge(self) -> None:
        limits = self.site.limits
        self.refuse(431, b"Request Header Fields Too Large",
                    f"request headers over {limits.headerSize} bytes or "
                    f"{limits.headers} lines", "headers")

    def allHeadersReceived(self) -> None:
        # length is None for a chunked body, a number for Content-Length.
        if self.length != 0:
            limit = self.site.bodyLimit(self._path)
            if not limit:
                self.refuse(413, b"Content Too Large",
                            "this server takes no request bodies", "body")
                return
            if self.length is None:
                self.refuse(411, b"Length Required",
                            "a request body needs a Content-Length", "body")
                return
            if self.length > limit:
                self.refuse(413, b"Content Too Large",
                            f"request body over {limit} bytes", "body")
                return
        super().allHeadersReceived()

    def rawDataReceived(self, data: bytes) -> None:
        if self.refused:
            self._discard(data)
        else:
            super().rawDataReceived(data)

    # Refusing

    def refuse(self, code: int, phrase: bytes, reason: str, kind: str) -> None:
        """Answer C{code} with C{reason}, close, and read nothing more of it."""
        if self.refused:
            return
        self.refused = True
        self._badInput(kind, f"HTTP {code}: {reason}")
        contentType, body = self.refusalBody(code, reason)
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (code, phrase, contentType, len(body), body))
        self.setTimeout(None)
        self._lingerBytes = LINGER_BYTES
        self._lingerCall = self.callLater(LINGER_SECONDS, self.transport.abortConnection)
        halfClose = getattr(self.transport, "loseWriteConnection", None)
        if halfClose is not None:
            halfClose()
        else:
            self.transport.loseConnection()

    def refusalBody(self, code: int, reason: str) -> tuple[bytes, bytes]:
        """Hook: the content type and body of a refusal."""
        return b"text/plain; charset=utf-8", reason.encode("utf-8") + b"\n"

    def _discard(self, data: bytes) -> None:
        self._lingerBytes -= len(data)
        if self._lingerBytes < 0:
            self.transport.abortConnection()

    def _badInput(self, kind: str, text: str) -> None:
        self.site.badInputLog.warn((self.host, kind), "{peer}: {text}",
                                   peer=f"http:{self.host}", text=text)


class GuardedSite(Site):
    protocol = GuardedChannel

    def __init__(self, resource, settings, badInputLog, bodyLimits=None):
        super().__init__(resource)
        # First path segment -> bytes of request body taken there (drop-ins').
        self.bodyLimits: dict[bytes, int] = dict(bodyLimits or {})
        self.limits = HTTPLimits(settings.http_max_request_line,
                                 settings.http_max_header_size, settings.http_max_headers)
        self.peers = PeerConnections(settings.http_max_connections_per_address,
                                     settings.http_max_connections)
        self.badInputLog = badInputLog

    # Twisted refreshes the access log's date string with a timer every
    # second: a wake-up of an otherwise idle server for a string that only
    # log() reads. Made there instead, once per logged request.
    def _updateLogDateTime(self) -> None:
        self._logDateTime = datetimeToLogString(self.reactor.seconds())

    def log(self, request) -> None:
        self._updateLogDateTime()
        super().log(request)

    def bodyLimit(self, path: bytes) -> int:
        """Bytes of request body taken at C{path} (the request line's); 0: none."""
        if not self.bodyLimits:
            return 0
        segment = path.partition(b"?")[0].lstrip(b"/").partition(b"/")[0]
        return self.bodyLimits.get(segment, 0)
