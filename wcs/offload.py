"""
Codec and mux work off the reactor thread.

A L{Worker} is one media pipeline (a transcode, a recording): frames are
handed in on the reactor thread, processed one at a time and in order in a
thread, and each result is handed back on the reactor thread. The queue in
between is bounded: a worker that falls behind drops what is queued and then
every video frame up to the next keyframe (a decoder can restart there and
nowhere else), so a slow encoder costs a gap in its own output, never the
reactor's time nor unbounded memory.

Workers share a pool of codec threads (L{codecPool}): a worker has at most
one job in the pool at a time, a job processes one frame and queues the next
job behind the other workers' jobs, so busy pipelines take turns. Codec threads
keep the reactor's priority: one niced while it holds the GIL (between two
codec calls) would hold the reactor up for as long as it waits for a core.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections import deque
from typing import Callable, Generic, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from wcs.frames import EncodedFrame
from wcs.interfaces import IMediaSink
from wcs.logs import LogLimiter, Logger

log = Logger()
limited = LogLimiter(log)

# Frames queued per worker: about a second of video at 30 fps.
QUEUE_FRAMES = 30

# Codec threads at once: one core is left to the reactor (the codecs we
# open are single-threaded, see wcs.rtmp.transcode).
THREADS = max(1, (os.cpu_count() or 2) - 1)

R = TypeVar("R")


def _mallocTrim():
    """glibc's malloc_trim, or None in a process whose C library has none (musl, macOS)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_trim = _mallocTrim()


def trimFreedMemory() -> bool:
    """
    Give the C heap's free pages back to the system (malloc_trim(0): every
    arena, whole free pages within them too); False where it cannot.

    A codec's buffers freed when a transcode stops stay in the allocator
    (a libx264 encoder and an H.264 decoder left +31 MB of RSS after the
    first, reused by the next; trimmed after each, +12 MB:
    docs/networks.md). It walks the heaps (milliseconds for a large one)
    and releases the interpreter lock meanwhile (ctypes): call it from a
    codec thread, not the reactor's.
    """
    if _trim is None:
        return False
    _trim(0)
    return True


class CodecPool:
    """
    A Twisted L{ThreadPool} of its own, so that long jobs on the reactor's
    (a remux) never hold up a frame. Its threads are daemons, and with a
    reactor installed they are stopped and joined at its shutdown, after the
    shutdown's "before" phase, where the server finishes its recordings.
    """

    def __init__(self, threads: int = THREADS):
        self.pool = ThreadPool(minthreads=0, maxthreads=threads, name="wcs-codec")
        self.pool.threadFactory = lambda *args, **kwargs: threading.Thread(
            *args, daemon=True, **kwargs)
        self.pool.start()
        if "twisted.internet.reactor" in sys.modules:
            from twisted.internet import reactor

            reactor.addSystemEventTrigger("during", "shutdown", self.pool.stop)

    def callInThread(self, job: Callable[[], None]) -> None:
        self.pool.callInThread(job)


_pool: CodecPool | None = None


def codecPool() -> CodecPool:
    """The process's codec threads, made on first use."""
    global _pool
    if _pool is None:
        _pool = CodecPool()
    return _pool


