"""
The floor of the shared chat harness (C{signalling_load.py --backend wcs}):
the least a server can do for its workload, to see how much of the latency
the harness measures is the harness's own. Not part of wcs.

Raw asyncio protocols, no WebSocket library: the handshake by hand, client
frames unmasked with one integer XOR, a C{sendMessage} read by one regular
expression on the harness's own form (json.dumps with its default
separators; anything else through C{json.loads}), the recipient's frame made
from a template, and each connection's frames of one read written together
at the end of the read (one C{send} per connection per read, as wcs does).
It answers what the harness needs: C{connection} (getUserData), C{join}
(DataStatusEvent ACCEPTED), C{sendMessage} (the MESSAGE to the recipient,
DataStatusEvent ACCEPTED to the sender), a close frame.

It measures its own part of each frame's delay the way wcs's
C{ws_send_delay_report} does (from the start of the read that carried the
message to the send of each frame it produced) and appends p50/p90/p99/max
as one JSON line a second to C{--delays FILE}.

    python bench/minimal_chat_server.py PORT [--delays FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import math
import re
import signal
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SEND_MESSAGE = re.compile(
    rb'^\{"message": "sendData", "data": \[\{"operationId": "([^"\\]*)", "payload": '
    rb'\{"command": "sendMessage", "options": \{"roomConfig": \{"name": "([^"\\]*)"\}, '
    rb'"to": "([^"\\]*)", "text": "([^"\\]*)"\}\}\}\]\}$')

rooms: dict[bytes, dict[bytes, "Client"]] = {}
pending: list["Client"] = []  # connections with output queued in this read
samples: list[tuple[float, int]] = []  # (delay, frames) per send


def frame(payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        return struct.pack("!BB", 0x81, size) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


def status(operationId: bytes) -> bytes:
    return frame(b'{"message":"DataStatusEvent","data":[{"operationId":"' + operationId
                 + b'","status":"ACCEPTED"}]}')


class Client(asyncio.Protocol):
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.buffer = b""
        self.open = False
        self.login = b""
        self.rooms: set[bytes] = set()
        self.out: list[bytes] = []

    def queue(self, data: bytes) -> None:
        if not self.out:
            pending.append(self)
        self.out.append(data)

    def data_received(self, data: bytes) -> None:
        readAt = time.monotonic()
        self.buffer += data
        if not self.open:
            self.handshake()
        else:
            self.frames()
        global pending
        flushing, pending = pending, []
        for client in flushing:
            out, client.out = client.out, []
            client.transport.write(b"".join(out))
            samples.append((time.monotonic() - readAt, len(out)))

    def handshake(self) -> None:
        head, sep, rest = self.buffer.partition(b"\r\n\r\n")
        if not sep:
            return
        key = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", head).group(1)
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept
                             + b"\r\n\r\n")
        self.open, self.buffer = True, rest
        self.frames()

    def frames(self) -> None:
        data, offset = self.buffer, 0
        while len(data) - offset >= 6:
            opcode, size = data[offset] & 0x0F, data[offset + 1] & 0x7F
            start = offset + 2
            if size == 126:
                size, start = struct.unpack_from("!H", data, start)[0], start + 2
            elif size == 127:
                size, start = struct.unpack_from("!Q", data, start)[0], start + 8
            end = start + 4 + size
            if end > len(data):
                break
            mask = data[start:start + 4]
            masked = data[start + 4:end]
            key = (mask * (size // 4 + 1))[:size]
            payload = (int.from_bytes(masked, "big") ^ int.from_bytes(key, "big")).to_bytes(
                size, "big")
            offset = end
            if opcode == 8:
                self.transport.write(b"\x88\x00")
                self.transport.close()
                return
            if opcode == 1:
                self.message(payload)
        self.buffer = data[offset:]

    def message(self, payload: bytes) -> None:
        chat = SEND_MESSAGE.match(payload)
        if chat is not None:
            operationId, room, to, text = chat.groups()
            target = rooms.get(room, {}).get(to)
            if target is not None:
                target.queue(frame(
                    b'{"message":"OnDataEvent","data":[{"payload":{"roomName":"' + room
                    + b'","name":"MESSAGE","info":{"from":"' + self.login + b'","text":"'
                    + text + b'"}}}]}'))
            self.queue(status(operationId))
            return
        message = json.loads(payload)
        name, data = message["message"], (message.get("data") or [{}])[0] or {}
        if name == "connection":
            self.login = data["custom"]["login"].encode()
            self.queue(frame(json.dumps({"message": "getUserData", "data": [
                {"login": data["custom"]["login"]}]}).encode()))
        elif name == "sendData" and data["payload"]["command"] == "join":
            room = data["payload"]["options"]["name"].encode()
            rooms.setdefault(room, {})[self.login] = self
            self.rooms.add(room)
            self.queue(status(data["operationId"].encode()))

    def connection_lost(self, exc) -> None:
        for room in self.rooms:
            rooms.get(room, {}).pop(self.login, None)


def figures() -> dict:
    ordered = sorted(samples)
    total = sum(n for _, n in ordered)
    result: dict = {"frames": total}
    if not total:
        return result
    seen, ranks = 0, {"p50": 0.5, "p90": 0.9, "p99": 0.99}
    for delay, n in ordered:
        seen += n
        for name, fraction in ranks.items():
            if name not in result and seen >= max(1, math.ceil(fraction * total)):
                result[name] = round(1000 * delay, 3)
    result["max"] = round(1000 * ordered[-1][0], 3)
    return result


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("port", type=int)
    ap.add_argument("--delays", help="file to append each second's delay figures to")
    args = ap.parse_args()
    loop = asyncio.get_running_loop()
    stopped = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stopped.set_result, None)
    server = await loop.create_server(Client, "127.0.0.1", args.port)
    while not stopped.done():
        await asyncio.wait([stopped], timeout=1.0)
        if args.delays and samples:
            with open(args.delays, "a") as out:
                out.write(json.dumps(figures()) + "\n")
            samples.clear()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
