"""
Room scenarios over the WebSocket protocol with real aiortc peers, shared by
the tests: stream requests shaped as the SDK sends them, waiting for a
stream's status, and a room where alice publishes to bob.
"""

import uuid

from aiortc import RTCSessionDescription

from tests.media import peers
from tests.support.wsclient import Client

MEDIA = {"media_port_from": "0", "media_port_to": "0", "ice_public_ip": "127.0.0.1"}
SKIP = ("ping", "OnDataEvent")


def streamRequest(name, room, sdp, published, **extra):
    mediaSessionId = str(uuid.uuid1())
    body = {"mediaSessionId": mediaSessionId, "name": name, "published": published,
            "hasVideo": True, "hasAudio": True, "status": "PENDING", "record": False,
            "mediaProvider": "WebRTC", "sdp": sdp, "custom": {"name": room},
            "constraints": {"audio": True, "video": True}}
    body.update(extra)
    return body


async def status(client, mediaSessionId, wanted, timeout=15):
    frame = await client.expect(
        "notifyStreamStatusEvent",
        lambda f: f["data"][0]["mediaSessionId"] == mediaSessionId, timeout=timeout, skip=SKIP)
    body = frame["data"][0]
    assert body["status"] == wanted, body
    return body


async def negotiate(client, pc, message, body):
    await client.send(message, body)
    frame = await client.expect("setRemoteSDP", lambda f: f["data"][0] == body["mediaSessionId"],
                                timeout=15, skip=SKIP)
    answer = frame["data"][1]
    assert "a=candidate:" in answer  # the server's own candidates, the SDK never trickles
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))


async def alicePublishesToBob(server, openClient=None):
    """
    alice and bob in a new room; alice's H.264+Opus stream is live and bob
    was told. C{openClient(login, room)} opens each one's connection (by
    default a L{Client} that identifies with its login alone).
    """
    room = f"room-{uuid.uuid4().hex[:6]}"
    if openClient is None:
        async def openClient(login, room):
            return await Client.open(server.wsURL, login)
    alice = await openClient("alice", room)
    bob = await openClient("bob", room)
    await alice.join(room)
    await bob.join(room)
    publisher = peers.Publisher(video="video/H264", audio="audio/opus")
    name = f"{room}-alice-{uuid.uuid4().hex[:4]}"
    publish = streamRequest(name, room, await peers.offerOf(publisher.pc), True)
    await negotiate(alice, publisher.pc, "publishStream", publish)
    await status(alice, publish["mediaSessionId"], "PUBLISHING")
    assert (await bob.roomEvent("PUBLISHED", timeout=10))["info"] == {"login": "alice", "name": name}
    return room, alice, bob, publisher, publish


async def playInRoom(client, room, name):
    """
    C{client} plays stream C{name} of C{room} with an aiortc H.264+Opus
    player, until the server says PLAYING.

    @return: (the L{peers.Player}, the playStream request).
    """
    player = peers.Player(video="video/H264", audio="audio/opus")
    play = streamRequest(name, room, await peers.offerOf(player.pc), False)
    try:
        await negotiate(client, player.pc, "playStream", play)
        await status(client, play["mediaSessionId"], "PLAYING")
    except BaseException:
        await player.close()
        raise
    return player, play


def roomsNow(server) -> dict[str, dict]:
    """
    The server's rooms by name as its REST API lists them (C{room/find_all}:
    participants, idle, createDate); the server runs with "rest" enabled.
    """
    from tests.rest.client import RestClient

    answer = RestClient(server.ports["rest"]).post("/rest-api/room/find_all")
    assert answer.status == 200, answer
    return {room["name"]: room for room in answer.body}
