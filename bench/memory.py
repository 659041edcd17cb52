"""
Server memory per client: the RSS slopes of one wcs process over N.

Starts its own server (limits raised, as bench/loadgen.py does), then adds
clients in steps and reads the server's VmRSS after each step has settled:

- idle WebSocket sessions (connected, the `connection` message sent, pings
  answered), up to --ws of them (10 000 by default: the descriptor limits
  are raised to the hard limit, or 65536 for root);
- WebRTC players of one publisher (ICE, DTLS-SRTP, the stream forwarded;
  each with its own WebSocket session as a browser has).

For each it prints the RSS at each step and the least-squares slope in KB
per client. The load generator's processes are loadgen's own (one per step).

    .venv/bin/python bench/memory.py [--ws 0,2000,4000,6000,8000,10000]
        [--players 0,50,100,150,200]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loadgen import Workers, raiseFileLimit, rss, startServer  # noqa: E402

SETTLE = 3.0  # s after a step before RSS is read


def slope(points: list[tuple[int, int]]) -> float:
    """Least-squares bytes per client."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else float("nan")


def steps(workers: Workers, pid: int, counts: list[int], add) -> list[tuple[int, int]]:
    """Grow to each count in turn (add(first, k) starts k more, says how many
    came); RSS at each."""
    points, have = [], 0
    for count in counts:
        if count > have:
            have += add(have, count - have)
        time.sleep(SETTLE)
        points.append((have, rss(pid)))
        print(f"  {have:6d} clients: server RSS {points[-1][1] / 2**20:7.1f} MB",
              file=sys.stderr)
    return points


def measure(args, kind: str, counts: list[int]) -> dict:
    server, url = startServer({}, args.server_log)
    workers = Workers()
    try:
        def ready(started: int) -> int:
            answers = workers.collect(900, workers.pipes[-started:])
            for answer in answers:
                if answer["failures"]:
                    print(f"  {answer['failures']} failed: {answer['failed'][:2]}",
                          file=sys.stderr)
            return sum(a["ready"] for a in answers)

        if kind == "ws":
            def add(first, k):
                parts = range(0, k, args.per_process)
                for part in parts:
                    workers.start(url, "idle", ["idle"] * min(args.per_process, k - part),
                                  first + part, 0, args.parallel)
                return ready(len(parts))
        else:
            workers.start(url, "publish", ["mem"], 0, args.bitrate, args.parallel)
            workers.collect(60)
            time.sleep(1)

            def add(first, k):
                workers.start(url, "play", ["mem"] * k, first, args.bitrate, args.parallel)
                return ready(1)
        points = steps(workers, server.pid, counts, add)
        # Held past the server's dead-peer timeout: still all connected?
        time.sleep(args.hold)
        held = sum(answer["open"] for answer in workers.snapshot()
                   if "open" in answer)
        alive = server.poll() is None
    finally:
        workers.stop()
        server.terminate()
        try:
            server.wait(15)
        except Exception:
            server.kill()
    return {"kind": kind, "points": [(n, round(r / 2**20, 1)) for n, r in points],
            "kb_per_client": round(slope(points) / 1024, 1), "server_alive": alive,
            f"sessions_open_after_{args.hold:g}s": held}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ws", default="0,2000,4000,6000,8000,10000")
    parser.add_argument("--players", default="0,50,100,150,200")
    parser.add_argument("--per-process", type=int, default=2000,
                        help="idle sessions per generator process")
    parser.add_argument("--parallel", type=int, default=50, help="connects at once per process")
    parser.add_argument("--bitrate", type=int, default=1_000_000)
    parser.add_argument("--hold", type=float, default=30,
                        help="s to hold the last step before counting open sessions")
    parser.add_argument("--server-log", default="/tmp/memory-server.log")
    args = parser.parse_args()
    raiseFileLimit()
    for kind, counts in (("ws", args.ws), ("players", args.players)):
        if counts:
            print(json.dumps(measure(args, kind, [int(c) for c in counts.split(",")])),
                  flush=True)


if __name__ == "__main__":
    main()
