"""
Hostile input to recording and room mixes, over the server's real port,
while two bystanders keep their room going (tests/support/bystanders.py).
"""

import asyncio
import json
import os
import re
import time
import uuid

import pytest

from tests.media import peers
from tests.recording.test_recording import probe, publishInRoom
from tests.support.bystanders import Bystanders
from tests.support.rooms import MEDIA, negotiate, status, streamRequest
from tests.support.server import startServer
from tests.support.wait import waitUntil as waitFor
from tests.support.wsclient import Client

HOOK_TIMEOUT = 3
MAX_DURATION = 3
# The hook ignores SIGTERM (its sleep too: ignored signals survive exec), so
# only the SIGKILL after the grace period ends it.
HOOK = """#!/bin/sh
trap '' TERM
echo $$ > {dir}/pids
sleep 100000 &
echo $! >> {dir}/pids
printf '%s\\n' "$@" > {dir}/args.part && mv {dir}/args.part {dir}/args
wait
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Labels on the mix, a hook that never ends, short recordings."""
    conf = tmp_path_factory.mktemp("conf")
    hook = conf / "hook.sh"
    hook.write_text(HOOK.format(dir=conf))
    hook.chmod(0o755)
    (conf / "mixer.json").write_text(json.dumps(
        {"mixerDisplayStreamName": True, "width": 320, "height": 240, "frameRate": 15}))
    running = startServer(tmp_path_factory.mktemp("wcs"), settings=dict(
        MEDIA, on_multiple_record_hook_script=str(hook), hook_timeout=str(HOOK_TIMEOUT),
        offline_mixer_config=str(conf / "mixer.json"), record_max_duration=str(MAX_DURATION)))
    running.conf = conf
    yield running
    running.stop()


async def publishRecorded(server, login, name, room=None):
    """C{login} publishes C{name} with record: true; returns its PUBLISHING status too."""
    client = await Client.open(server.wsURL, login)
    if room is not None:
        await client.join(room)
    publisher = peers.Publisher(video="video/H264", audio="audio/opus")
    request = streamRequest(name, room, await peers.offerOf(publisher.pc), True, record=True,
                            **({} if room else {"custom": {}}))
    await negotiate(client, publisher.pc, "publishStream", request)
    publishing = await status(client, request["mediaSessionId"], "PUBLISHING")
    return client, publisher, request, publishing


async def play(server, name):
    client = await Client.open(server.wsURL, f"viewer-{uuid.uuid4().hex[:4]}")
    player = peers.Player(video="video/H264", audio=None)
    request = streamRequest(name, None, await peers.offerOf(player.pc), False, hasAudio=False,
                            custom={})
    await negotiate(client, player.pc, "playStream", request)
    await status(client, request["mediaSessionId"], "PLAYING")
    await player.waitFrames("video", 10, timeout=15)
    return client, player


async def keepsPlaying(player, seconds=2.0):
    """The player decodes new frames for C{seconds}: the stream is live."""
    before = len(player.frames["video"])
    await asyncio.sleep(seconds)
    assert len(player.frames["video"]) - before > seconds * 10


async def close(*things):
    for thing in things:
        await thing.close()


async def test_a_stream_name_of_100_chinese_characters_is_recorded(server):
    async with Bystanders(server) as room:
        name = "中" * 100
        client, publisher, request, publishing = await publishRecorded(server, "han", name)
        recordName = publishing["recordName"]
        # Cut at 100 bytes of UTF-8, between characters (33 of them).
        assert recordName.endswith("-" + "中" * 33 + ".mp4")
        await asyncio.sleep(2)
        await client.send("unPublishStream", {"mediaSessionId": request["mediaSessionId"],
                                              "name": name})
        path = server.workdir / "state" / "records" / recordName
        await waitFor(path.exists, 20, lambda: server.log()[-2000:])
        streams, duration = probe(path)
        assert int(streams["video"]["nb_read_frames"]) > 20 and duration > 1
        await room.assertHealthy()
        await close(publisher, client)
    assert "ENAMETOOLONG" not in server.log() and "File name too long" not in server.log()


async def test_record_max_duration_ends_the_recording_not_the_stream(server):
    async with Bystanders(server) as room:
        name = f"long-{uuid.uuid4().hex[:6]}"
        client, publisher, request, publishing = await publishRecorded(server, "long", name)
        viewer, player = await play(server, name)
        notice = await status(client, request["mediaSessionId"], "PUBLISHING",
                              timeout=MAX_DURATION + 10)
        assert notice["info"] == f"Recording stopped: longer than {MAX_DURATION} s"
        path = server.workdir / "state" / "records" / publishing["recordName"]
        await waitFor(path.exists, 20, lambda: server.log()[-2000:])
        _, duration = probe(path)
        assert MAX_DURATION - 1.5 < duration < MAX_DURATION + 1.5
        await keepsPlaying(player)  # the stream goes on
        await room.assertHealthy()
        await close(player, viewer, publisher, client)


