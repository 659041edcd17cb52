"""
Hostile WebSocket clients against the real server while two bystanders keep
a room going (chat within 100 ms, video >= 25 fps): deep JSON, a reader that
never reads, connection floods, room and participant caps, log floods.

Attackers connect from other loopback addresses (127.0.0.x) than the
bystanders (127.0.0.1), so that per-address caps hit only them.
"""

import asyncio
import base64
import json
import os
import socket
import uuid

import pytest
import websockets

from tests.support.bystanders import Bystanders
from tests.support.rooms import MEDIA
from tests.support.server import startServer
from tests.support.wsclient import Client
from tests.support.wait import waitForLog

PER_ADDRESS = 8
MAX_PARTICIPANTS = 6
MAX_ROOMS = 12
RSS_GROWTH = 48 << 20  # bytes the server may grow by during one attack


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = startServer(tmp_path_factory.mktemp("hostile-ws"), settings=dict(
        MEDIA, ws_max_connections_per_address=str(PER_ADDRESS),
        room_max_participants=str(MAX_PARTICIPANTS), room_max_count=str(MAX_ROOMS),
        room_idle_timeout="0"))
    yield running
    running.stop()


async def openFrom(server, host: str, login: str | None = None) -> Client:
    """A client connected from loopback address C{host}."""
    ws = await websockets.connect(server.wsURL, max_size=None, max_queue=None,
                                  open_timeout=5, local_addr=(host, 0))
    client = Client(ws, login)
    if login is not None:
        await client.send("connection", {"appKey": "roomApp", "custom": {"login": login}})
        await client.expect("getUserData")
    return client


def nested(depth: int) -> str:
    return '{"message":"ping","data":' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


async def test_deep_json_gets_a_fail_and_one_log_line(server):
    async with Bystanders(server) as room:
        before = server.rss()
        bad = await openFrom(server, "127.0.0.2", "deep")
        for payload in (nested(1000), "[" * 60000, nested(33)) * 30:
            await bad.sendRaw(payload)
            fail = await bad.expect("fail")
            assert fail["data"][0]["info"] == "JSON nested deeper than 32 levels"
        await bad.send("ping", None)  # still served
        await bad.expect("pong")
        await room.assertHealthy()
        assert server.rss() - before < RSS_GROWTH
        log = server.log()
        assert "RecursionError" not in log and "Traceback" not in log
        assert 1 <= log.count("JSON nested deeper than 32 levels") <= 2  # 90 refusals
        await bad.close()


