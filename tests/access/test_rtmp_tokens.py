"""
Signed tokens over RTMP, against the real server with auth_required=true:
ffmpeg as encoder and player (C{?token=} on the stream name), a Flash room
client (C{token} in the connect object), each refusal with its reason.
"""

import asyncio
import subprocess
import uuid

import pytest

from tests.access.support import SECRET, connect, token
from tests.rtmp import ffmpeg
from tests.rtmp.flashclient import FlashClient
from tests.rtmp.test_flash import h264Bodies
from tests.support.rooms import MEDIA
from tests.support.server import startServer
from tests.support.wait import waitForLog

AUTH = dict(MEDIA, auth_required="true", auth_jwt_secret=SECRET,
            rate_auth_failures_per_address="1000")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    ffmpeg.requireFFmpeg()
    running = startServer(tmp_path_factory.mktemp("rtmp-auth"), settings=AUTH,
                          enable=("ws", "rtmp"))
    yield running
    running.stop()


def url(server, path):
    return f"rtmp://127.0.0.1:{server.ports['rtmp']}/{path}"


def unique(prefix):
    return f"{prefix}{uuid.uuid4().hex[:6]}"


async def refusedEncoder(server, path, seconds=20.0):
    """ffmpeg publishing to C{path}; its error output once the server refused it."""
    encoder = ffmpeg.publish(url(server, path), seconds=8)
    try:
        _, err = await asyncio.to_thread(encoder.communicate, timeout=seconds)
    except subprocess.TimeoutExpired:
        ffmpeg.stop(encoder)
        raise AssertionError(f"ffmpeg was not refused publishing to {path}")
    assert encoder.returncode != 0
    return err.decode(errors="replace")


async def test_an_encoder_without_a_token_is_refused_with_the_reason(server):
    err = await refusedEncoder(server, f"live/{unique('s')}")
    assert "a token is required" in err
    err = await refusedEncoder(server, f"room/{unique('r')}/obs?token=garbage")
    assert "malformed token" in err


async def test_an_encoder_with_a_token_publishes_into_its_room(server):
    room = unique("room-")
    bob, frame = await connect(server.wsURL, "bob", token("bob", room=room))
    assert frame["message"] == "getUserData"
    await bob.join(room)
    # As OBS says it: server rtmp://HOST/room/ROOM, stream key LOGIN?token=JWT.
    key = token("obs", room=room, grants=["join", "publish"])
    encoder = await ffmpeg.publishIntoRoom(url(server, f"room/{room}/obs?token={key}"), room,
                                           "obs", [bob], seconds=12)
    ffmpeg.stop(encoder)
    await bob.close()


async def test_an_encoder_outside_its_tokens_room_or_grant_is_refused(server):
    room = unique("room-")
    other = token("obs", room="elsewhere", grants=["join", "publish"])
    assert "token does not allow room" in await refusedEncoder(
        server, f"room/{room}/obs?token={other}")
    noPublish = token("obs", room=room, grants=["join"])
    assert "token does not grant publish" in await refusedEncoder(
        server, f"room/{room}/obs?token={noPublish}")
    # The token names the login: a stream key of another login is refused.
    assert "is not the token's login" in await refusedEncoder(
        server, f"room/{room}/eve?token={token('obs', room=room)}")


async def test_a_player_needs_the_play_grant(server, tmp_path):
    name = unique("live")
    encoder = ffmpeg.publish(url(server, f"live/{name}?token=" + token(
        "cam", grants=["publish"])), seconds=15)
    try:
        await waitForLog(server, f"'{name}' PUBLISHING>", 15)
        for sent, reason in [(None, "a token is required"),
                             (token("viewer", grants=["join"]), "token does not grant play")]:
            query = f"?token={sent}" if sent else ""
            result = await asyncio.to_thread(ffmpeg.record, url(server, f"live/{name}{query}"),
                                             tmp_path / "no.flv", 1)
            assert result.returncode != 0 and reason in result.stderr, result.stderr
        out = tmp_path / "played.flv"
        result = await asyncio.to_thread(ffmpeg.record, url(
            server, f"live/{name}?token=" + token("viewer", grants=["play"])), out, 2)
        assert result.returncode == 0, result.stderr
        assert int(ffmpeg.probe(out)["video"]["nb_read_frames"]) >= 15
    finally:
        ffmpeg.stop(encoder)


async def test_a_flash_client_needs_a_token_in_its_connect_object(server):
    port = server.ports["rtmp"]
    client, result = await FlashClient.tryConnect(port, "flashy")
    assert result[0] == "_error"
    assert result[2] == {"level": "error", "code": "NetConnection.Connect.Rejected",
                         "description": "a token is required"}
    await client.closedByServer()
    client, result = await FlashClient.tryConnect(port, "flashy", token=token("mallory"))
    assert result[2]["description"] == "login 'flashy' is not the token's login"
    await client.closedByServer()

    room = unique("room-")
    flash = await FlashClient.connect(port, "flashy", token=token(
        "flashy", room=room, grants=["join", "publish", "chat"]))
    refused = await flash.command("join", {"name": "elsewhere"})
    assert (refused["status"], refused["info"]) == \
        ("FAILED", "token does not allow room 'elsewhere'")
    assert (await flash.command("join", {"name": room}))["status"] == "ACCEPTED"
    web, _ = await connect(server.wsURL, "web", token("web", room=room))
    assert await web.join(room) == ["flashy"]
    await flash.publishVideo(f"{room}-flashy", h264Bodies())
    published = await web.roomEvent("PUBLISHED")
    assert published["info"] == {"login": "flashy", "name": f"{room}-flashy"}
    flash.close()
    await web.close()


async def test_a_token_on_the_app_identifies_at_connect(server):
    # OBS: server rtmp://HOST/live?token=JWT, stream key NAME.
    name = unique("app")
    encoder = ffmpeg.publish(url(server, f"live?token={token('cam', grants=['publish'])}/{name}"),
                             seconds=8)
    try:
        await waitForLog(server, f"'{name}' PUBLISHING>", 15)
    finally:
        ffmpeg.stop(encoder)
    err = await refusedEncoder(server, f"live?token=garbage/{unique('app')}")
    assert "malformed token" in err
