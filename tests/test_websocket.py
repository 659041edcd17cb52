"""
The real server (`twistd wcs`) driven with a raw WebSocket client replaying
the frames the official SDK sends.
"""

import asyncio
import json
import uuid

import pytest
import websockets

from tests.support.rooms import roomsNow
from tests.support.server import startServer
from tests.support.wait import waitUntil
from tests.support.wsclient import Client

# The connection object exactly as the SDK 2.0 sends it from Chromium.
SDK_CONNECTION = {
    "appKey": "roomApp", "mediaProviders": ["WebRTC", "MSE", "WSPlayer"],
    "clientVersion": "2.0",
    "clientOSVersion": "5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                       "HeadlessChrome/156.0.0.0 Safari/537.36",
    "clientBrowserVersion": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like "
                            "Gecko) HeadlessChrome/156.0.0.0 Safari/537.36",
    "msePacketizationVersion": 2, "clientInfo": {},
}

TEXTS = ["Привет, как дела?", "你好，世界！", "🎉👋🏽 emoji ❤️‍🔥", "<script>alert(1)</script> & \"q\""]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """WebSocket, and the REST API to see the rooms as the server keeps them."""
    running = startServer(tmp_path_factory.mktemp("wcs"), enable=("ws", "rest"))
    yield running
    running.stop()


def roomName() -> str:
    return f"room-{uuid.uuid4().hex[:6]}"


async def test_sdk_conversation(server):
    room = roomName()
    alice = await Client.open(server.wsURL, connect=False)
    await alice.send("connection", dict(SDK_CONNECTION, custom={"login": "alice"}))
    assert (await alice.expect("getUserData"))["data"][0]["login"] == "alice"
    assert await alice.join(room) == []

    bob = await Client.open(server.wsURL, "bob")
    assert await bob.join(room) == ["alice"]
    assert (await alice.roomEvent("JOINED"))["info"] == "bob"

    for text in TEXTS:
        assert (await alice.chat(room, "bob", text))["status"] == "ACCEPTED"
        message = await bob.roomEvent("MESSAGE")
        assert message["info"] == {"from": "alice", "text": text}
        assert (await bob.chat(room, "alice", text[::-1]))["status"] == "ACCEPTED"
        message = await alice.roomEvent("MESSAGE")
        assert message["info"] == {"from": "bob", "text": text[::-1]}

    # The text travels as raw UTF-8, not as \u escapes.
    await alice.chat(room, "bob", TEXTS[1])
    raw = await asyncio.wait_for(bob.ws.recv(), 5)
    assert TEXTS[1] in raw

    failed = await alice.chat(room, "nobody", "hello?")
    assert failed["status"] == "FAILED"
    assert failed["info"] == f"Room {room!r} has no participant with login 'nobody'"

    assert (await bob.command("leave", {"name": room}))["status"] == "ACCEPTED"
    assert (await alice.roomEvent("LEFT"))["info"] == "bob"
    await bob.close()
    assert (await alice.command("leave", {"name": room}))["status"] == "ACCEPTED"
    await waitUntil(lambda: room not in roomsNow(server), 5, f"room {room!r} to end")
    await alice.close()


async def test_rejoin_right_after_leave_100_times(server):
    room = roomName()
    keeper = await Client.open(server.wsURL, "keeper")
    await keeper.join(room)
    bob = await Client.open(server.wsURL, "bob")
    for i in range(100):
        await bob.join(room)
        # leave and join back to back, no waiting in between
        leaveId, joinId = f"l{i}", f"j{i}"
        await bob.send("sendData", {"operationId": leaveId,
                                    "payload": {"command": "leave", "options": {"name": room}}})
        await bob.send("sendData", {"operationId": joinId,
                                    "payload": {"command": "join", "options": {"name": room}}})
        left = await bob.expect("DataStatusEvent")
        joined = await bob.expect("DataStatusEvent")
        assert (left["data"][0]["operationId"], left["data"][0]["status"]) == (leaveId, "ACCEPTED")
        assert (joined["data"][0]["operationId"], joined["data"][0]["status"]) == (joinId, "ACCEPTED")
        assert (await bob.roomEvent("STATE"))["info"] == ["keeper"]
        await bob.command("leave", {"name": room})
    # And across connections: leave, close, join on a new connection at once.
    for _ in range(20):
        await bob.join(room)
        await bob.send("sendData", {"operationId": "x",
                                    "payload": {"command": "leave", "options": {"name": room}}})
        await bob.close()
        bob = await Client.open(server.wsURL, "bob")
    assert await bob.join(room) == ["keeper"]
    await bob.close()
    await keeper.close()


