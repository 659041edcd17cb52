"""
Keeping one session's messages in order while an access check is out.

A decision that has already fired (no REST hook) runs its continuation at
once, so a handler still completes synchronously. One that has not makes the
gate hold the client's later messages, which are handled, in order, after
the continuation ran. At most C{limit} messages are held; more close the
connection, as a client that floods while it waits deserves.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from twisted.internet import defer
from twisted.python.failure import Failure

from wcs.logs import Logger

HELD_MAX = 64


class Gate:
    log = Logger()

    def __init__(self, deliver: Callable[[str, list[Any]], None],
                 overflow: Callable[[str], None], limit: int = HELD_MAX):
        self.deliver = deliver
        self.overflow = overflow
        self.limit = limit
        self.held: deque | None = None

    @property
    def waiting(self) -> bool:
        return self.held is not None

    def hold(self, name: str, args: list[Any]) -> None:
        if len(self.held) >= self.limit:
            self.overflow(f"more than {self.limit} messages sent while an access "
                          "check was pending")
            return
        self.held.append((name, args))

    def after(self, decision: defer.Deferred, then: Callable[[Any], None]) -> None:
        """Run C{then(result)} when C{decision} fires; hold messages until then."""
        if decision.called and not decision.paused:
            # Already decided (every check but a REST hook): no callback
            # chain, which cost about a tenth of a chat message's handling.
            # (Called and not paused: its callbacks have run, and its result
            # is not a Deferred.)
            result = decision.result
            if result.__class__ is not Failure:
                try:
                    then(result)
                except Exception:
                    self.log.failure("access decision continuation failed")
                return
        # Not decision.called: a Deferred fired but paused on an inner one
        # (the HTTP pool's cached connection) is called and still waiting.
        state = {"sync": True, "ran": False}

        def run(result):
            state["ran"] = True
            if state["sync"]:
                then(result)
                return
            held, self.held = self.held, None
            try:
                then(result)
            finally:
                self._release(held)

        decision.addCallback(run).addErrback(
            lambda f: self.log.failure("access decision continuation failed", f))
        state["sync"] = False
        if not state["ran"]:
            self.held = deque()

    def _release(self, held: deque) -> None:
        while held:
            if self.held is not None:
                # A released message started another check: the rest waits
                # for that one, ahead of anything newer.
                self.held.extend(held)
                return
            self.deliver(*held.popleft())
