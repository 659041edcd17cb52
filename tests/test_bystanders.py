"""The bystanders measure what the hostile-input tests rely on."""

from tests.support.bystanders import Bystanders
from tests.support.rooms import MEDIA


async def test_bystanders_measure_chat_latency_and_frame_rate(serverFactory):
    server = serverFactory(settings=MEDIA)
    async with Bystanders(server) as room:
        latencies, fps = await room.measure(seconds=2.0, samples=4)
        assert len(latencies) == 4 and all(0 < latency < 1 for latency in latencies)
        assert 20 < fps < 40  # the publisher sends 30 fps
        await room.assertHealthy()


def test_server_rss_is_read(server):
    assert 10 << 20 < server.rss() < 2 << 30
