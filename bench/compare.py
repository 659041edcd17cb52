"""
wcs side by side with Janus and nginx-rtmp: runs the shared harnesses
(C{sfu_load.py}, C{signalling_load.py}, C{rtmp_load.py} in the directory
given by C{--shared}, C{make bench-compare} passes C{SHARED_BENCH}) with the
reference and with wcs, one invocation each, and prints the ratios the
targets of docs/performance.md are written in.

    .venv/bin/python bench/compare.py [--shared ../shared/bench] [--only chat,sfu,rtmp]
    .venv/bin/python bench/compare.py --report state/bench-compare/STAMP

Results (the harnesses' JSON lines) go to C{state/bench-compare/STAMP/};
C{--report DIR} prints the ratios of an earlier run again. Needs root (the
Janus harnesses use C{unshare --net}). Every run is bounded by a timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
TWISTD = str(Path(sys.executable).with_name("twistd"))
HARNESSES = ("sfu_load.py", "signalling_load.py", "rtmp_load.py")


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wcsCommand(wsPort: int, rtmpPort: int = 0, extra: str = "") -> str:
    # `exec`: the harness measures the PID it started, which must be the server.
    return (f"exec {TWISTD} -n --pidfile= wcs --listen 127.0.0.1 --ws-port {wsPort} "
            f"--wss-port 0 --http-port 0 --https-port 0 --rtmp-port {rtmpPort} {extra}")


def run(cmd: list[str], timeout: float) -> None:
    print("+", " ".join(cmd), flush=True)
    try:
        subprocess.run(cmd, timeout=timeout, check=False, cwd=ROOT)
    except subprocess.TimeoutExpired:
        print(f"  gave up after {timeout:.0f} s", flush=True)


def chat(shared: Path, out: Path, args) -> None:
    common = ["--players", args.chat_players, "--seconds", str(args.chat_seconds),
              "--storm", str(args.storm)]
    run([PY, str(shared / "signalling_load.py"), "--backend", "janus", *common,
         "--out", str(out / "chat-janus.jsonl")], 900)
    port = freePort()
    # All clients come from 127.0.0.1 and 200 share a room: lift the caps
    # (100 connections per address, 100 participants per room).
    caps = "--set ws_max_connections_per_address=0 --set room_max_participants=0"
    run([PY, str(shared / "signalling_load.py"), "--backend", "wcs", *common,
         "--wcs-url", f"ws://127.0.0.1:{port}/", "--wcs-cmd", wcsCommand(port, 0, caps),
         "--out", str(out / "chat-wcs.jsonl")], 900)


def sfu(shared: Path, out: Path, args) -> None:
    common = ["--players", args.sfu_players, "--codec", args.codecs,
              "--seconds", str(args.sfu_seconds)]
    media = ("--set ice_public_ip=127.0.0.1 --set media_port_from=0 --set media_port_to=0"
             + "".join(f" --set {setting}" for setting in args.wcs_set))
    # --repeat: Janus and wcs alternate (A B A B), so that a machine whose load
    # drifts weighs on both sides alike; each run's load is kept next to it.
    for turn in range(args.repeat):
        for backend in ("janus", "wcs"):
            with open(out / "sfu-load.jsonl", "a") as f:
                f.write(json.dumps({"backend": backend, "turn": turn,
                                    "load1": os.getloadavg()[0]}) + "\n")
            if backend == "janus":
                run([PY, str(shared / "sfu_load.py"), "--backend", "janus", *common,
                     "--out", str(out / "sfu-janus.jsonl")], 1200)
                continue
            port = freePort()
            run([PY, str(shared / "sfu_load.py"), "--backend", "wcs", *common,
                 "--wcs-url", f"ws://127.0.0.1:{port}/",
                 "--wcs-cmd", wcsCommand(port, 0, media),
                 "--out", str(out / "sfu-wcs.jsonl")], 1200)


def schedstat(row: dict) -> float | None:
    """Server ms/s from the harness's schedstat figure (ns-exact, not 10 ms ticks)."""
    cpu, window = row.get("server_cpu_s_schedstat"), row.get("window_s")
    return 1000 * cpu / window if cpu is not None and window else None


