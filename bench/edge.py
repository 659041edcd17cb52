"""
Edge fan-out (docs/cluster.md, "Edge fan-out"): one WebRTC stream played by
N aiortc players connected to a node that is not the room's, with a real
redis-server and two `twistd wcs` nodes on loopback. Prints, for a pull
(cluster_edge_play on, cluster_edge_play_min_players 1: the edge pulls the
stream once and serves its players) and forwarded plays (cluster_edge_play
off: the room's node serves every player), the CPU of the room's node, of
the edge and of both, and the copies of the stream the room's node sends,
with the 1-minute load average; runs interleaved (pull, forwarded, pull,
forwarded) for each N. What a pull costs against N forwarded players is
what cluster_edge_play_min_players trades (docs/cluster.md, "Edge
fan-out"). No assertion: figures only (docs/performance.md).

    .venv/bin/python bench/edge.py [--players 1,2,4] [--seconds 15] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.signalling import cpuSeconds  # noqa: E402
from tests.cluster.test_cluster_media import negotiate  # noqa: E402
from tests.media import peers  # noqa: E402
from tests.ops.test_metrics import scrape, value  # noqa: E402
from tests.support.cluster import runningCluster  # noqa: E402
from tests.support.rooms import status, streamRequest  # noqa: E402
from tests.support.wsclient import Client  # noqa: E402


async def once(edgePlay: bool, players: int, seconds: float) -> dict:
    base = random.randrange(20000, 60000, 200)
    settings = {node: {"media_port_from": str(base + 100 * i),
                       "media_port_to": str(base + 100 * i + 99),
                       "ice_public_ip": "127.0.0.1", "log_level": "warn",
                       "cluster_edge_play": "true" if edgePlay else "false",
                       "cluster_edge_play_min_players": "1"}
                for i, node in enumerate("ab")}
    with tempfile.TemporaryDirectory() as tmp, \
            runningCluster(Path(tmp), settings, enable=("ws", "rest")) as (redis, nodes):
        room = f"room-{uuid.uuid4().hex[:6]}"
        alice = await Client.open(nodes["a"].wsURL, "alice")
        await alice.join(room)
        owner = redis.client().get(f"wcs:room:{room}")
        if owner != "a":  # alice publishes on the room's node: reconnect there
            await alice.close()
            alice = await Client.open(nodes[owner].wsURL, "alice")
            await alice.join(room)
        origin, edge = nodes[owner], nodes["b" if owner == "a" else "a"]
        publisher = peers.Publisher(video="video/H264", audio="audio/opus")
        name = f"{room}-alice"
        publish = streamRequest(name, room, await peers.offerOf(publisher.pc), True)
        await negotiate(alice, publisher.pc, "publishStream", publish)
        await status(alice, publish["mediaSessionId"], "PUBLISHING")
        viewers, players_ = [], []
        try:
            for i in range(players):
                viewer = await Client.open(edge.wsURL, f"v{i}")
                await viewer.join(room)
                player = peers.Player(video="video/H264", audio="audio/opus")
                play = streamRequest(name, room, await peers.offerOf(player.pc), False)
                await negotiate(viewer, player.pc, "playStream", play)
                await status(viewer, play["mediaSessionId"], "PLAYING")
                viewers.append(viewer)
                players_.append(player)
            for player in players_:
                await player.waitFrames("video", 5, timeout=30)
            await asyncio.sleep(2)  # settle
            pids = (origin.proc.pid, edge.proc.pid)
            cpu0, t0, load0 = [cpuSeconds(p) for p in pids], time.monotonic(), os.getloadavg()[0]
            await asyncio.sleep(seconds)
            cpu1, t1 = [cpuSeconds(p) for p in pids], time.monotonic()
            samples = await asyncio.to_thread(scrape, origin)
            used = [100 * (c1 - c0) / (t1 - t0) for c0, c1 in zip(cpu0, cpu1)]
            return {"origin CPU %": used[0], "edge CPU %": used[1], "both %": sum(used),
                    "origin WebRTC players": value(samples, "wcs_streams", direction="play",
                                                   provider="WebRTC", codec="H264+opus"),
                    "origin pulls out": value(samples, "wcs_cluster_pulls_active",
                                              direction="out"),
                    "load1": load0}
        finally:
            for peer in [publisher, *players_]:
                await peer.close()
            for client in [alice, *viewers]:
                await client.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--players", default="1,2,4",
                        help="numbers of players, comma-separated, each run in turn")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    counts = [int(n) for n in args.players.split(",")]
    print(f"N WebRTC players of one stream on the node that is not the room's, "
          f"N in {counts}, {args.seconds:.0f} s per run")
    for _ in range(args.rounds):
        for players in counts:
            for edgePlay in (True, False):
                result = await once(edgePlay, players, args.seconds)
                print(f"N={players} {'pull     ' if edgePlay else 'forwarded'}: " + ", ".join(
                    f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in result.items()), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
