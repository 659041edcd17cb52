"""
The REST API of a running server, with real clients: the SDK's own REST
client (flashphoner-rest-api.js) in headless Chromium, aiortc publishers in
rooms over the WebSocket protocol, and plain HTTP. Every answer is checked
against docs/rest-api.yaml (tests/rest/client.py).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from openapi_spec_validator import validate as validateSpec
from twisted.internet.address import IPv4Address
from twisted.web.test.requesthelper import DummyRequest

from tests.rest import openapi
from tests.rest.client import RestClient, closeAll
from tests.rest.conftest import KEY
from tests.support.rooms import SKIP, alicePublishesToBob, status
from tests.support.wait import waitUntil
from tests.support.wsclient import Client
from wcs.admin import KICKED, TERMINATED
from wcs.rest.site import Authority

SDK = (Path(__file__).resolve().parents[2] / "node_modules" / "@flashphoner" / "websdk"
       / "flashphoner-rest-api.js")


async def closed(client: Client, timeout: float = 10) -> None:
    """Wait until the server closes C{client}'s WebSocket."""
    async def drain():
        while True:
            await client.ws.recv()
    with pytest.raises(Exception) as info:
        await asyncio.wait_for(drain(), timeout)
    assert not isinstance(info.value, asyncio.TimeoutError), "the connection stayed open"


async def sessionOf(rest: RestClient, login: str) -> str:
    [connection] = await rest.ok("/rest-api/connection/find", {"login": login})
    return connection["sessionId"]


def test_spec_is_valid_openapi():
    validateSpec(openapi.spec())


async def test_sdk_rest_client_finds_streams_and_connections_and_terminates(
        browser, restServer, rest):
    if not SDK.is_file():
        pytest.skip("npm packages are not installed (make test installs them)")
    room, alice, bob, publisher, publish = await alicePublishesToBob(restServer)
    try:
        page = await browser.new_page()
        # A page of the REST port's own origin: the SDK's XHRs are same-origin.
        await page.goto(f"http://127.0.0.1:{restServer.ports['rest']}/admin/")
        await page.add_script_tag(path=str(SDK))
        found = await page.evaluate("""async (id) => {
            const api = FlashphonerRestApi.instance(location.origin);
            return {
                streams: await api.stream.findAll(),
                one: await api.stream.find(id),
                connections: await api.connection.findAll(),
                byVersion: await api.connection.find("2.0"),
            };
        }""", publish["mediaSessionId"])
        [stream] = [s for s in found["streams"] if s["mediaSessionId"] == publish["mediaSessionId"]]
        assert (stream["name"], stream["published"], stream["status"], stream["login"],
                stream["room"], stream["mediaProvider"]) == (
            publish["name"], True, "PUBLISHING", "alice", room, "WebRTC")
        assert stream["videoCodec"] == "H264" and stream["audioCodec"] == "opus"
        assert [s["mediaSessionId"] for s in found["one"]] == [publish["mediaSessionId"]]
        logins = {c["login"]: c for c in found["connections"]}
        assert {"alice", "bob"} <= set(logins)
        assert logins["bob"]["transport"] == "websocket"
        assert logins["bob"]["remoteAddress"] == "127.0.0.1"
        assert logins["alice"]["rooms"] == [room] and logins["alice"]["streams"] == 1
        assert {c["login"] for c in found["byVersion"]} >= {"alice", "bob"}
        openapi.check("GET", "/rest-api/stream/find_all", 200, found["streams"])
        openapi.check("POST", "/rest-api/stream/find", 200, found["one"])
        openapi.check("GET", "/rest-api/connection/find_all", 200, found["connections"])
        openapi.check("POST", "/rest-api/connection/find", 200, found["byVersion"])

        # terminate through the SDK: alice's stream ends, bob hears it.
        await page.evaluate("(id) => FlashphonerRestApi.instance(location.origin)"
                            ".stream.terminate(id)", publish["mediaSessionId"])
        ended = await status(alice, publish["mediaSessionId"], "UNPUBLISHED")
        assert ended["info"] == TERMINATED
        assert (await bob.roomEvent("UNPUBLISHED", timeout=10))["info"]["login"] == "alice"

        # and bob's connection closes; the listing no longer has him.
        bobId = logins["bob"]["sessionId"]
        await page.evaluate("(id) => FlashphonerRestApi.instance(location.origin)"
                            ".connection.terminate(id)", bobId)
        await closed(bob)
        left = await alice.expect("OnDataEvent",
                                  lambda f: f["data"][0]["payload"]["name"] == "LEFT",
                                  timeout=10, skip=SKIP[:1] + ("notifyStreamStatusEvent",))
        assert left["data"][0]["payload"]["info"] == "bob"
        rejected = await page.evaluate("""(id) => FlashphonerRestApi.instance(location.origin)
            .connection.terminate(id).then(() => 'resolved', () => 'rejected')""", bobId)
        assert rejected == "rejected"  # the SDK rejects without the status: ours says 404
        assert (await rest.call("/rest-api/connection/terminate", {"sessionId": bobId})
                ).status == 404
    finally:
        await closeAll(publisher, alice, bob)


