"""
WebRTC publish and play through the room over the WebSocket protocol, with
aiortc peers that send offers the way the SDK does (no candidates), against
the real server.
"""

from tests.media import peers
from tests.support.rooms import (  # noqa: F401 (other test modules import them from here)
    MEDIA, SKIP, alicePublishesToBob, negotiate, status, streamRequest,
)
from tests.support.wsclient import Client


async def test_publish_and_play_in_a_room(serverFactory):
    server = serverFactory(settings=MEDIA)
    room, alice, bob, publisher, publish = await alicePublishesToBob(server)
    name = publish["name"]

    # A newcomer sees the stream in STATE, as the SDK's page plays it from there.
    carol = await Client.open(server.wsURL, "carol")
    assert await carol.join(room) == [{"login": "alice", "name": name}, "bob"]

    player = peers.Player(video="video/H264", audio="audio/opus")
    play = streamRequest(name, room, await peers.offerOf(player.pc), False)
    await negotiate(bob, player.pc, "playStream", play)
    await status(bob, play["mediaSessionId"], "PLAYING")
    frames = await player.waitFrames("video", 10, timeout=15)
    assert len({peers.lumaSignature(f) for f in frames}) > 1  # the picture moves
    await player.waitFrames("audio", 10, timeout=15)

    await alice.send("unPublishStream", {"mediaSessionId": publish["mediaSessionId"], "name": name})
    await status(alice, publish["mediaSessionId"], "UNPUBLISHED")
    stopped = await status(bob, play["mediaSessionId"], "STOPPED")
    assert stopped["info"] == "Stopped by publisher stop"
    assert (await bob.roomEvent("UNPUBLISHED"))["info"] == {"login": "alice", "name": name}

    await publisher.close()
    await player.close()
    for client in (alice, bob, carol):
        await client.close()


async def test_play_of_a_missing_stream_fails_clearly(serverFactory):
    server = serverFactory(settings=MEDIA)
    bob = await Client.open(server.wsURL, "bob")
    player = peers.Player()
    play = streamRequest("nobody-here", "r", await peers.offerOf(player.pc), False)
    await bob.send("playStream", play)
    failed = await status(bob, play["mediaSessionId"], "FAILED")
    assert failed["info"] == "Stream not found"
    await player.close()
    await bob.close()


async def test_disconnect_of_publisher_ends_stream_for_room(serverFactory):
    server = serverFactory(settings=MEDIA)
    room, alice, bob, publisher, publish = await alicePublishesToBob(server)
    name = publish["name"]
    alice.ws.transport.abort()
    assert (await bob.roomEvent("UNPUBLISHED"))["info"] == {"login": "alice", "name": name}
    assert (await bob.roomEvent("LEFT"))["info"] == "alice"
    await publisher.close()
    await bob.close()


async def test_screen_share_is_a_second_room_stream(serverFactory):
    server = serverFactory(settings=MEDIA)
    room, alice, bob, camera, cameraRequest = await alicePublishesToBob(server)
    screen = peers.Publisher(video="video/VP8", audio=None, width=640, height=360)
    name = f"{cameraRequest['name']}-screen"
    share = streamRequest(name, room, await peers.offerOf(screen.pc), True, hasAudio=False,
                          constraints={"video": {"type": "screen", "mediaSource": "screen"},
                                       "audio": False})
    await negotiate(alice, screen.pc, "publishStream", share)
    await status(alice, share["mediaSessionId"], "PUBLISHING")
    assert (await bob.roomEvent("PUBLISHED", timeout=10))["info"] == {"login": "alice", "name": name}

    carol = await Client.open(server.wsURL, "carol")
    assert await carol.join(room) == [{"login": "alice", "name": cameraRequest["name"]},
                                      {"login": "alice", "name": name}, "bob"]
    player = peers.Player(video="video/VP8", audio=None)
    play = streamRequest(name, room, await peers.offerOf(player.pc), False)
    await negotiate(carol, player.pc, "playStream", play)
    await status(carol, play["mediaSessionId"], "PLAYING")
    frames = await player.waitFrames("video", 5, timeout=15)
    assert (frames[-1].width, frames[-1].height) == (640, 360)
    for pc in (camera, screen, player):
        await pc.close()
    for client in (alice, bob, carol):
        await client.close()