def sfuTurns(out: Path) -> None:
    """Each A B turn of a --repeat run: ingest alone and with one player, per codec."""
    loads = rows(out / "sfu-load.jsonl")
    if len(loads) <= 2:
        return
    sfuRows = rows(out / "sfu-janus.jsonl") + rows(out / "sfu-wcs.jsonl")
    # A starved encoder (a loaded machine) sends fewer frames to one side than
    # to the other: the publisher's fps and the ms per frame say how equal.
    print("\n| codec, players | turn | Janus ms/s (load) | wcs ms/s (load) | wcs / Janus "
          "| publisher fps (Janus, wcs) | ratio per frame | kbit/s to the player (Janus, wcs) |")
    print("|---|---|---|---|---|---|---|---|")
    for codec in sorted({r["codec"] for r in sfuRows if r.get("ok")}):
        for n in sorted({r["players"] for r in sfuRows if r["codec"] == codec}):
            ratios = []
            turns = max(load["turn"] for load in loads) + 1
            for turn in range(turns):
                got = {}
                for backend in ("janus", "wcs"):
                    mine = [r for r in sfuRows if r["backend"] == backend
                            and r["codec"] == codec and r["players"] == n]
                    load = [x["load1"] for x in loads if x["backend"] == backend
                            and x["turn"] == turn]
                    row = mine[turn] if turn < len(mine) else {}
                    got[backend] = (schedstat(row) if row.get("ok") else None,
                                    load[0] if load else None, row.get("kbps_per_sub_mean"),
                                    row.get("publisher_fps"))
                (j, jl, jk, jf), (w, wl, wk, wf) = got["janus"], got["wcs"]
                perFrame = w / wf / (j / jf) if j and w and jf and wf else None
                if j and w:
                    ratios.append((w / j, perFrame))
                print(f"| {codec}, {n} | {turn + 1} | {fmt(j)} ({fmt(jl, 1)}) | "
                      f"{fmt(w)} ({fmt(wl, 1)}) | {ratio(w, j)} | {fmt(jf, 1)}, {fmt(wf, 1)} | "
                      f"{fmt(perFrame)}× | {fmt(jk, 0)}, {fmt(wk, 0)} |")
            if ratios:
                frames = [f for _, f in ratios if f is not None]
                print(f"| {codec}, {n} | mean | | | "
                      f"**{statistics.fmean(r for r, _ in ratios):.2f}×** | | "
                      f"{fmt(statistics.fmean(frames) if frames else None)}× | |")


