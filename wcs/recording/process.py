"""
Child processes of the recorder (the room mix's ffmpeg, the hook script),
bounded in time and in number.

A child that overruns its time gets SIGTERM, then SIGKILL a grace period
later (ffmpeg busy in a filter may not act on SIGTERM), sent to its whole
process group: a hook script's own children (a C{sleep}, an upload) die
with it, and none is left holding our pipes open.
"""

from __future__ import annotations

import os
import shutil
import signal
from dataclasses import dataclass

from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.protocol import ProcessProtocol

from wcs.logs import Logger

log = Logger()

KILL_GRACE = 5.0  # s from SIGTERM to SIGKILL
OUTPUT_KEEP = 16 * 1024  # bytes of a child's stdout/stderr kept (the end)


@dataclass
class Outcome:
    """How a child ended: exit C{code} (None when a signal ended it)."""

    out: bytes
    err: bytes
    code: int | None
    signal: int | None
    seconds: float
    timedOut: bool


def killGroup(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass


class Watchdog:
    """
    Ends C{what} (process group C{pid}) when it runs longer than C{timeout}
    seconds on C{clock}: SIGTERM, then SIGKILL after C{grace}. L{ended} is
    called when the child is gone; it says (in the log) what was killed.

    @param kill: C{kill(pid, signum)}, L{killGroup} for real children.
    """

    def __init__(self, what: str, pid: int, clock, timeout: float,
                 grace: float = KILL_GRACE, kill=killGroup):
        self.what, self.pid, self.clock = what, pid, clock
        self.timeout, self.grace, self.kill = timeout, grace, kill
        self.started = clock.seconds()
        self.signals: list[int] = []
        self._timer = clock.callLater(timeout, self._terminate) if timeout > 0 else None

    @property
    def timedOut(self) -> bool:
        return bool(self.signals)

    def _terminate(self) -> None:
        log.warn("{what} (pid {pid}) still running after {timeout}s: SIGTERM",
                 what=self.what, pid=self.pid, timeout=self.timeout)
        self._send(signal.SIGTERM)
        self._timer = self.clock.callLater(self.grace, self._forceKill)

    def _forceKill(self) -> None:
        log.warn("{what} (pid {pid}) ignored SIGTERM for {grace}s: SIGKILL",
                 what=self.what, pid=self.pid, grace=self.grace)
        self._timer = None
        self._send(signal.SIGKILL)

    def _send(self, signum: int) -> None:
        self.signals.append(signum)
        self.kill(self.pid, signum)

    def ended(self) -> float:
        """The child is gone: no more signals. Returns how long it ran."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        seconds = self.clock.seconds() - self.started
        if self.signals:
            log.warn("{what} (pid {pid}) killed after running {seconds:.1f}s "
                     "(limit {timeout}s, {signal})", what=self.what, pid=self.pid,
                     seconds=seconds, timeout=self.timeout,
                     signal=signal.Signals(self.signals[-1]).name)
        return seconds


class _Collect(ProcessProtocol):
    """Keeps the end of a child's output; fires C{done} with its exit status."""

    def __init__(self):
        self.out = bytearray()
        self.err = bytearray()
        self.done: Deferred = Deferred()

    @staticmethod
    def _keep(buffer: bytearray, data: bytes) -> None:
        buffer += data
        del buffer[:-OUTPUT_KEEP]

    def outReceived(self, data: bytes) -> None:
        self._keep(self.out, data)

    def errReceived(self, data: bytes) -> None:
        self._keep(self.err, data)

    def processEnded(self, reason) -> None:
        self.done.callback(reason.value)


def _wrapper(nice: bool) -> list[str]:
    """setsid: the child leads its own process group; nice: live rooms come first."""
    prefix = []
    if shutil.which("setsid"):
        prefix.append(shutil.which("setsid"))
    if nice and shutil.which("nice"):
        prefix += [shutil.which("nice"), "-n", "10"]
    return prefix


def run(what: str, executable: str, args: list[str], *, timeout: float, clock,
        reactor=None, grace: float = KILL_GRACE, nice: bool = False) -> Deferred:
    """
    Run C{executable args} in its own process group, killed after
    C{timeout} seconds (0: never). Fires with an L{Outcome}.
    """
    if reactor is None:
        from twisted.internet import reactor
    command = _wrapper(nice) + [executable, *args]
    protocol = _Collect()
    transport = reactor.spawnProcess(protocol, command[0], command, env=os.environ)
    # Without setsid the child shares our group: signal it alone then.
    kill = killGroup if command[0] != executable else os.kill
    watchdog = Watchdog(what, transport.pid, clock, timeout, grace, kill)

    def ended(status) -> Outcome:
        seconds = watchdog.ended()
        return Outcome(bytes(protocol.out), bytes(protocol.err), status.exitCode,
                       status.signal, seconds, watchdog.timedOut)

    return protocol.done.addCallback(ended)


class JobQueue:
    """
    At most C{maxRunning} jobs at once and C{maxWaiting} waiting for a turn;
    a job past that is refused (L{submit} returns None) rather than queued
    for ever.
    """

    def __init__(self, maxRunning: int, maxWaiting: int):
        self.maxWaiting = maxWaiting
        self._semaphore = DeferredSemaphore(max(1, maxRunning))

    @property
    def running(self) -> int:
        return self._semaphore.limit - self._semaphore.tokens

    @property
    def waiting(self) -> int:
        return len(self._semaphore.waiting)

    def submit(self, job, *args) -> Deferred | None:
        """C{job(*args)} (returning a Deferred) when a slot is free; None if refused."""
        if self._semaphore.tokens == 0 and self.waiting >= self.maxWaiting:
            return None
        return self._semaphore.run(job, *args)
