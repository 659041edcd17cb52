"""
Media capacity of one node against two (`bench/cluster.py --media`).

Rooms of 4 publishers and 4 players, every player playing every publisher
of its room (16 forwarded streams a room), made of bench/loadgen.py's light
peers: one peer plays one stream, so a player is 4 peers. Rooms are added
`--step` at a time, each peer connecting to a node in turn; the cluster
places each room (least-loaded live node) and relays the signalling of the
peers connected elsewhere, while the media goes straight to the room's
node. After each step, over `--seconds`: the packets the node sent the players
(the advance of the sequence numbers it gives them: it renumbers over its
own drops) against what their publishers sent, what the players' sockets
lost of it, each node's CPU (schedstat) and event
loop lag (its `loop_lag_report` lines), and the generator's CPU.

A node *carries* a step when forwarded/published >= 0.98, no peer failed to
connect, and no node's loop lag p50 (over each 2 s report) exceeded
`--max-lag` ms; the capacity
is the forwarded streams of the last step carried. One node and two nodes
are measured in turn (`--repeat` pairs, A B A B) and the ratio printed.
On a machine with more cores, `--node-cpus 0,1 --generator-cpus 2-7` gives
each node a core of its own and the generator the others.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

from bench.loadgen import RAISED, Workers, raiseFileLimit, udpErrors
from bench.sfu import cpuSeconds
from tests.support.cluster import runningCluster

PUBLISHERS = PLAYERS = 4
LAG_LINE = re.compile(rb"event loop lag over [\d.]+s: p50 ([\d.]+) ms, p99 ([\d.]+) ms")
NODE = {**{k: str(v) for k, v in RAISED.items()}, "ws_ping_interval": "0",
        "loop_lag_report": "2", "log_level": "info"}


def roomItems(index: int, urls: list[str]) -> tuple[list, list]:
    """(url, room, stream) triples of one room's publishers and player peers."""
    room = f"m{index}"
    streams = [f"{room}-s{j}" for j in range(PUBLISHERS)]
    at = lambda k: urls[(index + k) % len(urls)]  # noqa: E731
    publishers = [(at(j), room, s) for j, s in enumerate(streams)]
    players = [(at(PUBLISHERS + k), room, s)
               for k in range(PLAYERS) for s in streams]
    return publishers, players


class Lag:
    """The worst loop lag p50 any node's log reported since the last read:
    a saturated loop lags most of the time, while on a shared machine a
    p99 also catches the moments others hold the cores."""

    def __init__(self, logs: list[Path]):
        self.logs = logs
        self.offsets = [0] * len(logs)

    def worst(self) -> float:
        worst = 0.0
        for i, log in enumerate(self.logs):
            with open(log, "rb") as f:
                f.seek(self.offsets[i])
                text = f.read()
                self.offsets[i] += len(text)
            for match in LAG_LINE.finditer(text):
                worst = max(worst, float(match.group(1)))
        return worst


def measure(workers: Workers, pids: list[int], lag: Lag, seconds: float) -> dict:
    lag.worst()  # forget the lag of the handshakes
    cpu0, before, t0 = [cpuSeconds(p) for p in pids], workers.snapshot(), time.monotonic()
    time.sleep(seconds)
    cpu1, after, t1 = [cpuSeconds(p) for p in pids], workers.snapshot(), time.monotonic()
    wall = t1 - t0
    # Rates, each over its own process's window: the snapshots of the
    # generator processes are taken one after the other, seconds apart
    # when the machine is busy.
    sent: dict[str, float] = {}
    for b, a in zip(before, after):
        for (stream, s0), (_, s1) in zip(b["published"], a["published"]):
            sent[stream] = (s1 - s0) / (a["at"] - b["at"])
    # What the node sent a player is the advance of the sequence numbers it
    # put on them (it renumbers over its own drops); what the player did not
    # read of it, the kernel dropped at a busy generator's socket.
    forwarded = received = expected = 0.0
    silent = 0  # players that got nothing in the window
    for b, a in zip(before, after):
        window = a["at"] - b["at"]
        for stream, (p0, _, h0), (p1, _, h1) in zip(a["played"], b["players"], a["players"]):
            forwarded += (h1 - h0) / window
            received += (p1 - p0) / window
            expected += sent.get(stream, 0.0)
            silent += p1 == p0
    return {"ratio": forwarded / expected if expected else 0.0,
            "forwarded_pps": forwarded,
            "generator_drops": 1 - received / forwarded if forwarded else 0.0,
            "node_cpu": [round((c1 - c0) / wall, 2) for c0, c1 in zip(cpu0, cpu1)],
            "node_us_per_packet": 1e6 * (sum(cpu1) - sum(cpu0)) / wall / forwarded
            if forwarded else 0.0,
            "generator_cpu": round(sum(a["cpu"] - b["cpu"] for b, a in zip(before, after))
                                   / wall, 2),
            "late": sum(a["stats"]["late"] for a in after),
            "silent": silent, "closed": sum(len(a["players"]) + len(a["published"]) - a["open"]
                                            for a in after),
            "lag_p50_ms": lag.worst(), "load": os.getloadavg()[0]}