async def test_room_find_kick_and_terminate(restServer, rest):
    room, alice, bob, publisher, publish = await alicePublishesToBob(restServer)
    try:
        rooms = {r["name"]: r for r in await rest.ok("/rest-api/room/find_all")}
        assert rooms[room]["participants"] == ["alice", "bob"] and not rooms[room]["idle"]
        found = await rest.ok("/rest-api/room/find", {"name": room})
        participants = {p["login"]: p for p in found["participants"]}
        assert [s["mediaSessionId"] for s in participants["alice"]["streams"]] == [
            publish["mediaSessionId"]]
        assert participants["bob"]["streams"] == []
        assert participants["alice"]["sessionId"] == await sessionOf(rest, "alice")

        await rest.ok("/rest-api/room/kick", {"name": room, "login": "alice"})
        assert (await status(alice, publish["mediaSessionId"], "UNPUBLISHED"))["info"] == KICKED
        assert (await bob.roomEvent("UNPUBLISHED", timeout=10))["info"]["login"] == "alice"
        assert (await bob.roomEvent("LEFT", timeout=10))["info"] == "alice"
        found = await rest.ok("/rest-api/room/find", {"name": room})
        assert [p["login"] for p in found["participants"]] == ["bob"]
        assert (await rest.call("/rest-api/room/kick", {"name": room, "login": "alice"})
                ).status == 404
        # alice's connection stays; she is out of the room.
        chat = await alice.chat(room, "bob", "still here?")
        assert chat["status"] == "FAILED"

        await alice.join(room)
        assert (await bob.roomEvent("JOINED", timeout=10))["info"] == "alice"
        await rest.ok("/rest-api/room/terminate", {"name": room})
        # Taken out in join order: alice, still in, sees bob go.
        assert (await alice.roomEvent("LEFT", timeout=10))["info"] == "bob"
        assert (await rest.call("/rest-api/room/find", {"name": room})).status == 404
        assert room not in {r["name"] for r in await rest.ok("/rest-api/room/find_all")}
        assert (await rest.call("/rest-api/room/terminate", {"name": room})).status == 404
        # Both may join again: the room is made anew.
        await bob.join(room)
    finally:
        await closeAll(publisher, alice, bob)


