"""
How much of the chat harness's latency is the server's: the shared harness
(C{signalling_load.py}, 200 in a room, 4 000 deliveries/s by default) run
against the least server that can answer it (C{bench/minimal_chat_server.py})
and against wcs, in turn (minimal, wcs, minimal, wcs, ...), a fresh server
per run, the 1-minute load average beside every figure. Each server also
measures its own part of each frame's delay, from the read that carried the
message to the send of each frame it produced (wcs: C{ws_send_delay_report}),
in one-second intervals; the intervals of the chat window (at least half the
window's frame rate) are summarised as the median p50 and the highest p99 and
max.

    .venv/bin/python bench/chat_floor.py [--players 200] [--rounds 2] [--seconds 10]
        [--shared ../shared/bench]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.chat_ab import TWISTD, freePort, load1  # noqa: E402

WCS_LINE = re.compile(r"send delay over \d+s: (\d+) frames, p50 ([\d.]+) ms, p90 ([\d.]+) ms, "
                      r"p99 ([\d.]+) ms, max ([\d.]+) ms")


def serverCommand(kind: str, port: int, delays: Path) -> str:
    if kind == "minimal":
        return (f"exec {sys.executable} {ROOT / 'bench' / 'minimal_chat_server.py'} {port} "
                f"--delays {delays}")
    return (f"cd {ROOT} && exec {TWISTD} -n --pidfile= --logfile={delays} wcs "
            f"--listen 127.0.0.1 --ws-port {port} --wss-port 0 --http-port 0 --https-port 0 "
            f"--rtmp-port 0 --set ws_max_connections_per_address=0 "
            f"--set room_max_participants=0 --set ws_send_delay_report=1")


def intervals(kind: str, delays: Path) -> list[dict]:
    """Each second's figures the server wrote: frames, p50, p99, max (ms)."""
    if not delays.exists():
        return []
    if kind == "minimal":
        return [json.loads(line) for line in delays.read_text().splitlines() if line.strip()]
    return [{"frames": int(m[0]), "p50": float(m[1]), "p90": float(m[2]), "p99": float(m[3]),
             "max": float(m[4])} for m in WCS_LINE.findall(delays.read_text())]


def runOne(shared: Path, kind: str, players: int, seconds: float) -> tuple[dict, dict]:
    port = freePort()
    with tempfile.TemporaryDirectory() as tmp:
        out, delays = Path(tmp) / "out.jsonl", Path(tmp) / "delays"
        run = subprocess.run([sys.executable, str(shared / "signalling_load.py"), "--backend", "wcs",
                        "--players", str(players), "--seconds", str(seconds), "--storm", "0",
                        "--wcs-url", f"ws://127.0.0.1:{port}/",
                        "--wcs-cmd", serverCommand(kind, port, delays),
                        "--out", str(out)], timeout=600, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()] \
            if out.exists() else []
        result = rows[-1] if rows else {"error": run.stderr.strip()[-300:]}
        seen = intervals(kind, delays)
    # The chat window's seconds: deliveries and their answers, at least half the rate.
    rate = 2 * result.get("delivered_msgs_per_s", 0)
    window = [s for s in seen if rate and s.get("frames", 0) >= rate / 2]
    own = {}
    if window:
        own = {"seconds": len(window), "p50": statistics.median(s["p50"] for s in window),
               "p99": max(s["p99"] for s in window), "max": max(s["max"] for s in window)}
    return result, own


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--players", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "bench")
    args = ap.parse_args()
    print("| run | server | deliveries/s | harness p50 / p99 / max ms | server's own p50 / p99 / "
          "max ms (seconds) | server CPU ms per 1 000 | harness CPU % | load 1 min | "
          "host busy % | ok |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for i in range(args.rounds):
        for kind in ("minimal", "wcs"):
            before = load1()
            r, own = runOne(args.shared, kind, args.players, args.seconds)
            ownText = (f"{own['p50']:.2f} / {own['p99']:.2f} / {own['max']:.2f} "
                       f"({own['seconds']})" if own else "–")
            print(f"| {i + 1} | {kind} | {r.get('delivered_msgs_per_s')} | "
                  f"{r.get('latency_p50_ms')} / {r.get('latency_p99_ms')} / "
                  f"{r.get('latency_max_ms')} | {ownText} | "
                  f"{r.get('server_cpu_ms_per_1000_delivered')} | "
                  f"{r.get('harness_cpu_pct_of_one_core')} | {before:.1f} → {load1():.1f} | "
                  f"{r.get('host_busy_pct')} | {'yes' if r.get('ok') else 'NO: ' + str(r.get('error'))} |",
                  flush=True)


if __name__ == "__main__":
    main()
