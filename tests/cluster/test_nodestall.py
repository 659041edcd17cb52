"""
A stalled node is not a dead one (docs/cluster.md, "Failure behaviour"): a
real redis-server and three nodes as processes; a node that visits a room
is stopped (SIGSTOP: CPU starvation, a GC pause, a paused VM) past its key's
TTL, so the room's node gives it up; when it runs again, the resync of
wcs/cluster/resync.py puts its members back: every member's participant
list is whole again and chat flows both ways.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest
from aiortc import RTCSessionDescription

from tests.cluster.test_cluster import BEAT, NODES, TTL, roomName, until
from tests.cluster.test_resync import Roster, joined
from tests.media import peers
from tests.support.cluster import runningCluster
from tests.support.redis import redisAvailable
from tests.support.rooms import SKIP, status, streamRequest

pytestmark = pytest.mark.skipif(not redisAvailable(), reason="redis-server not installed")

STALL = 2 * TTL + 2 * BEAT  # past the give-up (TTL + two checks), with margin
GIVEN_UP = 10.0  # seconds more the stall may last until the room's node has said "gone"
RESYNC = 10.0  # seconds from SIGCONT until the resync told the stalled node what it lost


def events(roster: Roster, since: int, login: str) -> list[str]:
    """The JOINED and LEFT of C{login} that C{roster}'s client received after C{since}."""
    return [p["name"] for f in roster.client.received[since:]
            if f["message"] == "OnDataEvent"
            for p in [f["data"][0]["payload"]]
            if p.get("name") in ("JOINED", "LEFT") and p.get("info") == login]


async def memberOnEach(redis, nodes, room: str):
    """user-X on each node X joins C{room}. @return: ({node: Roster}, the room's node)."""
    members = {"a": await joined(nodes["a"], "user-a", room)}
    owner = redis.client().get(f"wcs:room:{room}")
    for node in NODES[1:]:
        members[node] = await joined(nodes[node], f"user-{node}", room)
    return members, owner


async def stall(nodes, staller: str, owner: str) -> None:
    """Stop C{staller}'s process for STALL and until C{owner} gave it up; run it again."""
    proc = nodes[staller].proc
    proc.send_signal(signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        await until(lambda: time.monotonic() - stopped >= STALL
                    and f"node {staller} is gone" in nodes[owner].log(),
                    STALL + GIVEN_UP, f"node {owner} gives {staller} up")
    finally:
        proc.send_signal(signal.SIGCONT)


async def test_stalled_node_heals(tmp_path):
    with runningCluster(tmp_path, {n: {"room_idle_timeout": "0"} for n in NODES}) as (
            redis, nodes):
        room = roomName()
        members, owner = await memberOnEach(redis, nodes, room)
        staller, other = [n for n in NODES if n != owner]
        everyone = {f"user-{n}" for n in NODES}
        try:
            for node, roster in members.items():
                await roster.settle(everyone - {f"user-{node}"})
            marks = {n: len(r.client.received) for n, r in members.items()}
            stopped = time.monotonic()
            await stall(nodes, staller, owner)
            resumed = time.monotonic()
            for node, roster in members.items():
                await roster.settle(everyone - {f"user-{node}"})
            healed = time.monotonic() - resumed
            seen = {n: events(r, marks[n], f"user-{staller}")
                    for n, r in members.items() if n != staller}
            itSaw = [e for n in (owner, other)
                     for e in events(members[staller], marks[staller], f"user-{n}")]
            print(f"\nstalled node {staller} ({time.monotonic() - stopped - healed:.1f} s): "
                  f"every list whole within {healed:.1f} s after SIGCONT; the others saw "
                  f"{seen}; user-{staller} saw {itSaw}; load {os.getloadavg()[0]:.1f}")
            # What clients see (docs/cluster.md, "A stalled node").
            assert seen == {owner: ["LEFT", "JOINED"], other: ["LEFT", "JOINED"]}, seen
            assert itSaw == [], itSaw
            # Chat flows both ways between the stalled node's member and the others.
            for sender, to in ((staller, owner), (owner, staller), (staller, other)):
                status = await members[sender].client.chat(room, f"user-{to}", f"hi {to}")
                assert status["status"] == "ACCEPTED", status
                await members[to].client.expect(
                    "OnDataEvent", lambda f: f["data"][0]["payload"]["name"] == "MESSAGE",
                    skip=("ping", "OnDataEvent"))
        finally:
            for roster in members.values():
                await roster.client.close()


def statuses(client, mediaSessionId: str) -> list[str]:
    return [f["data"][0]["status"] for f in client.received
            if f["message"] == "notifyStreamStatusEvent"
            and f["data"][0]["mediaSessionId"] == mediaSessionId]


async def stream(client, room: str, name: str, published: bool):
    """Publish or play C{name} with an aiortc peer: (the peer, the request)."""
    peer = (peers.Publisher if published else peers.Player)(video="video/H264",
                                                            audio="audio/opus")
    body = streamRequest(name, room, await peers.offerOf(peer.pc), published)
    await client.send("publishStream" if published else "playStream", body)
    frame = await client.expect("setRemoteSDP", lambda f: f["data"][0] == body["mediaSessionId"],
                                timeout=15, skip=SKIP)
    await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=frame["data"][1], type="answer"))
    await status(client, body["mediaSessionId"], "PUBLISHING" if published else "PLAYING")
    return peer, body


