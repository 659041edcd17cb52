"""
wcs.offload.Worker: frames processed in order in pool threads, results back
on the loop's thread, a bounded queue that drops to the next keyframe, and a
stop that finishes the work and leaves no thread running.

The loop running the test plays the reactor thread (the server's reactor is
this same asyncio loop); jobs go to a real Twisted ThreadPool, as the
reactor's are. And the C heap's free pages given back after a codec stops.
"""

import asyncio
import ctypes
import threading
from fractions import Fraction

import pytest
from twisted.python.threadpool import ThreadPool

from tests.support.wait import waitUntil
from wcs.frames import EncodedFrame
from wcs.memwatch import rssKiB
from wcs.offload import OffloadedSink, Worker, trimFreedMemory

WAIT = 10


def frame(n, kind="video", keyframe=False):
    return EncodedFrame(kind, "VP8" if kind == "video" else "opus", bytes([n]), n,
                        Fraction(1, 1000), keyframe)


@pytest.fixture
def pool():
    before = set(threading.enumerate())
    pool = ThreadPool(minthreads=0, maxthreads=4, name="test-offload")
    pool.start()
    yield pool
    pool.stop()  # joins its threads
    assert set(threading.enumerate()) <= before


def makeWorker(pool, work, delivered, **options):
    loop = asyncio.get_running_loop()
    mainThread = threading.current_thread()

    def deliver(result):
        # The results come back on the loop's thread, never a worker's.
        assert threading.current_thread() is mainThread
        delivered.append(result)

    return Worker("test", work, deliver, callFromThread=loop.call_soon_threadsafe,
                  callInThread=pool.callInThread, **options)


async def test_frames_run_in_a_thread_in_order_and_results_come_back_on_the_loop(pool):
    threads = set()

    def work(f):
        threads.add(threading.current_thread())
        return f.pts

    delivered = []
    worker = makeWorker(pool, work, delivered, limit=1000)
    for n in range(200):
        assert worker.submit(frame(n % 256, keyframe=n == 0))
    await waitUntil(lambda: len(delivered) == 200, WAIT)
    assert delivered == [n % 256 for n in range(200)]
    assert threading.current_thread() not in threads
    assert await asyncio.wait_for(worker.stop(lambda: "finished").asFuture(
        asyncio.get_running_loop()), WAIT) == "finished"


async def test_a_worker_behind_drops_to_the_next_keyframe(pool):
    started, release = threading.Event(), threading.Event()

    def work(f):
        if f.pts == 0:
            started.set()
            release.wait(WAIT)
        return (f.kind, f.pts)

    delivered, drops = [], []
    worker = makeWorker(pool, work, delivered, limit=3, onDrop=lambda: drops.append(1))
    worker.submit(frame(0, keyframe=True))
    await waitUntil(started.is_set, WAIT)
    for n in (1, 2, 3):  # the queue is full: 1, 2, 3 wait behind 0
        assert worker.submit(frame(n))
    assert not worker.submit(frame(4))  # too many: 1-3 dropped, and 4 with them
    assert drops == [1]  # the source is asked for a keyframe, once
    assert worker.submit(frame(5, kind="audio"))  # audio has no keyframes: it goes on
    assert not worker.submit(frame(6))  # video waits for a keyframe
    assert worker.submit(frame(7, keyframe=True))
    assert worker.submit(frame(8))
    assert len(worker.queue) <= 3 and worker.dropped == 5
    release.set()
    await waitUntil(lambda: len(delivered) == 4, WAIT)
    assert delivered == [("video", 0), ("audio", 5), ("video", 7), ("video", 8)]
    await worker.stop().asFuture(asyncio.get_running_loop())


async def test_a_failing_frame_costs_only_itself(pool):
    def work(f):
        if f.pts == 1:
            raise ValueError("bad frame")
        return f.pts

    delivered = []
    worker = makeWorker(pool, work, delivered)
    for n in range(4):
        worker.submit(frame(n, keyframe=True))
    await waitUntil(lambda: len(delivered) == 3, WAIT)
    assert delivered == [0, 2, 3]
    await worker.stop().asFuture(asyncio.get_running_loop())


