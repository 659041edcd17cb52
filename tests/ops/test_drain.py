"""Graceful drain: SIGTERM or POST /rest-api/server/drain against the real server."""

import asyncio
import json
import signal
import time
import urllib.request
import uuid

import websockets

from tests.ops.receiver import Receiver
from tests.ops.rooms import recordedRoom
from tests.support.rooms import MEDIA
from tests.support.wsclient import Client

SECRET = "drain-secret"


async def exited(server, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while server.proc.poll() is None:
        assert time.monotonic() < deadline, server.log()[-3000:]
        await asyncio.sleep(0.2)
    return server.proc.returncode


async def refusedWithReason(server, timeout: float = 10) -> None:
    """A new WebSocket connection is refused, saying why (once the drain began)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            accepted = await websockets.connect(server.wsURL, open_timeout=5)
        except websockets.InvalidStatus as e:
            assert e.response.status_code == 503
            assert "draining" in e.response.reason_phrase
            return
        await accepted.close()
        assert time.monotonic() < deadline, "new connections still accepted"
        await asyncio.sleep(0.1)


def hookScript(tmp_path):
    argsFile = tmp_path / "hook-args.txt"
    hook = tmp_path / "hook.sh"
    hook.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {argsFile}\n')
    hook.chmod(0o755)
    return hook, argsFile


async def test_sigterm_drains_a_recorded_room_then_exits_0(serverFactory, tmp_path):
    hook, argsFile = hookScript(tmp_path)
    receiver = Receiver(SECRET)
    try:
        server = serverFactory(settings=dict(
            MEDIA, drain_timeout="4", on_multiple_record_hook_script=str(hook),
            webhook_urls=receiver.url, webhook_secret=SECRET))
        room, alice, bob, publisher, publish, recordName = await recordedRoom(server)
        await asyncio.sleep(2)
        server.proc.send_signal(signal.SIGTERM)
        # A newcomer is refused with the reason; so is a new room; the room goes on.
        await refusedWithReason(server)
        await bob.quiet()
        refused = await bob.command("join", {"name": "another-room"})
        assert refused["status"] == "FAILED" and "draining" in refused["info"]
        assert (await bob.chat(room, "alice", "still here"))["status"] == "ACCEPTED"
        # drain_timeout ends the room as a leave would: the mix and its hook
        # run, the server exits 0.
        assert await exited(server, 60) == 0
        records = server.workdir / "state" / "records"
        recording = records / recordName
        assert recording.exists() and not recording.with_suffix(".ts").exists()
        mixed = list(records.glob("*-mixed.mp4"))
        assert len(mixed) == 1 and mixed[0].stat().st_size > 10000
        assert argsFile.read_text().split("\n")[:2] == [room, str(mixed[0])]
        # The webhooks went out before the exit, the last one the mix.
        events = [e["event"] for e in receiver.events() if e.get("room") == room]
        assert events[-1] == "mix_finished" and "room_ended" in events, events
        assert "recording_finished" in events and events.count("participant_left") == 2
        await publisher.close()
    finally:
        receiver.down()


async def test_a_second_sigterm_stops_at_once_and_still_finishes_the_recording(serverFactory):
    server = serverFactory(settings=MEDIA)  # drain_timeout: 300 s
    room, alice, bob, publisher, publish, recordName = await recordedRoom(server)
    await asyncio.sleep(2)
    server.proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(1)
    assert server.proc.poll() is None  # draining: the room runs on
    server.proc.send_signal(signal.SIGTERM)
    assert await exited(server, 20) == 0
    recording = server.workdir / "state" / "records" / recordName
    assert recording.exists() and not recording.with_suffix(".ts").exists()
    await publisher.close()


async def test_drain_over_rest_ends_when_the_last_room_ends(serverFactory):
    server = serverFactory(enable=("ws", "rest", "rtmp"))
    room = f"room-{uuid.uuid4().hex[:6]}"
    alice = await Client.open(server.wsURL, "alice")
    await alice.join(room)
    request = urllib.request.Request(server.restURL + "/rest-api/server/drain", data=b"{}",
                                     method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        body = json.loads(response.read())
    assert body == {"draining": True, "started": True, "rooms": 1, "timeout": 300}, body
    from tests.rest.openapi import check

    check("POST", "/rest-api/server/drain", 200, body)  # as docs/rest-api.yaml says
    await refusedWithReason(server)
    from tests.rtmp.flashclient import FlashClient

    flash = await FlashClient.open(server.ports["rtmp"])
    result = await flash.invoke("connect", {"app": "live", "flashVer": "LNX 11,2,202,635",
                                            "tcUrl": f"rtmp://127.0.0.1:{server.ports['rtmp']}/live"})
    assert result[0] == "_error" and result[2]["code"] == "NetConnection.Connect.Rejected"
    assert "draining" in result[2]["description"]
    await flash.closedByServer()
    flash.close()
    metrics = urllib.request.urlopen(server.restURL + "/metrics", timeout=10).read()
    assert b"wcs_draining 1.0" in metrics
    await asyncio.sleep(1)
    assert server.proc.poll() is None
    assert (await alice.command("leave", {"name": room}))["status"] == "ACCEPTED"
    assert await exited(server, 20) == 0
