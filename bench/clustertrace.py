"""
Where a cross-node chat message spends its time (bench/cluster.py --trace):
probes outside the nodes, so that production code carries no per-message
tracing.

  - a tap: a separate process subscribed to every node's channel
    (C{PSUBSCRIBE wcs:to:*}) notes when each envelope leaves Redis; the
    bench's texts carry their send time, so a message's latency splits into
    client send -> through Redis (client, node A, its bus flush, redis-server)
    and Redis -> client read (node B, its delivery, the client's read);
  - the bench's own loop lag (a 1 ms timer), and its CPU share: a late
    harness makes a late "read";
  - each node's loop lag (C{loop_lag_report}) and collector passes
    (C{gc_report}), read back from its log;
  - for every process on the path (bench, nodes, redis-server, tap), the
    time it waited for a CPU while runnable (/proc/PID/schedstat): a tail
    that no process spends running is a tail spent in run queues.

time.perf_counter is CLOCK_MONOTONIC on Linux: one clock for every process.

    python bench/clustertrace.py REDIS_PORT OUT   the tap alone (bench/cluster.py starts it)
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wcs.cluster.resp import RespReader, command  # noqa: E402

STAMP = re.compile(rb"(\d+\.\d{6}) hello")
LAG_LINE = re.compile(r"event loop lag over [\d.]+s: p50 ([\d.]+) ms, p99 ([\d.]+) ms, "
                      r"max ([\d.]+) ms")
GC_LINE = re.compile(r"gc over .*")
NODE_SETTINGS = {"log_level": "info", "loop_lag_report": "5", "gc_report": "5"}


def tap(port: int, out: Path) -> None:
    """Until SIGTERM: (send time, time out of Redis) of every stamped text."""
    seen: list[tuple[str, float]] = []
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(command("PSUBSCRIBE", "wcs:to:*"))
    sock.settimeout(0.2)
    reader = RespReader(1 << 24)
    print("ready", flush=True)
    while not stop:
        try:
            data = sock.recv(1 << 16)
        except socket.timeout:
            continue
        except InterruptedError:
            continue
        now = time.perf_counter()
        if not data:
            break
        for reply in reader.feed(data):
            if isinstance(reply, list) and reply[:1] == [b"pmessage"]:
                seen += [(m.decode(), now) for m in STAMP.findall(reply[3])]
    out.write_text(json.dumps(seen))


class Tap:
    def __init__(self, port: int, workdir: Path):
        self.out = workdir / "tap.json"
        self.proc = subprocess.Popen([sys.executable, __file__, str(port), str(self.out)],
                                     stdout=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        assert self.proc.stdout.readline().strip() == "ready"

    def stop(self) -> dict[str, float]:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        return dict(json.loads(self.out.read_text()))


class LoopLag:
    """The bench's loop: how late a 1 ms timer fires, and the CPU it used."""

    def __init__(self):
        self.delays: list[float] = []
        self.task = asyncio.ensure_future(self._run())
        self.cpu0, self.wall0 = time.process_time(), time.perf_counter()

    async def _run(self) -> None:
        while True:
            due = time.perf_counter() + 0.001
            await asyncio.sleep(0.001)
            self.delays.append(time.perf_counter() - due)

    def stop(self) -> dict:
        self.task.cancel()
        ordered = sorted(self.delays) or [float("nan")]
        pick = lambda p: 1000 * ordered[min(len(ordered) - 1, int(p * len(ordered)))]  # noqa: E731
        return {"bench lag p50 ms": pick(0.5), "bench lag p99": pick(0.99),
                "bench lag max": 1000 * ordered[-1],
                "bench CPU %": 100 * (time.process_time() - self.cpu0)
                / (time.perf_counter() - self.wall0)}


class Sched:
    """Run-queue waits of some processes over a run (/proc/PID/schedstat:
    ns on a CPU, ns runnable but waiting, slices)."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids
        self.start = {name: self._read(pid) for name, pid in pids.items()}
        self.wall0 = time.perf_counter()

    @staticmethod
    def _read(pid: int) -> tuple[int, int, int]:
        try:
            return tuple(map(int, Path(f"/proc/{pid}/schedstat").read_text().split()))
        except OSError:
            return (0, 0, 0)

    def stop(self) -> dict:
        wall = time.perf_counter() - self.wall0
        figures = {}
        for name, pid in self.pids.items():
            ran, waited, slices = (b - a for a, b in zip(self.start[name], self._read(pid)))
            figures[f"{name} waited ms/s"] = waited / 1e6 / wall
            figures[f"{name} per wake-up us"] = waited / 1e3 / max(1, slices)
        return figures


def nodeLag(server, since: int) -> list[tuple[float, float, float]]:
    """(p50, p99, max) ms of the node's loop-lag lines after byte C{since} of its log."""
    text = server.logPath.read_text(errors="replace")[since:]
    return [tuple(map(float, m)) for m in LAG_LINE.findall(text)]


def nodeGC(server, since: int) -> list[str]:
    """The node's gc_report lines after byte C{since} of its log."""
    text = server.logPath.read_text(errors="replace")[since:]
    return GC_LINE.findall(text)


def split(peers, redisTimes: dict[str, float], percentile) -> dict:
    """Both halves of each message's latency, overall and in its slowest 1 %."""
    rows = []
    for peer in peers:
        for sent, latency in zip(peer.sentAt, peer.latencies):
            out = redisTimes.get(f"{sent:.6f}")
            if out is not None:
                rows.append((latency, out - sent, sent + latency - out))
    if not rows:
        return {"traced": 0}
    rows.sort()
    tail = rows[int(0.99 * len(rows)):]
    ms = lambda values, p: 1000 * percentile(values, p)  # noqa: E731
    first, second = [r[1] for r in rows], [r[2] for r in rows]
    return {"traced": len(rows),
            "to redis p50 ms": ms(first, 50), "to redis p99": ms(first, 99),
            "from redis p50 ms": ms(second, 50), "from redis p99": ms(second, 99),
            "slowest 1% mean: to redis ms": 1000 * sum(r[1] for r in tail) / len(tail),
            "from redis ms": 1000 * sum(r[2] for r in tail) / len(tail)}


if __name__ == "__main__":
    tap(int(sys.argv[1]), Path(sys.argv[2]))
