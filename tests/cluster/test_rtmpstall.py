"""
An RTMP encoder's own node stalls (docs/cluster.md, "An encoder's node
stalls"): real redis-server, two nodes, ffmpeg; the fixtures and steps of
tests/cluster/test_rtmpmove.py.
"""

from __future__ import annotations

import os
import time

from tests.cluster.test_edgestall import roomEventsUntil, stall
from tests.cluster.test_rtmpmove import published, split, twoNodes  # noqa: F401 (a fixture)


async def test_an_encoder_on_a_stalled_edge_is_published_again_on_the_origin(twoNodes):
    """
    The encoder's own node (the edge) stalls past its give-up: the origin
    ends its copy of the stream (the visitor's session there ends, the
    push's connection closes). When the edge runs again, the resync joins
    the encoder again there (JOINED) and the edge pushes its stream anew:
    alice on the origin gets PUBLISHED and plays moving pictures.
    """
    async with split(twoNodes, "edge") as it:
        mark = len(it.alice.received)
        stopped = await stall(it.nodes, it.edge, it.origin)
        resumed = time.monotonic()
        ours = published(it.room)
        got = await roomEventsUntil(it.alice, mark, [("UNPUBLISHED", ours[1]), ours])
        assert got.count(ours) == 1 and got.index(ours) > got.index(("UNPUBLISHED", ours[1])), got
        assert await it.inRoom(it.alice, "obs")
        again = time.monotonic() - resumed
        it.encoderRuns()
        await it.playsMoving(it.alice)
        print(f"\nthe encoder's node stalled {stopped:.1f} s: published again on the origin "
              f"{again:.1f} s after SIGCONT, played there; load {os.getloadavg()[0]:.1f}")