class Worker(Generic[R]):
    """
    C{work(frame)} runs in a pool thread for each frame L{submit}ted, in
    order; C{deliver(result)} runs on the reactor thread with what it
    returned (unless the worker was stopped without draining meanwhile).
    An exception from C{work} costs that frame only (logged, rate-limited).

    @param onDrop: called (on the reactor thread) when frames start being
        dropped, to ask the source for a keyframe soon.
    @param callFromThread: how results reach the reactor thread;
        C{reactor.callFromThread} if None (an asyncio loop's
        C{call_soon_threadsafe} in pure asyncio code).
    @param callInThread: how jobs reach a thread; L{codecPool}'s if None.
    """

    def __init__(self, name: str, work: Callable[[EncodedFrame], R],
                 deliver: Callable[[R], None] | None = None, *, limit: int = QUEUE_FRAMES,
                 onDrop: Callable[[], None] | None = None,
                 callFromThread: Callable | None = None, callInThread: Callable | None = None):
        if callFromThread is None:
            from twisted.internet import reactor

            callFromThread = reactor.callFromThread
        if callInThread is None:
            callInThread = codecPool().callInThread
        self.name = name
        self.work = work
        self.deliver = deliver
        self.limit = limit
        self.onDrop = onDrop
        self.callFromThread = callFromThread
        self.callInThread = callInThread
        self.lock = threading.Lock()
        self.queue: deque[EncodedFrame] = deque()
        self.running = False  # a job of ours is in the pool or running
        self.dropping = False  # video waits for a keyframe
        self.dropped = 0
        self.stopping = False
        self.discard = False  # stopped without draining: results are dropped
        self.finish: Callable[[], object] | None = None
        self.stopped: Deferred | None = None

    def submit(self, frame: EncodedFrame) -> bool:
        """On the reactor thread: queue C{frame}; False if it was dropped."""
        dropNow = False
        with self.lock:
            if self.stopping:
                return False
            if len(self.queue) >= self.limit:
                # Behind: what is queued is stale; restart at a keyframe.
                self.dropped += len(self.queue)
                self.queue.clear()
                dropNow = not self.dropping
                self.dropping = True
            video = frame.kind == "video"
            if self.dropping and video and not frame.keyframe:
                self.dropped += 1
                accepted = False
            else:
                if video:
                    self.dropping = False
                self.queue.append(frame)
                accepted = True
            start = accepted and not self.running
            if start:
                self.running = True
        if dropNow:
            limited.warn(("behind", self.name), "{name}: too slow, frames dropped up to the "
                         "next keyframe ({dropped} so far)", name=self.name, dropped=self.dropped)
            if self.onDrop is not None:
                self.onDrop()
        if start:
            self.callInThread(self._job)
        return accepted

    def stop(self, finish: Callable[[], object] | None = None, drain: bool = True) -> Deferred:
        """
        On the reactor thread: take no more frames. With C{drain}, the
        queued frames are processed (and delivered) first; without, they
        are dropped and no result is delivered any more. Then C{finish()}
        runs in the worker's thread. The Deferred fires on the reactor
        thread with what C{finish} returned, once nothing of this worker
        runs any more; stopping twice gives the same result.
        """
        result = Deferred()
        with self.lock:
            if self.stopped is not None:
                self.stopped.addBoth(lambda r: (result.callback(r), r)[1])
                return result
            self.stopped = result
            self.stopping = True
            self.finish = finish
            if not drain:
                self.discard = True
                self.queue.clear()
            start = not self.running
            self.running = True
        if start:
            self.callInThread(self._job)
        return result

    def _job(self) -> None:
        """In a pool thread: one frame, or the finish once the queue is empty."""
        with self.lock:
            if self.queue:
                frame = self.queue.popleft()
            elif self.stopping:
                frame = None
            else:  # a drop emptied the queue after this job was queued
                self.running = False
                return
        if frame is not None:
            try:
                result = self.work(frame)
            except Exception:
                failure = Failure()
                self.callFromThread(self._failed, failure)
            else:
                if self.deliver is not None:
                    self.callFromThread(self._deliver, result)
            with self.lock:
                more = bool(self.queue) or self.stopping
                self.running = more
            if more:
                self.callInThread(self._job)  # behind the other workers' jobs
            return
        try:
            outcome = self.finish() if self.finish is not None else None
        except Exception:
            outcome = Failure()
        self.callFromThread(self.stopped.callback, outcome)

    def _deliver(self, result: R) -> None:
        if not self.discard:
            self.deliver(result)

    def _failed(self, failure: Failure) -> None:
        limited.warn(("failed", self.name), "{name}: a frame failed: {error}", name=self.name,
                     error=failure.getErrorMessage())
        log.debug("{name}: {traceback}", name=self.name, traceback=failure.getTraceback())


@implementer(IMediaSink)
class OffloadedSink:
    """
    An L{IMediaSink} whose frames go through C{sink} in a L{Worker}'s
    thread: C{sink} (a recording's transcode and mux) is only ever called
    from there, one frame at a time. L{close} finishes it there too, after
    the frames already queued, and tells when it is done.
    """

    def __init__(self, name: str, sink: IMediaSink, **workerOptions):
        self.sink = sink
        self.worker: Worker[None] = Worker(name, sink.writeFrame, None, **workerOptions)

    def writeFrame(self, frame: EncodedFrame) -> None:
        self.worker.submit(frame)

    def sourceEnded(self) -> None:
        self.worker.stop(self.sink.sourceEnded)

    def close(self) -> Deferred:
        """Finish C{sink} (its queued frames, then its C{close}); fires when done."""
        return self.worker.stop(self.sink.close)