async def test_disconnect_keeps_the_room_for_the_idle_timeout(serverFactory):
    server = serverFactory(settings={"room_idle_timeout": "1500"}, enable=("ws", "rest"))
    room = roomName()
    alice = await Client.open(server.wsURL, "alice")
    await alice.join(room, record=True)
    made = roomsNow(server)[room]
    assert (made["record"], made["idle"], made["participants"]) == (True, False, ["alice"])
    alice.ws.transport.abort()  # the TCP connection drops, no leave, no close frame
    await waitUntil(lambda: roomsNow(server)[room]["idle"], 5, f"room {room!r} to be idle")
    alice = await Client.open(server.wsURL, "alice")
    assert await alice.join(room) == []
    resumed = roomsNow(server)[room]  # the same room, not a new one
    assert (resumed["createDate"], resumed["record"], resumed["idle"]) == (
        made["createDate"], True, False)
    await alice.close()
    idle = {}
    await waitUntil(lambda: idle.update(roomsNow(server)) or idle[room]["idle"], 5,
                    f"room {room!r} to be idle again")
    await waitUntil(lambda: room not in roomsNow(server), 5, f"room {room!r} to end")


async def test_login_taken_by_a_live_connection(server):
    room = roomName()
    first = await Client.open(server.wsURL, "alice")
    await first.join(room)
    second = await Client.open(server.wsURL, "alice")
    status = await second.command("join", {"name": room})
    assert status["status"] == "FAILED"
    assert status["info"] == f"Room {room!r} already has a participant with login 'alice'"
    await first.close()
    await second.close()


async def test_participant_limit(serverFactory):
    server = serverFactory(settings={"room_max_participants": "2"})
    room = roomName()
    clients = [await Client.open(server.wsURL, login) for login in ("a", "b", "c")]
    await clients[0].join(room)
    await clients[1].join(room)
    status = await clients[2].command("join", {"name": room})
    assert status == {"operationId": status["operationId"], "status": "FAILED",
                      "info": f"Room {room!r} is full: at most 2 participants"}
    for client in clients:
        await client.close()


BAD_INPUTS = [
    ("{not json", "malformed JSON"),
    ('{"message": "teleport", "data": [{}]}', "unknown message 'teleport'"),
    ('["connection"]', "a frame must be a JSON object"),
    ('{"message": "sendData", "data": [{"payload": {}}]}', "sendData.operationId"),
    ('{"message": "sendData", "data": ["join"]}', "sendData: data[0] must be an object"),
    ('{"message": "publishStream", "data": [{"name": "s"}]}',
     "publishStream.mediaSessionId is required"),
    ('{"message": "connection", "data": [{}]}', "connection: already connected"),
]


async def test_bad_input_gets_a_clear_error_and_harms_nobody(server):
    room = roomName()
    alice = await Client.open(server.wsURL, "alice")
    bob = await Client.open(server.wsURL, "bob")
    await alice.join(room)
    await bob.join(room)
    await alice.roomEvent("JOINED")
    bad = await Client.open(server.wsURL, "mallory")

    for frame, info in BAD_INPUTS:
        await bad.sendRaw(frame)
        fail = await bad.expect("fail")
        assert info in fail["data"][0]["info"], (frame, fail)

    await bad.sendRaw(b"\x00\x01binary")
    assert "binary frames" in (await bad.expect("fail"))["data"][0]["info"]

    big = json.dumps({"message": "sendData", "data": [{"operationId": "1", "payload": {
        "command": "sendMessage", "options": {"roomConfig": {"name": room}, "to": "bob",
                                              "text": "x" * 70000}}}]})
    await bad.sendRaw(big)
    fail = await bad.expect("fail")
    assert fail["data"][0]["info"] == f"message of {len(big)} bytes exceeds the limit of 65536 bytes"

    for options, info in [({"name": ""}, "join.name must not be empty"),
                          ({"name": "r" * 200}, "join.name is longer than 128 characters"),
                          ({"name": ["r"]}, "join.name must be a string")]:
        status = await bad.command("join", options)
        assert (status["status"], status["info"]) == ("FAILED", info)

    # The bad client is still served, and so is everybody else.
    await bad.send("ping", None)
    await bad.expect("pong")
    assert (await alice.chat(room, "bob", "still here"))["status"] == "ACCEPTED"
    assert (await bob.roomEvent("MESSAGE"))["info"]["text"] == "still here"
    assert "Traceback" not in server.log()
    for client in (alice, bob, bad):
        await client.close()


