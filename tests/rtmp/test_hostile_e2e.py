"""
Hostile RTMP clients against the real server over its real port, while two
bystanders keep a room going (chat within 100 ms, video >= 25 fps): AMF
reference bombs, a second connect, numbers that are no stream ids, values of
the wrong type, tiny chunks and unfinished-message floods. Each bad client
gets `_error`/onStatus or is closed; the server's memory stays bounded.
"""

import asyncio
import math
import struct
import uuid

import pytest
import pytest_asyncio

from tests.rtmp.flashclient import FlashClient
from tests.rtmp.test_hostile_wire import amf0Bomb, amf3Bomb
from tests.support.bystanders import Bystanders
from tests.support.rooms import MEDIA
from tests.support.server import startServer
from tests.support.wsclient import Client
from wcs.rtmp import amf0, chunks
from wcs.rtmp.arguments import MAX_QUERY

pytestmark = pytest.mark.asyncio(loop_scope="module")

MiB = 1 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = startServer(tmp_path_factory.mktemp("wcs"), settings=MEDIA, enable=("ws", "rtmp"))
    yield running
    running.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def room(server):
    async with Bystanders(server) as bystanders:
        bystanders.rssBefore = server.rss()
        yield bystanders


async def during(room, attack):
    """Run C{attack} while the bystanders are measured; both must finish."""
    task = asyncio.ensure_future(attack)
    try:
        await room.assertHealthy()
    finally:
        await asyncio.wait_for(task, 60)


def assertMemoryBounded(server, room, limit=96 * MiB):
    grown = server.rss() - room.rssBefore
    assert grown < limit, f"server RSS grew by {grown / MiB:.0f} MiB"


def commandBytes(payload: bytes, chunkSize: int = 128) -> bytes:
    return chunks.ChunkWriter(chunkSize).write(3, chunks.COMMAND_AMF0, 0, 0, payload)


async def test_reference_bombs_in_connect_close_only_their_connection(server, room):
    async def attack():
        for i in range(10):
            bomb = amf0Bomb(60) if i % 2 else bytes([amf0.AVMPLUS]) + amf3Bomb(60)
            client = await FlashClient.open(server.ports["rtmp"])
            client.sendRaw(commandBytes(amf0.encode("connect") + amf0.encode(1.0) + bomb))
            await client.closedByServer()
            client.close()
    await during(room, attack())
    log = server.log()
    assert "AMF message decodes to more than 100000 values" in log
    # Ten bad connections from one address: one line, the rest counted.
    assert log.count("AMF message decodes to more than") == 1
    assertMemoryBounded(server, room)


async def test_a_second_connect_is_refused_and_leaves_no_ghost(server, room):
    name = f"ghost-{uuid.uuid4().hex[:6]}"
    web = await Client.open(server.wsURL, "watcher")
    flash = await FlashClient.connect(server.ports["rtmp"], "ghost1")
    try:
        assert (await flash.command("join", {"name": name}))["status"] == "ACCEPTED"
        assert await web.join(name) == ["ghost1"]
        again = await flash.invoke("connect", {"app": "", "tcUrl": "rtmp://127.0.0.1/"},
                                   {"appKey": "flashRoomApp", "login": "ghost2"})
        assert again[0] == "_error" and again[2]["description"] == "already connected"
        await room.assertHealthy(seconds=1.0)
        flash.close()
        # The one session ends with the connection: ghost1 leaves the room.
        assert (await web.roomEvent("LEFT", timeout=10))["info"] == "ghost1"
    finally:
        flash.close()
        await web.close()


async def test_numbers_that_are_no_stream_ids_get_an_error(server, room):
    flash = await FlashClient.connect(server.ports["rtmp"], f"nan-{uuid.uuid4().hex[:6]}")
    try:
        for number in (math.nan, math.inf, -math.inf, 2.5):
            error = await flash.invoke("deleteStream", None, number)
            assert error[0] == "_error"
            assert error[2]["description"] == "deleteStream: the stream id must be a whole number"
        assert (await flash.invoke("createStream", None))[0] == "_result"  # still served
        await room.assertHealthy(seconds=1.0)
    finally:
        flash.close()


