"""
Signed tokens over the WebSocket protocol, against the real server with
auth_required=true: each refusal at its exact step, with its reason, and a
valid token end to end with aiortc peers.
"""

import asyncio
import time
import uuid

import pytest

from tests.access.support import SECRET, connect, refusedAndClosed, token
from tests.media import peers
from tests.support.rooms import MEDIA, alicePublishesToBob, negotiate, status, streamRequest
from tests.support.server import startServer

AUTH = dict(MEDIA, auth_required="true", auth_jwt_secret=SECRET,
            rate_auth_failures_per_address="1000")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = startServer(tmp_path_factory.mktemp("auth"), settings=AUTH)
    yield running
    running.stop()


def newRoom():
    return f"room-{uuid.uuid4().hex[:6]}"


async def test_without_a_token_connection_fails_and_closes(server):
    client, frame = await connect(server.wsURL, "alice")
    await refusedAndClosed(client, frame, "a token is required")


async def test_bad_signature_expired_and_other_login_are_refused(server):
    forged = token("alice")[:-4] + "AAAA"
    expired = token("alice", ttl=60, now=time.time() - 300)
    for sent, login, reason in [
        (forged, "alice", "bad token signature"),
        (expired, "alice", "token expired"),
        ("garbage", "alice", "malformed token"),
        (token("bob"), "alice", "login 'alice' is not the token's login"),
    ]:
        client, frame = await connect(server.wsURL, login, sent)
        await refusedAndClosed(client, frame, reason)


async def test_login_comes_from_the_token(server):
    client, frame = await connect(server.wsURL, None, token("carol"))
    assert frame["message"] == "getUserData" and frame["data"][0]["login"] == "carol"
    await client.close()


async def test_join_outside_the_tokens_room_fails(server):
    room = newRoom()
    client, frame = await connect(server.wsURL, "alice", token("alice", room=room))
    assert frame["message"] == "getUserData"
    status_ = await client.command("join", {"name": "elsewhere"})
    assert status_["status"] == "FAILED"
    assert status_["info"] == "token does not allow room 'elsewhere'"
    assert await client.join(room) == []  # its own room is fine
    await client.close()
    joiner, _ = await connect(server.wsURL, "bob", token("bob", room=room, grants=["join"]))
    recorded = await joiner.command("join", {"name": room, "record": True})
    assert (recorded["status"], recorded["info"]) == ("FAILED", "token does not grant record")
    await joiner.close()


async def test_publish_without_the_grant_fails(server):
    room = newRoom()
    client, frame = await connect(server.wsURL, "alice",
                                  token("alice", room=room, grants=["join", "play", "chat"]))
    await client.join(room)
    publisher = peers.Publisher()
    body = streamRequest(f"{room}-alice-1", room, await peers.offerOf(publisher.pc), True)
    await client.send("publishStream", body)
    failed = await status(client, body["mediaSessionId"], "FAILED")
    assert failed["info"] == "token does not grant publish"
    await publisher.close()
    await client.close()


async def test_record_needs_its_grant(server):
    room = newRoom()
    client, _ = await connect(server.wsURL, "alice",
                              token("alice", room=room, grants=["join", "publish"]))
    await client.join(room)
    publisher = peers.Publisher()
    body = streamRequest(f"{room}-alice-1", room, await peers.offerOf(publisher.pc), True,
                         record=True)
    await client.send("publishStream", body)
    assert (await status(client, body["mediaSessionId"], "FAILED"))["info"] == \
        "token does not grant record"
    await publisher.close()
    await client.close()