async def test_command_before_connection(server):
    client = await Client.open(server.wsURL, connect=False)
    await client.send("sendData", {"operationId": "1",
                                   "payload": {"command": "join", "options": {"name": "r"}}})
    fail = await client.expect("fail")
    assert fail["data"][0]["info"] == "sendData before connection: send 'connection' first"
    await client.close()


async def test_oversize_beyond_hard_limit_closes_with_1009(server):
    client = await Client.open(server.wsURL, "big")
    await client.sendRaw("x" * (2 << 20))
    with pytest.raises(websockets.ConnectionClosed) as e:
        for _ in range(10):
            await client.next()
    assert e.value.rcvd is not None and e.value.rcvd.code == 1009


async def test_pings_and_dead_peer_timeout(serverFactory):
    server = serverFactory(settings={"ws_ping_interval": "200", "ws_dead_peer_timeout": "1000"})
    silent = await Client.open(server.wsURL, "silent")
    lively = await Client.open(server.wsURL, "lively")
    await silent.expect("ping")
    for _ in range(8):
        await lively.expect("ping", skip=())
        await lively.send("pong", None)
    with pytest.raises(websockets.ConnectionClosed) as e:
        for _ in range(20):
            await silent.next()
    assert "nothing heard from the client" in e.value.rcvd.reason
    await lively.send("ping", None)
    await lively.expect("pong")
    await lively.close()


async def test_answerPings_keeps_a_test_client_that_reads_nothing(serverFactory):
    """
    The lab's clients read nothing while their streams run: answering the
    pings (tests/support/wsclient.answerPings) keeps them past the timeout.
    """
    server = serverFactory(settings={"ws_ping_interval": "200", "ws_dead_peer_timeout": "1000"})
    client = await Client.open(server.wsURL, "lab")
    answering = client.answerPings()
    await asyncio.sleep(2.5)  # two and a half timeouts
    assert not answering.done()  # the connection is open
    answering.cancel()
    await asyncio.gather(answering, return_exceptions=True)
    await client.send("ping", None)
    await client.expect("pong")
    await client.close()


async def test_shutdown_closes_clients(serverFactory):
    server = serverFactory()
    client = await Client.open(server.wsURL, "alice")
    await client.join(roomName())
    # SIGINT stops at once; twistd ends by re-raising it once shut down.
    assert server.stop() in (0, -2)
    with pytest.raises(websockets.ConnectionClosed) as e:
        await client.next()
    assert e.value.rcvd.reason == "server shutting down"


async def test_wss_with_the_self_signed_certificate(serverFactory):
    import hashlib
    import re
    import ssl

    server = serverFactory(enable=("ws", "wss"))
    certPath = server.workdir / "state" / "tls" / "server.crt"
    context = ssl.create_default_context(cafile=str(certPath))
    context.check_hostname = True
    client = await Client.open(f"wss://localhost:{server.ports['wss']}/", "secure", ssl=context)
    await client.join(roomName())
    der = client.ws.transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
    logged = re.search(r"SHA-256 fingerprint ([0-9A-F:]+)", server.log()).group(1)
    assert logged == ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    await client.close()


def test_configured_certificate_missing_stops_start_up(tmp_path):
    from tests.test_plugin import runTwistd

    from tests.support.server import freePort

    result = runTwistd(["-n", "--pidfile=", "wcs", "--listen", "127.0.0.1", "--ws-port", "0",
                        "--http-port", "0", "--https-port", "0", "--rtmp-port", "0",
                        "--wss-port", str(freePort()), "--set", "ssl_cert_file=/nonexistent.crt",
                        "--set", "ssl_key_file=/nonexistent.key"], tmp_path)
    assert result.returncode != 0
    assert "TLS file /nonexistent.crt does not exist" in result.stdout + result.stderr


def rawWebSocket(port: int):
    """A WebSocket opened by hand, to send frames no client library would."""
    import base64
    import os
    import socket

    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    assert response.startswith(b"HTTP/1.1 101")
    return sock, response.split(b"\r\n\r\n", 1)[1]


