"""
The bus's own Redis connections: RESP2 on Twisted, for the two things the
bus does at every message, C{PUBLISH} and receiving on a C{SUBSCRIBE}d
channel. The C{redis} client's asyncio machinery (connection pool, retry,
timeouts, a task per command) costs about 110 µs of CPU per command and
40-60 µs per message received; here a command is one C{transport.write}
and a message one parse of the bytes Twisted hands over. The registry's
scripts and keys stay on the C{redis} client: they run once a heartbeat.

Commands go straight to the socket when Twisted holds nothing unsent for
it (L{wcs.transports.outbox.writeNow}): C{transport.write} would register
the socket for writing and send one loop iteration later, two C{epoll_ctl}
and a wake-up per C{PUBLISH}.

Sans-I/O parser (L{RespReader}) and command encoder (L{command}); one
protocol (L{RespProtocol}) for both uses: replies fire the Deferreds of the
commands in order; a C{message} push of a subscription goes to
C{onMessage}.
"""

from __future__ import annotations

from collections import deque
from urllib.parse import unquote, urlsplit

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import ClientFactory, Protocol

from wcs.transports.outbox import writeNow


class RespError(Exception):
    """An error reply (C{-ERR ...}) of Redis."""


class ProtocolError(ValueError):
    """Bytes that are not RESP2, or a reply over the size allowed."""


def command(*args) -> bytes:
    """One command as RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode("utf-8", "surrogatepass")
        elif isinstance(arg, int):
            arg = b"%d" % arg
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def _integer(line: bytes) -> int:
    # RESP integers and lengths are signed 64-bit: at most 20 characters;
    # int() alone would take "1_000", " 7" or 4 000 digits.
    digits = line[1:] if line[:1] == b"-" else line
    if len(line) > 20 or not digits.isdigit():
        raise ProtocolError(f"not a RESP integer: {line[:24]!r}")
    value = int(line)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ProtocolError(f"a RESP integer past 64 bits: {line[:24]!r}")
    return value


_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class RespReader:
    """
    Replies from bytes as they come: bulk strings as C{bytes}, simple
    strings as C{str}, integers, errors as L{RespError}, arrays as lists,
    nil as None. A bulk string or array longer than C{maxBulk} (or nested
    deeper than 8), a malformed length or integer, or an unknown type byte
    is a L{ProtocolError}: the caller drops the connection. An unfinished
    reply (buffered and already parsed) is at most C{maxBulk} + 64 bytes.
    """

    MAX_DEPTH = 8

    def __init__(self, maxBulk: int = 1 << 20):
        self.maxBulk = maxBulk
        self.buffer = bytearray()
        # The arrays of the reply being read, outermost first: [items, still
        # to come]. Items already read stay parsed here, so bytes that come
        # in small pieces are read once, not again from the reply's start
        # at every piece (quadratic in the number of items).
        self.stack: list[list] = []
        self.held = 0  # bytes of the unfinished reply read into the stack
        self.scanned = 0  # the buffer holds no CRLF before this offset

    def feed(self, data: bytes) -> list:
        self.buffer += data
        buf, stack, replies, pos = self.buffer, self.stack, [], 0
        while True:
            end = buf.find(b"\r\n", max(pos, self.scanned))
            if end < 0:
                self.scanned = max(pos, len(buf) - 1)
                break
            kind, line, start, pos = buf[pos], bytes(buf[pos + 1:end]), pos, end + 2
            if kind == 0x2B:  # +
                value = line.decode("utf-8", "replace")
            elif kind == 0x2D:  # -
                value = RespError(line.decode("utf-8", "replace"))
            elif kind == 0x3A:  # :
                value = _integer(line)
            elif kind in (0x24, 0x2A):  # $ *
                size = _integer(line)
                if size > self.maxBulk or len(stack) > self.MAX_DEPTH:
                    raise ProtocolError(f"a reply of {size} (over {self.maxBulk}) "
                                        "or nested too deep")
                if size < -1:
                    raise ProtocolError(f"a length of {size}")
                if size == -1:
                    value = None
                elif kind == 0x24:
                    if len(buf) < pos + size + 2:
                        pos = start  # the whole bulk string, when it is there
                        self.scanned = start
                        break
                    value, pos = bytes(buf[pos:pos + size]), pos + size + 2
                elif size == 0:
                    value = []
                else:
                    stack.append([[], size])
                    continue
            else:
                raise ProtocolError(f"not RESP2: {bytes(buf[start:end])[:40]!r}")
            while stack:  # the value completes arrays, innermost first
                top = stack[-1]
                top[0].append(value)
                top[1] -= 1
                if top[1]:
                    break
                value = stack.pop()[0]
            else:
                replies.append(value)
                self.held = -pos  # the next reply starts here
        del buf[:pos]
        self.scanned = max(0, self.scanned - pos)
        self.held = self.held + pos if stack else 0
        if self.held + len(buf) > self.maxBulk + 64:
            raise ProtocolError(f"a reply over {self.maxBulk} bytes")
        return replies


class RespProtocol(Protocol):
    """
    One connection to Redis. C{onMessage(data)} gets the payload of each
    C{message} push (a subscribed connection); C{onLost(reason)} is called
    once the connection is gone, after the pending commands failed.
    """

    def __init__(self, maxBulk: int, onMessage=None, onLost=None):
        self.reader = RespReader(maxBulk)
        self.pending: deque[Deferred] = deque()
        self.onMessage = onMessage
        self.onLost = onLost
        self.onConnected = None
        self.connected = False

    def connectionMade(self) -> None:
        self.connected = True
        # Nagle would hold a PUBLISH while the one before is not acknowledged,
        # and with CLIENT REPLY OFF Redis sends nothing the ACK could ride on:
        # its delayed ACK (40 ms on Linux) then became the message's latency.
        # (asyncio, hence the redis client the bus had before, sets it itself.)
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)
        if self.onConnected is not None:
            self.onConnected()

    def send(self, *args) -> Deferred:
        """Write one command; its Deferred fires with the reply."""
        d = Deferred()
        self.pending.append(d)
        writeNow(self.transport, command(*args))
        return d

    def sendMany(self, commands: list[tuple]) -> list[Deferred]:
        """Several commands in one write (a pipeline: one syscall)."""
        ds = [Deferred() for _ in commands]
        self.pending.extend(ds)
        writeNow(self.transport, b"".join(command(*args) for args in commands))
        return ds

    def writeOnly(self, commands: list[tuple]) -> None:
        """Commands whose replies nobody reads (after C{CLIENT REPLY OFF})."""
        writeNow(self.transport, b"".join(command(*args) for args in commands))

    def dataReceived(self, data: bytes) -> None:
        try:
            replies = self.reader.feed(data)
        except ProtocolError as e:
            self.transport.loseConnection()
            self._failPending(e)
            return
        for reply in replies:
            if (self.onMessage is not None and isinstance(reply, list) and len(reply) == 3
                    and reply[0] == b"message"):
                if not isinstance(reply[2], bytes):  # Redis sends a bulk string
                    self.transport.loseConnection()
                    self._failPending(ProtocolError("a message push without its payload"))
                    return
                self.onMessage(reply[2])
            elif self.pending:
                d = self.pending.popleft()
                if isinstance(reply, RespError):
                    d.errback(reply)
                else:
                    d.callback(reply)

    def connectionLost(self, reason) -> None:
        self.connected = False
        self._failPending(ConnectionLost(str(reason.value)))
        if self.onLost is not None:
            self.onLost(reason)

    def _failPending(self, error: Exception) -> None:
        pending, self.pending = self.pending, deque()
        for d in pending:
            d.errback(error)


def parseUrl(url: str):
    """
    The parts of a Redis URL and its database number (a string).

    @raise ValueError: a scheme the bus does not speak (rediss://).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "unix"):
        raise ValueError(f"cluster_redis_url: {parts.scheme}:// is not supported "
                         "(redis:// or unix://)")
    db = parts.path.strip("/") if parts.scheme == "redis" else \
        dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p).get("db", "")
    return parts, db