def ramp(nodes: int, args, out) -> int:
    """Streams forwarded at the last step the node(s) carried."""
    names = "abcdefgh"[:nodes]
    workdir = Path(tempfile.mkdtemp(prefix="wcs-clustermedia-"))
    settings = {**NODE, **dict(item.split("=", 1) for item in args.node_set)}
    with runningCluster(workdir, {n: settings for n in names}) as (_, running):
        urls = [running[n].wsURL for n in names]
        pids = [running[n].proc.pid for n in names]
        for i, pid in enumerate(pids):
            pin(pid, args.node_cpus, i)
        groups = [limit(pid, args.node_quota) for pid in pids]
        lag = Lag([running[n].logPath for n in names])
        workers = Workers()
        procs = {"publish": args.procs, "play": args.procs}
        carried, rooms, first = 0, 0, 0
        try:
            while rooms < args.max_rooms:
                step = args.start if rooms == 0 else args.step
                items = {"publish": [], "play": []}
                for index in range(rooms, rooms + step):
                    publishers, players = roomItems(index, urls)
                    items["publish"] += publishers
                    items["play"] += players
                failures = add(workers, items, procs, first, args)
                first += sum(map(len, items.values()))
                rooms += step
                time.sleep(args.warmup)
                figures = measure(workers, pids, lag, args.seconds)
                streams = rooms * PUBLISHERS * PLAYERS
                ok = (figures["ratio"] >= 0.98 and not failures
                      and figures["lag_p50_ms"] <= args.max_lag)
                out(f"  {nodes} node(s) {rooms:3d} rooms {streams:4d} streams: "
                    f"forwarded/published {figures['ratio']:.3f}  "
                    f"forwarded {figures['forwarded_pps']:.0f} pps "
                    f"(players lost {100 * figures['generator_drops']:.1f}%)  node CPU "
                    f"{figures['node_cpu']} s/s ({figures['node_us_per_packet']:.1f} us/packet)  generator {figures['generator_cpu']} s/s  "
                    f"lag p50 {figures['lag_p50_ms']:.0f} ms  late frames {figures['late']}  "
                    f"failed {failures}  silent players {figures['silent']}  "
                    f"sessions closed {figures['closed']}  load {figures['load']:.1f}"
                    + (f"  quota {args.node_quota} CPU, throttled periods "
                       f"{[throttled(g) for g in groups]}" if args.node_quota else "")
                    + ("" if ok else "  <- not carried"))
                if not ok:
                    break
                carried = streams
        finally:
            workers.stop()
    for group in groups:
        release(group)
    return carried


CGROUP_CPU = Path("/sys/fs/cgroup/cpu")


def limit(pid: int, share: float) -> Path | None:
    """
    Put node C{pid} in a cgroup v1 of its own capped at C{share} CPU
    (cpu.cfs_quota_us over a 100 ms period), so that one node and each of
    two saturate at the same CPU whatever the generator takes.
    """
    if not share:
        return None
    group = CGROUP_CPU / f"wcs-bench-{pid}"
    group.mkdir(exist_ok=True)
    (group / "cpu.cfs_period_us").write_text("100000")
    (group / "cpu.cfs_quota_us").write_text(str(int(share * 100000)))
    (group / "cgroup.procs").write_text(str(pid))
    return group


def throttled(group: Path) -> str:
    """C{throttled/periods} of the node's cgroup so far: evidence the quota bit."""
    stat = dict(line.split() for line in (group / "cpu.stat").read_text().splitlines())
    return f"{stat['nr_throttled']}/{stat['nr_periods']}"


