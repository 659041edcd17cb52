"""
The participants of C{bench/chat_latency.py}, in reader processes of their
own: a bare WebSocket client for wcs's protocol (and the minimal server's),
the shared harness's Janus TextRoom client behind the same interface, and
the process that joins its share of the room, sends its share of the
schedule and times every delivery it reads.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import struct
import sys
import time
from types import SimpleNamespace

ROOM = "bench-room"
JANUS_ROOM = 1234
TEXT = re.compile(rb'"text": ?"(w[^" ]*) ([^" ]*) ([0-9.]+) ([0-9]+)"')


# ---------------------------------------------------------------------------
# A bare WebSocket client for wcs's protocol (and the minimal server's)
# ---------------------------------------------------------------------------

def clientFrame(payload: bytes) -> bytes:
    """A masked text frame with the all-zero key: legal, and no XOR to pay."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x81, 0x80 | size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, size)
    return head + b"\0\0\0\0" + payload


class Tally:
    """One reader process's deliveries of the window C{window}."""

    def __init__(self):
        self.window = b""
        self.latencies: list[float] = []
        self.worst: dict[int, float] = {}  # message number: its slowest delivery here
        self.echo = self.stale = self.refused = self.statuses = 0

    def add(self, message: int, latency: float) -> None:
        self.latencies.append(latency)
        if latency > self.worst.get(message, 0.0):
            self.worst[message] = latency


class WsParticipant(asyncio.Protocol):
    def __init__(self, login: str, tally: Tally):
        self.login = login
        self.loginBytes = login.encode()
        self.tally = tally
        self.buffer = bytearray()
        self.open = False
        self.waiting: dict[bytes, asyncio.Future] = {}
        self.transport = None
        self.templates: list[str] | None = None  # chat frames, one per recipient
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16))
        host, port = transport.get_extra_info("peername")[:2]
        transport.write(b"GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                        b"Sec-WebSocket-Version: 13\r\n\r\n" % (host.encode(), port, key))

    def connection_lost(self, exc) -> None:
        for future in [self.ready, *self.waiting.values()]:
            if not future.done():
                future.set_exception(ConnectionError(f"{self.login}: closed ({exc})"))

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buffer = self.buffer
        buffer += data
        if not self.open:
            head, sep, _ = bytes(buffer).partition(b"\r\n\r\n")
            if not sep:
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self.transport.close()
                return
            del buffer[:len(head) + 4]
            self.open = True
            self.ready.set_result(None)
        offset, end = 0, len(buffer)
        while end - offset >= 2:
            opcode, size = buffer[offset] & 0x0F, buffer[offset + 1] & 0x7F
            start = offset + 2
            if size == 126:
                if end - start < 2:
                    break
                size, start = struct.unpack_from("!H", buffer, start)[0], start + 2
            elif size == 127:
                if end - start < 8:
                    break
                size, start = struct.unpack_from("!Q", buffer, start)[0], start + 8
            if end - start < size:
                break
            payload = bytes(buffer[start:start + size])
            offset = start + size
            if opcode == 1:
                self.text(payload, now)
            elif opcode == 9:
                self.transport.write(b"\x8a\x80\0\0\0\0")
            elif opcode == 8:
                self.transport.close()
                break
        del buffer[:offset]

    def text(self, payload: bytes, now: float) -> None:
        tally = self.tally
        if b'"MESSAGE"' in payload:
            match = TEXT.search(payload)
            if match is None or match[1] != tally.window:
                tally.stale += 1
            elif match[2] == self.loginBytes:
                tally.echo += 1
            else:
                tally.add(int(match[4]), now - float(match[3]))
            return
        if b'"DataStatusEvent"' in payload:
            if self.waiting:
                data = json.loads(payload)["data"][0]
                future = self.waiting.pop(data.get("operationId", "").encode(), None)
                if future is not None and not future.done():
                    future.set_result(data)
                    return
            tally.statuses += 1
            if b'"ACCEPTED"' not in payload:
                tally.refused += 1
        elif b'"getUserData"' in payload:
            future = self.waiting.pop(b"getUserData", None)
            if future is not None and not future.done():
                future.set_result(payload)
        elif b'"ping"' in payload:
            self.send({"message": "pong", "data": [None]})

    def send(self, message: dict) -> None:
        self.transport.write(clientFrame(json.dumps(message).encode()))

    async def request(self, key: bytes, message: dict, timeout: float) -> object:
        future = self.waiting[key] = asyncio.get_running_loop().create_future()
        self.send(message)
        return await asyncio.wait_for(future, timeout)

    async def join(self, url: tuple[str, int], room: str, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: self, *url)
        await asyncio.wait_for(self.ready, timeout)
        await self.request(b"getUserData", {"message": "connection", "data": [{
            "appKey": "roomApp", "clientVersion": "2.0", "custom": {"login": self.login}}]},
            timeout)
        op = f"{self.login}-join"
        status = await self.request(op.encode(), {"message": "sendData", "data": [{
            "operationId": op, "payload": {"command": "join",
                                           "options": {"name": room, "record": False}}}]},
            timeout)
        if status.get("status") != "ACCEPTED":
            raise RuntimeError(f"{self.login}: join refused: {status}")

    def chat(self, room: str, text: str, logins: list[str], serial: int) -> None:
        """One C{sendMessage} per recipient, exactly the shared harness's form
        (json.dumps's; the minimal server reads that form only), all in one write.
        The frames are filled in from templates made once: json.dumps for 199
        frames takes ~3 ms, which would count in every delivery's latency."""
        if self.templates is None:
            self.templates = [json.dumps({"message": "sendData", "data": [{
                "operationId": f"{self.login}-%d-{number}",
                "payload": {"command": "sendMessage", "options": {
                    "roomConfig": {"name": room}, "to": to, "text": "%s"}}}]})
                for number, to in enumerate(logins) if to != self.login]
        self.transport.write(b"".join([clientFrame((template % (serial, text)).encode())
                                       for template in self.templates]))

    async def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"\x88\x80\0\0\0\0")
            self.transport.close()


