"""/metrics on the REST API port, against the real server with aiortc peers."""

import asyncio
import time
import urllib.error
import urllib.request
import uuid

from prometheus_client.parser import text_string_to_metric_families

from tests.media import peers
from tests.support.rooms import MEDIA, alicePublishesToBob, negotiate, status, streamRequest
from tests.support.wait import waitUntil
from tests.support.wsclient import Client


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

    # The lag probe (every 0.5 s) and the media counters keep counting.
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


async def test_retransmission_metrics(serverFactory):
    """
    Loss on both legs (in the clients: tests.media.peers.Impairment), both
    offering RTX: the retransmission counters move on each leg. The aiortc
    player re-lists every missing packet on each new gap, so its NACKs are
    held for reordering (wcs.media.reorder) and the player leg's wait shows;
    held only while its budget is short, hence a player share (1 %) that
    the link's own losses keep short.
    """
    server = serverFactory(settings={**MEDIA, "media_player_retransmit_share": "1"},
                           enable=("ws", "rest"))
    room = f"room-{uuid.uuid4().hex[:6]}"
    alice = await Client.open(server.wsURL, "alice")
    bob = await Client.open(server.wsURL, "bob")
    publisher = peers.Publisher(video="video/H264", audio=None, rtx=True)
    player = peers.Player(video="video/H264", audio=None, rtx=True)
    try:
        await alice.join(room)
        await bob.join(room)
        publish = streamRequest(f"{room}-alice", room, await peers.offerOf(publisher.pc), True)
        await negotiate(alice, publisher.pc, "publishStream", publish)
        await status(alice, publish["mediaSessionId"], "PUBLISHING")
        play = streamRequest(publish["name"], room, await peers.offerOf(player.pc), False)
        await negotiate(bob, player.pc, "playStream", play)
        await status(bob, play["mediaSessionId"], "PLAYING")
        await player.waitFrames("video", 1, timeout=15)
        peers.Impairment(publisher.pc, sendLoss=0.05, seed=3)
        peers.Impairment(player.pc, receiveLoss=0.05, seed=4)
        # NACKs as aiortc sends them on a link that reorders: the same
        # packet listed again at once (the player is then eager), then one
        # listed and left out of the next list (it came by itself).
        receiver = player.pc.getTransceivers()[0].receiver
        [ssrc] = receiver._RTCRtpReceiver__rtx_ssrc.values()  # aiortc's private state
        # The wait starts at 0: 2 answered at once, still listed 30 ms later
        # and then left out teaches it; then 4 and 5 are held.
        for lost in ([1], [1], [1], [1], [2, 3], [2, 3], [3], [4, 5], [5]):
            await receiver._send_rtcp_nack(ssrc, lost)
            if lost == [2, 3]:
                await asyncio.sleep(0.03)
        samples = {}

        def moved() -> bool:
            samples.update(scrape(server))
            return all(value(samples, name, direction=d) > 0 for name, d in (
                ("wcs_retransmitted_packets_total", "in"),
                ("wcs_retransmitted_packets_total", "out"),
                ("wcs_rtx_packets_total", "in"), ("wcs_rtx_packets_total", "out"))) \
                and value(samples, "wcs_player_nacks_held_total") >= 2 \
                and value(samples, "wcs_reordered_packets_total", direction="out") >= 1 \
                and value(samples, "wcs_reorder_wait_seconds", leg="player") > 0
        await waitUntil(moved, 30, lambda: f"retransmission metrics to move: {samples}",
                        every=0.5)
        for name in ("wcs_rtx_unasked_total", "wcs_packets_given_up_total"):
            assert (name, ()) in samples
        for name in ("wcs_reordered_packets_total", "wcs_retransmits_over_budget_total"):
            for direction in ("in", "out"):
                assert (name, (("direction", direction),)) in samples
        assert value(samples, "wcs_reorder_wait_seconds", leg="player") <= 0.15
        assert ("wcs_reorder_wait_seconds", (("leg", "publisher"),)) in samples
        # What was resent to the player went out on its RTX stream.
        assert value(samples, "wcs_rtx_packets_total", direction="out") == \
            value(samples, "wcs_retransmitted_packets_total", direction="out")
    finally:
        await player.close()
        await publisher.close()
        await alice.close()
        await bob.close()
