"""
Two browsers in a room on the pages our server serves, with the official
SDK: video both ways, chat in several scripts, leave; the SDK's own
conference example page too.
"""

import uuid

import pytest

from tests.web.browser import WAIT_MS, text, waitForVideo

TEXTS = ["Привет, мир", "你好，世界", "🎉👋🏽", "<script>window.pwned=1</script><b>bold?</b>"]
DEMOS = "/client2/examples/demo/streaming"


def pageURL(server, demo, room, login, token=None):
    return (f"http://127.0.0.1:{server.ports['http']}{DEMOS}/{demo}/"
            f"?server=ws://127.0.0.1:{server.ports['ws']}&roomName={room}&login={login}"
            + (f"&token={token}" if token else ""))


async def openJoined(browser, server, demo, room, login, token=None):
    page = await browser.new_page()
    await page.goto(pageURL(server, demo, room, login, token))
    await page.click("#joinBtn")
    await page.wait_for_function(
        f"document.getElementById('status').textContent === 'joined {room}, publishing'",
        timeout=WAIT_MS)
    return page


async def test_conference_page_video_chat_and_leave(browser, webServer):
    room = f"room-{uuid.uuid4().hex[:6]}"
    alice = await openJoined(browser, webServer, "conference", room, "alice")
    bob = await openJoined(browser, webServer, "conference", room, "bob")

    await waitForVideo(bob, '.tile[data-login="alice"] video')
    await waitForVideo(alice, '.tile[data-login="bob"] video')

    for message in TEXTS:
        await alice.fill("#chatInput", message)
        await alice.click("#sendBtn")
        await bob.wait_for_function(
            "(t) => [...document.querySelectorAll('#chatLog .chat-text')].some(e => e.textContent === t)",
            arg=message, timeout=WAIT_MS)
    await bob.fill("#chatInput", TEXTS[0][::-1])
    await bob.click("#sendBtn")
    await alice.wait_for_function(
        "(t) => [...document.querySelectorAll('#chatLog .chat-text')].some(e => e.textContent === t)",
        arg=TEXTS[0][::-1], timeout=WAIT_MS)
    # The markup arrived as text: nothing ran, nothing was inserted.
    assert await bob.evaluate("window.pwned === undefined")
    assert await bob.evaluate("document.querySelectorAll('#chatLog script, #chatLog b b').length") == 0

    await bob.click("#leaveBtn")
    await alice.wait_for_function(
        "!document.querySelector('.tile[data-login=\"bob\"]')", timeout=WAIT_MS)
    assert "bob left" in await text(alice, "#chatLog")
    await bob.wait_for_function(
        "document.getElementById('status').textContent === 'left the room'", timeout=WAIT_MS)


async def test_screen_sharing_page_publishes_a_second_stream(browser, webServer):
    room = f"room-{uuid.uuid4().hex[:6]}"
    alice = await openJoined(browser, webServer, "video-chat-and-screen-sharing", room, "alice")
    bob = await openJoined(browser, webServer, "video-chat-and-screen-sharing", room, "bob")
    await waitForVideo(bob, '.tile[data-login="alice"] .display:nth-child(1) video')
    await alice.click("#shareBtn")
    await alice.wait_for_function(
        "document.getElementById('screenStatus').textContent === 'sharing screen'",
        timeout=WAIT_MS)
    await waitForVideo(bob, '.tile[data-login="alice"] .display[data-stream$="-screen"] video')


@pytest.mark.parametrize("example", [
    "conference/conference.html",
    "video-chat/video-chat.html",
    "video-chat-and-screen-sharing/video-chat-and-screen-sharing.html",
])
async def test_the_sdks_own_example_pages(browser, webServer, example):
    """The SDK's example pages, unchanged, served by us: join, remote video, chat."""
    room = f"room-{uuid.uuid4().hex[:6]}"
    url = f"http://127.0.0.1:{webServer.ports['http']}{DEMOS}/{example}?roomName={room}"
    pages = {}
    for login in ("alice", "bob"):
        page = pages[login] = await browser.new_page()
        await page.goto(url)
        await page.fill("#url", f"ws://127.0.0.1:{webServer.ports['ws']}")
        await page.fill("#login", login)
        await page.click("#joinBtn")
        await page.wait_for_function("document.getElementById('joinBtn').textContent === 'Leave'",
                                     timeout=WAIT_MS)
    alice, bob = pages["alice"], pages["bob"]
    await bob.wait_for_function(
        "document.getElementById('participant1Name').textContent === 'alice'", timeout=WAIT_MS)
    await waitForVideo(bob, "#participant1Display video")

    await alice.fill("#message", TEXTS[1])
    await alice.click("#sendMessageBtn")
    await bob.wait_for_function("(t) => document.getElementById('chat').textContent.includes(t)",
                                arg=TEXTS[1], timeout=WAIT_MS)
    if "screen-sharing" in example:
        await alice.click("#shareBtn")
        await waitForVideo(bob, "#sharedDisplay video")


async def test_refused_join_shows_the_reason_and_can_retry(browser, webServer):
    room = f"room-{uuid.uuid4().hex[:6]}"
    first = await openJoined(browser, webServer, "video-chat", room, "alice")
    second = await browser.new_page()
    await second.goto(pageURL(webServer, "video-chat", room, "alice"))
    await second.click("#joinBtn")
    await second.wait_for_function(
        "document.getElementById('status').textContent.startsWith('join failed: ')",
        timeout=WAIT_MS)
    assert "already has a participant with login 'alice'" in await text(second, "#status")
    assert await second.is_enabled("#joinBtn")
    await second.fill("#login", "alice2")
    await second.click("#joinBtn")
    await second.wait_for_function(
        f"document.getElementById('status').textContent === 'joined {room}, publishing'",
        timeout=WAIT_MS)
    await waitForVideo(first, '.tile[data-login="alice2"] video')
