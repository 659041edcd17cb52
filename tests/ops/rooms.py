"""A recorded room with a live WebRTC publisher, for the operations tests."""

import uuid

from tests.media import peers
from tests.support.rooms import negotiate, status, streamRequest
from tests.support.wsclient import Client


async def recordedRoom(server):
    """
    alice (publishing H.264 + Opus, recorded) and bob in a new recorded room.

    @return: room, alice, bob, the publisher peer, the publish request, the recordName.
    """
    room = f"room-{uuid.uuid4().hex[:6]}"
    alice = await Client.open(server.wsURL, "alice")
    bob = await Client.open(server.wsURL, "bob")
    await alice.join(room, record=True)
    await bob.join(room)
    publisher = peers.Publisher(video="video/H264", audio="audio/opus")
    name = f"{room}-alice-{uuid.uuid4().hex[:4]}"
    publish = streamRequest(name, room, await peers.offerOf(publisher.pc), True)
    await negotiate(alice, publisher.pc, "publishStream", publish)
    recordName = (await status(alice, publish["mediaSessionId"], "PUBLISHING"))["recordName"]
    return room, alice, bob, publisher, publish, recordName
