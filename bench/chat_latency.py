"""
Chat delivery latency at 4 000 deliveries/s with a reader that keeps up.

The shared harness (C{signalling_load.py}) reads 200 sockets and sends for
200 participants in one Python process: against a server that does nothing
but fan out (C{bench/minimal_chat_server.py}) it reads a p99 of 50-81 ms, its
own. This bench runs the same workload and protocol (200 in one room, 0.1
msg/s each, a message carries its send time, C{sendMessage} per recipient to
wcs, one TextRoom C{message} to Janus) with the participants spread over
C{--readers} processes, each with its own event loop; for wcs and the minimal
server a bare WebSocket client (one write per message, frames parsed by
hand, no JSON on the delivery path): C{--reader c} (the default when gcc is
there: C{bench/chat_reader.c}, epoll, one process, built at bench time) or
C{--reader python} (C{bench/chat_readers.py}, 4 processes on uvloop), or both
in turn. Latency is send to receive per delivery: the send time is
CLOCK_MONOTONIC (Python's C{time.monotonic()}), the same
clock in every process; the receive time is taken when the read returns.

    .venv/bin/python bench/chat_latency.py [--server minimal,wcs,janus] [--rounds 2]
        [--players 200] [--rate 0.1] [--seconds 10] [--reader c|python|c,python]
        [--readers N]

A server is C{minimal}, C{janus} (Debian's, TextRoom over data channels,
started and spoken to by the shared harness's own classes, in a private
network namespace as it does: the whole bench re-runs itself under
C{unshare --net}), or C{wcs[@TREE][:KEY=VALUE,...]} (a checkout, default this
one, with extra settings: A B runs of a change). Servers run in turn, round
after round (A B A B), a fresh server per run. Per run it prints p50 / p95 /
p99 / max, deliveries/s, the server's CPU per 1 000 deliveries, the
readers' own CPU (all of them, and the busiest, in % of one core) and the
1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import multiprocessing
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.chat_ab import load1  # noqa: E402
from bench.chat_creader import available, build  # noqa: E402
from bench.chat_readers import janusArgs, reader, renice, shared  # noqa: E402
from bench.idle import freePort, start, waitListening  # noqa: E402

PYTHON = sys.executable
NETNS_ENV = "CHAT_LATENCY_IN_NETNS"


# ---------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------

class Server:
    """A fresh server of C{spec}: minimal, janus, wcs[@TREE][:KEY=VALUE,...]."""

    def __init__(self, spec: str, args):
        self.spec, self.args = spec, args
        self.kind = spec.split("@")[0].split(":")[0]
        self.proc = self.janus = None

    def start(self) -> None:
        if self.kind == "janus":
            self.janus = shared(self.args.shared).JanusServer(janusArgs(self.args.players))
            # Janus 1.1.2 sometimes dumps core (~0.8-1 GB, into the bench's
            # directory) when stopped: it inherits a core size limit of 0, the
            # hard one too (with only the soft one at 0 it still dumped one).
            limits = resource.getrlimit(resource.RLIMIT_CORE)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            try:
                self.janus.start()
            finally:
                with contextlib.suppress(ValueError, OSError):  # raising it: root only
                    resource.setrlimit(resource.RLIMIT_CORE, limits)
            self.url = self.janus.url
            self.address = ("127.0.0.1", int(self.url.rsplit(":", 1)[1]))
            self.pid = self.janus.proc.pid
            return
        if self.kind == "minimal":
            port = freePort()
            self.proc = subprocess.Popen(
                [PYTHON, str(ROOT / "bench" / "minimal_chat_server.py"), str(port)],
                start_new_session=True)
        elif self.kind == "wcs":
            tree, _, sets = self.spec.partition(":")
            tree = tree.partition("@")[2] or str(ROOT)
            # All clients come from one address, 200 share a room: lift the caps.
            # drain_timeout=0: SIGTERM ends it at once, not after a drain of the rooms.
            caps = ["ws_max_connections_per_address=0", "room_max_participants=0",
                    "drain_timeout=0"]
            output = subprocess.DEVNULL
            if self.args.server_log:  # e.g. with ws_send_delay_report=1;gc_report=1
                Path(self.args.server_log).mkdir(parents=True, exist_ok=True)
                self.log = Path(self.args.server_log) / f"{os.getpid()}-{time.time():.0f}.log"
                output = open(self.log, "w")
            self.proc, port = start(",".join([tree, *caps, *filter(None, sets.split(","))]),
                                    output)
        else:
            raise SystemExit(f"--server: unknown {self.spec!r} (minimal, wcs[...], janus)")
        self.address = ("127.0.0.1", port)
        self.url = f"ws://127.0.0.1:{port}/"
        self.pid = self.proc.pid
        waitListening(self.spec, self.proc, port, 60)

    def cpu(self) -> float:
        """User + system seconds of the whole process, the threads that ended
        too (Janus ends threads: a sum over the live ones can go back)."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.janus is not None:
            self.janus.stop()
            return
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# ---------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------

