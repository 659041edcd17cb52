"""
Bystanders: two clients keeping a room going while a test attacks the
server, to show that one hostile client harms nobody else.

alice publishes H.264 video (aiortc) in a room over the WebSocket protocol,
bob plays it and decodes it; they chat. L{Bystanders.assertHealthy} measures,
over a window, the chat latency from alice's send to bob's receipt and the
frame rate bob decodes.

    async with Bystanders(server) as room:
        ...  # the attack
        await room.assertHealthy()
"""

from __future__ import annotations

import asyncio
import json
import uuid

import aioice.ice

from tests.media import peers
from tests.support.rooms import alicePublishesToBob, negotiate, status, streamRequest
from tests.support.wsclient import Client

CHAT_LATENCY = 0.1  # s: chat must still arrive within this
MIN_FPS = 25.0  # the publisher sends 30


class _Reader:
    """Reads one client's frames as they arrive (timestamped), answering pings."""

    def __init__(self, client: Client):
        self.client = client
        self.frames: list[tuple[float, dict]] = []
        self.arrived = asyncio.Event()
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        async for raw in self.client.ws:
            frame = json.loads(raw)
            if frame["message"] == "ping":
                await self.client.send("pong")
                continue
            self.frames.append((loop.time(), frame))
            self.arrived.set()

    async def waitFor(self, predicate, timeout: float) -> float:
        """The arrival time of the first frame (read from now on) matching C{predicate}."""
        start = len(self.frames)

        async def find():
            seen = start
            while True:
                for when, frame in self.frames[seen:]:
                    if predicate(frame):
                        return when
                seen = len(self.frames)
                self.arrived.clear()
                await self.arrived.wait()
        return await asyncio.wait_for(find(), timeout)

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def _isChat(text: str):
    def match(frame: dict) -> bool:
        if frame["message"] != "OnDataEvent":
            return False
        payload = frame["data"][0].get("payload", {})
        return payload.get("name") == "MESSAGE" and payload.get("info", {}).get("text") == text
    return match


class Bystanders:
    def __init__(self, server):
        self.server = server
        self.alice = self.bob = self.publisher = self.player = None
        self.readers: list[_Reader] = []
        self._patch = None

    async def __aenter__(self) -> "Bystanders":
        # aioice leaves loopback out of the aiortc clients' host candidates.
        self._patch = aioice.ice.get_host_addresses
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
        try:
            await self._start()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _start(self) -> None:
        self.room, self.alice, self.bob, self.publisher, publish = \
            await alicePublishesToBob(self.server)
        self.stream = publish["name"]  # alice's stream, for an attacker to play
        self.player = peers.Player(video="video/H264", audio=None)
        play = streamRequest(publish["name"], self.room, await peers.offerOf(self.player.pc),
                             False, hasAudio=False)
        await negotiate(self.bob, self.player.pc, "playStream", play)
        await status(self.bob, play["mediaSessionId"], "PLAYING")
        await self.player.waitFrames("video", 10, timeout=15)
        self.readers = [_Reader(self.alice), _Reader(self.bob)]

    async def chatLatency(self) -> float:
        """Seconds from alice's chat message to its arrival at bob."""
        loop = asyncio.get_running_loop()
        text = f"still here {uuid.uuid4().hex[:8]}"
        sent = loop.time()
        arrival = asyncio.ensure_future(self.readers[1].waitFor(_isChat(text), 5.0))
        await self.alice.send("sendData", {
            "operationId": str(uuid.uuid1()),
            "payload": {"command": "sendMessage",
                        "options": {"roomConfig": {"name": self.room}, "to": "bob",
                                    "text": text}}})
        return await arrival - sent

    async def measure(self, seconds: float = 3.0, samples: int = 5) -> tuple[list[float], float]:
        """(chat latencies, decoded fps) over C{seconds}."""
        loop = asyncio.get_running_loop()
        start, frames = loop.time(), len(self.player.frames["video"])
        latencies = []
        for _ in range(samples):
            latencies.append(await self.chatLatency())
            await asyncio.sleep(max(0.0, seconds / samples - latencies[-1]))
        elapsed = loop.time() - start
        return latencies, (len(self.player.frames["video"]) - frames) / elapsed

    async def assertHealthy(self, seconds: float = 3.0) -> None:
        """
        Chat arrives within 100 ms (the median of the samples; none over
        three times that) and video keeps >= 25 fps, over C{seconds}.

        The median: the clock is read in this test process, whose loop also
        decodes bob's video, so on a loaded machine one sample can wait
        behind a decode; an attack that holds the server holds them all.
        """
        latencies, fps = await self.measure(seconds)
        # The figures, for a re-run with -s (docs/security.md).
        print(f"bystanders: bob decodes {fps:.1f} fps, chat p50 "
              f"{sorted(latencies)[len(latencies) // 2] * 1000:.0f} ms")
        ordered = sorted(latencies)
        assert ordered[len(ordered) // 2] < CHAT_LATENCY, f"chat latencies {latencies}"
        assert ordered[-1] < 3 * CHAT_LATENCY, f"chat latencies {latencies}"
        assert fps >= MIN_FPS, f"bob decodes {fps:.1f} fps"

    async def __aexit__(self, *exc) -> None:
        for reader in self.readers:
            await reader.stop()
        for peer in (self.player, self.publisher):
            if peer is not None:
                await peer.close()
        for client in (self.alice, self.bob):
            if client is not None:
                await client.close()
        if self._patch is not None:
            aioice.ice.get_host_addresses = self._patch
