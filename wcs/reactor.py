"""
Twisted's asyncio reactor with a lighter read: the reactor C{twistd wcs}
installs (L{wcs.tap}).

C{AsyncioSelectorReactor} hands asyncio, for every reader, a call through
C{twisted.python.log.callWithLogger}, which sets the legacy log's C{system}
context around each C{doRead}: two more Python calls, a context dictionary
copied, pushed and popped, per read. A chat room of 10 is one read per
burst of 9 messages, 50 bursts a second, each on cold caches: see
docs/performance.md, "Chat, sixth pass". Here asyncio calls the reactor's
C{_readOrWrite} directly, which already catches and logs what C{doRead}
raises. What is lost: the legacy C{system} field of the old-style log
lines emitted inside a read (wcs logs with L{twisted.logger}, which names
its namespace instead). Writers keep Twisted's own registration: they are
rare (L{wcs.transports.outbox} writes straight to the socket).
"""

from __future__ import annotations

import errno

from twisted.internet.asyncioreactor import AsyncioSelectorReactor


class Reactor(AsyncioSelectorReactor):
    def addReader(self, reader) -> None:
        # AsyncioSelectorReactor.addReader, without callWithLogger.
        if reader in self._readers or reader in self._continuousPolling._readers:
            return
        fd = reader.fileno()
        try:
            self._asyncioEventloop.add_reader(fd, self._readOrWrite, reader, True)
            self._readers[reader] = fd
        except OSError as e:
            self._unregisterFDInAsyncio(fd)
            if e.errno != errno.EPERM:
                raise
            # epoll(7) refuses regular files: those are polled.
            self._continuousPolling.addReader(reader)


def install() -> Reactor:
    from twisted.internet.main import installReactor

    reactor = Reactor()
    installReactor(reactor)
    return reactor
