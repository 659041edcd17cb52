"""wcs.reactor: Twisted's asyncio reactor, its readers called without callWithLogger."""

import asyncio
import socket

from twisted.python.failure import Failure

from wcs.reactor import Reactor


class Reader:
    def __init__(self, sock, fail=False):
        self.sock, self.fail = sock, fail
        self.read, self.lost = [], []

    def fileno(self):
        return self.sock.fileno()

    def doRead(self):
        if self.fail:
            raise ValueError("a bug in a protocol")
        self.read.append(self.sock.recv(100))

    def connectionLost(self, reason):
        self.lost.append(reason)

    def logPrefix(self):
        return "Reader"


def _turns(loop, reader, wanted):
    for _ in range(100):  # bounded: 100 turns of at most 10 ms
        if wanted(reader):
            return
        loop.run_until_complete(asyncio.sleep(0.01))


def test_a_reader_is_called_by_the_reactor_directly(caplog):
    loop = asyncio.new_event_loop()
    reactor = Reactor(loop)
    a, b = socket.socketpair()
    try:
        ok, failing = Reader(a), Reader(b, fail=True)
        reactor.addReader(ok)
        reactor.addReader(ok)  # twice: registered once
        reactor.addReader(failing)
        handle = loop._selector.get_key(a.fileno()).data[0]
        assert handle._callback == reactor._readOrWrite and handle._args == (ok, True)
        b.send(b"hello")
        a.send(b"boom")
        _turns(loop, ok, lambda r: r.read)
        _turns(loop, failing, lambda r: r.lost)
        assert ok.read == [b"hello"] and not ok.lost
        # What doRead raises still drops that reader alone, as Twisted's does.
        assert isinstance(failing.lost[0], Failure)
        assert failing not in reactor.getReaders() and ok in reactor.getReaders()
        reactor.removeReader(ok)
        assert ok not in reactor.getReaders()
    finally:
        a.close()
        b.close()
        loop.close()