async def test_stop_drains_then_finishes_in_the_worker_thread(pool):
    loop = asyncio.get_running_loop()
    processed, finished = [], []
    release = threading.Event()

    def work(f):
        release.wait(WAIT)
        processed.append(f.pts)

    def finish():
        finished.append((list(processed), threading.current_thread()))
        return "closed"

    delivered = []
    worker = makeWorker(pool, work, delivered)
    for n in range(5):
        worker.submit(frame(n, keyframe=True))
    done = worker.stop(finish)
    assert not worker.submit(frame(9, keyframe=True))  # stopped: nothing new is taken
    again = worker.stop()  # a second stop waits for the same end
    release.set()
    assert await asyncio.wait_for(done.asFuture(loop), WAIT) == "closed"
    assert await asyncio.wait_for(again.asFuture(loop), WAIT) == "closed"
    # Everything queued ran first; finish ran after it, in a pool thread.
    assert finished[0][0] == [0, 1, 2, 3, 4]
    assert finished[0][1] is not threading.current_thread()
    await waitUntil(lambda: len(delivered) == 5, WAIT)


async def test_stop_without_draining_delivers_nothing_more(pool):
    loop = asyncio.get_running_loop()
    started, release = threading.Event(), threading.Event()

    def work(f):
        started.set()
        release.wait(WAIT)
        return f.pts

    delivered = []
    worker = makeWorker(pool, work, delivered)
    for n in range(5):
        worker.submit(frame(n, keyframe=True))
    await waitUntil(started.is_set, WAIT)
    done = worker.stop(drain=False)
    release.set()
    await asyncio.wait_for(done.asFuture(loop), WAIT)
    # Frame 0's result was sent back before the stop's end, and dropped.
    assert delivered == [] and not worker.queue


async def test_offloaded_sink_writes_in_the_worker_and_closes_after_its_frames(pool):
    loop = asyncio.get_running_loop()
    mainThread = threading.current_thread()

    class Sink:
        def __init__(self):
            self.frames, self.closedAfter, self.threads = [], None, set()

        def writeFrame(self, f):
            self.threads.add(threading.current_thread())
            self.frames.append(f.pts)

        def sourceEnded(self):
            self.close()

        def close(self):
            self.closedAfter = list(self.frames)
            return len(self.frames)

    sink = Sink()
    offloaded = OffloadedSink("recording", sink, callFromThread=loop.call_soon_threadsafe,
                              callInThread=pool.callInThread)
    for n in range(20):
        offloaded.writeFrame(frame(n, keyframe=True))
    assert await asyncio.wait_for(offloaded.close().asFuture(loop), WAIT) == 20
    assert sink.closedAfter == list(range(20)) and mainThread not in sink.threads


def test_a_job_whose_frames_were_dropped_ends_quietly():
    """Jobs run by hand: a drop can empty the queue between two jobs of a worker."""
    jobs, delivered = [], []
    worker = Worker("test", lambda f: f.pts, delivered.append, limit=2,
                    callFromThread=lambda f, *args: f(*args), callInThread=jobs.append)
    worker.submit(frame(0, keyframe=True))
    worker.submit(frame(1))
    jobs.pop(0)()  # frame 0; frame 1 waits, so the next job is queued
    assert delivered == [0] and len(jobs) == 1
    worker.submit(frame(2))
    assert not worker.submit(frame(3))  # full: 1 and 2 dropped, 3 waits for a keyframe
    jobs.pop(0)()  # nothing left to do, and no stop asked
    assert jobs == [] and delivered == [0] and not worker.running
    worker.submit(frame(4, keyframe=True))  # a new job starts
    jobs.pop(0)()
    assert delivered == [0, 4]
    stopped = []
    worker.stop(lambda: "done").addCallback(stopped.append)
    jobs.pop(0)()
    assert stopped == ["done"] and jobs == []


def test_trimGivesTheHeapsFreePagesBack():
    """
    What a codec frees stays in the C heap (RSS) until trimmed: 40 MB of
    small blocks, freed but the last (which keeps the heap's top, so that
    free() alone gives nothing back), leave when trimmed.
    """
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(4000) for _ in range(10_000)]
    assert all(blocks)
    for block in blocks:
        ctypes.memset(block, 1, 4000)  # resident
    for block in blocks[:-1]:
        libc.free(block)
    freed = rssKiB()
    try:
        assert trimFreedMemory()
        assert freed - rssKiB() > 20_000, (freed, rssKiB())
    finally:
        libc.free(blocks[-1])