LOGINS = ["%{e:while(1,0)}", "o'neil: \\x,[y];z\nnext=line %{pts}", "中" * 128]


async def test_hostile_logins_in_a_recorded_room_mix(server):
    """The mix ends and labels the tiles; the hook that never ends is killed."""
    conf = server.conf
    async with Bystanders(server) as bystanders:
        room = f"mixed-{uuid.uuid4().hex[:6]}"
        clients, publishers = await publishInRoom(server, room, LOGINS, gap=0.5)
        await asyncio.sleep(1.5)
        for client in clients:
            await client.send("sendData", {"operationId": "bye", "payload": {
                "command": "leave", "options": {"name": room}}})
        left = time.monotonic()
        # The mix is done (bounded: the old escaping made ffmpeg spin for ever) and
        # the hook started; the bystanders do not suffer meanwhile.
        await bystanders.assertHealthy()
        await waitFor((conf / "args").exists, 60, lambda: server.log()[-3000:])
        args = (conf / "args").read_text().splitlines()
        assert args[0] == room and len(args) == 2 + len(LOGINS)
        streams, duration = probe(args[1])
        assert streams["video"]["codec_name"] == "h264" and duration > 2
        # The hook: SIGTERM after HOOK_TIMEOUT, ignored, SIGKILL after the grace.
        pids = [int(p) for p in (conf / "pids").read_text().split()]
        assert len(pids) == 2

        def gone():
            return not any(os.path.exists(f"/proc/{pid}") for pid in pids)
        await waitFor(gone, HOOK_TIMEOUT + 30, lambda: server.log()[-3000:])
        assert time.monotonic() - left > HOOK_TIMEOUT
        log = server.log()
        assert re.search(r"hook .* \(pid \d+\) killed after running [0-9.]+s "
                         rf"\(limit {HOOK_TIMEOUT}s, SIGKILL\)", log), log[-3000:]
        assert re.search(rf"room '{room}': hook .* failed \(killed\)", log), log[-3000:]
        await bystanders.assertHealthy()
        await close(*publishers, *clients)


async def test_a_record_dir_that_cannot_be_written(serverFactory, tmp_path):
    """The stream stays live for its player, its publisher is told, once; nothing piles up."""
    blocker = tmp_path / "a-file"
    blocker.write_text("records cannot go under a file")
    server = serverFactory(settings=dict(MEDIA, record_dir=str(blocker / "records")),
                           enable=("ws", "rtmp"))
    from tests.rtmp import ffmpeg

    async with Bystanders(server) as room:
        # An RTMP encoder asking for a recording is not dropped either.
        encoder = ffmpeg.publish(f"rtmp://127.0.0.1:{server.ports['rtmp']}/live/cam?record=true",
                                 seconds=6)
        name = f"unwritable-{uuid.uuid4().hex[:6]}"
        client, publisher, request, publishing = await publishRecorded(server, "w", name)
        viewer, player = await play(server, name)
        notice = await status(client, request["mediaSessionId"], "PUBLISHING", timeout=15)
        assert notice["info"].startswith("Recording failed: ")
        rss = server.rss()
        await keepsPlaying(player, seconds=5)
        assert server.rss() - rss < 30 << 20
        await room.assertHealthy()
        log = server.log()
        assert len(re.findall("recording of .* stopped", log)) == 1, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
        try:
            assert await asyncio.to_thread(encoder.wait, 30) == 0, encoder.stderr.read()
        finally:
            ffmpeg.stop(encoder)
        await close(player, viewer, publisher, client)


async def test_low_disk_refuses_new_recordings(serverFactory):
    server = serverFactory(settings=dict(MEDIA, record_min_free_mb=str(1 << 40)))
    async with Bystanders(server) as room:
        name = f"nodisk-{uuid.uuid4().hex[:6]}"
        client, publisher, request, publishing = await publishRecorded(server, "d", name)
        assert "recordName" not in publishing
        notice = await status(client, request["mediaSessionId"], "PUBLISHING")
        assert notice["info"] == f"Recording refused: less than {1 << 40} MB free on the server"
        viewer, player = await play(server, name)
        await keepsPlaying(player)
        records = server.workdir / "state" / "records"
        assert not records.exists() or list(records.iterdir()) == []
        await room.assertHealthy()
        await close(player, viewer, publisher, client)
