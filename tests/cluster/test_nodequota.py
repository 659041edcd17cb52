"""
bench/clustermedia.py --node-quota: a process in the cgroup it makes gets no
more than its CPU share, and the cgroup goes away with the process.
"""

import os
import subprocess
import sys
import time

import pytest

from bench.clustermedia import CGROUP_CPU, limit, release, throttled
from bench.sfu import cpuSeconds

pytestmark = pytest.mark.skipif(
    not os.access(CGROUP_CPU, os.W_OK), reason="needs cgroup v1 cpu controller, writable")


def test_quotaCapsABusyProcess():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    group = None
    try:
        group = limit(busy.pid, 0.2)
        time.sleep(0.3)
        before, t0 = cpuSeconds(busy.pid), time.monotonic()
        time.sleep(2)
        used = (cpuSeconds(busy.pid) - before) / (time.monotonic() - t0)
        # Upper bound only: on a shared machine it may get less than its share.
        assert 0 < used <= 0.26
        done, periods = map(int, throttled(group).split("/"))
        assert periods >= 10 and done >= periods // 2
    finally:
        busy.kill()
        busy.wait(10)
    deadline = time.monotonic() + 5
    while group.exists() and time.monotonic() < deadline:
        release(group)
        time.sleep(0.05)
    assert not group.exists()


def test_noQuotaNoCgroup():
    assert limit(os.getpid(), 0.0) is None
    release(None)
