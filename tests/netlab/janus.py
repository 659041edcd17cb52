"""
Janus (Debian's package) in the lab, for figures side by side with wcs: its
VideoRoom plugin over the WebSockets transport, started from a generated
configuration. Janus offers no candidate on an IFF_LOOPBACK interface: in
the lab 127.0.0.1 lives on the veth (`lab0`), which it is told to use. The
signalling follows ../shared/bench/sfu_load.py (the project's first Janus
comparison).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path

import websockets
from aiortc import RTCSessionDescription

from tests.netlab.impairer import IFACE
from tests.netlab.lab import hostAddress

JANUS = "/usr/bin/janus"
LIB = "/usr/lib/x86_64-linux-gnu/janus"
PORT = 8188  # the lab's namespace is fresh: nothing else listens there
START_TIMEOUT = 15.0


_rooms = itertools.count(1000)


def available() -> bool:
    return shutil.which("janus") is not None


class JanusServer:
    """A Janus process; start it inside C{lab.entered()}."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.proc = None
        self.wsURL = f"ws://127.0.0.1:{PORT}"

    def start(self) -> "JanusServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        plugins = ",".join(f"libjanus_{p}.so" for p in (
            "audiobridge", "duktape", "echotest", "lua", "nosip", "recordplay", "sip",
            "streaming", "textroom", "videocall", "voicemail"))
        transports = ",".join(f"libjanus_{t}.so" for t in (
            "http", "mqtt", "nanomsg", "pfunix", "rabbitmq"))
        (self.workdir / "janus.jcfg").write_text(f"""general: {{
  configs_folder = "{self.workdir}"
  plugins_folder = "{LIB}/plugins"
  transports_folder = "{LIB}/transports"
  events_folder = "{LIB}/events"
  loggers_folder = "{LIB}/loggers"
  debug_level = 3
  session_timeout = 120
  interface = "127.0.0.1"
}}
media: {{ rtp_port_range = "20000-40000" }}
nat: {{ nice_debug = false
  ice_enforce_list = "{IFACE}"
  ignore_mdns = true }}
plugins: {{ disable = "{plugins}" }}
transports: {{ disable = "{transports}" }}
loggers: {{ disable = "libjanus_jsonlog.so" }}
events: {{ broadcast = false }}
""")
        (self.workdir / "janus.transport.websockets.jcfg").write_text(f"""general: {{
  json = "plain"
  ws = true
  ws_port = {PORT}
  ws_ip = "127.0.0.1"
  wss = false
}}
admin: {{ admin_ws = false
  admin_wss = false }}
""")
        (self.workdir / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")
        self.logPath = self.workdir / "janus.log"
        with open(self.logPath, "wb") as log:
            self.proc = subprocess.Popen(
                [JANUS, "-F", str(self.workdir), "-C", str(self.workdir / "janus.jcfg"), "-o"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class JanusRoom:
    """The publish/play/close of L{tests.netlab.media.WcsRoom}, on a Janus VideoRoom."""

    def __init__(self, server: JanusServer, codec: str, bitrate: int):
        self.ROOM = next(_rooms)  # one room per run: a closed run's room may linger
        self.server = server
        self.codec = codec
        self.bitrate = bitrate
        self.ws = None
        self.session = None
        self.pending: dict[str, asyncio.Future] = {}
        self.tx = itertools.count(1)
        self.tasks = []
        self.feed = None

    async def open(self) -> "JanusRoom":
        deadline = time.monotonic() + START_TIMEOUT
        while self.ws is None:
            if self.server.proc.poll() is not None:
                raise RuntimeError(f"janus exited: {self.server.logPath.read_text()[-2000:]}")
            try:
                self.ws = await websockets.connect(self.server.wsURL, open_timeout=3,
                                                   subprotocols=["janus-protocol"],
                                                   max_size=None, ping_interval=None)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        self.tasks.append(asyncio.ensure_future(self._read()))
        self.session = (await self._request({"janus": "create"}))["data"]["id"]
        self.tasks.append(asyncio.ensure_future(self._keepalive()))
        admin = await self._attach()
        await self._message(admin, {
            "request": "create", "room": self.ROOM, "publishers": 1, "videocodec": self.codec,
            "bitrate": self.bitrate, "fir_freq": 0, "notify_joining": False,
            "permanent": False})
        return self

    async def _read(self):
        async for raw in self.ws:
            message = json.loads(raw)
            future = self.pending.get(message.get("transaction"))
            if future is not None and message.get("janus") != "ack" and not future.done():
                future.set_result(message)

    async def _keepalive(self):
        for _ in range(1000):  # bounded: a run is minutes, not hours
            await asyncio.sleep(25)
            await self.ws.send(json.dumps({"janus": "keepalive", "session_id": self.session,
                                           "transaction": f"k{next(self.tx)}"}))

    async def _request(self, message: dict, timeout: float = 20) -> dict:
        tx = f"t{next(self.tx)}"
        message = dict(message, transaction=tx)
        if self.session:
            message.setdefault("session_id", self.session)
        self.pending[tx] = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps(message))
        try:
            answer = await asyncio.wait_for(self.pending[tx], timeout)
        except asyncio.TimeoutError:
            asked = message.get("body", {}).get("request") or message["janus"]
            raise asyncio.TimeoutError(f"janus did not answer {asked!r} within {timeout:g} s") from None
        finally:
            self.pending.pop(tx, None)
        data = answer.get("plugindata", {}).get("data", {})
        if answer.get("janus") == "error" or "error" in data:
            raise RuntimeError(f"janus: {answer}")
        return answer

    async def _attach(self) -> int:
        return (await self._request({"janus": "attach", "plugin": "janus.plugin.videoroom"})
                )["data"]["id"]

    async def _message(self, handle, body, jsep=None) -> dict:
        message = {"janus": "message", "handle_id": handle, "body": body}
        if jsep:
            message["jsep"] = jsep
        return await self._request(message)

    async def _trickleDone(self, handle):
        # aiortc puts every candidate in its SDP: nothing more will come.
        await self.ws.send(json.dumps({"janus": "trickle", "session_id": self.session,
                                       "handle_id": handle, "transaction": f"c{next(self.tx)}",
                                       "candidate": {"completed": True}}))

    async def publish(self, pc, address: str) -> None:
        handle = await self._attach()
        with hostAddress(address):
            await pc.setLocalDescription(await pc.createOffer())
        answer = await self._message(
            handle, {"request": "joinandconfigure", "room": self.ROOM, "ptype": "publisher",
                     "display": "publisher", "bitrate": self.bitrate},
            {"type": "offer", "sdp": pc.localDescription.sdp})
        await self._trickleDone(handle)
        self.feed = answer["plugindata"]["data"]["id"]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["jsep"]["sdp"], type=answer["jsep"]["type"]))

    async def play(self, pc, address: str, index: int) -> None:
        handle = await self._attach()
        join = {"request": "join", "room": self.ROOM, "ptype": "subscriber",
                "streams": [{"feed": self.feed}]}
        # The feed exists once the publisher's media flows: ask again until then.
        for attempt in range(60):
            try:
                offer = await self._message(handle, join)
                break
            except RuntimeError as e:
                if "No such feed" not in str(e) or attempt == 59:
                    raise
                await asyncio.sleep(0.5)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["jsep"]["sdp"], type=offer["jsep"]["type"]))
        with hostAddress(address):
            await pc.setLocalDescription(await pc.createAnswer())
        await self._message(handle, {"request": "start", "room": self.ROOM},
                            {"type": "answer", "sdp": pc.localDescription.sdp})
        await self._trickleDone(handle)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 3)