async def test_recording_started_stopped_listed_downloaded_deleted(restServer, rest):
    room, alice, bob, publisher, publish = await alicePublishesToBob(restServer)
    mediaSessionId = publish["mediaSessionId"]
    try:
        started = await rest.ok("/rest-api/stream/startRecording",
                                {"mediaSessionId": mediaSessionId})
        name = started["recordName"]
        assert name.startswith("stream-") and name.endswith(".mp4")
        again = await rest.call("/rest-api/stream/startRecording",
                                {"mediaSessionId": mediaSessionId})
        assert again.status == 409 and "already" in again.body["message"]
        [stream] = await rest.ok("/rest-api/stream/find", {"mediaSessionId": mediaSessionId})
        assert stream["record"] and stream["recordName"] == name
        await asyncio.sleep(2.5)  # media to record
        stopped = await rest.ok("/rest-api/stream/stopRecording",
                                {"mediaSessionId": mediaSessionId})
        assert stopped["recordName"] == name
        assert (await rest.call("/rest-api/stream/stopRecording",
                                {"mediaSessionId": mediaSessionId})).status == 409

        async def listed():
            for _ in range(100):  # the MP4 is written after a remux of the TS
                files = {f["fileName"]: f for f in await rest.ok("/rest-api/record/find_all")}
                if name in files and files[name]["size"] > 0 and \
                        name.replace(".mp4", ".ts") not in files:
                    return files[name]
                await asyncio.sleep(0.1)
            raise AssertionError(f"{name} not listed: {files}")
        entry = await listed()
        download = await asyncio.to_thread(rest.request, "GET", entry["url"])
        assert download.status == 200 and download.body[4:8] == b"ftyp"
        assert len(download.body) == entry["size"]

        await rest.ok("/rest-api/record/delete", {"fileName": name})
        assert name not in {f["fileName"] for f in await rest.ok("/rest-api/record/find_all")}
        assert (await rest.call("/rest-api/record/delete", {"fileName": name})).status == 404
        for bad in ("../server.log", "/etc/passwd", "..", ".hidden", "a/b.mp4", "a\\b", "x\0y"):
            assert (await rest.call("/rest-api/record/delete", {"fileName": bad})).status == 400
        assert (restServer.workdir / "server.log").exists()
    finally:
        await closeAll(publisher, alice, bob)


async def test_stream_metrics_count_media(restServer, rest):
    room, alice, bob, publisher, publish = await alicePublishesToBob(restServer)
    try:
        query = {"mediaSessionId": publish["mediaSessionId"]}
        [first] = await rest.ok("/rest-api/stream/find", query)
        assert first["metrics"]["packets"] > 0
        seen = {}

        def counted() -> bool:
            [seen["second"]] = rest.post("/rest-api/stream/find", query).body
            return seen["second"]["metrics"]["packets"] > first["metrics"]["packets"]
        await waitUntil(counted, 10, "more packets counted", every=0.2)
        second = seen["second"]
        assert second["metrics"]["octets"] > first["metrics"]["octets"]
        assert second["metrics"]["lost"] >= 0
    finally:
        await closeAll(publisher, alice, bob)


async def test_set_log_level_traces_one_client(restServer, rest):
    carol = await Client.open(restServer.wsURL, "carol")
    try:
        sessionId = await sessionOf(rest, "carol")
        await rest.ok("/rest-api/connection/set_log_level",
                      {"sessionId": sessionId, "logLevel": "DEBUG"})
        [connection] = await rest.ok("/rest-api/connection/find", {"sessionId": sessionId})
        assert connection["logLevel"] == "DEBUG"
        marker = uuid.uuid4().hex
        await carol.join(f"trace-{marker}")
        for _ in range(50):
            if f"trace-{marker}" in restServer.log():
                break
            await asyncio.sleep(0.1)
        assert any("sent 'sendData'" in line and marker in line
                   for line in restServer.log().splitlines())
        bad = await rest.call("/rest-api/connection/set_log_level",
                              {"sessionId": sessionId, "logLevel": "LOUD"})
        assert bad.status == 400
        missing = await rest.call("/rest-api/connection/set_log_level",
                                  {"sessionId": "nobody", "logLevel": "INFO"})
        assert missing.status == 404
    finally:
        await carol.close()


