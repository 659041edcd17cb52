"""
RTMP relay cost: one ffmpeg publisher (640x480 @ 30 fps, ~1 Mbit/s H.264 +
AAC, sent with -c copy from a file made first) and N ffmpeg players (-c copy,
output discarded) on loopback. Prints the server's CPU per second for each N
and the marginal cost per extra player against N=1 in the same run.

    .venv/bin/python bench/rtmp.py [--players 1,5,10] [--seconds 10]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.signalling import cpuSeconds  # noqa: E402
from tests.support.server import startServer  # noqa: E402


def makeSource(path: Path, seconds: int) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=640x480:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
         "-t", str(seconds), "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "veryfast",
         "-tune", "zerolatency", "-b:v", "1M", "-maxrate", "1M", "-bufsize", "2M", "-g", "60",
         "-c:a", "aac", "-b:a", "64k", "-f", "flv", str(path)], check=True, timeout=120)


def measure(url: str, pid: int, source: Path, players: int, seconds: float) -> dict:
    publisher = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
         "-i", str(source), "-c", "copy", "-f", "flv", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [publisher]
    try:
        time.sleep(3)  # publisher live (first keyframe) before players come
        for _ in range(players):
            procs.append(subprocess.Popen(
                ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", url, "-c", "copy",
                 "-f", "null", "-"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(2)  # players started
        cpu0, wall0 = cpuSeconds(pid), time.monotonic()
        time.sleep(seconds)
        cpu, wall = cpuSeconds(pid) - cpu0, time.monotonic() - wall0
        alive = sum(p.poll() is None for p in procs[1:])
        return {"cpu ms/s": 1000 * cpu / wall, "players alive": alive}
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--players", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1, 5, 10])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    source = work / "source.flv"
    makeSource(source, 20)
    server = startServer(work / "server", enable=("rtmp",), settings={"log_level": "warn"})
    url = f"rtmp://127.0.0.1:{server.ports['rtmp']}/live/bench"
    try:
        results = {n: measure(url, server.proc.pid, source, n, args.seconds) for n in args.players}
    finally:
        server.stop()
    base = results[args.players[0]]["cpu ms/s"]
    print("players  server CPU ms/s  per extra player ms/s  players alive")
    for n, r in results.items():
        extra = (r["cpu ms/s"] - base) / (n - args.players[0]) if n != args.players[0] else 0.0
        print(f"{n:7d}  {r['cpu ms/s']:15.1f}  {extra:21.2f}  {r['players alive']:13d}")


if __name__ == "__main__":
    main()
