"""
What an idle server costs: CPU and wake-ups of wcs with no client at all.

Every variant (a checkout and settings) runs at the same time, so that all of
them share the same machine load: an idle server uses a few hundredths of a
core, so they hardly disturb each other, and interleaving in time is not
needed. Per round, each is started fresh, left --warmup seconds, then its
schedstat CPU time and its voluntary context switches (each one a return of
the loop's epoll_wait that blocked: a wake-up) are read over --seconds.

    .venv/bin/python bench/idle.py --rounds 2 --seconds 60 \\
        --variant main=/path/to/main-checkout --variant branch=. \\
        --variant bare-asyncio=asyncio:0.5

A variant is NAME=ROOT[,KEY=VALUE...] (ROOT a checkout, run with this
worktree's venv and PYTHONPATH=ROOT) or NAME=asyncio:PERIOD /
NAME=twisted:PERIOD (a bare Python loop with one timer every PERIOD seconds:
the floor a Python process pays per wake-up on this machine).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
TWISTD = ROOT / ".venv" / "bin" / "twistd"

BARE = {
    "asyncio": "import asyncio,sys\np=float(sys.argv[1])\nl=asyncio.new_event_loop()\n"
               "def t(): l.call_later(p,t)\nl.call_later(p,t)\nl.run_forever()\n",
    "twisted": "import sys\nfrom twisted.internet import asyncioreactor\nasyncioreactor.install()\n"
               "from twisted.internet import reactor\np=float(sys.argv[1])\n"
               "def t(): reactor.callLater(p,t)\nreactor.callLater(p,t)\nreactor.run()\n",
}


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(spec: str, output=subprocess.DEVNULL) -> tuple[subprocess.Popen, int | None]:
    """The process, and the port it listens on once started (None: a bare loop);
    a server's log goes to C{output} (a file)."""
    kind, _, rest = spec.partition(":")
    if kind in BARE and rest:
        return subprocess.Popen([str(PYTHON), "-c", BARE[kind], rest]), None
    root, *sets = spec.split(",")
    root = str(Path(root).resolve())
    args = [str(TWISTD), "-n", "--pidfile=", "wcs"]
    port = freePort()
    for key, value in (("listen_address", "127.0.0.1"), ("ws_port", port),
                       ("wss_port", 0), ("http_port", 0), ("https_port", 0),
                       ("rtmp_port", 0), ("rest_api_port", 0), ("rest_api_https_port", 0)):
        args += ["--set", f"{key}={value}"]
    for kv in sets:
        args += ["--set", kv]
    env = dict(os.environ, PYTHONPATH=root)
    return subprocess.Popen(args, cwd=root, env=env, stdout=output,
                            stderr=subprocess.STDOUT, start_new_session=True), port


def waitListening(name: str, proc: subprocess.Popen, port: int, timeout: float = 120) -> None:
    """Until the server accepts on its port (its start-up done), at most C{timeout} s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited ({proc.returncode}) while starting")
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{name} did not listen within {timeout} s")


def stopAll(started) -> None:
    """End each (process, port) of L{start}: a server by SIGINT, a bare loop by
    SIGTERM; killed after 10 s."""
    for proc, port in started:
        proc.send_signal(signal.SIGTERM if port is None else signal.SIGINT)
    for proc, _ in started:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def sample(pid: int) -> tuple[int, int]:
    """(CPU ns of every thread, voluntary context switches of every thread)"""
    cpu = switches = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            cpu += int(f.read().split()[0])
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches"):
                    switches += int(line.split()[1])
    return cpu, switches


def measureRound(variants: dict[str, str], warmup: float, seconds: float) -> dict:
    started = {name: start(spec) for name, spec in variants.items()}
    procs = {name: proc for name, (proc, _) in started.items()}
    try:
        for name, (proc, port) in started.items():
            if port is not None:
                waitListening(name, proc, port)
        time.sleep(warmup)  # after the listening test's own connection closed
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited ({proc.returncode}) during the warm-up")
        load = os.getloadavg()[0]
        before = {name: sample(p.pid) for name, p in procs.items()}
        time.sleep(seconds)
        after = {name: sample(p.pid) for name, p in procs.items()}
        load2 = os.getloadavg()[0]
    finally:
        stopAll(started.values())
    rows = {}
    for name in variants:
        cpu = after[name][0] - before[name][0]
        wakes = after[name][1] - before[name][1]
        rows[name] = (cpu / seconds / 1e6, wakes / seconds, cpu / 1e3 / max(1, wakes))
    return {"load": (load, load2), "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", action="append", required=True, metavar="NAME=SPEC")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=10,
                    help="seconds between the last server listening and the measurement")
    args = ap.parse_args()
    variants = dict(v.split("=", 1) for v in args.variant)
    totals: dict[str, list] = {name: [] for name in variants}
    print("| round (load 1 min, start-end) | variant | CPU ms/s | wake-ups/s | µs per wake-up |")
    print("|---|---|---|---|---|")
    for n in range(1, args.rounds + 1):
        result = measureRound(variants, args.warmup, args.seconds)
        for name, (ms, wakes, per) in result["rows"].items():
            totals[name].append(ms)
            print(f"| {n} ({result['load'][0]:.1f}-{result['load'][1]:.1f}) | {name} | "
                  f"{ms:.3f} | {wakes:.2f} | {per:.0f} |", flush=True)
    print()
    for name, values in totals.items():
        print(f"{name}: mean {sum(values) / len(values):.3f} ms/s over {len(values)} rounds")


if __name__ == "__main__":
    sys.exit(main())
