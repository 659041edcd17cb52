"""
Signalling throughput of wcs against a minimal `websockets` server, on
loopback: a storm of clients joining one room at once, then N participants
chatting to each other. Prints joins/s with latency percentiles, and chat
deliveries/s with the server's CPU per 1000 deliveries and delivery latency.
No assertion: figures only (docs/performance.md keeps the latest).

With C{--hook}, the join storm only, against wcs without and with REST
hooks (C{rest_hook_url}) to a backend on localhost answering 200 C{{}}:
joins/s with a hook as a share of those without, the runs interleaved
(without, with, without, with...), each the median of C{--storms} storms on
one server, with the 1-minute load average.
The backend is nginx (C{return 200}: a few microseconds a request, so the
figure is the server's) when the binary is there, else, or with
C{--hook-backend twisted}, tests/access/backend.py (twisted.web, 0.5-1 ms
of CPU a request: on a 2-core machine it bounds the storm itself).

    .venv/bin/python bench/signalling.py [--joiners 200] [--sizes 10,50] [--seconds 5]
    .venv/bin/python bench/signalling.py --hook [--joiners 200] [--runs 5] [--storms 3]
        [--hook-backend nginx|twisted] [--hook-connections 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.server import freePort, startServer, waitForPort  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")

# Hundreds of clients from one address: no per-address caps or rates.
SETTINGS = {"ws_ping_interval": "0", "log_level": "warn", "ws_max_connections_per_address": "0",
            "rate_connections_per_address": "0"}


def cpuSeconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class Peer:
    def __init__(self, ws, login):
        self.ws, self.login = ws, login
        self.waiting: dict[str, asyncio.Future] = {}
        self.latencies: list[float] = []
        self.sentAt: list[float] = []  # the send time of each latency (bench/clustertrace.py)
        self.delivered = 0
        self.reader = asyncio.ensure_future(self.read())

    @classmethod
    async def open(cls, url, login):
        ws = await websockets.connect(url, max_queue=None, max_size=None, open_timeout=30)
        peer = cls(ws, login)
        await peer.request("connection", {"appKey": "roomApp", "custom": {"login": login}},
                           key="getUserData")
        return peer

    async def read(self):
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                name, data = frame["message"], frame["data"][0]
                if name == "DataStatusEvent":
                    self._resolve(data["operationId"])
                elif name == "getUserData":
                    self._resolve("getUserData")
                elif name == "OnDataEvent" and data["payload"]["name"] == "MESSAGE":
                    sent = float(data["payload"]["info"]["text"].split(" ", 1)[0])
                    self.latencies.append(time.perf_counter() - sent)
                    self.sentAt.append(sent)
                    self.delivered += 1
        except websockets.ConnectionClosed:
            pass

    def _resolve(self, key):
        future = self.waiting.pop(key, None)
        if future is not None and not future.done():
            future.set_result(time.perf_counter())

    async def request(self, message, data, key):
        future = self.waiting[key] = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps({"message": message, "data": [data]}))
        return await asyncio.wait_for(future, 30)

    async def command(self, op, command, options):
        return await self.request("sendData", {"operationId": op, "payload": {
            "command": command, "options": options}}, key=op)

    async def close(self):
        await self.ws.close()
        self.reader.cancel()


async def joinStorm(url: str, count: int, pid: int | None = None) -> dict:
    peers = await asyncio.gather(*(Peer.open(url, f"j{i}") for i in range(count)))
    cpu0 = cpuSeconds(pid) if pid else 0.0

    async def join(peer):
        started = time.perf_counter()
        done = await peer.command("join", "join", {"name": "storm", "record": False})
        return started, done

    results = await asyncio.gather(*(join(p) for p in peers))
    first = min(s for s, _ in results)
    last = max(d for _, d in results)
    latencies = [d - s for s, d in results]
    cpu = cpuSeconds(pid) - cpu0 if pid else None
    await asyncio.gather(*(p.close() for p in peers))
    figures = {"joins/s": count / (last - first), "p50 ms": 1000 * percentile(latencies, 50),
               "p99 ms": 1000 * percentile(latencies, 99)}
    if cpu is not None:
        figures["cpu ms/join"] = 1000 * cpu / count
    return figures


async def chat(url: str, pid: int, size: int, seconds: float, rate: float) -> dict:
    room = f"chat{size}"
    peers = [await Peer.open(url, f"c{i}") for i in range(size)]
    for peer in peers:
        await peer.command("join", "join", {"name": room})
    await asyncio.sleep(0.2)
    # Each round every peer sends one message to every other peer.
    perRound = size * (size - 1)
    interval = perRound / rate
    cpu0, wall0 = cpuSeconds(pid), time.perf_counter()
    rounds = 0
    deadline = wall0 + seconds
    while time.perf_counter() < deadline:
        roundStart = time.perf_counter()
        for peer in peers:
            for other in peers:
                if other is not peer:
                    text = f"{time.perf_counter():.6f} привет 你好 🎉"
                    await peer.ws.send(json.dumps({"message": "sendData", "data": [{
                        "operationId": "m", "payload": {"command": "sendMessage", "options": {
                            "roomConfig": {"name": room}, "to": other.login, "text": text}}}]},
                        ensure_ascii=False))
        rounds += 1
        await asyncio.sleep(max(0, interval - (time.perf_counter() - roundStart)))
    expected = rounds * perRound
    settle = time.perf_counter() + 5
    while sum(p.delivered for p in peers) < expected and time.perf_counter() < settle:
        await asyncio.sleep(0.05)
    wall = time.perf_counter() - wall0
    cpu = cpuSeconds(pid) - cpu0
    delivered = sum(p.delivered for p in peers)
    latencies = [l for p in peers for l in p.latencies]
    for peer in peers:
        await peer.close()
    return {"delivered/s": delivered / wall, "lost": expected - delivered,
            "cpu ms/1000": 1000 * cpu / max(1, delivered) * 1000,
            "p50 ms": 1000 * percentile(latencies, 50), "p99 ms": 1000 * percentile(latencies, 99)}


def startBaseline() -> tuple[subprocess.Popen, str]:
    port = freePort()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("minimal_ws_room.py")),
                             str(port)])
    log = Path(tempfile.mkdtemp()) / "none.log"
    log.write_text("")
    waitForPort(port, proc, log)
    return proc, f"ws://127.0.0.1:{port}/"


NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)

# One process (no master: its CPU is the process's), its own prefix, logs
# and temp dirs: runs as any user, in the foreground, and answers every POST
# with 200 {} without reading a file.
NGINX_CONF = """
master_process off;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port};
        default_type application/json;
        location / {{ return 200 '{{}}'; }}
    }}
}}
"""


def startHookBackend(kind: str) -> tuple[subprocess.Popen, str]:
    port = freePort()
    workdir = Path(tempfile.mkdtemp())
    log = workdir / "error.log"
    log.write_text("")
    if kind == "nginx":
        conf = workdir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=workdir, port=port))
        proc = subprocess.Popen([NGINX, "-p", str(workdir), "-e", str(log), "-c", str(conf)])
    else:
        proc = subprocess.Popen([sys.executable, "-m", "tests.access.backend", str(port)],
                                cwd=ROOT)
    waitForPort(port, proc, log)
    return proc, f"http://127.0.0.1:{port}/hook"


def loadAverage() -> float:
    return os.getloadavg()[0]


async def hookStorm(args) -> None:
    """Joins/s without a hook and with one, each server alone on the machine,
    the two interleaved run by run."""
    kind = args.hook_backend or ("nginx" if NGINX else "twisted")
    if kind == "nginx" and not NGINX:
        raise SystemExit("--hook-backend nginx: no nginx binary (apt-get install nginx-light)")
    backend, hookURL = startHookBackend(kind)
    ratios = []
    rates: dict[str, list[float]] = {"no hook": [], "hook": []}
    try:
        print(f"join storm: {args.joiners} clients join one room at once, without and with "
              f"a REST hook on localhost; backend: {kind}")
        for run in range(args.runs):
            figures = {}
            for name, extra in (("no hook", {}), ("hook", {
                    "rest_hook_url": hookURL, "rest_hook_connections": str(args.hook_connections)})):
                wcs = startServer(Path(tempfile.mkdtemp()), settings=dict(SETTINGS, **extra))
                try:
                    await joinStorm(wcs.wsURL, 20)  # warm up: imports, the backend's connections
                    before = cpuSeconds(backend.pid)
                    storms = [await joinStorm(wcs.wsURL, args.joiners, wcs.proc.pid)
                              for _ in range(args.storms)]
                    joins = args.joiners * args.storms
                    # The median storm; the joins' CPU over all of them (/proc
                    # counts 10 ms ticks); the backend's includes the connects.
                    figures[name] = sorted(storms, key=lambda f: f["joins/s"])[args.storms // 2]
                    figures[name]["cpu ms/join"] = \
                        sum(f["cpu ms/join"] for f in storms) / len(storms)
                    if extra:
                        figures[name]["backend cpu ms/join"] = \
                            1000 * (cpuSeconds(backend.pid) - before) / joins
                    figures[name]["load"] = loadAverage()
                finally:
                    wcs.stop()
                rates[name].append(figures[name]["joins/s"])
                show(f"wcs, {name}", figures[name])
            ratios.append(figures["hook"]["joins/s"] / figures["no hook"]["joins/s"])
            print(f"  run {run + 1}: with a hook {100 * ratios[-1]:.0f}% of the joins/s without")
        ratios.sort()
        total = sum(rates["hook"]) / sum(rates["no hook"])
        print(f"joins/s with a hook as a share of those without ({kind} backend, "
              f"{args.runs} runs): median {100 * ratios[len(ratios) // 2]:.0f}%, "
              f"range {100 * ratios[0]:.0f}-{100 * ratios[-1]:.0f}%, "
              f"sum of rates {100 * total:.0f}% (target: at least 80%)")
    finally:
        backend.terminate()
        backend.wait(10)


def show(title: str, figures: dict) -> None:
    print(f"  {title:<28}" + "  ".join(
        f"{k} {v:{'6.2f' if 'cpu' in k else '7.1f'}}" for k, v in figures.items()))


async def run(args) -> None:
    wcs = startServer(Path(tempfile.mkdtemp()), settings=SETTINGS)
    baseline, baselineURL = startBaseline()
    targets = [("wcs", wcs.wsURL, wcs.proc.pid), ("minimal websockets", baselineURL, baseline.pid)]
    try:
        print(f"join storm: {args.joiners} clients join one room at once")
        for name, url, _ in targets:
            show(name, await joinStorm(url, args.joiners))
        for size in args.sizes:
            print(f"chat: {size} participants, everyone to everyone, "
                  f"~{args.rate:.0f} deliveries/s for {args.seconds:.0f} s")
            for name, url, pid in targets:
                show(name, await chat(url, pid, size, args.seconds, args.rate))
    finally:
        wcs.stop()
        baseline.terminate()
        baseline.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--joiners", type=int, default=200)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10, 50])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=4000.0)
    parser.add_argument("--hook", action="store_true",
                        help="join storm without and with a REST hook on localhost")
    parser.add_argument("--runs", type=int, default=5, help="runs of --hook")
    parser.add_argument("--hook-backend", choices=("nginx", "twisted"), default=None,
                        help="backend of --hook: nginx (the default when installed) "
                             "or tests/access/backend.py")
    parser.add_argument("--storms", type=int, default=3,
                        help="storms per server of --hook (its median is the run's figure)")
    parser.add_argument("--hook-connections", type=int, default=64,
                        help="rest_hook_connections of --hook")
    args = parser.parse_args()
    asyncio.run(hookStorm(args) if args.hook else run(args))


if __name__ == "__main__":
    main()
