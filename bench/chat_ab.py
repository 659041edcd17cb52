"""
Chat A/B on a shared machine: the shared harness (C{signalling_load.py}) run
against two wcs trees in turn (A B A B ...), a fresh server per run, with the
1-minute load average recorded beside every figure, so that a change is
judged against runs made under the same load.

    .venv/bin/python bench/chat_ab.py --a /tmp/base --b . [--players 10,50,200]
        [--rounds 2] [--seconds 10] [--shared ../shared/bench]

C{--a}/C{--b} are source trees of wcs (a C{git archive} of the commit to
compare against, and this worktree); each server runs with this venv and its
tree first on C{PYTHONPATH}. Prints one row per run and the medians per tree
and size: server CPU ms per 1 000 deliveries and latency p99, the issue's
figures.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TWISTD = str(Path(sys.executable).with_name("twistd"))


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def runOne(shared: Path, tree: Path, players: str, seconds: float, extra: str) -> list[dict]:
    port = freePort()
    cmd = (f"cd {tree} && exec env PYTHONPATH={tree} {TWISTD} -n --pidfile= wcs "
           f"--listen 127.0.0.1 --ws-port {port} --wss-port 0 --http-port 0 --https-port 0 "
           f"--rtmp-port 0 --set ws_max_connections_per_address=0 "
           f"--set room_max_participants=0 {extra}")
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as out:
        subprocess.run([sys.executable, str(shared / "signalling_load.py"), "--backend", "wcs",
                        "--players", players, "--seconds", str(seconds), "--storm", "0",
                        "--wcs-url", f"ws://127.0.0.1:{port}/", "--wcs-cmd", cmd,
                        "--out", out.name], timeout=900, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return [json.loads(line) for line in out.read().splitlines() if line.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, type=Path, help="tree A (before)")
    ap.add_argument("--b", default=ROOT, type=Path, help="tree B (after)")
    ap.add_argument("--players", default="10,50,200")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "bench")
    ap.add_argument("--set", default="", help="extra server options for both, e.g. "
                    "'--set key=value'")
    args = ap.parse_args()
    got: dict = {}
    print("| run | tree | N | deliveries/s | CPU ms per 1 000 | p50 / p99 ms | load 1 min | "
          "host busy % | ok |")
    print("|---|---|---|---|---|---|---|---|---|")
    for i in range(args.rounds):
        for label, tree in (("A", args.a), ("B", args.b)):
            before = load1()
            for r in runOne(args.shared, tree.resolve(), args.players, args.seconds, args.set):
                if r.get("kind") != "chat":
                    continue
                n = r["players"]
                cpu = r.get("server_cpu_ms_per_1000_delivered")
                p99 = r.get("latency_p99_ms")
                if r.get("ok"):
                    got.setdefault((label, n), []).append((cpu, p99))
                print(f"| {i + 1} | {label} | {n} | {r.get('delivered_msgs_per_s')} | {cpu} | "
                      f"{r.get('latency_p50_ms')} / {p99} | {before:.1f} → {load1():.1f} | "
                      f"{r.get('host_busy_pct')} | {'yes' if r.get('ok') else 'NO'} |",
                      flush=True)
    print("\nmedians: tree, N, CPU ms per 1 000 deliveries, p99 ms")
    for (label, n), values in sorted(got.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(f"  {label} N={n}: {statistics.median(v[0] for v in values):.1f} ms, "
              f"p99 {statistics.median(v[1] for v in values):.1f} ms ({len(values)} runs)")


if __name__ == "__main__":
    main()
