"""
REST hooks against a real backend (tests/access/backend.py): each hook is
called once with the documented body, a deny is honoured at each step, a
slow, failing or dead backend denies within the timeout, and other clients
are not slowed while a hook is out.
"""

import asyncio
import time
import uuid

import pytest

from tests.access.backend import TIMEOUT_MS, hookSettings, startBackend
from tests.access.support import connect, refusedAndClosed
from tests.media import peers
from tests.support.bystanders import Bystanders
from tests.support.rooms import MEDIA, negotiate, status, streamRequest
from tests.support.server import freePort, startServer


@pytest.fixture(scope="module")
def backend():
    return startBackend()


@pytest.fixture(scope="module")
def server(tmp_path_factory, backend):
    hook, port = backend
    running = startServer(tmp_path_factory.mktemp("hooks"),
                          settings=hookSettings(port, rest_hook_chat="true"))
    yield running
    running.stop()


def unique(prefix):
    return f"{prefix}{uuid.uuid4().hex[:6]}"


async def chatToSelf(client, room, login, text):
    await client.send("sendData", {"operationId": "chat", "payload": {
        "command": "sendMessage",
        "options": {"roomConfig": {"name": room}, "to": login, "text": text}}})
    frame = await client.expect("DataStatusEvent", skip=("ping", "OnDataEvent"))
    return frame["data"][0]


async def test_every_hook_gets_the_documented_body(server, backend):
    hook, _ = backend
    login, room = unique("user"), unique("room")
    client, frame = await connect(server.wsURL, login, colour="blue")
    assert frame["message"] == "getUserData"
    sessionId = frame["data"][0]["sessionId"]
    await client.join(room)
    assert (await chatToSelf(client, room, login, "hi"))["status"] == "ACCEPTED"
    publisher = peers.Publisher()
    name = f"{room}-{login}-1"
    publish = streamRequest(name, room, await peers.offerOf(publisher.pc), True, record=True)
    await negotiate(client, publisher.pc, "publishStream", publish)
    await status(client, publish["mediaSessionId"], "PUBLISHING")
    player = peers.Player()
    play = streamRequest(name, room, await peers.offerOf(player.pc), False)
    await negotiate(client, player.pc, "playStream", play)

    common = {"login": login, "sessionId": sessionId, "address": "127.0.0.1",
              "transport": "websocket"}
    [connectBody] = hook.callsOf("connect", login)
    assert connectBody == dict(common, appKey="roomApp", custom={"login": login, "colour": "blue"})
    [join] = hook.callsOf("joinRoom", login)
    assert join == dict(common, room=room, record=False)
    [chat] = hook.callsOf("sendMessage", login)
    assert chat == dict(common, room=room, to=login, text="hi")
    [pub] = hook.callsOf("publishStream", login)
    assert pub == dict(common, room=room, name=name, record=True, mediaProvider="WebRTC",
                       custom={"name": room})
    [rec] = hook.callsOf("recordStream", login)
    assert rec == pub
    [playBody] = hook.callsOf("playStream", login)
    assert playBody == dict(common, room=room, name=name, mediaProvider="WebRTC",
                            custom={"name": room})
    await publisher.close()
    await player.close()
    await client.close()


async def test_a_deny_at_connect_names_the_reason(server):
    login = unique("deny")
    client, frame = await connect(server.wsURL, login)
    await refusedAndClosed(client, frame, f"{login} is not welcome")


async def test_the_backend_may_rename_and_add_custom(server):
    client, frame = await connect(server.wsURL, unique("rename"))
    body = frame["data"][0]
    assert body["login"].startswith("renamed-rename") and body["custom"] == {"plan": "gold"}
    await client.close()


