"""
An RTMP connection's commands kept in order while an access check is out.

The access policy answers with a Deferred: without a REST hook it has fired
already and the continuation runs at once, as the command's handler always
did; with one, the connection's later commands wait here and are handled,
in order, once the continuation ran. Media is not kept: nothing publishes
before its check is answered (C{NetStream.Publish.Start}), so a client's
media before that is dropped, and at most L{HELD_MAX} commands are kept
(more close the connection).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from twisted.internet import defer
from twisted.python.failure import Failure

from wcs.errors import WcsError
from wcs.logs import Logger
from wcs.rtmp.connection import Media

HELD_MAX = 64

log = Logger()


class Waiting:
    """
    @param handle: handles one event (a command, data or media).
    @param close: closes the connection with a reason.
    @param closed: whether the connection is closed.
    """

    def __init__(self, handle: Callable[[Any], None], close: Callable[[str], None],
                 closed: Callable[[], bool], flush: Callable[[], None]):
        self.handle = handle
        self.close = close
        self.closed = closed
        self.flush = flush
        self.held: deque | None = None

    @property
    def waiting(self) -> bool:
        return self.held is not None

    def receive(self, event) -> None:
        """An event from the client: handled now, or kept while a check is out."""
        if self.held is None:
            self.handle(event)
        elif isinstance(event, Media):
            pass
        elif len(self.held) >= HELD_MAX:
            self.close(f"more than {HELD_MAX} commands sent while an access check was pending")
        else:
            self.held.append(event)

    def after(self, decision: defer.Deferred, then: Callable[[Any], None],
              refused: Callable[[str], None]) -> None:
        """
        C{then(result)} when C{decision} allows, C{refused(info)} when it
        fails with a L{WcsError}; later events wait until then.
        """
        state = {"sync": True, "ran": False}

        def run(result):
            state["ran"] = True
            held = None
            if not state["sync"]:
                held, self.held = self.held, None
            try:
                if self.closed():
                    return
                if not isinstance(result, Failure):
                    then(result)
                elif result.check(WcsError):
                    refused(result.value.info)
                else:
                    log.failure("access check failed", result)
                    self.close("access check failed")
            finally:
                if held is not None:
                    self._release(held)

        decision.addBoth(run).addErrback(
            lambda f: log.failure("access continuation failed", f))
        state["sync"] = False
        if not state["ran"]:
            self.held = deque()

    def _release(self, held: deque) -> None:
        while held and not self.closed():
            if self.held is not None:
                # A released command started another check: the rest waits
                # for that one, ahead of anything newer.
                self.held.extend(held)
                return
            self.handle(held.popleft())
        self.flush()
