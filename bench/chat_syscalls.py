"""
The server's system calls per 1 000 chat deliveries, wcs and Janus's
TextRoom in the same shared harness (C{signalling_load.py}, by default 10 in
a room, 450 deliveries/s), counted by the kernel's syscall tracepoints
(C{perf stat -e syscalls:sys_enter_*} on the server's process, every thread,
in 0.5 s intervals): cheap enough not to change what it counts, unlike
C{strace}, which stops the server at every call. The intervals of the chat
window (those with at least half the busiest interval's calls, less the
first and the last, which the window only partly covers) are divided by the
deliveries the harness measured per second over them.

    .venv/bin/python bench/chat_syscalls.py [--backends janus,wcs] [--rounds 1]
        [--players 10] [--seconds 10] [--tree DIR] [--shared ../shared/bench]

C{--tree DIR}: run wcs from another tree (C{git archive main | tar -x -C DIR})
as well, named C{wcs@DIR}, so that before and after alternate (A B A B).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.chat_ab import TWISTD, freePort, load1  # noqa: E402

CALLS = ("recvfrom", "recvmsg", "read", "sendto", "sendmsg", "write", "writev",
         "epoll_wait", "epoll_pwait", "epoll_ctl", "poll", "ppoll", "futex", "getpid",
         "clock_nanosleep", "ioctl", "getsockopt", "setsockopt")
TOTAL = "raw_syscalls:sys_enter"
# The calls that carry the chat: the window is where these are (not read
# and write: a starting server reads its modules).
BUSY = ("recvfrom", "recvmsg", "sendto", "sendmsg", "writev")


def wcsCommand(tree: Path, port: int) -> str:
    return (f"cd {tree} && exec env PYTHONPATH={tree} {TWISTD} -n --pidfile= wcs "
            f"--listen 127.0.0.1 --ws-port {port} --wss-port 0 --http-port 0 "
            f"--https-port 0 --rtmp-port 0 --set ws_max_connections_per_address=0 "
            f"--set room_max_participants=0")


def findServer(harness: subprocess.Popen, backend: str, deadline: float) -> int | None:
    """The server process the harness started (a descendant): janus, or twistd."""
    want = "janus" if backend == "janus" else "twistd"
    while time.monotonic() < deadline and harness.poll() is None:
        try:
            for child in psutil.Process(harness.pid).children(recursive=True):
                try:
                    if want in " ".join(child.cmdline()[:2]) and child.name() != "sh":
                        return child.pid
                except psutil.Error:
                    continue
        except psutil.Error:
            return None
        time.sleep(0.05)
    return None


def parsePerf(text: str) -> list[tuple[float, dict]]:
    """perf stat -x, -I output: [(time, {call: count})] per interval."""
    rows: dict[float, dict] = {}
    for line in text.splitlines():
        parts = line.split(",")
        if len(parts) < 4 or line.startswith("#"):
            continue
        try:
            at, count = float(parts[0]), parts[1]
        except ValueError:
            continue
        event = parts[3]
        name = "total" if event == TOTAL else event.split("sys_enter_")[-1]
        rows.setdefault(at, {})[name] = int(count) if count.isdigit() else 0
    return sorted(rows.items())


def window(intervals: list[tuple[float, dict]]) -> list[tuple[float, dict]]:
    busy = [sum(counts.get(c, 0) for c in BUSY) for _, counts in intervals]
    if not busy or not max(busy):
        return []
    marked = [i for i, b in enumerate(busy) if b >= max(busy) / 2]
    first, last = marked[0] + 1, marked[-1] - 1
    return intervals[first:last + 1]


def runOne(shared: Path, backend: str, tree: Path, players: int, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.jsonl"
        cmd = [sys.executable, str(shared / "signalling_load.py"), "--backend", backend,
               "--players", str(players), "--seconds", str(seconds), "--storm", "0",
               "--out", str(out)]
        if backend != "janus":
            port = freePort()
            cmd += ["--wcs-url", f"ws://127.0.0.1:{port}/", "--wcs-cmd", wcsCommand(tree, port)]
        harness = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True, cwd=ROOT)
        perf = None
        try:
            pid = findServer(harness, backend, time.monotonic() + 120)
            if pid is not None:
                events = [TOTAL] + [f"syscalls:sys_enter_{c}" for c in CALLS]
                perf = subprocess.Popen(
                    ["perf", "stat", "-x,", "-I", "500", "-p", str(pid), "-e", ",".join(events)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            _, err = harness.communicate(timeout=900)
        finally:
            if harness.poll() is None:
                harness.kill()
                harness.wait()
            perfText = ""
            if perf is not None:
                if perf.poll() is None:
                    perf.send_signal(signal.SIGINT)
                try:
                    perfText = perf.communicate(timeout=10)[1]
                except subprocess.TimeoutExpired:
                    perf.kill()
                    perfText = perf.communicate()[1]
        rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()] \
            if out.exists() else []
    result = rows[-1] if rows else {"error": (err or "")[-300:] if pid else "no server found"}
    chosen = window(parsePerf(perfText))
    rate = result.get("delivered_msgs_per_s")
    if chosen and rate:
        span = 0.5 * len(chosen)
        deliveries = rate * span
        counts: dict = {}
        for _, c in chosen:
            for name, n in c.items():
                counts[name] = counts.get(name, 0) + n
        counts["other"] = counts.get("total", 0) - sum(counts.get(c, 0) for c in CALLS)
        result["syscalls_per_1000"] = {k: 1000 * v / deliveries for k, v in counts.items()}
        result["syscall_seconds"] = span
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="janus,wcs")
    ap.add_argument("--tree", type=Path, help="also run wcs from this tree (before/after)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--players", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "bench")
    args = ap.parse_args()
    runs = []
    for backend in args.backends.split(","):
        if backend == "wcs" and args.tree:
            runs.append(("wcs", args.tree))  # before, then after
        runs.append((backend, ROOT))
    shown = ("total",) + CALLS + ("other",)
    print(f"system calls per 1 000 deliveries, {args.players} in a room")
    print("| run | server | load 1 min | CPU ms per 1 000 | seconds counted | "
          + " | ".join(shown) + " |")
    print("|---|---|---|---|---|" + "---|" * len(shown))
    for i in range(args.rounds):
        for backend, tree in runs:
            name = backend if tree == ROOT else f"wcs@{tree}"
            before = load1()
            r = runOne(args.shared, backend, tree, args.players, args.seconds)
            calls = r.get("syscalls_per_1000", {})
            cells = " | ".join(f"{calls[c]:.0f}" if calls.get(c) else "0" for c in shown)
            if not r.get("ok"):
                cells += f" (NOT ok: {r.get('error')})"
            print(f"| {i + 1} | {name} | {before:.1f} → {load1():.1f} | "
                  f"{r.get('server_cpu_ms_per_1000_delivered')} | {r.get('syscall_seconds')} | "
                  f"{cells} |", flush=True)


if __name__ == "__main__":
    main()
