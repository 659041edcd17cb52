"""
Where the server's memory grows: an operator's tool for a long run.

An hour of media shows the process's RSS settling (+8 MB in 20 minutes)
and then still rising a little (about 1 MB an hour). Whether that is a
structure that grows without bound or the allocator settling, RSS does
not say. With C{debug_memory_file} set, L{MemoryWatch} traces Python's
allocations (C{tracemalloc}, which costs CPU on every allocation: a
diagnostic, off by default), takes a snapshot after
C{debug_memory_interval} seconds as the baseline, and at every interval
after appends to the file the RSS and the allocation sites that grew
most since that baseline, with the code that made them. Memory that C
libraries allocate themselves (OpenSSL, libsrtp, the codecs) is not
traced: it shows as RSS growth that no site accounts for.
"""

from __future__ import annotations

import linecache
import time
import tracemalloc

from twisted.application.service import Service
from twisted.internet import threads

from wcs.config import Key, declare
from wcs.logs import Logger

declare(
    Key("debug_memory_file", "str", "",
        "trace Python's allocations (costs CPU) and append to this file, every "
        "debug_memory_interval, the RSS and the sites that grew most since the first "
        "interval; empty: off"),
    Key("debug_memory_interval", "int", 600,
        "seconds between two reports of debug_memory_file; the first one is the baseline"),
)

log = Logger()
FRAMES = 6  # of each allocation's traceback: enough to name its owner
TOP = 20
# Not the server's: tracemalloc's own, this module's reports (their source
# lines cached by linecache) and the import machinery.
IGNORED = (tracemalloc.Filter(False, tracemalloc.__file__),
           tracemalloc.Filter(False, linecache.__file__),
           tracemalloc.Filter(False, __file__, all_frames=True),
           tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"))


def residentKiB(status: str) -> int | None:
    """
    VmRSS of a /proc C{status} file, in KiB; None for a process that has
    none (a zombie). OSError when the file cannot be read.
    """
    with open(status) as lines:
        for line in lines:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def rssKiB(status: str = "/proc/self/status") -> int | None:
    """The process's resident set (VmRSS), or None where /proc has none."""
    try:
        return residentKiB(status)
    except OSError:
        return None


def growth(baseline: tracemalloc.Snapshot, now: tracemalloc.Snapshot,
           top: int = TOP) -> list[str]:
    """The C{top} allocation sites that grew since C{baseline}, largest first, as text."""
    lines = []
    grown = [d for d in now.compare_to(baseline, "traceback") if d.size_diff > 0]
    for difference in grown[:top]:
        lines.append(f"+{difference.size_diff / 1024:.1f} KiB "
                     f"(+{difference.count_diff} blocks, now {difference.size / 1024:.1f} KiB "
                     f"in {difference.count}):")
        # The site first, then who called it.
        lines.extend("    " + line.strip()
                     for line in difference.traceback.format(most_recent_first=True)
                     if line.strip().startswith("File"))
    return lines


class MemoryWatch(Service):
    """
    Reports to C{path} every C{interval} seconds on C{clock} while running.
    The snapshot is taken on the reactor thread (in C: tens of ms); its
    filtering and comparing take seconds of Python for tens of thousands of
    blocks, so they run in C{offThread} (a thread: the reactor keeps its
    share of the interpreter; a stall of a second made every player of
    the lab's `mobile` links look narrow).
    """

    def __init__(self, clock, path: str, interval: float, offThread=threads.deferToThread):
        self.clock = clock
        self.path = path
        self.interval = max(interval, 1.0)
        self.offThread = offThread
        self.baseline: tracemalloc.Snapshot | None = None
        self.started = 0.0
        self.call = None
        self.tracing = False  # started by us, so stopped by us

    def startService(self) -> None:
        super().startService()
        if not tracemalloc.is_tracing():
            tracemalloc.start(FRAMES)
            self.tracing = True
        self.started = self.clock.seconds()
        log.warn("debug_memory_file: tracing Python's allocations into {path} every {s} s "
                 "(slower: a diagnostic)", path=self.path, s=self.interval)
        self._next()

    def stopService(self):
        super().stopService()
        call, self.call = self.call, None
        if call is not None:
            call.cancel()
        if self.tracing:
            self.tracing = False
            tracemalloc.stop()

    def _next(self, _=None) -> None:
        if self.running:
            self.call = self.clock.callLater(self.interval, self._report)

    def _report(self) -> None:
        self.call = None
        if not tracemalloc.is_tracing():
            return
        snapshot = tracemalloc.take_snapshot()
        current, peak = tracemalloc.get_traced_memory()
        elapsed = self.clock.seconds() - self.started
        head = (f"== {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} after {elapsed:.0f} s: "
                f"RSS {rssKiB()} KiB, traced {current // 1024} KiB (peak {peak // 1024} KiB)")
        done = self.offThread(self._write, snapshot, head)
        done.addErrback(lambda failure: log.failure("debug_memory_file {path}", failure,
                                                    path=self.path))
        done.addBoth(self._next)

    def _write(self, snapshot: tracemalloc.Snapshot, head: str) -> None:
        snapshot = snapshot.filter_traces(IGNORED)
        if self.baseline is None:
            self.baseline = snapshot
            lines = [head, "baseline taken"]
        else:
            lines = [head, "grown since the baseline:", *growth(self.baseline, snapshot)]
        with open(self.path, "a") as out:
            out.write("\n".join(lines) + "\n")
