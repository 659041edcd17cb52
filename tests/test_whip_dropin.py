"""
The WHIP/WHEP drop-in against the contract: its plugins provide
IWebResource, and in process it drives the real core seen only through the
interfaces (tests/support/contract.py's Strict; its imports are checked by
tests/test_contract.py).
"""

import asyncio

from twisted.plugin import getPlugins
from zope.interface.verify import verifyObject

import wcs_plugins
from wcs.interfaces import IWebResource


def test_plugins_provide_the_interface():
    found = {p.name: p for p in getPlugins(IWebResource, wcs_plugins)}
    assert {"whip", "whep"} <= set(found)
    for provider in found.values():
        assert verifyObject(IWebResource, provider)


# In process: the real core (RoomServer on a Clock) and the real media engine,
# the endpoint rendered with Twisted's DummyRequest.

def makeEndpoint(engine=None, **settings):
    from twisted.internet.task import Clock

    from wcs.config import Settings
    from tests.support.contract import strictServer
    from wcs.server import RoomServer
    from whipwhep.resource import Plugin, WHIPEndpoint

    server = RoomServer(Settings(settings), Clock())
    if engine is not None:
        server.registerMediaEngine(engine)
    # The drop-in sees the server and its sessions through the interfaces only.
    return server, Plugin("whip", WHIPEndpoint).makeResource(strictServer(server),
                                                             server.settings)


def render(endpoint, method: bytes, path: bytes, body: bytes = b"", headers=None):
    from io import BytesIO

    from twisted.internet.address import IPv4Address
    from twisted.web.test.requesthelper import DummyRequest

    request = DummyRequest(path.split(b"/")[2:])
    request.method, request.path, request.content = method, path, BytesIO(body)
    request.client = IPv4Address("TCP", "127.0.0.1", 5000)
    for name, value in (headers or {}).items():
        request.requestHeaders.setRawHeaders(name, [value])
    result = endpoint.render(request)
    if isinstance(result, bytes):
        request.write(result)
        request.finish()
    return request


def test_no_media_engine_is_503_and_the_login_is_free_again():
    server, endpoint = makeEndpoint()
    request = render(endpoint, b"POST", b"/whip/r/obs", b"v=0\r\nm=video 9 x 96\r\n",
                     {"content-type": "application/sdp"})
    assert request.finished and request.responseCode == 503
    assert b"media provider 'WebRTC' is not available" in b"".join(request.written)
    assert endpoint.sessions == {} and server.sessions == set()
    assert "obs" not in getattr(server.rooms.rooms.get("r"), "participants", {})


def test_refusals_get_the_status_of_their_code_not_of_their_text():
    """A full room is 403 and a server at its rooms' maximum 503, by wcs.errors' codes."""
    server, endpoint = makeEndpoint(room_max_participants="1", room_max_count="1")
    offer = b"v=0\r\nm=video 9 x 96\r\n"
    sdp = {"content-type": "application/sdp"}
    first = render(endpoint, b"POST", b"/whip/r/obs", offer, sdp)
    assert first.responseCode == 503  # joined, then no media engine: the room stays empty
    server.rooms.join("r", "keeper", object())
    full = render(endpoint, b"POST", b"/whip/r/obs", offer, sdp)
    assert (full.responseCode, b"".join(full.written)) == (
        403, b"Room 'r' is full: at most 1 participants\n")
    other = render(endpoint, b"POST", b"/whip/s/obs", offer, sdp)
    assert other.responseCode == 503
    assert b"the server has its maximum of 1 rooms" in b"".join(other.written)


async def test_session_keeps_its_token_outlives_pings_and_deletes():
    from tests.media import peers
    from tests.support.whip import offer

    engine = peers.makeEngine()
    server, endpoint = makeEndpoint(engine)
    publisher = peers.Publisher()
    try:
        request = render(endpoint, b"POST", b"/whip/r/obs", (await offer(publisher.pc)).encode(),
                         {"content-type": "application/sdp", "authorization": "Bearer tok-1"})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not request.finished:
            assert loop.time() < deadline, "no answer"
            await asyncio.sleep(0.05)
        assert request.responseCode == 201, request.written
        [session] = endpoint.sessions.values()
        assert session.token == "tok-1"
        location = request.responseHeaders.getRawHeaders(b"location")[0]
        # No signalling over HTTP: the core's pings must not time it out.
        timeout = server.settings.ws_dead_peer_timeout / 1000.0
        server.clock.pump([server.settings.ws_ping_interval / 1000.0] * int(timeout / 5 * 3))
        assert not session.ended
        assert set(server.rooms.rooms["r"].participants) == {"obs"}
        deleted = render(endpoint, b"DELETE", location)
        assert deleted.responseCode in (None, 200) and deleted.finished
        assert session.ended and endpoint.sessions == {} and server.sessions == set()
        assert "obs" not in getattr(server.rooms.rooms.get("r"), "participants", {})
        assert render(endpoint, b"DELETE", location).responseCode == 404
    finally:
        await publisher.close()
        await engine.close()


def test_full_room_is_403_and_too_many_rooms_503():
    from tests.support.channels import RecordingChannel

    server, endpoint = makeEndpoint(room_max_participants=1, room_max_count=1)
    member = server.openSession(RecordingChannel("tcp:127.0.0.1:1"))
    member.messageReceived("connection", [{"custom": {"login": "bob"}}])
    member.messageReceived("sendData", [{"operationId": 1, "payload": {
        "command": "join", "options": {"name": "r"}}}])
    offer = b"v=0\r\nm=video 9 x 96\r\n"
    sdp = {"content-type": "application/sdp"}
    full = render(endpoint, b"POST", b"/whip/r/obs", offer, sdp)
    assert full.responseCode == 403, full.written
    assert b"Room 'r' is full" in b"".join(full.written)
    another = render(endpoint, b"POST", b"/whip/s/obs", offer, sdp)
    assert another.responseCode == 503, another.written
    assert b"cannot be made" in b"".join(another.written)
    assert endpoint.sessions == {} and server.sessions == {member}