def rtmp(shared: Path, out: Path, args) -> None:
    # rtmp_load.py starts nginx itself but needs wcs running.
    port = freePort()
    server = subprocess.Popen(wcsCommand(0, port), shell=True, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("wcs did not listen for RTMP within 30 s")
            time.sleep(0.2)
        run([PY, str(shared / "rtmp_load.py"), "--backend", "nginx", "--backend", "wcs",
             "--wcs-url", f"rtmp://127.0.0.1:{port}/live", "--wcs-pid", str(server.pid),
             "--n", args.rtmp_players, "--window", str(args.rtmp_seconds),
             "--out", str(out / "rtmp.jsonl")], 1200)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


def rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x."""
    if len({x for x, _ in points}) < 2:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    return (sum((x - mx) * (y - my) for x, y in points)
            / sum((x - mx) ** 2 for x, _ in points))


def ratio(ours, theirs) -> str:
    if ours is None or not theirs:
        return "–"
    return f"{ours / theirs:.2f}×"


def fmt(x, digits=2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def report(out: Path) -> None:
    print(f"\n## Ratios ({out})\n")
    print("| line | wcs | reference | ratio | target |")
    print("|---|---|---|---|---|")
    # WebRTC: ingest (N=0) and per extra player (slope over N).
    sfuRows = rows(out / "sfu-janus.jsonl") + rows(out / "sfu-wcs.jsonl")
    for codec in sorted({r["codec"] for r in sfuRows if r.get("ok")}):
        fig = {}
        for backend in ("wcs", "janus"):
            pts = [(r["players"], r["server_cpu_ms_per_second"]) for r in sfuRows
                   if r.get("ok") and r["backend"] == backend and r["codec"] == codec]
            ingest = [y for x, y in pts if x == 0]
            fig[backend] = (statistics.fmean(ingest) if ingest else None, slope(pts),
                            slope([(x, y) for x, y in pts if x >= 1]))
        (wi, ws, ws1), (ji, js, js1) = fig["wcs"], fig["janus"]
        print(f"| WebRTC ingest, {codec} (ms/s) | {fmt(wi)} | Janus {fmt(ji)} | "
              f"{ratio(wi, ji)} | ≤ 0.8× |")
        print(f"| WebRTC per extra player, {codec} (ms/s) | {fmt(ws)} | Janus {fmt(js)} | "
              f"{ratio(ws, js)} | ≤ 0.7× |")
        # wcs reads an unwatched publisher in batches (media_idle_read_interval):
        # the step from N=0 to 1 holds that switch, the slope over N >= 1 not.
        print(f"| (same, slope over N ≥ 1), {codec} (ms/s) | {fmt(ws1)} | Janus {fmt(js1)} | "
              f"{ratio(ws1, js1)} | |")
    chatRows = rows(out / "chat-janus.jsonl") + rows(out / "chat-wcs.jsonl")
    for n in sorted({r["players"] for r in chatRows if r.get("kind") == "chat"}):
        got = {r["backend"]: r for r in chatRows
               if r.get("kind") == "chat" and r["players"] == n and r.get("ok")}
        w, j = got.get("wcs", {}), got.get("janus", {})
        wc, jc = w.get("server_cpu_ms_per_1000_delivered"), j.get("server_cpu_ms_per_1000_delivered")
        print(f"| chat, {n} in a room: CPU ms per 1 000 deliveries "
              f"({fmt(w.get('delivered_msgs_per_s'), 0)}/s), p99 | {fmt(wc, 1)}, "
              f"p99 {fmt(w.get('latency_p99_ms'), 1)} ms | Janus {fmt(jc, 1)}, "
              f"p99 {fmt(j.get('latency_p99_ms'), 1)} ms | {ratio(wc, jc)} | ≤ 0.5×, p99 < 20 ms |")
    storm = {r["backend"]: r for r in chatRows if r.get("kind") == "join_storm" and r.get("ok")}
    if storm:
        w, j = storm.get("wcs", {}), storm.get("janus", {})
        print(f"| join storm ({w.get('players', j.get('players'))} at once): joins/s, p99 | "
              f"{w.get('joins_per_s', '–')}, {w.get('join_latency_p99_ms', '–')} ms | "
              f"Janus {j.get('joins_per_s', '–')}, {j.get('join_latency_p99_ms', '–')} ms | "
              f"{ratio(w.get('joins_per_s'), j.get('joins_per_s'))} the joins/s | "
              f"≥ 500/s, p99 < 500 ms |")
    rtmpRows = rows(out / "rtmp.jsonl")
    fig = {}
    for backend in ("wcs", "nginx"):
        pts = [(r["n_players"], 1000 * r["server_cores"]) for r in rtmpRows
               if r["backend"] == backend and r.get("players_alive") == r["n_players"]]
        one = [y for x, y in pts if x == 1]
        fig[backend] = (statistics.fmean(one) if one else None, slope(pts))
    if rtmpRows:
        (w1, ws), (n1, ns) = fig["wcs"], fig["nginx"]
        print(f"| RTMP relay, one player (ms/s) | {fmt(w1)} | nginx-rtmp {fmt(n1)} | "
              f"{ratio(w1, n1)} | ≤ 2× |")
        print(f"| RTMP relay, per extra player (ms/s) | {fmt(ws)} | nginx-rtmp {fmt(ns)} | "
              f"{ratio(ws, ns)} | ≤ 1.5× |")
    sfuTurns(out)
    print(f"\nload average: {os.getloadavg()[0]:.2f} (1 min) at report time")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "bench"),
                    help="directory of the shared harnesses (default ../shared/bench)")
    ap.add_argument("--only", default="chat,sfu,rtmp", help="which lines to run")
    ap.add_argument("--report", metavar="DIR", help="print the ratios of an earlier run")
    ap.add_argument("--chat-players", default="10,50,200")
    ap.add_argument("--chat-seconds", type=float, default=15)
    ap.add_argument("--storm", type=int, default=200)
    ap.add_argument("--sfu-players", default="0,1,5,10")
    ap.add_argument("--sfu-seconds", type=float, default=10)
    ap.add_argument("--codecs", default="h264,vp8")
    ap.add_argument("--repeat", type=int, default=1,
                    help="WebRTC: Janus then wcs, this many times (A B A B); the report "
                         "adds each turn's schedstat ms/s and ratio, with the load average")
    ap.add_argument("--wcs-set", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting for wcs in the WebRTC runs (repeatable), e.g. "
                         "media_idle_read_interval=0")
    ap.add_argument("--rtmp-players", default="1,5,10")
    ap.add_argument("--rtmp-seconds", type=float, default=20)
    args = ap.parse_args()
    if args.report:
        report(Path(args.report))
        return
    shared = Path(args.shared).resolve()
    missing = [h for h in HARNESSES if not (shared / h).is_file()]
    if missing:
        raise SystemExit(f"bench-compare: the shared harnesses are not in {shared} "
                         f"(missing {', '.join(missing)}); give their directory with "
                         "SHARED_BENCH=DIR (make) or --shared DIR")
    out = ROOT / "state" / "bench-compare" / time.strftime("%Y%m%dT%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    print(f"results in {out}; load average {os.getloadavg()}", flush=True)
    lines = {"chat": chat, "sfu": sfu, "rtmp": rtmp}
    for name in args.only.split(","):
        if name not in lines:
            raise SystemExit(f"--only: unknown line {name!r} (chat, sfu, rtmp)")
        lines[name](shared, out, args)
    report(out)


if __name__ == "__main__":
    main()