def connect(reactor, url: str, protocol: RespProtocol, timeout: float = 2.0) -> Deferred:
    """
    Connect C{protocol} to the Redis of C{url} (C{redis://[:password@]host
    [:port][/db]} or C{unix://path[?db=N]}), authenticate and select the
    database; fires with the protocol, ready for commands.
    """
    parts, db = parseUrl(url)
    ready = Deferred()

    class Factory(ClientFactory):
        def buildProtocol(self, addr):
            return protocol

        def clientConnectionFailed(self, connector, reason):
            ready.errback(reason)

    def made() -> None:
        setup = []
        if parts.password is not None:
            user = unquote(parts.username) if parts.username else None
            setup.append(("AUTH", user, unquote(parts.password)) if user
                         else ("AUTH", unquote(parts.password)))
        if db not in ("", "0"):
            setup.append(("SELECT", db))
        ds = protocol.sendMany(setup) if setup else []
        done = Deferred()
        if not ds:
            done.callback(None)
        else:
            ds[-1].chainDeferred(done)
            for d in ds[:-1]:
                d.addErrback(lambda f: None)  # the last one's failure tells
        done.addCallback(lambda _: protocol)
        done.addErrback(refused)
        done.chainDeferred(ready)

    def refused(failure):
        protocol.transport.loseConnection()
        return failure

    protocol.onConnected = made
    if parts.scheme == "unix":
        reactor.connectUNIX(parts.path, Factory(), timeout=timeout)
    else:
        reactor.connectTCP(parts.hostname or "127.0.0.1", parts.port or 6379, Factory(),
                           timeout=timeout)
    return ready