def maskedFrame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One client frame (masked, as clients must): text unless C{opcode} says."""
    import os

    mask = os.urandom(4)
    assert len(payload) < 126
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + bytes(
        b ^ mask[i % 4] for i, b in enumerate(payload))


def test_invalid_utf8_in_a_text_frame_is_refused_clearly(server):
    sock, pending = rawWebSocket(server.ports["ws"])
    with sock:
        sock.sendall(maskedFrame(b'{"message":"ping","data":["\xff"]}'))
        sock.sendall(maskedFrame(b'{"message":"ping","data":[null]}'))
        data = pending
        while b"pong" not in data:
            chunk = sock.recv(4096)
            assert chunk, f"connection closed: {data!r}"
            data += chunk
    assert b'"info":"malformed JSON' in data  # answered, and the connection lived on


UPGRADE = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")
CONNECTION = json.dumps({"message": "connection", "data": [
    {"appKey": "roomApp", "custom": {"login": "x"}}]}).encode()


def test_any_frame_keeps_a_client_and_silence_closes_it():
    """Autobahn's protocol over a StringTransport, the session on a Clock."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from wcs.config import Settings
    from wcs.server import RoomServer
    from wcs.transports.websocket import SignallingFactory

    clock = Clock()
    server = RoomServer(Settings({"ws_ping_interval": 1000, "ws_dead_peer_timeout": 5000}), clock)
    factory = SignallingFactory(server)
    factory.setProtocolOptions(openHandshakeTimeout=0)  # Autobahn's timers use the reactor

    def client(port):
        address = IPv4Address("TCP", "127.0.0.1", port)
        protocol = factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        protocol.dataReceived(UPGRADE)
        assert transport.value().startswith(b"HTTP/1.1 101")
        protocol.dataReceived(maskedFrame(CONNECTION))
        transport.clear()
        return protocol, transport

    silent, silentOut = client(40001)
    ponger, pongerOut = client(40002)   # unsolicited WebSocket pongs only
    pinger, pingerOut = client(40003)   # WebSocket pings only (what websockets sends)
    for second in range(1, 31):  # six timeouts
        ponger.dataReceived(maskedFrame(b"", opcode=0xA))
        pinger.dataReceived(maskedFrame(b"k", opcode=0x9))
        clock.advance(1)
        if second == 6:  # heard `connection` at 0 s, counted by the tick at 1 s
            assert b"nothing heard from the client for 5 s" in silentOut.value()
            assert silent.state == silent.STATE_CLOSING
    for protocol, out in ((ponger, pongerOut), (pinger, pingerOut)):
        assert protocol.state == protocol.STATE_OPEN
        assert b"nothing heard" not in out.value()
        assert out.value().count(b'"message":"ping"') == 30  # still pinged every second
    assert pingerOut.value().count(b"\x8a\x01k") == 30  # Autobahn answered each ping


async def test_chat_frames_read_directly_answer_as_the_generic_path(server):
    """
    Chat frames in the SDK's form are read without JSON decoding
    (wcs.messages.chatFrame); the ones the session does not take that way
    (not in the room, over a limit) and the ones in another form (escapes)
    get the same answers as ever, in order.
    """
    room = roomName()
    alice = await Client.open(server.wsURL, "alice")
    bob = await Client.open(server.wsURL, "bob")
    notJoined = await alice.chat(room, "bob", "early")
    assert notJoined["status"] == "FAILED"
    assert notJoined["info"] == (f"not in room {room!r}: join it before sending messages")
    await alice.join(room)
    await bob.join(room)
    assert (await alice.roomEvent("JOINED"))["info"] == "bob"
    tooLong = await alice.chat(room, "bob", "x" * 16385)
    assert tooLong["info"] == "sendMessage.text is longer than 16384 characters"
    # Compact (the SDK's JSON.stringify) and escaped, back to back.
    texts = ["plain", 'with "quotes"', "ünïcode 🎉", "tab\there", ""]
    for i, text in enumerate(texts):
        await alice.sendRaw(json.dumps({"message": "sendData", "data": [{
            "operationId": f"burst-{i}", "payload": {"command": "sendMessage", "options": {
                "roomConfig": {"name": room}, "to": "bob", "text": text}}}]},
            separators=(",", ":"), ensure_ascii=i % 2 == 0))
    got = [(await bob.roomEvent("MESSAGE"))["info"] for _ in texts]
    assert got == [{"from": "alice", "text": text} for text in texts]
    statuses = [await alice.expect("DataStatusEvent") for _ in texts]
    assert [s["data"][0] for s in statuses] == [
        {"operationId": f"burst-{i}", "status": "ACCEPTED"} for i in range(len(texts))]
    await alice.close()
    await bob.close()
