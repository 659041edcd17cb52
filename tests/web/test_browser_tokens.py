"""
The SDK's own conference example page, unchanged, on a server with
auth_required=true: the page's C{RoomApi.connect} is given a signed token
as C{token} (as a customer's page would pass the one its backend minted),
and it joins and publishes; without one it is refused.
"""

import json
import uuid

import pytest

from tests.access.support import SECRET, token
from tests.support.rooms import MEDIA
from tests.support.server import startServer
from tests.web.browser import WAIT_MS, waitForVideo
from tests.web.test_browser_rooms import DEMOS, openJoined

# The SDK sets window.RoomApi when it loads: wrap its connect to add the token.
WITH_TOKEN = """
(() => {
  const token = %s;
  let api;
  Object.defineProperty(window, "RoomApi", {configurable: true, get: () => api, set: (value) => {
    const connect = value.connect;
    value.connect = (options) => connect.call(value, Object.assign({}, options, {token}));
    api = value;
  }});
})();
"""


@pytest.fixture(scope="module")
def authServer(tmp_path_factory):
    running = startServer(tmp_path_factory.mktemp("web-auth"), enable=("ws", "http"),
                          settings=dict(MEDIA, auth_required="true", auth_jwt_secret=SECRET))
    yield running
    running.stop()


async def openConference(browser, server, room, login, sent):
    page = await browser.new_page()
    if sent is not None:
        await page.add_init_script(WITH_TOKEN % json.dumps(sent))
    await page.goto(f"http://127.0.0.1:{server.ports['http']}{DEMOS}/conference/"
                    f"conference.html?roomName={room}")
    await page.fill("#url", f"ws://127.0.0.1:{server.ports['ws']}")
    await page.fill("#login", login)
    await page.click("#joinBtn")
    return page


async def test_the_sdks_conference_page_joins_and_publishes_with_a_token(browser, authServer):
    room = f"room-{uuid.uuid4().hex[:6]}"
    pages = {}
    for login in ("alice", "bob"):
        pages[login] = page = await openConference(browser, authServer, room, login,
                                                   token(login, room=room))
        await page.wait_for_function(
            "document.getElementById('joinBtn').textContent === 'Leave'", timeout=WAIT_MS)
    alice, bob = pages["alice"], pages["bob"]
    await alice.wait_for_function(
        "document.getElementById('localStatus').textContent === 'PUBLISHING'", timeout=WAIT_MS)
    await bob.wait_for_function(
        "document.getElementById('participant1Name').textContent === 'alice'", timeout=WAIT_MS)
    await waitForVideo(bob, "#participant1Display video")
    assert "connected as 'alice'" in authServer.log()


async def test_our_conference_demo_takes_the_token_from_its_url(browser, authServer):
    room = f"room-{uuid.uuid4().hex[:6]}"
    alice = await openJoined(browser, authServer, "conference", room, "alice",
                             token("alice", room=room))
    await openJoined(browser, authServer, "conference", room, "bob", token("bob", room=room))
    await waitForVideo(alice, '.tile[data-login="bob"] video')


async def test_without_a_token_the_page_is_refused(browser, authServer):
    page = await openConference(browser, authServer, f"room-{uuid.uuid4().hex[:6]}", "eve", None)
    await page.wait_for_function(
        "['FAILED', 'DISCONNECTED'].includes(document.getElementById('status').textContent)",
        timeout=WAIT_MS)
    assert await page.text_content("#joinBtn") != "Leave"
    assert "refused 'connection': 'a token is required'" in authServer.log()
