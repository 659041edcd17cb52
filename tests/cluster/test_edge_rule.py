"""
The edge rule (docs/cluster.md, "Edge fan-out"), with the default settings
(cluster_edge_play on, cluster_edge_play_min_players 3), a real
redis-server and two `twistd wcs` processes: the first two WebRTC players
of a stream on the node that is not its room's are served by the room's
node (their answers carry its candidates, no pull); the third makes that
node pull the stream and plays from it, and so does the fourth, on the same
pull; the first two keep playing from the room's node.
"""

from __future__ import annotations

import random

import pytest

from tests.cluster.test_cluster_edge import Published, metrics, newRoom, seesMoving
from tests.cluster.test_cluster_media import candidatePorts, negotiate
from tests.media import peers
from tests.ops.test_metrics import value
from tests.support.cluster import runningCluster
from tests.support.redis import redisAvailable
from tests.support.rooms import status, streamRequest

pytestmark = pytest.mark.skipif(not redisAvailable(), reason="redis-server not installed")


@pytest.fixture(scope="module")
def twoNodes(tmp_path_factory):
    base = random.randrange(20000, 60000, 200)
    ranges = {"a": (base, base + 99), "b": (base + 100, base + 199)}
    settings = {node: {"media_port_from": str(low), "media_port_to": str(high),
                       "ice_public_ip": "127.0.0.1", "room_idle_timeout": "0"}
                for node, (low, high) in ranges.items()}
    with runningCluster(tmp_path_factory.mktemp("rule"), settings,
                        enable=("ws", "http", "rest")) as (redis, nodes):
        yield redis, nodes, ranges


def owners(redis, room: str) -> tuple[str, str]:
    owner = redis.client().get(f"wcs:room:{room}")
    return owner, ({"a", "b"} - {owner}).pop()


async def test_the_third_player_on_an_edge_makes_the_pull(twoNodes):
    redis, nodes, ranges = twoNodes
    room, host, _, _, _ = await newRoom(redis, nodes, "host")
    owner, edge = owners(redis, room)
    origin = nodes[owner]
    setup = Published()
    try:
        served = value(await metrics(origin), "wcs_cluster_pulls_total", direction="out")
        await setup.start(origin, nodes[edge], room, 4)
        viewers, name = setup.viewers, setup.name
        players = []

        async def play(viewer) -> set[int]:
            """The viewer plays the stream: the ports its answer offers."""
            player = setup.peer(peers.Player(video="video/H264", audio="audio/opus"))
            players.append(player)
            body = streamRequest(name, room, await peers.offerOf(player.pc), False)
            ports = candidatePorts(await negotiate(viewer, player.pc, "playStream", body))
            await status(viewer, body["mediaSessionId"], "PLAYING")
            return ports

        def within(ports: set[int], node: str) -> bool:
            low, high = ranges[node]
            return bool(ports) and all(low <= p <= high for p in ports)

        # The first two: served by the room's node, nothing pulled.
        for viewer in viewers[:2]:
            assert within(await play(viewer), owner)
        await seesMoving(players[0])
        atOrigin = await metrics(origin)
        assert value(atOrigin, "wcs_streams", direction="play", provider="WebRTC",
                     codec="H264+opus") == 2
        assert value(atOrigin, "wcs_cluster_pulls_active", direction="out") == 0

        # The third: the edge pulls the stream and serves it; the fourth
        # shares that pull.
        for viewer in viewers[2:]:
            assert within(await play(viewer), edge)
        for player in players[2:]:
            await seesMoving(player)
        atOrigin, atEdge = await metrics(origin), await metrics(nodes[edge])
        assert value(atOrigin, "wcs_cluster_pulls_active", direction="out") == 1
        assert value(atOrigin, "wcs_cluster_pulls_total", direction="out") == served + 1
        assert value(atEdge, "wcs_cluster_edge_players") == 2

        # The first two were not moved: still the room node's players, and
        # their pictures still come.
        assert value(atOrigin, "wcs_streams", direction="play", provider="WebRTC",
                     codec="H264+opus") == 2
        for player in players[:2]:
            seen = len(player.frames["video"])
            await player.waitFrames("video", seen + 10, timeout=20)
    finally:
        await setup.close()
        await host.close()