@pytest.mark.parametrize("path, body, status", [
    ("/rest-api/stream/find", b"{not json", 400),
    ("/rest-api/stream/find", b"[1, 2]", 400),
    ("/rest-api/stream/find", b'{"published": "yes"}', 400),
    ("/rest-api/stream/find", b'{"name": "no-such-stream"}', 404),
    ("/rest-api/stream/terminate", b"{}", 400),
    ("/rest-api/stream/terminate", b'{"mediaSessionId": 7}', 400),
    ("/rest-api/stream/terminate", b'{"mediaSessionId": "nope"}', 404),
    ("/rest-api/stream/startRecording", b'{"mediaSessionId": "nope"}', 404),
    ("/rest-api/stream/stopRecording", b"{}", 400),
    ("/rest-api/connection/find", b'{"sessionId": "nope"}', 404),
    ("/rest-api/connection/terminate", b"{}", 400),
    ("/rest-api/connection/terminate", b'{"sessionId": "nope"}', 404),
    ("/rest-api/connection/set_log_level", b'{"sessionId": "x"}', 400),
    ("/rest-api/room/find", b"{}", 400),
    ("/rest-api/room/find", b'{"name": "no-such-room"}', 404),
    ("/rest-api/room/kick", b'{"name": "r"}', 400),
    ("/rest-api/room/kick", b'{"name": "no-such-room", "login": "x"}', 404),
    ("/rest-api/room/terminate", b'{"name": "no-such-room"}', 404),
    ("/rest-api/record/delete", b"{}", 400),
])
def test_bad_requests_get_json_errors(rest, path, body, status):
    answer = rest.request("POST", path, raw=body, headers={"Content-Type": "application/json"})
    assert answer.status == status, answer
    assert answer.body["status"] == status and answer.body["message"]


def test_http_level_refusals(rest):
    # Only find_all takes GET (the SDK's client sends it without a body).
    answer = rest.request("GET", "/rest-api/stream/terminate", validate=False)
    assert answer.status == 405 and answer.headers["allow"] == "POST"
    assert rest.request("GET", "/rest-api/room/find_all").status == 200
    for path in ("/rest-api/stream/nope", "/rest-api/nope/find_all", "/nope"):
        answer = rest.request("POST", path, {}, validate=False)
        assert answer.status == 404 and answer.body["status"] == 404
    big = rest.request("POST", "/rest-api/stream/find", raw=b" " * (65536 + 1),
                       validate=False)
    assert big.status == 413 and big.body["status"] == 413
    chunked = rest.request("POST", "/rest-api/stream/find", raw=iter([b"{}"]),
                           headers={"Transfer-Encoding": "chunked"}, validate=False)
    assert chunked.status == 411


def test_https_port_serves_the_same_api(restServer):
    secure = RestClient(restServer.ports["rest-https"], https=True)
    answer = secure.request("GET", "/rest-api/connection/find_all")
    assert answer.status == 200 and isinstance(answer.body, list)


def test_key_is_required_when_set(keyServer):
    port = keyServer.ports["rest"]
    without = RestClient(port).request("POST", "/rest-api/stream/find_all", {})
    assert without.status == 401 and without.headers["www-authenticate"].startswith("Bearer")
    wrong = RestClient(port, key=KEY + "x").request("POST", "/rest-api/room/find_all", {})
    assert wrong.status == 401
    assert RestClient(port, key=KEY).request("POST", "/rest-api/room/find_all", {}).status == 200
    assert RestClient(port).request("GET", "/records/x.mp4", validate=False).status == 401
    # The admin page loads without the key (it asks for it); its data needs it.
    page = RestClient(port).request("GET", "/admin/", validate=False)
    assert page.status == 200 and b"<html" in page.body.lower()


@pytest.mark.parametrize("host, key, header, allowed", [
    ("127.0.0.1", "", None, True),
    ("127.8.9.10", "", None, True),
    ("192.0.2.7", "", None, False),
    ("192.0.2.7", "k", b"Bearer k", True),
    ("127.0.0.1", "k", None, False),
    ("127.0.0.1", "k", b"Bearer kk", False),
    ("127.0.0.1", "k", b"bearer k", True),
    ("127.0.0.1", "k", b"Basic k", False),
])
def test_authority(host, key, header, allowed):
    """Without a key only loopback is served: other addresses checked on a request object."""
    request = DummyRequest([b"rest-api"])
    request.client = IPv4Address("TCP", host, 40000)
    if header is not None:
        request.requestHeaders.setRawHeaders(b"authorization", [header])
    refusal = Authority(key).refusal(request)
    assert (refusal is None) == allowed
    if not allowed:
        assert refusal.status == (401 if key else 403)
