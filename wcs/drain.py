"""
Graceful drain, for rolling upgrades (docs/operations.md).

Draining refuses new connections and new rooms, lets the running rooms go
on until they end or C{drain_timeout} passes, then ends the rest as a leave
would, closes the remaining connections, waits (at most
C{drain_finish_timeout}) for every recording, mix, hook and webhook to
finish, and stops the reactor: C{twistd} exits 0. SIGTERM starts a drain;
a second SIGTERM stops at once (recordings are still finished, by the
shutdown service).
"""

from __future__ import annotations

import signal

from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks

from wcs.config import Key, declare
from wcs.logs import Logger, clip

log = Logger()

declare(
    Key("drain_timeout", "int", 300,
        "s a drain lets running rooms go on before it ends them; 0: end them at once"),
    Key("drain_finish_timeout", "int", 600,
        "s a drain then waits for recordings, mixes, hooks and webhooks to finish"),
)

ROOM_ENDED = "Room ended: the server is shutting down (drain_timeout)"
REFUSAL = "Server is draining for maintenance: no new connections or rooms, try again later"


class Drainer:
    """
    @param stop: called once everything is finished (C{reactor.stop}).
    @param waitFor: callables returning a Deferred that fires when some
        background work is done (the recorder's, the webhooks').
    """

    def __init__(self, server, clock, stop, timeout: float, finishTimeout: float):
        self.server = server
        self.clock = clock
        self.stop = stop
        self.timeout = timeout
        self.finishTimeout = finishTimeout
        self.waitFor: list = []
        self.draining = False
        self.finishing = False
        self.stopped = False
        self.deadline = None

    def drain(self, why: str = "") -> bool:
        """Start draining; False when a drain already runs."""
        if self.draining:
            return False
        self.draining = True
        self.server.draining = REFUSAL
        self.server.rooms.refusal = REFUSAL
        rooms = len(self.server.rooms.rooms)
        log.info("draining ({why}): {rooms} rooms run on for at most {timeout}s",
                 why=why, rooms=rooms, timeout=self.timeout)
        self.server.rooms.observers.append(self)
        self.deadline = self.clock.callLater(self.timeout, self.endRooms)
        self._check()
        return True

    def restDrain(self, body: dict) -> dict:
        """C{POST /rest-api/server/drain} (the REST API's hook)."""
        started = self.drain("REST request")
        return {"draining": True, "started": started,
                "rooms": len(self.server.rooms.rooms), "timeout": self.timeout}

    def stopNow(self) -> None:
        """Stop without waiting for the rooms (the second SIGTERM)."""
        log.info("stopping at once: recordings are finished, mixes are not waited for")
        self._stop()

    # Rooms.observers

    def roomStarted(self, room) -> None:
        pass

    def roomEnded(self, room) -> None:
        # After the other observers (the recorder starts the room's mix).
        self.clock.callLater(0, self._check)

    # Internals

    def endRooms(self) -> None:
        self.deadline = None
        if self.server.rooms.rooms:
            log.info("drain_timeout: ending {rooms} rooms", rooms=len(self.server.rooms.rooms))
        from wcs.admin import Admin

        admin = Admin(self.server)
        for name in list(self.server.rooms.rooms):
            log.info("drain: ending room {room}", room=clip(name))
            # As the REST API's room/terminate: each participant leaves.
            admin.endRoom(name, ROOM_ENDED)
        self._check()

    def _check(self) -> None:
        if self.draining and not self.finishing and not self.server.rooms.rooms:
            self.finishing = True
            if self.deadline is not None and self.deadline.active():
                self.deadline.cancel()
            self._finish()

    @inlineCallbacks
    def _finish(self):
        self.server.closeAll("server drained")
        log.info("drain: rooms ended; finishing recordings, mixes, hooks and webhooks "
                 "(at most {timeout}s)", timeout=self.finishTimeout)
        # Each waits in turn: a mix makes a webhook event.
        timeout = self.finishTimeout
        started = self.clock.seconds()
        for wait in self.waitFor:
            left = timeout - (self.clock.seconds() - started)
            if left <= 0:
                break
            d = wait()
            if d is None:
                continue
            bounded = Deferred()
            timer = self.clock.callLater(left, lambda: bounded.called or bounded.callback(None))
            d.addBoth(lambda _: bounded.called or bounded.callback(None))
            yield bounded
            if timer.active():
                timer.cancel()
        if self.clock.seconds() - started >= timeout:
            log.warn("drain: gave up waiting after {timeout}s", timeout=timeout)
        log.info("drain: done, stopping")
        self._stop()

    def _stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.stop()


def recorderWork(recorder):
    """A Deferred that fires when the recorder's remuxes and mixes are done."""
    def wait():
        pending = list(recorder.finishing) + list(recorder.mixing)
        return DeferredList(pending, consumeErrors=True) if pending else None
    return wait


def installSignals(drainer, reactor) -> None:
    """
    SIGTERM drains, a second SIGTERM stops at once. Installed once the
    reactor runs, over twistd's own handler (which stops at once).
    """
    received = []

    def onTerm(signum, frame):
        # Counted here, not from the drainer's state: two signals may both
        # arrive before the reactor runs the first one's call.
        received.append(signum)
        if len(received) > 1:
            reactor.callFromThread(drainer.stopNow)
        else:
            reactor.callFromThread(drainer.drain, "SIGTERM")

    signal.signal(signal.SIGTERM, onTerm)
