"""
The lab's per-packet trace (wcs.media.trace): the lines its readers in
bench/ parse.
"""

import gc

from wcs.media.trace import PacketTrace


def readLines(path):
    with open(path) as lines:
        return [line.split() for line in lines]


def test_anEventIsTimeNameStreamAndNumbers(tmp_path):
    path = tmp_path / "t"
    trace = PacketTrace(str(path))
    try:
        trace.event("fwd", 7, 100, 200, 3, trace.cpu())
        trace.flush()
    finally:
        gc.callbacks.remove(trace.collections)
    [line] = readLines(path)
    float(line[0])
    assert line[1:5] == ["fwd", "7", "100", "200"]
    assert line[5] == "3"
    assert int(line[6]) > 0  # this thread has run: CPU microseconds


def test_aCollectionIsTracedWithItsGenerationAndLength(tmp_path):
    path = tmp_path / "t"
    trace = PacketTrace(str(path))
    try:
        gc.collect(1)
        trace.flush()
    finally:
        gc.callbacks.remove(trace.collections)
    collections = [line for line in readLines(path) if line[1] == "gc"]
    assert collections, "gc.collect(1) was not traced"
    generation, micros, collected = map(int, collections[-1][2:5])
    assert generation == 1
    assert micros >= 0 and collected >= 0
