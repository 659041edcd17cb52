"""
Deadlines of a new RTMP connection. Before a session exists its keep-alive
cannot time the connection out: each step (the handshake, then connect)
has its own deadline.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class StepDeadline:
    """
    Calls C{expired(reason)} when a step is not taken in C{timeout} seconds
    (0: no deadline). L{expect} names the step awaited now; a new step gets
    the whole timeout again, and None (all steps taken) ends the watch.
    """

    def __init__(self, clock: IReactorTime, timeout: float, expired: Callable[[str], None]):
        self.clock = clock
        self.timeout = timeout
        self.expired = expired
        self.step: str | None = None
        self.call: IDelayedCall | None = None

    def expect(self, step: str | None) -> None:
        if step == self.step:
            return
        self.cancel()
        self.step = step
        if step is not None and self.timeout > 0:
            self.call = self.clock.callLater(
                self.timeout, self.expired, f"no RTMP {step} within {self.timeout:g} s")

    def cancel(self) -> None:
        if self.call is not None and self.call.active():
            self.call.cancel()
        self.call = None
