"""/metrics on the REST API port, against the real server with aiortc peers."""

import asyncio
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.media import peers
from tests.support.rooms import MEDIA, alicePublishesToBob, negotiate, status, streamRequest
from tests.support.wait import waitUntil


def scrape(server, key=None) -> dict:
    """{(name, labels as a sorted tuple): value} of every sample."""
    request = urllib.request.Request(server.restURL + "/metrics")
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["content-type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_move_with_a_room_and_its_media(serverFactory):
    server = serverFactory(settings=MEDIA, enable=("ws", "rest"))
    before = scrape(server)
    assert value(before, "wcs_rooms") == 0
    assert value(before, "wcs_media_packets_total", direction="in") == 0
    assert ("process_cpu_seconds_total", ()) in before  # the process collector

    room, alice, bob, publisher, publish = await alicePublishesToBob(server)
    player = peers.Player(video="video/H264", audio="audio/opus")
    play = streamRequest(publish["name"], room, await peers.offerOf(player.pc), False)
    await negotiate(bob, player.pc, "playStream", play)
    await status(bob, play["mediaSessionId"], "PLAYING")
    await player.waitFrames("video", 10, timeout=15)

    live = scrape(server)
    assert value(live, "wcs_connections", transport="websocket") == 2
    assert value(live, "wcs_rooms") == 1
    assert value(live, "wcs_participants") == 2
    assert value(live, "wcs_streams", direction="publish", provider="WebRTC",
                 codec="H264+opus") == 1
    assert value(live, "wcs_streams", direction="play", provider="WebRTC",
                 codec="H264+opus") == 1
    packetsIn = value(live, "wcs_media_packets_total", direction="in")
    packetsOut = value(live, "wcs_media_packets_total", direction="out")
    assert packetsIn > 10 and packetsOut > 10
    assert value(live, "wcs_media_bytes_total", direction="in") > 12 * packetsIn
    # A player's start asks for a keyframe, unless one arrived just before
    # (the request is then dropped): the counter exists, it need not move.
    assert ("wcs_keyframe_requests_total", ()) in live

    # The lag probe (every 0.1 s) and the media counters keep counting.
    later = {}

    def moved() -> bool:
        later.update(scrape(server))
        return value(later, "wcs_event_loop_lag_seconds_count") >= \
            value(live, "wcs_event_loop_lag_seconds_count") + 3 \
            and value(later, "wcs_media_packets_total", direction="in") > packetsIn \
            and value(later, "wcs_media_packets_total", direction="out") > packetsOut
    await waitUntil(moved, 15, lambda: f"the lag and packet counters to move: {later}",
                    every=0.2)

    # Counters outlive the sessions that counted.
    await player.close()
    await publisher.close()
    await alice.close()
    await bob.close()
    deadline = time.monotonic() + 15
    while True:
        after = scrape(server)
        # (the room itself lives on for room_idle_timeout after a disconnect)
        if value(after, "wcs_connections", transport="websocket") == 0:
            break
        assert time.monotonic() < deadline, after
        await asyncio.sleep(0.2)
    assert value(after, "wcs_media_packets_total", direction="in") >= \
        value(later, "wcs_media_packets_total", direction="in")
    assert value(after, "wcs_streams", direction="publish", provider="WebRTC",
                 codec="H264+opus") == 0


def test_metrics_need_the_admin_key_when_one_is_set(serverFactory):
    server = serverFactory(settings={"admin_api_key": "s3cret"}, enable=("ws", "rest"))
    for key in (None, "wrong"):
        try:
            scrape(server, key)
        except urllib.error.HTTPError as e:
            assert e.code == 401
            assert b"Bearer" in e.read()
        else:
            raise AssertionError(f"served with key {key!r}")
    assert value(scrape(server, "s3cret"), "wcs_rooms") == 0