async def test_valid_tokens_publish_play_and_chat_end_to_end(server):
    async def withToken(login, room):
        return (await connect(server.wsURL, login, token(login, room=room)))[0]

    room, alice, bob, publisher, publish = await alicePublishesToBob(server, withToken)
    name = publish["name"]

    # Bob cannot take a name of alice's.
    squat = streamRequest(f"{room}-alice-zzzz", room, await peers.offerOf(
        peers.Publisher().pc), True)
    await bob.send("publishStream", squat)
    assert "must be named" in (await status(bob, squat["mediaSessionId"], "FAILED"))["info"]

    player = peers.Player(video="video/H264", audio="audio/opus")
    play = streamRequest(name, room, await peers.offerOf(player.pc), False)
    await negotiate(bob, player.pc, "playStream", play)
    await status(bob, play["mediaSessionId"], "PLAYING")
    await player.waitFrames("video", 5, timeout=15)

    assert (await alice.chat(room, "bob", "hello"))["status"] == "ACCEPTED"
    assert (await bob.roomEvent("MESSAGE"))["info"]["text"] == "hello"

    # A token for another room (with play) cannot play this room's stream.
    eve, _ = await connect(server.wsURL, "eve", token("eve", room="other"))
    watcher = peers.Player()
    look = streamRequest(name, None, await peers.offerOf(watcher.pc), False)
    await eve.send("playStream", look)
    assert "belongs to room" in (await status(eve, look["mediaSessionId"], "FAILED"))["info"]
    for pc in (publisher, player, watcher):
        await pc.close()
    for client in (alice, bob, eve):
        await client.close()


async def test_an_expired_token_ends_nothing_but_allows_nothing_new(server):
    room = newRoom()
    # Valid at connection (within the 60 s leeway), expired 2 s later.
    soon = token("alice", room=room, ttl=60, now=time.time() - 118)
    alice, frame = await connect(server.wsURL, "alice", soon)
    assert frame["message"] == "getUserData"
    await alice.join(room)
    # A join again is accepted (she is in) until the token expires.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while (refused := await alice.command("join", {"name": room}))["status"] == "ACCEPTED":
        await alice.roomEvent("STATE")
        assert loop.time() < deadline, "the token never expired"
        await asyncio.sleep(0.2)
    assert (refused["status"], refused["info"]) == ("FAILED", "token expired")
    chat = await alice.chat(room, "alice", "still here?")
    assert (chat["status"], chat["info"]) == ("FAILED", "token expired")
    # Still a member: the room's state is unchanged by the refusals.
    bob, _ = await connect(server.wsURL, "bob", token("bob", room=room))
    assert "alice" in await bob.join(room)
    await alice.close()
    await bob.close()


async def test_rate_limits_answer_too_many_requests(tmp_path):
    limited = startServer(tmp_path, settings={
        "auth_required": "true", "auth_jwt_secret": SECRET, "rate_auth_failures_per_address": "3",
        "rate_joins_per_login": "2", "rate_chat_per_participant": "2"})
    try:
        # Failed tokens from one address: three refused with their reason,
        # then the address is banned, a good token included.
        reasons = []
        for _ in range(4):
            client, frame = await connect(limited.wsURL, "alice", "garbage")
            reasons.append(frame["data"][0]["info"])
            await client.close()
        assert reasons == ["malformed token"] * 3 + ["Too many requests"]
        client, frame = await connect(limited.wsURL, "alice", token("alice"))
        await refusedAndClosed(client, frame, "Too many requests")
    finally:
        limited.stop()
    limited = startServer(tmp_path / "2", settings={
        "auth_required": "true", "auth_jwt_secret": SECRET,
        "rate_joins_per_login": "2", "rate_chat_per_participant": "2"})
    try:
        room = newRoom()
        alice, _ = await connect(limited.wsURL, "alice", token("alice"))
        # Six joins of distinct rooms at once: a burst of twice the rate, then refusals.
        joins = await burst(alice, [("join", {"name": f"{room}{i}"}) for i in range(6)])
        assert joins[:4] == [None] * 4 and "Too many requests" in joins[4:]
        chats = await burst(alice, [("sendMessage", {"roomConfig": {"name": f"{room}0"},
                                                     "to": "alice", "text": "x"})] * 8)
        assert chats[:4] == [None] * 4 and chats.count("Too many requests") >= 2
    finally:
        limited.stop()


async def burst(client, commands):
    """Send sendData commands back to back; their DataStatusEvent infos in order."""
    for i, (command, options) in enumerate(commands):
        await client.send("sendData", {"operationId": f"b{i}", "payload": {
            "command": command, "options": options}})
    infos = {}
    while len(infos) < len(commands):
        frame = await client.next()
        if frame["message"] == "DataStatusEvent":
            infos[frame["data"][0]["operationId"]] = frame["data"][0].get("info")
    return [infos[f"b{i}"] for i in range(len(commands))]