# ---------------------------------------------------------------------------
# Janus TextRoom: the shared harness's own client, one per participant
# ---------------------------------------------------------------------------

def shared(directory: str):
    if directory not in sys.path:
        sys.path.insert(0, directory)
    import signalling_load
    return signalling_load


def janusArgs(players: int) -> SimpleNamespace:
    return SimpleNamespace(max_clients=players, room=JANUS_ROOM, janus_debug=3, keep_tmp=False)


class JanusParticipant:
    """C{signalling_load.JanusClient} behind the interface of L{WsParticipant};
    it hands each received text to C{on_text}, here with the message number
    kept (the shared C{Stats} drops it)."""

    def __init__(self, login: str, tally: Tally, sharedDir: str, url: str):
        self.login = login
        self.tally = tally
        self.client = shared(sharedDir).JanusClient(SimpleNamespace(url=url), None, login, self)

    def on_text(self, me: str, text: str, window: str) -> None:
        now = time.monotonic()
        parts = text.split(" ")
        if len(parts) != 4 or parts[0] != window:
            self.tally.stale += 1
        elif parts[1] == me:
            self.tally.echo += 1
        else:
            self.tally.add(int(parts[3]), now - float(parts[2]))

    async def join(self, url, room, timeout: float) -> None:
        await asyncio.wait_for(self.client.connect_and_join(JANUS_ROOM), timeout)

    def chat(self, room, text: str, logins, serial: int) -> None:
        self.client.send_chat(JANUS_ROOM, text, logins)

    async def close(self) -> None:
        await self.client.close()


# ---------------------------------------------------------------------------
# One reader process
# ---------------------------------------------------------------------------