async def test_stalled_nodes_stream(tmp_path):
    """
    A stream published by the stalled node's member (its media goes to the
    room's node) ends when the room's node gives the stalled node up: its
    player is told, and after the heal the stream is published again.
    """
    base = random.randrange(20000, 60000, 300)
    settings = {n: {"room_idle_timeout": "0", "ice_public_ip": "127.0.0.1",
                    "media_port_from": str(base + 100 * i),
                    "media_port_to": str(base + 100 * i + 99)}
                for i, n in enumerate(NODES)}
    with runningCluster(tmp_path, settings) as (redis, nodes):
        room = roomName()
        members, owner = await memberOnEach(redis, nodes, room)
        staller, _ = [n for n in NODES if n != owner]
        peersOpen = []
        name = f"{room}-{staller}"
        try:
            publisher, published = await stream(members[staller].client, room, name, True)
            peersOpen.append(publisher)
            player, played = await stream(members[owner].client, room, name, False)
            peersOpen.append(player)
            await player.waitFrames("video", 5, timeout=20)
            await stall(nodes, staller, owner)
            everyone = {f"user-{n}" for n in NODES}
            for node, roster in members.items():
                await roster.settle(everyone - {f"user-{node}"})
            # The publisher is told its stream is lost, and publishes it again.
            publishing = members[staller].client
            await until(lambda: "FAILED" in statuses(publishing, published["mediaSessionId"]),
                        RESYNC, "the stalled node's publisher gets FAILED")
            failed = [f["data"][0] for f in publishing.received
                      if f["message"] == "notifyStreamStatusEvent"
                      and f["data"][0]["status"] == "FAILED"][-1]
            assert statuses(publishing, published["mediaSessionId"]) \
                == ["PUBLISHING", "FAILED"]
            assert statuses(members[owner].client, played["mediaSessionId"]) \
                == ["PLAYING", "STOPPED"]
            publisher, published = await stream(members[staller].client, room, name, True)
            peersOpen.append(publisher)
            player, played = await stream(members[owner].client, room, name, False)
            peersOpen.append(player)
            await player.waitFrames("video", 5, timeout=20)
            print(f"\nstalled node {staller}: its publisher got FAILED ({failed['info']}), "
                  f"published again and played; load {os.getloadavg()[0]:.1f}")
        finally:
            for peer in peersOpen:
                await peer.close()
            for roster in members.values():
                await roster.client.close()
