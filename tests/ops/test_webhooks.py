"""Webhooks: a real receiver gets every event of a recorded room's life, in order."""

import asyncio

from tests.ops.receiver import Receiver
from tests.ops.rooms import recordedRoom
from tests.support.rooms import MEDIA, status

SECRET = "hook-secret"


def hookSettings(receiver, **extra):
    return dict(MEDIA, webhook_urls=receiver.url, webhook_secret=SECRET,
                webhook_retry_min="200", webhook_retry_max="1000", **extra)


async def test_every_event_of_a_room_arrives_signed_in_order_despite_an_outage(serverFactory):
    receiver = Receiver(SECRET)
    try:
        server = serverFactory(settings=hookSettings(receiver))
        room, alice, bob, publisher, publish, recordName = await recordedRoom(server)
        name = publish["name"]
        published = await receiver.waitFor("stream_published", stream=name)
        assert published["room"] == room and published["recordName"] == recordName
        await asyncio.sleep(2)

        # The receiver is down for 10 s while the room ends.
        receiver.down()
        await alice.send("unPublishStream", {"mediaSessionId": publish["mediaSessionId"],
                                             "name": name})
        await status(alice, publish["mediaSessionId"], "UNPUBLISHED")
        await publisher.close()
        for client in (bob, alice):
            await client.quiet()  # room events not looked at
            assert (await client.command("leave", {"name": room}))["status"] == "ACCEPTED"
        await asyncio.sleep(10)
        countWhileDown = len(receiver.events())
        receiver.up()

        mixed = await receiver.waitFor("mix_finished", room=room, timeout=60)
        recorded = await receiver.waitFor("recording_finished", file=recordName)
        assert recorded["room"] == room and recorded["stream"] == name
        assert recorded["size"] > 10000 and 1.5 < recorded["duration"] < 10
        assert mixed["file"].endswith(".mp4") and mixed["size"] > 10000
        assert mixed["sources"] == [recordName]

        events = [e for e in receiver.events() if e.get("room") == room]
        assert countWhileDown <= 4  # room_started, 2 joins, published: the rest came later
        sequence = [(e["event"], e.get("login")) for e in events]
        # The recording finishes when its stream ends, whenever the leaves come.
        finished = sequence.index(("recording_finished", None))
        assert sequence.index(("stream_unpublished", "alice")) < finished
        del sequence[finished]
        assert sequence == [
            ("room_started", None),
            ("participant_joined", "alice"),
            ("participant_joined", "bob"),
            ("stream_published", "alice"),
            ("stream_unpublished", "alice"),
            ("participant_left", "bob"),
            ("participant_left", "alice"),
            ("room_ended", None),
            ("mix_finished", None),
        ]
        assert len({e["id"] for e in events}) == len(events)
        stamps = [e["timestamp"] for e in events]
        assert stamps == sorted(stamps)  # delivered in the order they happened
        await alice.close()
        await bob.close()
    finally:
        receiver.down()