async def test_denies_at_join_chat_publish_play_and_record(server):
    login, room = unique("user"), unique("room")
    client, _ = await connect(server.wsURL, login)
    closed = await client.command("join", {"name": unique("closed")})
    assert (closed["status"], closed["info"]) == ("FAILED", "room closed")
    await client.join(room)
    chat = await chatToSelf(client, room, login, "bad word")
    assert (chat["status"], chat["info"]) == ("FAILED", "mind your language")

    publisher = peers.Publisher()
    offer = await peers.offerOf(publisher.pc)
    refused = streamRequest(unique("forbidden"), room, offer, True)
    await client.send("publishStream", refused)
    assert (await status(client, refused["mediaSessionId"], "FAILED"))["info"] == "not that name"
    player = peers.Player()
    secret = streamRequest(unique("secret"), None, await peers.offerOf(player.pc), False)
    await client.send("playStream", secret)
    assert (await status(client, secret["mediaSessionId"], "FAILED"))["info"] == "not for you"
    await client.close()

    norecord = unique("norecord")
    recorder, _ = await connect(server.wsURL, norecord)
    await recorder.join(room)
    body = streamRequest(f"{room}-{norecord}", room, offer, True, record=True)
    await recorder.send("publishStream", body)
    assert (await status(recorder, body["mediaSessionId"], "FAILED"))["info"] == \
        "no recording on your plan"
    await publisher.close()
    await player.close()
    await recorder.close()


async def test_slow_and_failing_backends_deny_within_the_timeout(server):
    loop = asyncio.get_running_loop()
    start = loop.time()
    client, frame = await connect(server.wsURL, unique("slow"))
    waited = loop.time() - start
    await refusedAndClosed(client, frame, "the application backend did not answer in time")
    assert TIMEOUT_MS / 1000 * 0.9 <= waited < TIMEOUT_MS / 1000 + 4
    client, frame = await connect(server.wsURL, unique("fail"))
    await refusedAndClosed(client, frame, "denied by the application backend")


async def test_messages_sent_while_a_hook_is_out_keep_their_order(server):
    login, room = unique("user"), unique("room")
    client, _ = await connect(server.wsURL, login)
    # join, chat and leave back to back: each waits for the one before.
    ids = []
    for command, options in [("join", {"name": room}),
                             ("sendMessage", {"roomConfig": {"name": room}, "to": login,
                                              "text": "first"}),
                             ("leave", {"name": room})]:
        ids.append(unique("op"))
        await client.send("sendData", {"operationId": ids[-1],
                                       "payload": {"command": command, "options": options}})
    statuses = []
    while len(statuses) < 3:
        frame = await client.next()
        if frame["message"] == "DataStatusEvent":
            statuses.append((frame["data"][0]["operationId"], frame["data"][0]["status"]))
    assert statuses == [(i, "ACCEPTED") for i in ids], (ids, client.received)
    await client.close()


async def test_a_dead_backend_denies(tmp_path, backend):
    dead = startServer(tmp_path, settings={"rest_hook_url": f"http://127.0.0.1:{freePort()}",
                                           "rest_hook_timeout": "2000"})
    try:
        start = time.monotonic()
        client, frame = await connect(dead.wsURL, "alice")
        await refusedAndClosed(client, frame, "the application backend is unreachable")
        assert time.monotonic() - start < 5
    finally:
        dead.stop()


async def test_slow_hooks_do_not_slow_other_clients(tmp_path, backend):
    _, port = backend
    running = startServer(tmp_path, settings=dict(
        MEDIA, rest_hook_url=f"http://127.0.0.1:{port}/hook", rest_hook_timeout="2500"))
    try:
        # The hook times out well inside the clients' own 5 s wait for an answer.
        async with Bystanders(running) as room:
            slow = [asyncio.ensure_future(connect(running.wsURL, unique("slow")))
                    for _ in range(20)]
            await asyncio.sleep(0.5)
            assert not any(task.done() for task in slow)  # all twenty are waiting
            await room.assertHealthy()
            for client, frame in await asyncio.gather(*slow):
                assert frame["data"][0]["info"] == \
                    "the application backend did not answer in time"
                await client.close()
    finally:
        running.stop()