async def rawWebSocket(server, host: str) -> socket.socket:
    """A WebSocket opened by hand on a socket with a tiny receive buffer."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.bind((host, 0))
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", server.ports["ws"]))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(sock, (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
        assert chunk, response
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def maskedText(message: str, *data) -> bytes:
    payload = json.dumps({"message": message, "data": list(data)}).encode()
    mask = os.urandom(4)
    size = len(payload)
    header = bytes([0x81, 0x80 | size]) if size < 126 else \
        bytes([0x81, 0x80 | 126]) + size.to_bytes(2, "big")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def test_reader_that_never_reads_is_disconnected(server):
    loop = asyncio.get_running_loop()
    async with Bystanders(server) as room:
        flooder = await openFrom(server, "127.0.0.3", "flooder")
        await flooder.join(room.room)
        sloth = await rawWebSocket(server, "127.0.0.3")
        await loop.sock_sendall(sloth, maskedText("connection", {"custom": {"login": "sloth"}}))
        await loop.sock_sendall(sloth, maskedText("sendData", {
            "operationId": "1", "payload": {"command": "join", "options": {"name": room.room}}}))
        await flooder.roomEvent("JOINED")
        before = server.rss()

        # 16 KiB chat messages to sloth, who reads none, until the server
        # tells the flooder that sloth is gone (at most 48 MiB of them).
        text = "x" * 16384
        failed = None
        for batch in range(60):
            ids = [str(uuid.uuid4()) for _ in range(50)]
            for operationId in ids:
                await flooder.send("sendData", {"operationId": operationId, "payload": {
                    "command": "sendMessage",
                    "options": {"roomConfig": {"name": room.room}, "to": "sloth", "text": text}}})
            for operationId in ids:
                status = (await flooder.expect(
                    "DataStatusEvent", lambda f: f["data"][0]["operationId"] == operationId,
                    skip=("ping", "OnDataEvent"), timeout=10))["data"][0]
                if status["status"] == "FAILED":
                    failed = status["info"]
            if failed:
                break
        assert failed == f"Room {room.room!r} has no participant with login 'sloth'", failed
        assert server.rss() - before < RSS_GROWTH
        await waitForLog(server, "bytes of output left unread, disconnected")
        assert server.log().count("left unread, disconnected") == 1

        # sloth finds its connection cut (after what its buffers held).
        closed = False
        for _ in range(10000):
            try:
                chunk = await asyncio.wait_for(loop.sock_recv(sloth, 65536), 5)
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
        assert closed
        sloth.close()
        await room.assertHealthy()
        await flooder.close()


async def test_connection_flood_from_one_address_is_capped(server):
    async with Bystanders(server) as room:
        before = server.rss()
        admitted = [await openFrom(server, "127.0.0.4") for _ in range(PER_ADDRESS)]
        with pytest.raises(websockets.InvalidStatus) as refused:
            await openFrom(server, "127.0.0.4")
        assert refused.value.response.status_code == 503
        assert refused.value.response.reason_phrase == \
            f"too many connections from your address: at most {PER_ADDRESS}"

        # A flood of raw TCP connections: beyond twice the cap they are
        # closed at once, before any handshake.
        loop = asyncio.get_running_loop()
        flood = []
        cut = 0
        for _ in range(4 * PER_ADDRESS):
            sock = socket.socket()
            sock.bind(("127.0.0.4", 0))
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, ("127.0.0.1", server.ports["ws"]))
            except ConnectionResetError:
                # Cut so soon that the connect's own completion saw the reset
                # (CI, a loaded machine).
                cut += 1
                sock.close()
                continue
            flood.append(sock)
        await asyncio.sleep(0.5)
        for sock in flood:
            try:
                cut += await asyncio.wait_for(loop.sock_recv(sock, 100), 0.05) == b""
            except ConnectionResetError:
                cut += 1
            except asyncio.TimeoutError:
                pass
        assert cut >= 2 * PER_ADDRESS, cut  # the rest wait, counted, for the handshake timeout
        for sock in flood:
            sock.close()

        # Others are not affected, and the address is served again once it
        # closed its connections.
        other = await openFrom(server, "127.0.0.5", "other")
        await room.assertHealthy()
        for client in admitted:
            await client.close()
        for _ in range(50):
            try:
                again = await openFrom(server, "127.0.0.4", "again")
                break
            except websockets.InvalidStatus:
                await asyncio.sleep(0.1)
        await again.close()
        await other.close()
        assert server.rss() - before < RSS_GROWTH
        log = server.log()
        assert log.count("too many connections from your address") <= 3, log[-3000:]


async def test_room_and_participant_caps(server):
    async with Bystanders(server) as room:
        # The bystanders' room fills up: a seventh participant is refused.
        crowd = [await openFrom(server, "127.0.0.6", f"p{i}") for i in range(PER_ADDRESS)]
        for client in crowd[:MAX_PARTICIPANTS - 2]:
            await client.join(room.room)
        status = await crowd[-1].command("join", {"name": room.room})
        assert status == {"operationId": status["operationId"], "status": "FAILED",
                          "info": f"Room {room.room!r} is full: at most {MAX_PARTICIPANTS} "
                                  f"participants"}
        for client in crowd:
            await client.close()

        # One client makes rooms until the server has its maximum.
        maker = await openFrom(server, "127.0.0.7", "maker")
        made = []
        for i in range(MAX_ROOMS + 1):
            status = await maker.command("join", {"name": f"many-{i}"})
            if status["status"] == "FAILED":
                break
            made.append(f"many-{i}")
            await maker.roomEvent("STATE")
        assert status["info"] == \
            f"Room 'many-{len(made)}' cannot be made: the server has its maximum of " \
            f"{MAX_ROOMS} rooms"
        assert 0 < len(made) < MAX_ROOMS
        await room.assertHealthy()
        for name in made:
            assert (await maker.command("leave", {"name": name}))["status"] == "ACCEPTED"
        await maker.join("many-again")  # rooms left are free again
        await maker.close()


async def test_refusal_flood_is_logged_quoted_cut_and_rate_limited(server):
    async with Bystanders(server) as room:
        bad = await openFrom(server, "127.0.0.8", "bad\nlogin 2026-01-01T00:00:00 [forged]")
        name = "evil\n2026-01-01T00:00:00+0000 [wcs.forged#info] forged line " + "y" * 30000
        for _ in range(300):
            await bad.send(name, None)
        for _ in range(300):
            fail = await bad.expect("fail")
            assert fail["data"][0] == {"apiMethod": name[:64],
                                       "info": f"unknown message {name[:64]!r}..."}
        await bad.send("ping", None)
        await bad.expect("pong")
        await room.assertHealthy()
        log = server.log()
        refused = [line for line in log.splitlines() if "refused 'evil" in line]
        assert 1 <= len(refused) <= 2, refused  # 300 refusals, one line per 10 s
        assert all(len(line) < 1000 for line in refused)
        assert "[wcs.forged#info]" not in "\n".join(
            line for line in log.splitlines() if line.startswith("2026-01-01"))
        assert "connected as 'bad\\nlogin" in log
        await bad.close()


def test_peer_connections_admit_refuse_then_drop():
    from wcs.transports.peers import ADMIT, DROP, REFUSE, PeerConnections

    peers = PeerConnections(perAddress=2, total=5)
    assert [peers.connect("a")[0] for _ in range(5)] == [ADMIT, ADMIT, REFUSE, REFUSE, DROP]
    assert peers.connect("b") == (REFUSE, "too many connections on this server: at most 5")
    for _ in range(6):
        peers.disconnect("a") if peers.open["a"] else peers.disconnect("b")
    assert peers.count == 0 and not peers.open
    assert peers.connect("a") == (ADMIT, None)