def release(group: Path | None) -> None:
    if group is not None:
        try:
            group.rmdir()  # empty once the node exited
        except OSError:
            pass


def cpus(text: str) -> list[int]:
    """C{0-3,6} as [0, 1, 2, 3, 6]."""
    out = []
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        out += range(int(low), int(high or low) + 1)
    return out


def pin(pid: int, spec: str, index: int | None = None) -> None:
    """
    Keep C{pid} on the CPUs of C{spec} (empty: anywhere): the generator on
    cores of its own, so that it does not decide the nodes' capacity. With
    C{index}, node I gets the I-th of them alone (as many as nodes).
    """
    if not spec:
        return
    chosen = cpus(spec)
    if index is not None:
        chosen = [chosen[index % len(chosen)]]
    os.sched_setaffinity(pid, chosen)


def add(workers: Workers, items: dict, procs: dict, first: int, args) -> int:
    """Start (first step) or grow the generator processes, publishers first
    (a play needs its stream live); how many peers failed to connect."""
    failures, base, index = 0, first, 0
    for role in ("publish", "play"):
        pipes = []
        for i in range(procs[role]):
            chunk = items[role][i::procs[role]]
            if index < len(workers.pipes):
                workers.pipes[index].send({"add": chunk, "first": base})
            else:
                workers.start(None, role, chunk, base, args.bitrate, args.parallel)
                pin(workers.processes[-1].pid, args.generator_cpus)
            pipes.append(workers.pipes[index])
            base += len(chunk)
            index += 1
        answers = workers.collect(120 + 2 * len(items[role]), pipes)
        failures += sum(a["failures"] for a in answers)
        if role == "publish":
            # Connected is not yet published everywhere: a play sent at once
            # was refused "Stream not found" (on one node too), which ended
            # ramps on the bench's own race.
            time.sleep(1.0)
    return failures


def run(args, out=print) -> None:
    raiseFileLimit()
    udp0 = udpErrors()
    results = {1: [], 2: []}
    for _ in range(args.repeat):
        for nodes in (1, 2):
            out(f"media: {nodes} node(s), rooms of {PUBLISHERS} publishers x {PLAYERS} "
                f"players, +{args.step} rooms a step")
            try:
                results[nodes].append(ramp(nodes, args, out))
            except Exception as e:  # a node that did not start in time on a busy machine
                out(f"  run failed: {type(e).__name__}: {str(e)[:300]}")
                results[nodes].append(None)
            out(f"  capacity of {nodes} node(s): {results[nodes][-1]} forwarded streams")
    for one, two in zip(results[1], results[2]):
        ratio = two / one if one and two is not None else float("nan")
        out(f"capacity: one node {one} streams, two nodes {two} streams, ratio {ratio:.2f}")
    out(f"kernel UDP drops over the runs (machine-wide): "
        f"{ {k: v - udp0[k] for k, v in udpErrors().items()} }")


def addArguments(parser) -> None:
    group = parser.add_argument_group("--media")
    group.add_argument("--start", type=int, default=4, help="rooms of the first step")
    group.add_argument("--step", type=int, default=2, help="rooms added a step")
    group.add_argument("--max-rooms", type=int, default=40)
    group.add_argument("--max-lag", type=float, default=50.0,
                       help="a node's loop lag p50 (ms) above which it is saturated")
    group.add_argument("--procs", type=int, default=2,
                       help="generator processes for publishers, and as many for players")
    group.add_argument("--bitrate", type=int, default=1_000_000)
    group.add_argument("--warmup", type=float, default=3.0)
    group.add_argument("--parallel", type=int, default=8)
    group.add_argument("--repeat", type=int, default=1, help="A B pairs")
    group.add_argument("--node-set", action="append", default=[], metavar="KEY=VALUE",
                       help="a setting for every node, e.g. cluster_edge_play=false")
    group.add_argument("--node-quota", type=float, default=0.0,
                       help="CPU share of each node, its own cgroup v1 cpu.cfs_quota_us "
                            "(e.g. 0.5; needs root and /sys/fs/cgroup/cpu); 0: none")
    group.add_argument("--node-cpus", default="",
                       help="CPUs for the nodes, one each in turn (e.g. 0,1); empty: any")
    group.add_argument("--generator-cpus", default="",
                       help="CPUs for the generator processes (e.g. 2-5); empty: any")
