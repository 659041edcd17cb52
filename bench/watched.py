"""
What a publisher's players cost, variant against variant: server CPU and
wake-ups of wcs with one publisher and N players, each variant (a checkout
and settings) with its own server and its own client process.

With C{--together} (the default) every variant's client runs at the same
time, so that all of them share the machine's load, as in L{bench.idle};
C{--serial} runs them one after the other, in the order given, every round
(A B A B). The client is the shared harness's own (C{sfu_load.run_one},
imported from C{--shared}, attached to the server by its PID): the same
publisher (640x480 @ 30, ~1 Mbit/s) and players that count frames without
decoding. Over its window the server's schedstat CPU and voluntary context
switches (one per blocking C{epoll_wait}: a wake-up) are read.

    .venv/bin/python bench/watched.py --players 0,1 --codec vp8 --rounds 3 \\
        --variant main=/path/to/main-checkout --variant branch=. \\
        --variant grid=.,media_watched_read_interval=0.005
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.idle import PYTHON, sample, start, stopAll, waitListening  # noqa: E402

MEDIA = ("ice_public_ip=127.0.0.1", "media_port_from=0", "media_port_to=0")


def client(args) -> None:
    """One run of the shared harness against a running server; prints its JSON
    line, with the server's wake-ups over the same window added."""
    sys.path.insert(0, args.shared)
    import sfu_load
    from aiortc.codecs import h264, vpx
    h264.MAX_BITRATE = min(h264.MAX_BITRATE, 1_000_000)
    vpx.MAX_BITRATE = min(vpx.MAX_BITRATE, 1_000_000)
    pid = int(args.pid)
    marks = []
    schedstat = sfu_load.proc_cpu_schedstat

    def measured(pids):  # run_one reads it once before and once after its window
        marks.append(sample(pid))
        return schedstat(pids)

    sfu_load.proc_cpu_schedstat = measured
    ns = argparse.Namespace(
        backend="wcs", wcs_url=args.url, wcs_pid=args.pid, wcs_cmd=None,
        seconds=args.seconds, warmup=3.0, first_frame_timeout=30.0, audio=False,
        decode=False, max_players=max(1, args.players))
    result = asyncio.run(sfu_load.run_one(ns, args.codec, args.players))
    if len(marks) == 2 and result.get("ok"):
        (cpu0, wakes0), (cpu1, wakes1) = marks
        result["wakeups_per_s"] = (wakes1 - wakes0) / result["window_s"]
        result["us_per_wakeup"] = (cpu1 - cpu0) / 1e3 / max(1, wakes1 - wakes0)
    print(json.dumps(result), flush=True)


def runClients(servers: dict, players: int, args, names: list[str]) -> dict:
    """Run the clients of C{names} at once; their result rows by name."""
    procs = {}
    for name in names:
        proc, port = servers[name]
        procs[name] = subprocess.Popen(
            [str(PYTHON), __file__, "client", "--shared", args.shared, "--pid", str(proc.pid),
             "--url", f"ws://127.0.0.1:{port}/", "--players", str(players),
             "--codec", args.codec, "--seconds", str(args.seconds)],
            stdout=subprocess.PIPE, text=True)
    rows = {}
    for name, proc in procs.items():
        try:
            out, _ = proc.communicate(timeout=args.seconds + 180)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        lines = [line for line in out.splitlines() if line.startswith("{")]
        rows[name] = json.loads(lines[-1]) if lines else {"ok": False}
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        ap = argparse.ArgumentParser()
        for name in ("--shared", "--pid", "--url", "--codec"):
            ap.add_argument(name, required=True)
        ap.add_argument("--players", type=int, required=True)
        ap.add_argument("--seconds", type=float, required=True)
        return client(ap.parse_args(sys.argv[2:]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", action="append", required=True, metavar="NAME=ROOT[,K=V...]")
    ap.add_argument("--players", default="0,1")
    ap.add_argument("--codec", default="vp8")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--serial", action="store_true", help="one variant at a time (A B A B)")
    ap.add_argument("--shared", default="../shared/bench", help="the shared harnesses")
    args = ap.parse_args()
    args.shared = str(Path(args.shared).resolve())
    variants = {name: ",".join((spec, *MEDIA)) for name, spec in
                (v.split("=", 1) for v in args.variant)}
    players = [int(n) for n in args.players.split(",")]
    figures: dict[tuple, list] = {}
    print("| round | N | variant | load 1 min | CPU ms/s | wake-ups/s | µs per wake-up "
          "| publisher fps | player fps (min) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in range(1, args.rounds + 1):
        for count in players:
            # Fresh servers per row: nothing left from the last row's sessions.
            servers = {name: start(spec) for name, spec in variants.items()}
            try:
                for name, (proc, port) in servers.items():
                    waitListening(name, proc, port)
                groups = [[name] for name in variants] if args.serial else [list(variants)]
                for group in groups:
                    load = os.getloadavg()[0]
                    for name, row in runClients(servers, count, args, group).items():
                        if not row.get("ok"):
                            print(f"| {n} | {count} | {name} | {load:.1f} | failed: "
                                  f"{row.get('error')} | | | | |", flush=True)
                            continue
                        ms = 1000 * row["server_cpu_s_schedstat"] / row["window_s"]
                        figures.setdefault((count, name), []).append(ms)
                        print(f"| {n} | {count} | {name} | {load:.1f} | {ms:.2f} | "
                              f"{row['wakeups_per_s']:.1f} | {row['us_per_wakeup']:.0f} | "
                              f"{row['publisher_fps']:.1f} | {row.get('fps_per_sub_min') or '-'} |",
                              flush=True)
            finally:
                stopAll(list(servers.values()))
            time.sleep(1)
    print()
    for (count, name), values in sorted(figures.items()):
        print(f"N = {count}, {name}: mean {statistics.fmean(values):.2f} ms/s, "
              f"range {min(values):.2f}-{max(values):.2f} over {len(values)} rounds")


if __name__ == "__main__":
    sys.exit(main())