def reader(conn, spec: dict) -> None:
    """A process of its own: join its participants, report, wait for the window's
    start, send its share of the schedule, read until all arrived or the drain ends."""
    try:
        if spec["nice"]:
            renice(os.getpid(), spec["nice"])
        if spec.get("binary"):  # the C reader (bench/chat_creader.py)
            from bench.chat_creader import cReader
            conn.send(cReader(conn, dict(spec, room=ROOM)))
        elif spec.get("loop") == "uvloop" and spec["kind"] != "janus":
            import uvloop  # libuv's loop: less of the readers' CPU per read
            conn.send(uvloop.run(readerMain(conn, spec)))
        else:
            conn.send(asyncio.run(readerMain(conn, spec)))
    except Exception as e:  # reported to the coordinator, which prints it
        conn.send({"error": f"{type(e).__name__}: {e}"[:300]})


async def readerMain(conn, spec: dict) -> dict:
    loop = asyncio.get_running_loop()
    tally = Tally()

    def participant(login: str):
        if spec["kind"] == "janus":
            return JanusParticipant(login, tally, spec["shared"], spec["url"])
        return WsParticipant(login, tally)

    people = [participant(login) for login in spec["mine"]]
    gate = asyncio.Semaphore(10)
    retried = []

    async def join(i: int) -> None:
        """Once more as a new client if the first try fails: Janus sometimes
        answers a loaded machine's setup with 471 "Invalid PeerConnection"."""
        async with gate:
            try:
                await people[i].join(tuple(spec["address"]), ROOM, spec["joinTimeout"])
                return
            except Exception as e:
                retried.append(f"{type(e).__name__}: {e}"[:200])
                await people[i].close()
                people[i] = participant(people[i].login)
            await people[i].join(tuple(spec["address"]), ROOM, spec["joinTimeout"])

    try:
        joined = await asyncio.gather(*(join(i) for i in range(len(people))),
                                      return_exceptions=True)
        errors = [f"{type(e).__name__}: {e}"[:200] for e in joined if isinstance(e, BaseException)]
        conn.send({"joined": len(people) - len(errors), "errors": errors[:3]})
        if errors:
            return {"error": errors[0]}
        go = await loop.run_in_executor(None, lambda: conn.recv() if conn.poll(600) else None)
        if not go:
            return {"error": "no start from the coordinator"}
        t0, window = go["t0"], go["window"]
        tally.window = window.encode()
        for person in people:
            if spec["kind"] == "janus":
                person.client.window_id = window
        logins, n, interval = spec["logins"], len(spec["logins"]), spec["interval"]
        byLogin = {p.login: p for p in people}
        mine = [k for k in range(spec["total"]) if logins[k % n] in byLogin]
        cpu0 = time.process_time()
        sent, late = 0, 0.0
        for k in mine:
            target = t0 + k * interval
            now = time.monotonic()
            if target > now:
                await asyncio.sleep(target - now)
            else:
                late = max(late, now - target)
            sender = byLogin[logins[k % n]]
            sender.chat(ROOM, f"{window} {sender.login} {time.monotonic():.6f} {k}", logins,
                        k)
            sent += 1
            if time.monotonic() > t0 + 2 * spec["seconds"] + 5:  # bounded in time too
                break
        end = t0 + spec["seconds"]
        if time.monotonic() < end:
            await asyncio.sleep(end - time.monotonic())
        expected = spec["total"] * len(people) - len(mine)
        deadline = time.monotonic() + spec["drain"]
        while time.monotonic() < deadline:
            if len(tally.latencies) >= expected:
                break
            await asyncio.sleep(0.05)
        cpu = time.process_time() - cpu0
        return {"sent": sent, "latencies": tally.latencies, "worst": tally.worst,
                "rejoined": len(retried), "rejoin_sample": retried[:1], "echo": tally.echo,
                "stale": tally.stale, "refused": tally.refused, "statuses": tally.statuses,
                "cpu": cpu, "wall": time.monotonic() - t0, "late": late}
    finally:
        await asyncio.gather(*(p.close() for p in people), return_exceptions=True)


def renice(pid: int, nice: int) -> None:
    """Every thread of C{pid} (Linux's nice is per thread; threads started later
    inherit their creator's) and its autogroup (with autogroups on, CPU is
    shared between sessions first and nice only counts within one)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.setpriority(os.PRIO_PROCESS, int(tid), nice)
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/autogroup", "w") as f:
            f.write(str(nice))


