"""
A raw WebSocket client speaking the SDK's JSON frames, for tests.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, Callable

import websockets

TIMEOUT = 5.0


class Client:
    # Seconds a wait lasts when not told: tests/cluster/conftest.py sets a
    # longer one for steps that cross processes and Redis.
    timeout = TIMEOUT

    def __init__(self, ws, login: str | None):
        self.ws = ws
        self.login = login
        self.received: list[dict] = []

    @classmethod
    async def open(cls, url: str, login: str | None = None, *, connect: bool = True,
                   appKey: str = "roomApp", ssl=None) -> "Client":
        # max_queue=None: a test client that reads few of its frames must still
        # see the close frame when it closes.
        ws = await websockets.connect(url, max_size=None, max_queue=None,
                                      open_timeout=cls.timeout, ssl=ssl)
        client = cls(ws, login)
        if connect:
            custom = {"login": login} if login is not None else {}
            await client.send("connection", {
                "appKey": appKey, "mediaProviders": ["WebRTC", "MSE", "WSPlayer"],
                "clientVersion": "2.0", "msePacketizationVersion": 2, "custom": custom})
            await client.expect("getUserData")
        return client

    async def send(self, message: str, *data: Any) -> None:
        await self.ws.send(json.dumps({"message": message, "data": list(data)},
                                      ensure_ascii=False))

    async def sendRaw(self, frame: str | bytes) -> None:
        await self.ws.send(frame)

    async def next(self, timeout: float | None = None) -> dict:
        raw = await asyncio.wait_for(self.ws.recv(), self.timeout if timeout is None else timeout)
        frame = json.loads(raw)
        self.received.append(frame)
        return frame

    async def expect(self, message: str, where: Callable[[dict], bool] = lambda f: True,
                     timeout: float | None = None, skip: tuple[str, ...] = ("ping",)) -> dict:
        """The next frame named C{message} that matches C{where}; others must be in C{skip}."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.timeout if timeout is None else timeout)
        while True:
            frame = await self.next(max(0.01, deadline - loop.time()))
            if frame["message"] == message and where(frame):
                return frame
            if frame["message"] not in skip:
                raise AssertionError(f"expected {message}, got {frame}")

    async def command(self, command: str, options: dict) -> dict:
        """sendData and wait for its DataStatusEvent; returns the status object."""
        operationId = str(uuid.uuid1())
        await self.send("sendData", {"operationId": operationId,
                                     "payload": {"command": command, "options": options}})
        frame = await self.expect("DataStatusEvent",
                                  lambda f: f["data"][0]["operationId"] == operationId)
        return frame["data"][0]

    async def roomEvent(self, name: str, timeout: float | None = None) -> dict:
        frame = await self.expect(
            "OnDataEvent", lambda f: f["data"][0]["payload"]["name"] == name, timeout)
        return frame["data"][0]["payload"]

    async def join(self, room: str, record: bool = False) -> list:
        status = await self.command("join", {"name": room, "record": record})
        assert status["status"] == "ACCEPTED", status
        state = await self.roomEvent("STATE")
        assert state["roomName"] == room
        return state["info"]

    async def chat(self, room: str, to: str, text: str) -> dict:
        return await self.command("sendMessage",
                                  {"roomConfig": {"name": room}, "to": to, "text": text})

    async def quiet(self, seconds: float = 0.3, limit: float = 10.0) -> list[dict]:
        """Frames (other than pings) until none came for C{seconds}, or C{limit} passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        frames = []
        try:
            while loop.time() < deadline:
                frame = await self.next(min(seconds, max(0.01, deadline - loop.time())))
                if frame["message"] != "ping":
                    frames.append(frame)
        except asyncio.TimeoutError:
            pass
        return frames

    def answerPings(self) -> asyncio.Future:
        """
        Read every frame from now on (into C{received}), answering the
        server's pings as the SDK does: a client that does not is heard
        only by its library's own WebSocket pings, every 20 s, and is
        closed (ws_dead_peer_timeout, 20 s) when one comes a little late.
        Cancel the task before waiting for frames again.
        """
        async def answer():
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame["message"] == "ping":
                    await self.send("pong")
                else:
                    self.received.append(frame)
        return asyncio.ensure_future(answer())

    async def close(self) -> None:
        await self.ws.close()