async def test_values_of_the_wrong_type_are_refused_clearly(server, room):
    client = await FlashClient.open(server.ports["rtmp"])
    try:
        error = await client.invoke("connect", {"app": {"nested": [1.0, {"x": 2.0}]}})
        assert error[0] == "_error"
        assert error[2]["description"] == "app must be a non-empty string"
        await client.closedByServer()
    finally:
        client.close()
    flash = await FlashClient.connect(server.ports["rtmp"], f"typed-{uuid.uuid4().hex[:6]}")
    try:
        streamId = (await flash.invoke("createStream", None))[2]
        flash.call("publish", {"not": "a name"}, "live", streamId=int(streamId))
        assert "must be a non-empty string" in \
            (await flash.status("NetStream.Publish.BadName"))["description"]
        flash.call("play", "x" * 100_000, streamId=int(streamId))
        assert "longer than 256 characters" in \
            (await flash.status("NetStream.Play.Failed"))["description"]
        error = await flash.invoke("x" * 5000, None)
        assert error[0] == "_error" and error[2]["description"] == "command name too long"
        await room.assertHealthy(seconds=1.0)
    finally:
        flash.close()


async def test_queries_over_8192_characters_are_refused(server, room):
    """?token=... on an app or a stream name: at most MAX_QUERY characters."""
    over = "?token=" + "t" * MAX_QUERY
    client = await FlashClient.open(server.ports["rtmp"])
    try:
        error = await client.invoke("connect", {"app": "live" + over, "tcUrl": "rtmp://h/live"})
        assert error[0] == "_error"
        assert error[2]["description"] == \
            f"the query of the app is longer than {MAX_QUERY} characters"
        await client.closedByServer()
    finally:
        client.close()
    flash = await FlashClient.connect(server.ports["rtmp"], f"query-{uuid.uuid4().hex[:6]}")
    try:
        streamId = int((await flash.invoke("createStream", None))[2])
        flash.call("play", "name" + over, streamId=streamId)
        assert (await flash.status("NetStream.Play.Failed"))["description"] == \
            f"the query of the stream name is longer than {MAX_QUERY} characters."
        # Within the limit, thousands of empty fields cost nothing: still served.
        flash.call("play", "nothing-here?" + "&" * (MAX_QUERY - 1), streamId=streamId)
        await flash.status("NetStream.Play.StreamNotFound")
        flash.call("publish", "name" + over, "live", streamId=streamId)
        assert (await flash.status("NetStream.Publish.BadName"))["description"] == \
            f"the query of the stream name is longer than {MAX_QUERY} characters."
        await room.assertHealthy(seconds=1.0)
    finally:
        flash.close()


async def test_a_tiny_chunk_size_closes_the_connection(server, room):
    flash = await FlashClient.connect(server.ports["rtmp"], f"tiny-{uuid.uuid4().hex[:6]}")
    try:
        flash.send(2, chunks.SET_CHUNK_SIZE, 0, 0, struct.pack(">I", 1))
        await flash.closedByServer()
    finally:
        flash.close()
    assert "chunk size 1 is out of range 128" in server.log()


async def test_unfinished_messages_cannot_exhaust_memory(server, room):
    """Each attacker opens a 4 MiB message on all 64 chunk streams (256 MiB once)."""
    async def attacker():
        client = await FlashClient.connect(server.ports["rtmp"], f"flood-{uuid.uuid4().hex[:6]}")
        try:
            client.send(2, chunks.SET_CHUNK_SIZE, 0, 0, struct.pack(">I", 65536))
            piece = b"\x00" * 65536
            for csid in range(4, 64):
                header = bytes([csid]) + bytes(3) + (4 * MiB - 1).to_bytes(3, "big") + \
                    bytes([chunks.VIDEO]) + (1).to_bytes(4, "little")
                client.sendRaw(header + piece + (bytes([0xC0 | csid]) + piece) * 15)
                try:
                    await client.writer.drain()
                except ConnectionError:
                    break
                if client.task.done():
                    break
            await client.closedByServer()
        finally:
            client.close()

    await during(room, asyncio.gather(*(attacker() for _ in range(4))))
    assert "bytes of unfinished messages" in server.log()
    assertMemoryBounded(server, room)


async def test_no_traceback_in_the_server_log(server, room):
    log = server.log()
    assert "Traceback" not in log and "Unhandled" not in log, log[-3000:]