def percentile(sortedValues: list[float], p: float) -> float | None:
    if not sortedValues:
        return None
    return sortedValues[min(len(sortedValues) - 1, int(p / 100 * len(sortedValues)))]


def runOnce(spec: str, args, serial: int = 0, readerKind: str | None = None) -> dict:
    """One fresh server, C{args.players} in its room over C{args.readers} processes
    (default: 1 for the C reader, 4 for Python's)."""
    server = Server(spec, args)
    logins = [f"u{i:04d}" for i in range(args.players)]
    total = int(round(args.players * args.rate * args.seconds))
    context = multiprocessing.get_context("fork")
    workers, result = [], {"server": spec, "load_before": load1()}
    try:
        # Janus's participants speak over data channels: the Python reader only.
        readerKind = readerKind or getattr(args, "reader", "python")
        binary = build() if readerKind == "c" and server.kind != "janus" else None
        result["reader"] = "c" if binary else "python"
        readers = args.readers or (1 if binary else 4)
        result["readers"] = readers
        server.start()
        if args.nice:
            renice(server.pid, args.nice)
        for i in range(readers):
            parent, child = context.Pipe()
            job = {"kind": server.kind, "address": server.address, "url": server.url,
                   "shared": str(args.shared), "mine": logins[i::readers],
                   "logins": logins, "total": total, "interval": 1 / (args.players * args.rate),
                   "seconds": args.seconds, "drain": args.drain,
                   "joinTimeout": args.join_timeout, "nice": args.nice,
                   "loop": getattr(args, "loop", "asyncio"), "binary": binary}
            proc = context.Process(target=reader, args=(child, job), daemon=True)
            proc.start()
            workers.append((proc, parent))
        joinDeadline = time.monotonic() + args.join_timeout + 30
        for proc, pipe in workers:
            report = pipe.recv() if pipe.poll(max(0.1, joinDeadline - time.monotonic())) else \
                {"error": "no join report in time"}
            if report.get("error") or report.get("errors"):
                raise RuntimeError(f"join: {report}")
        time.sleep(args.warmup)
        window = f"w{os.getpid()}x{serial}"
        t0 = time.monotonic() + 0.5
        cpu0 = server.cpu()
        for _, pipe in workers:
            pipe.send({"t0": t0, "window": window})
        spy = None
        if args.py_spy and server.kind != "janus":
            # The server's stacks over the window (py-spy, the sampling profiler).
            Path(args.py_spy).mkdir(parents=True, exist_ok=True)
            result["profile"] = str(Path(args.py_spy) / f"{serial}-{server.kind}.txt")
            spy = subprocess.Popen(
                [str(Path(PYTHON).with_name("py-spy")), "record", "--nonblocking", "-r", "250",
                 "-f", "raw", "-p", str(server.pid), "-d", str(int(args.seconds)),
                 "-o", result["profile"]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        reports = []
        for _, pipe in workers:
            wait = max(0.1, t0 + 2 * args.seconds + args.drain + 30 - time.monotonic())
            reports.append(pipe.recv() if pipe.poll(wait) else {"error": "no report in time"})
        wall = max(r.get("wall", 0) for r in reports)
        if spy is not None:
            spy.wait(30)
        serverCpu = server.cpu() - cpu0
        failed = [r["error"] for r in reports if r.get("error")]
        if failed:
            raise RuntimeError(failed[0])
        latencies = sorted(x for r in reports for x in r["latencies"])
        worst: dict[int, float] = {}
        for r in reports:
            for k, latency in r["worst"].items():
                worst[k] = max(latency, worst.get(k, 0.0))
        sent = sum(r["sent"] for r in reports)
        expected = sent * (args.players - 1)
        got = len(latencies)
        result.update({
            "sent": sent, "planned": total, "expected": expected, "delivered": got,
            "deliveries_per_s": round(got / args.seconds, 1),
            "p50_ms": ms(percentile(latencies, 50)), "p95_ms": ms(percentile(latencies, 95)),
            "p99_ms": ms(percentile(latencies, 99)), "max_ms": ms(latencies[-1] if latencies else None),
            "server_cpu_ms_per_1000": round(serverCpu * 1e6 / got, 1) if got else None,
            "server_cpu_pct": round(100 * serverCpu / wall, 1),
            "readers_cpu_pct": round(100 * sum(r["cpu"] for r in reports) / wall, 1),
            "readers_cpu_ms_per_1000": round(sum(r["cpu"] for r in reports) * 1e6 / got, 2)
            if got else None,
            # The C reader's epoll_wait returns and reads per 1 000 deliveries.
            "reader_wakeups_per_1000": round(sum(r.get("wakeups", 0) for r in reports) * 1e3
                                             / got, 1) if got else None,
            "reader_reads_per_1000": round(sum(r.get("reads", 0) for r in reports) * 1e3 / got,
                                           1) if got else None,
            # The C reader's CPU in the kernel (reads, epoll, TCP), its share.
            "readers_system_share": round(sum(r.get("system", 0) for r in reports)
                                          / max(1e-9, sum(r["cpu"] for r in reports)), 2),
            "busiest_reader_cpu_pct": round(100 * max(r["cpu"] for r in reports) / wall, 1),
            "send_late_max_ms": ms(max(r["late"] for r in reports)),
            # Is the tail a few late messages (stalls) or every message's last recipients?
            "messages_over_20ms": sum(w > 0.020 for w in worst.values()),
            "echo": sum(r["echo"] for r in reports), "stale": sum(r["stale"] for r in reports),
            "refused": sum(r["refused"] for r in reports),
            "rejoined": sum(r["rejoined"] for r in reports),
            "rejoin_sample": [x for r in reports for x in r["rejoin_sample"]][:1],
            "ok": sent == total and got == expected,
        })
    except Exception as e:
        result.update({"ok": False, "error": f"{type(e).__name__}: {e}"[:300]})
    finally:
        for proc, _ in workers:
            proc.join(15)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        server.stop()
    result["load_after"] = load1()
    if getattr(server, "log", None):
        result["server_log"] = str(server.log)
    return result


def ms(x: float | None) -> float | None:
    return None if x is None else round(1000 * x, 2)


def row(i: int, r: dict) -> str:
    if "p99_ms" not in r:
        return f"| {i} | {r['server']} | FAILED: {r.get('error')} | | | | | | | |"
    return (f"| {i} | {r['server']} | {r['deliveries_per_s']:.0f} ({r['delivered']}/"
            f"{r['expected']}) | {r['p50_ms']} / {r['p95_ms']} / **{r['p99_ms']}** / "
            f"{r['max_ms']} | {r['server_cpu_ms_per_1000']} | {r['server_cpu_pct']} | "
            f"{r['readers']} {r['reader']}: {r['readers_cpu_pct']} ({r['busiest_reader_cpu_pct']}); "
            f"{r['readers_cpu_ms_per_1000']} | "
            f"{r['messages_over_20ms']} of {r['sent']} | "
            f"{r['load_before']:.1f} → {r['load_after']:.1f} | "
            f"{'yes' if r['ok'] else 'NO'}"
            f"{', %d joined at the second try' % r['rejoined'] if r['rejoined'] else ''} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", default="minimal,wcs,janus",
                    help="comma-separated: minimal, janus, wcs[@TREE][:KEY=VALUE;...] "
                         "(settings of one wcs server separated by ';')")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--players", type=int, default=200)
    ap.add_argument("--rate", type=float, default=0.1, help="messages/s per participant")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--readers", type=int,
                    help="reader processes (default 1 for the C reader, 4 for Python's)")
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--drain", type=float, default=5)
    ap.add_argument("--join-timeout", type=float, default=120)
    ap.add_argument("--shared", default=next(
        (str(d) for d in (ROOT.parent / "shared" / "bench", ROOT.parent.parent / "shared" / "bench")
         if d.is_dir()), "../shared/bench"),
        help="the shared harnesses' directory (Janus only; default ../shared/bench, "
             "or ../../shared/bench from a worktree)")
    ap.add_argument("--nice", type=int, default=0,
                    help="run the server and the readers at this nice value (e.g. -10 on a "
                         "machine others load: they then wait less for a core; root)")
    ap.add_argument("--reader", default="c" if available() else "python",
                    help="the participants of wcs and the minimal server: c "
                         "(bench/chat_reader.c, built with gcc; the default when gcc is "
                         "there) or python (bench/chat_readers.py), or both in turn "
                         "(c,python: each server with each); Janus's are Python's")
    ap.add_argument("--loop", choices=("asyncio", "uvloop"),
                    default="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
                    help="the readers' event loop for wcs and the minimal server (default "
                         "uvloop when installed: half the readers' CPU of asyncio's)")
    ap.add_argument("--py-spy", metavar="DIR",
                    help="profile the server (not Janus) over each window with py-spy: "
                         "collapsed stacks to DIR/RUN-KIND.txt")
    ap.add_argument("--server-log", metavar="DIR",
                    help="wcs's log to a file in DIR (its path in the JSON line), e.g. for "
                         "wcs:ws_send_delay_report=1;gc_report=1 (the server's own delay and "
                         "its collector's pauses)")
    ap.add_argument("--json", help="append each run's figures here as JSON lines")
    args = ap.parse_args()
    args.shared = str(Path(args.shared).resolve())
    servers = [s.replace(";", ",") for s in args.server.split(",")]
    if "janus" in servers and not os.environ.get(NETNS_ENV):
        # Janus refuses loopback ICE candidates: the shared harness's namespace.
        setup = shared(args.shared)._sfu().NETNS_SETUP
        cmd = ["unshare", "--net", "sh", "-c", setup + 'exec "$0" "$@"',
               PYTHON, os.path.abspath(__file__)] + sys.argv[1:]
        sys.exit(subprocess.call(cmd, env=dict(os.environ, **{NETNS_ENV: "1"})))
    print(f"{args.players} in a room, {args.rate:g} msg/s each, {args.seconds:g} s, "
          f"{args.readers or 'C: 1, Python: 4'} reader processes ({args.reader}; python "
          f"on {args.loop}), "
          f"{os.cpu_count()} CPUs, "
          f"nice {args.nice}", flush=True)
    print("| run | server | deliveries/s (got/expected) | p50 / p95 / p99 / max ms | "
          "server CPU ms per 1 000 | server % of a core | "
          "readers % of a core (busiest); ms per 1 000 | "
          "messages with a delivery over 20 ms | load 1 min | ok |")
    print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
    readers = args.reader.split(",")
    if set(readers) - {"c", "python"}:
        raise SystemExit(f"--reader: {args.reader!r} (c, python or both)")
    variants = [(spec, kind) for spec in servers
                for kind in (["python"] if spec == "janus" else readers)]
    named = {v: v[0] if len(readers) == 1 or v[0] == "janus" else f"{v[0]} ({v[1]} reader)" for v in variants}
    serial = 0
    results: dict[str, list[dict]] = {name: [] for name in named.values()}
    try:
        for i in range(args.rounds):
            for variant in variants:
                serial += 1
                r = runOnce(variant[0], args, serial, variant[1])
                results[named[variant]].append(r)
                print(row(i + 1, r), flush=True)
                if args.json:
                    with open(args.json, "a") as out:
                        out.write(json.dumps(r) + "\n")
    finally:
        if args.nice:  # the readers' autogroup is this session's: give it back
            renice(os.getpid(), 0)
    summary(results)


def summary(results: dict[str, list[dict]]) -> None:
    """The issue's figures per server: p99 against 20 ms, CPU against Janus's."""
    def median(rows, key):
        values = [r[key] for r in rows if r.get("ok") and r.get(key) is not None]
        return round(statistics.median(values), 2) if values else None

    janus = median(results.get("janus", []), "server_cpu_ms_per_1000")
    print("\n| server | ok runs | p99 ms, each run | median p99 | p99 < 20 ms | "
          "CPU ms per 1 000, median | CPU vs Janus |")
    print("|---|---|---|---|---|---|---|")
    for spec, rows in results.items():
        p99, cpu = median(rows, "p99_ms"), median(rows, "server_cpu_ms_per_1000")
        each = ", ".join(str(r["p99_ms"]) if r.get("ok") else "failed" for r in rows)
        print(f"| {spec} | {sum(bool(r.get('ok')) for r in rows)} of {len(rows)} | {each} | "
              f"{p99} | {'–' if p99 is None else 'yes' if p99 < 20 else 'no'} | {cpu} | "
              f"{'–' if not (cpu and janus) else f'{cpu / janus:.2f}×'} |")
    print(f"\nload average at the end: {load1():.1f} (1 min)")


if __name__ == "__main__":
    main()
