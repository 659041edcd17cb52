"""
A Flash room client as the protocol describes it (shared/docs/wire-protocol.md):
RTMP connect with {appKey: "flashRoomApp", login}, room commands as AMF0
calls of `sendData`, server calls DataStatusEvent / OnDataEvent / ping.
The bytes are made with the project's chunk and AMF0 codecs.
"""

from __future__ import annotations

import asyncio
import os
import uuid

from wcs.rtmp import amf0, chunks

TIMEOUT = 10.0


class FlashClient:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.chunkReader = chunks.ChunkReader()
        self.chunkWriter = chunks.ChunkWriter(128)
        self.calls: asyncio.Queue = asyncio.Queue()
        self.results: dict[float, list] = {}
        self.statuses: list[dict] = []
        self.transaction = 1.0
        self.task = None

    @classmethod
    async def open(cls, port: int, receiveBuffer: int | None = None) -> "FlashClient":
        """A connection after the handshake, before C{connect}."""
        import socket

        sock = socket.socket()
        if receiveBuffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receiveBuffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.wait_for(asyncio.open_connection(sock=sock), TIMEOUT)
        client = cls(reader, writer)
        c1 = bytes(8) + os.urandom(1528)
        writer.write(b"\x03" + c1)
        s0s1s2 = await asyncio.wait_for(reader.readexactly(1 + 2 * 1536), TIMEOUT)
        assert s0s1s2[0] == 3 and s0s1s2[1 + 1536:] == c1
        writer.write(s0s1s2[1:1 + 1536])  # C2 echoes S1
        client.task = asyncio.ensure_future(client._read())
        return client

    @classmethod
    async def connect(cls, port: int, login: str, app: str = "",
                      receiveBuffer: int | None = None, token: str | None = None) -> "FlashClient":
        client, result = await cls.tryConnect(port, login, app, receiveBuffer, token)
        assert result[0] == "_result" and result[2]["code"] == "NetConnection.Connect.Success"
        return client

    @classmethod
    async def tryConnect(cls, port: int, login: str, app: str = "",
                         receiveBuffer: int | None = None, token: str | None = None):
        """The client and the server's answer to C{connect} (C{[_result|_error, ...]})."""
        client = await cls.open(port, receiveBuffer)
        identity = {"appKey": "flashRoomApp", "login": login}
        if token is not None:
            identity["token"] = token
        result = await client.invoke("connect", {"app": app, "flashVer": "LNX 11,2,202,635",
                                                 "tcUrl": f"rtmp://127.0.0.1:{port}/{app}"},
                                     identity)
        return client, result

    def sendRaw(self, data: bytes) -> None:
        """Bytes as they are: hostile chunks, bad AMF."""
        self.writer.write(data)

    async def closedByServer(self, timeout: float = TIMEOUT) -> None:
        """Wait until the server closes the connection."""
        await asyncio.wait_for(asyncio.shield(self.task), timeout)

    async def status(self, code: str, timeout: float = TIMEOUT) -> dict:
        """The first onStatus with C{code}, waiting for it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for info in self.statuses:
                if info.get("code") == code:
                    return info
            assert loop.time() < deadline, f"no {code} in {self.statuses}"
            await asyncio.sleep(0.02)

    def send(self, csid: int, mtype: int, streamId: int, timestamp: int, payload: bytes) -> None:
        self.writer.write(self.chunkWriter.write(csid, mtype, streamId, timestamp, payload))

    def call(self, name: str, *args, streamId: int = 0) -> None:
        self.send(3, chunks.COMMAND_AMF0, streamId, 0, amf0.encodeAll(name, 0.0, None, *args))

    async def invoke(self, name: str, *args, streamId: int = 0):
        transaction = self.transaction = self.transaction + 1
        future = asyncio.get_running_loop().create_future()
        self.results[transaction] = future
        self.send(3, chunks.COMMAND_AMF0, streamId, 0,
                  amf0.encodeAll(name, transaction, *args))
        return await asyncio.wait_for(future, TIMEOUT)

    async def _read(self):
        while True:
            try:
                data = await self.reader.read(65536)
            except ConnectionError:
                return
            if not data:
                return
            for message in self.chunkReader.receive(data):
                if message.type != chunks.COMMAND_AMF0:
                    continue
                name, transaction, *rest = amf0.decode(message.payload)
                if name in ("_result", "_error") and transaction in self.results:
                    self.results.pop(transaction).set_result([name, *rest])
                elif name == "onStatus":
                    self.statuses.append(rest[1])
                elif name == "ping":
                    self.call("pong")
                else:
                    await self.calls.put((name, rest[1:]))

    async def nextCall(self, name: str, where=lambda args: True) -> list:
        while True:
            call, args = await asyncio.wait_for(self.calls.get(), TIMEOUT)
            if call == name and where(args):
                return args

    async def command(self, command: str, options: dict) -> dict:
        operationId = str(uuid.uuid4())
        self.call("sendData", {"operationId": operationId,
                               "payload": {"command": command, "options": options}})
        args = await self.nextCall("DataStatusEvent", lambda a: a[0]["operationId"] == operationId)
        return args[0]

    async def roomEvent(self, name: str) -> dict:
        args = await self.nextCall("OnDataEvent", lambda a: a[0]["payload"]["name"] == name)
        return args[0]["payload"]

    async def publishVideo(self, name: str, bodies) -> int:
        """createStream, publish C{name}, send the FLV video C{bodies}; the stream id."""
        created = await self.invoke("createStream", None)
        streamId = int(created[2])
        self.call("publish", name, "live", streamId=streamId)
        for timestamp, body in bodies:
            self.send(6, chunks.VIDEO, streamId, timestamp, body)
        return streamId

    def close(self):
        self.writer.close()
        if self.task:
            self.task.cancel()


async def waitLive(port: int, name: str, app: str = "live", timeout: float = 15.0) -> None:
    """
    Wait until C{app/name} is live, as a player sees it: its play gets
    C{NetStream.Play.Start}, not C{StreamNotFound} (asked again every 0.2 s).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        player = await FlashClient.connect(port, "", app=app)
        try:
            created = await player.invoke("createStream", None)
            player.call("play", name, streamId=int(created[2]))
            while not player.statuses and loop.time() < deadline:
                await asyncio.sleep(0.02)
            codes = [info.get("code") for info in player.statuses]
        finally:
            player.close()
        if "NetStream.Play.Start" in codes or "NetStream.Play.Reset" in codes:
            return
        assert loop.time() < deadline, f"{app}/{name} not live after {timeout} s: {codes}"
        await asyncio.sleep(0.2)
