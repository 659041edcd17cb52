"""
The hook client's connections to a real backend: HTTPS with a self-signed
certificate (twisted.web over TLS, trusted with C{rest_hook_ca}, refused
without it), and a backend that closes its kept-alive connections as idle
just as the next request arrives (a request then goes once more on a new
connection instead of being denied as unreachable).
"""

import pytest
from twisted.internet import protocol, ssl
from twisted.internet.threads import blockingCallFromThread
from twisted.web import server as web

from tests.access.backend import TIMEOUT_MS, startBackend
from tests.access.support import connect, refusedAndClosed
from tests.support.server import freePort, startServer
from wcs import tls
from wcs.config import Settings


def _listen(factory, contextFactory=None) -> int:
    """Listen on the backend's reactor (its own thread); the port."""
    from twisted.internet import reactor

    port = freePort()
    if contextFactory is None:
        blockingCallFromThread(reactor, reactor.listenTCP, port, factory,
                               interface="127.0.0.1")
    else:
        blockingCallFromThread(reactor, reactor.listenSSL, port, factory, contextFactory,
                               interface="127.0.0.1")
    return port


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for localhost and 127.0.0.1, as wcs.tls makes one."""
    return tls.certificatePaths(Settings({"state_dir": str(tmp_path_factory.mktemp("ca"))}))


@pytest.fixture(scope="module")
def httpsPort(certificate):
    hook, _ = startBackend()
    certPath, keyPath = certificate
    context = ssl.DefaultOpenSSLContextFactory(str(keyPath), str(certPath))
    return hook, _listen(web.Site(hook), context)


def _server(tmp_path_factory, name, **settings):
    return startServer(tmp_path_factory.mktemp(name), settings=dict(
        rest_hook_timeout=str(TIMEOUT_MS), **settings))


@pytest.fixture(scope="module")
def httpsServer(tmp_path_factory, httpsPort, certificate):
    _, port = httpsPort
    running = _server(tmp_path_factory, "https", rest_hook_ca=str(certificate[0]),
                      rest_hook_url=f"https://127.0.0.1:{port}/hook")
    yield running
    running.stop()


async def test_https_backend_trusted_by_rest_hook_ca(httpsServer, httpsPort):
    hook, _ = httpsPort
    for login in ("alice-tls", "bob-tls"):  # the second on the kept-alive connection
        client, frame = await connect(httpsServer.wsURL, login)
        assert frame["message"] == "getUserData", frame
        await client.close()
    assert len(hook.callsOf("connect", "alice-tls")) == 1
    assert len(hook.callsOf("connect", "bob-tls")) == 1
    client, frame = await connect(httpsServer.wsURL, "deny-tls")
    await refusedAndClosed(client, frame, "deny-tls is not welcome")


async def test_https_backend_not_trusted_without_its_certificate(tmp_path_factory, httpsPort):
    hook, port = httpsPort
    running = _server(tmp_path_factory, "untrusted",
                      rest_hook_url=f"https://127.0.0.1:{port}/hook")
    try:
        client, frame = await connect(running.wsURL, "carol-tls")
        await refusedAndClosed(client, frame, "the application backend is unreachable")
        assert hook.callsOf("connect", "carol-tls") == []
    finally:
        running.stop()


class ClosingWhenIdle(protocol.Protocol):
    """
    Answers the first request of each connection 200, kept alive; closes
    the connection, unanswered, when a second request comes: as a backend
    whose keep-alive timeout expires just as the request arrives.
    """

    def connectionMade(self):
        self.buffer = b""
        self.answered = 0

    def dataReceived(self, data):
        self.buffer += data
        head, sep, rest = self.buffer.partition(b"\r\n\r\n")
        if not sep:
            return
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        if len(rest) < length:
            return
        self.buffer = rest[length:]
        self.factory.requests.append(rest[:length])
        if self.answered:
            self.transport.loseConnection()
            return
        self.answered += 1
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")


@pytest.fixture(scope="module")
def closingServer(tmp_path_factory):
    startBackend()  # its reactor thread
    factory = protocol.Factory.forProtocol(ClosingWhenIdle)
    factory.requests = []
    port = _listen(factory)
    running = _server(tmp_path_factory, "closing",
                      rest_hook_url=f"http://127.0.0.1:{port}/hook")
    yield running, factory
    running.stop()


async def test_a_request_on_a_connection_closed_as_idle_goes_again_on_a_new_one(closingServer):
    running, factory = closingServer
    for index in range(4):
        login = f"dave{index}"
        client, frame = await connect(running.wsURL, login)
        assert frame["message"] == "getUserData", (login, frame)
        await client.close()
    # Each connection after the first: sent on the kept one (closed, unanswered),
    # then again on a new one.
    logins = [r for r in factory.requests if b'"dave' in r]
    assert len(logins) == 1 + 2 * 3, logins
