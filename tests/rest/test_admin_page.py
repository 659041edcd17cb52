"""
The admin page in headless Chromium on a server with admin_api_key: the key
entered once, a room appearing with its participants and a live stream's
bitrate, kick and drain buttons, the room disappearing when it ends.
"""

from __future__ import annotations

import uuid

from tests.rest.client import closeAll
from tests.rest.conftest import KEY
from tests.support.rooms import alicePublishesToBob
from tests.support.wsclient import Client
from tests.web.browser import WAIT_MS


async def test_admin_page_shows_rooms_and_kicks(browser, keyServer):
    page = await browser.new_page()
    await page.goto(f"http://127.0.0.1:{keyServer.ports['rest']}/admin/")
    await page.wait_for_function(
        "document.getElementById('status').textContent === 'enter the API key'", timeout=WAIT_MS)
    await page.fill("#keyInput", KEY)
    await page.click("#keyBtn")
    await page.wait_for_function(
        "document.getElementById('status').textContent === 'connected'", timeout=WAIT_MS)
    assert await page.evaluate(f"sessionStorage.getItem('wcsAdminKey') === {KEY!r}")

    room, alice, bob, publisher, publish = await alicePublishesToBob(keyServer)
    try:
        box = f'.room[data-room="{room}"]'
        await page.wait_for_selector(f'{box} .participant[data-login="bob"]', timeout=WAIT_MS)
        # alice's stream with a bitrate measured over two polls.
        stream = f'{box} [data-stream="{publish["mediaSessionId"]}"]'
        await page.wait_for_function(
            "(s) => { const e = document.querySelector(s + ' .kbps');"
            " return e && parseFloat(e.textContent) > 0; }", arg=stream, timeout=WAIT_MS)
        assert "% lost" in await page.text_content(f"{stream} .lossNow")

        await page.click(f'{box} .participant[data-login="bob"] .kick')
        assert (await alice.roomEvent("LEFT", timeout=10))["info"] == "bob"
        await page.wait_for_function(
            "(s) => !document.querySelector(s)", arg=f'{box} .participant[data-login="bob"]',
            timeout=WAIT_MS)

        # The last participant leaves: the room ends and leaves the page.
        await alice.send("sendData", {"operationId": "leave-1", "payload": {
            "command": "leave", "options": {"name": room}}})
        await alice.expect("DataStatusEvent", lambda f: f["data"][0]["status"] == "ACCEPTED",
                           timeout=10, skip=("ping", "notifyStreamStatusEvent", "OnDataEvent"))
        await page.wait_for_function("(s) => !document.querySelector(s)", arg=box,
                                     timeout=WAIT_MS)
    finally:
        await closeAll(publisher, alice, bob)


async def test_admin_page_room_terminate_button(browser, keyServer):
    page = await browser.new_page()
    await page.goto(f"http://127.0.0.1:{keyServer.ports['rest']}/admin/")
    await page.evaluate(f"sessionStorage.setItem('wcsAdminKey', {KEY!r})")
    room = f"room-{uuid.uuid4().hex[:6]}"
    carol = await Client.open(keyServer.wsURL, "carol")
    dave = await Client.open(keyServer.wsURL, "dave")
    try:
        await carol.join(room)
        await dave.join(room)
        box = f'.room[data-room="{room}"]'
        await page.wait_for_selector(f'{box} .participant[data-login="dave"]', timeout=WAIT_MS)
        await page.click(f"{box} .terminateRoom")
        assert (await dave.roomEvent("LEFT", timeout=10))["info"] == "carol"
        await page.wait_for_function("(s) => !document.querySelector(s)", arg=box,
                                     timeout=WAIT_MS)

        # Last in this module: a drain really drains (tests/ops/test_drain.py),
        # and with no room left the server stops.
        await page.click("#drainBtn")
        await page.wait_for_function(
            "document.getElementById('drainAnswer').textContent.startsWith('drain')",
            timeout=WAIT_MS)
        assert '"draining":true' in await page.text_content("#drainAnswer")
    finally:
        await closeAll(carol, dave)
