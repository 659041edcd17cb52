"""
REST hooks for RTMP encoders, players and Flash room clients, against a
real backend (tests/access/backend.py): the same policy as WebSocket
clients, each hook called once per action, a deny honoured at its step.
"""

import asyncio
import time
import uuid

import pytest

from tests.access.backend import TIMEOUT_MS, hookSettings, startBackend
from tests.access.test_rtmp_tokens import refusedEncoder, url
from tests.rtmp import ffmpeg
from tests.rtmp.flashclient import FlashClient
from tests.support.server import startServer
from tests.support.wsclient import Client
from tests.support.wait import waitForLog


@pytest.fixture(scope="module")
def backend():
    return startBackend()


@pytest.fixture(scope="module")
def server(tmp_path_factory, backend):
    ffmpeg.requireFFmpeg()
    hook, port = backend
    running = startServer(tmp_path_factory.mktemp("rtmp-hooks"), settings=hookSettings(port),
                          enable=("ws", "rtmp"))
    yield running
    running.stop()


def unique(prefix):
    return f"{prefix}{uuid.uuid4().hex[:6]}"


async def test_an_allowed_encoder_is_asked_about_once_per_step(server, backend):
    hook, _ = backend
    room, login = unique("room-"), unique("obs")
    bob = await Client.open(server.wsURL, unique("bob"))
    await bob.join(room)
    encoder = ffmpeg.publish(url(server, f"room/{room}/{login}"), seconds=12)
    try:
        assert (await bob.roomEvent("JOINED", timeout=15))["info"] == login
        published = await bob.roomEvent("PUBLISHED", timeout=15)
        assert published["info"] == {"login": login, "name": f"{room}-{login}"}
    finally:
        ffmpeg.stop(encoder)
    [connect] = hook.callsOf("connect", login)
    assert connect["transport"] == "rtmp" and connect["address"] == "127.0.0.1"
    [join] = hook.callsOf("joinRoom", login)
    assert join["room"] == room and join["sessionId"] == connect["sessionId"]
    [publish] = hook.callsOf("publishStream", login)
    assert (publish["name"], publish["room"], publish["mediaProvider"]) == \
        (f"{room}-{login}", room, "RTMP")
    await bob.close()


async def test_a_deny_is_honoured_at_each_step(server, backend):
    assert "is not welcome" in await refusedEncoder(server, f"room/{unique('r')}/deny1")
    assert "room closed" in await refusedEncoder(server, f"room/{unique('closed')}/obs")
    assert "not that name" in await refusedEncoder(server, f"live/{unique('forbidden')}")


async def test_a_player_is_refused_by_the_backend(server, tmp_path):
    name = unique("secret")
    encoder = ffmpeg.publish(url(server, f"live/{name}"), seconds=10)
    try:
        await waitForLog(server, f"'{name}' PUBLISHING>", 15)
        result = await asyncio.to_thread(ffmpeg.record, url(server, f"live/{name}"),
                                         tmp_path / "no.flv", 1)
        assert result.returncode != 0 and "not for you" in result.stderr, result.stderr
    finally:
        ffmpeg.stop(encoder)


async def test_flash_clients_denied_or_unanswered_are_rejected(server):
    port = server.ports["rtmp"]
    client, result = await FlashClient.tryConnect(port, unique("deny"))
    assert result[2]["code"] == "NetConnection.Connect.Rejected"
    assert result[2]["description"].endswith("is not welcome")
    await client.closedByServer()

    started = time.monotonic()
    client, result = await FlashClient.tryConnect(port, unique("slow"))
    assert result[2] == {"level": "error", "code": "NetConnection.Connect.Rejected",
                         "description": "the application backend did not answer in time"}
    assert time.monotonic() - started < TIMEOUT_MS / 1000 + 5
    await client.closedByServer()

    room = unique("room-")
    flash = await FlashClient.connect(port, unique("flash"))
    assert (await flash.command("join", {"name": room}))["status"] == "ACCEPTED"
    closed = await flash.command("join", {"name": unique("closed")})
    assert (closed["status"], closed["info"]) == ("FAILED", "room closed")
    flash.close()
