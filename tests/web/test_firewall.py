"""
A browser behind a firewall that drops all UDP joins a room through TURN
over TCP (coturn with use-auth-secret, credentials from the server's
getUserData) and sees video both ways with an aiortc participant on the
open side. Chromium's chosen candidate pairs are relayed over TCP.
tests/netlab/firewall.py makes the two namespaces; skipped only where the
machine cannot (not root).
"""

import secrets
import uuid

import pytest
import pytest_asyncio

from tests.media import peers
from tests.netlab.firewall import CLIENT_ADDRESS, SERVER_ADDRESS, Coturn, Firewall, unavailable
from tests.support.rooms import negotiate, status, streamRequest
from tests.support.server import freePort, startServer
from tests.support.wsclient import Client
from tests.web.browser import FLAGS, WAIT_MS, requireChromium, waitForVideo
from wcs.config import Settings
from wcs.turn import TurnCredentials

DEMOS = "/client2/examples/demo/streaming"
# Every RTCPeerConnection the SDK makes (they all offer), for getStats.
RECORD_PEER_CONNECTIONS = """
(() => {
  // Not a subclass of RTCPeerConnection: the SDK's webrtc-adapter would
  // take the page for one without WebRTC.
  window.__pcs = [];
  const createOffer = RTCPeerConnection.prototype.createOffer;
  RTCPeerConnection.prototype.createOffer = function (...args) {
    if (!window.__pcs.includes(this)) window.__pcs.push(this);
    return createOffer.apply(this, args);
  };
})();
"""
# Per connected peer connection: the selected pair's local candidate and
# what it decoded and sent.
SELECTED = """
async () => {
  const out = [];
  for (const pc of window.__pcs) {
    if (pc.connectionState !== "connected") continue;
    const stats = await pc.getStats();
    const byId = new Map();
    stats.forEach(s => byId.set(s.id, s));
    let pair = null, decoded = 0, sent = 0;
    stats.forEach(s => {
      if (s.type === "transport" && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId);
      if (s.type === "inbound-rtp" && s.kind === "video") decoded += s.framesDecoded || 0;
      if (s.type === "outbound-rtp" && s.kind === "video") sent += s.framesEncoded || 0;
    });
    const local = pair ? byId.get(pair.localCandidateId) : null;
    const remote = pair ? byId.get(pair.remoteCandidateId) : null;
    out.push({
      iceServers: pc.getConfiguration().iceServers,
      localType: local && local.candidateType, relayProtocol: local && local.relayProtocol,
      localAddress: local && (local.address || local.ip),
      remoteAddress: remote && (remote.address || remote.ip), decoded, sent,
    });
  }
  return out;
}
"""


@pytest.fixture(scope="module")
def firewalled(tmp_path_factory):
    reason = unavailable()
    if reason:
        pytest.skip(f"cannot make the firewall: {reason}")
    requireChromium()
    workdir = tmp_path_factory.mktemp("firewall")
    secret = secrets.token_urlsafe(24)
    with Firewall() as net:
        with net.entered(net.server):
            turnPort = freePort()
            turn = Coturn(workdir / "turn", SERVER_ADDRESS, turnPort, secret, peer=SERVER_ADDRESS)
            turnSettings = {"turn_urls": f"turn:{SERVER_ADDRESS}:{turnPort}?transport=tcp",
                            "turn_secret": secret, "turn_ttl": "600"}
            try:
                server = startServer(workdir / "wcs", enable=("ws", "http"), settings={
                    "media_port_from": "0", "media_port_to": "0",
                    "ice_public_ip": SERVER_ADDRESS, **turnSettings,
                }, extraArgs=["--listen", "0.0.0.0"])
            except BaseException:
                turn.stop()
                raise
        try:
            yield net, server, turn, turnSettings
        finally:
            server.stop()
            turn.stop()


@pytest_asyncio.fixture
async def firewalledBrowser(firewalled):
    """Chromium behind the firewall; the test itself runs on the server's side."""
    net, server, turn, _ = firewalled
    from playwright.async_api import async_playwright

    # Playwright's driver, and so the Chromium it starts, is made behind the firewall.
    with net.entered(net.client):
        playwright = await async_playwright().start()
    try:
        base = f"http://{SERVER_ADDRESS}:{server.ports['http']}"
        # Not loopback, so plain http is not a secure context and the page
        # would have no getUserMedia; a deployment serves its pages over https.
        browser = await playwright.chromium.launch(
            executable_path=requireChromium(),
            args=FLAGS + [f"--unsafely-treat-insecure-origin-as-secure={base}"])
        try:
            with net.entered(net.server):
                yield browser
        finally:
            await browser.close()
    finally:
        await playwright.stop()


async def newPage(browser, console):
    page = await browser.new_page()
    await page.add_init_script(RECORD_PEER_CONNECTIONS)
    page.on("console", lambda m: console.append(m.text))
    page.on("pageerror", lambda e: console.append(f"page error: {e}"))
    return page


async def waitFor(page, condition, console, turn, server, timeout=WAIT_MS):
    """C{condition} on the page, or fail with what the page, coturn and wcs said."""
    try:
        await page.wait_for_function(condition, timeout=timeout)
    except Exception:
        raise AssertionError(
            f"{condition} not met. Page console:\n" + "\n".join(console[-40:])
            + f"\ncoturn:\n{turn.log()[-3000:]}\nwcs:\n{server.log()[-3000:]}") from None


async def relayedPairs(page, login, frames=30):
    """
    Once the page has sent and decoded C{frames} video frames (its
    <video> may be playing the SDK's preloader before that), its connected
    peer connections, each checked relayed over TCP with C{login}'s credentials.
    """
    enough = (f"(async () => {{ const p = await ({SELECTED})(); "
              f"return p.some(x => x.sent >= {frames}) && p.some(x => x.decoded >= {frames}); }})()")
    try:
        await page.wait_for_function(enough, timeout=30000, polling=500)
    except Exception:
        raise AssertionError(f"no {frames} frames both ways: {await page.evaluate(SELECTED)}") \
            from None
    pairs = await page.evaluate(SELECTED)
    for pair in pairs:
        assert pair["iceServers"][0]["username"].endswith(f":{login}"), pair
        assert pair["localType"] == "relay" and pair["relayProtocol"] == "tcp", pair
        assert pair["localAddress"] == SERVER_ADDRESS, pair  # coturn's relay address
    return pairs


async def test_udp_blocked_browser_joins_a_room_through_turn_over_tcp(firewalled,
                                                                     firewalledBrowser):
    net, server, turn, _ = firewalled
    room = f"room-{uuid.uuid4().hex[:6]}"
    base = f"http://{SERVER_ADDRESS}:{server.ports['http']}"
    bob = publisher = player = None
    console = []
    try:
        # bob: aiortc on the open side, plain UDP to the server; in the room first.
        bob = await Client.open(f"ws://127.0.0.1:{server.ports['ws']}", "bob")
        await bob.join(room)
        page = await newPage(firewalledBrowser, console)
        await page.goto(f"{base}{DEMOS}/conference/?server=ws://{SERVER_ADDRESS}:"
                        f"{server.ports['ws']}&roomName={room}&login=alice")
        await page.click("#joinBtn")
        await waitFor(page, f"document.getElementById('status').textContent === "
                      f"'joined {room}, publishing'", console, turn, server)
        published = (await bob.expect(
            "OnDataEvent", lambda f: f["data"][0]["payload"]["name"] == "PUBLISHED",
            timeout=WAIT_MS / 1000, skip=("ping", "OnDataEvent")))["data"][0]["payload"]
        assert published["info"]["login"] == "alice"
        publisher = peers.Publisher(video="video/VP8", audio=None)
        publish = streamRequest(f"{room}-bob", room, await peers.offerOf(publisher.pc), True)
        await negotiate(bob, publisher.pc, "publishStream", publish)
        await status(bob, publish["mediaSessionId"], "PUBLISHING", timeout=30)
        player = peers.Player(video="video/VP8", audio=None)
        play = streamRequest(published["info"]["name"], room, await peers.offerOf(player.pc),
                             False)
        await negotiate(bob, player.pc, "playStream", play)
        await status(bob, play["mediaSessionId"], "PLAYING", timeout=30)

        # Video both ways: bob decodes alice's camera, alice's page bob's.
        frames = await player.waitFrames("video", 30, timeout=30)
        assert frames[-1].width > 0
        await waitForVideo(page, '.tile[data-login="bob"] video', timeout_ms=30000)

        # The credentials came from the server's getUserData, and coturn took them.
        pairs = await relayedPairs(page, "alice")
        assert len(pairs) == 2, pairs  # alice's publish and her play of bob
        # Chromium did try UDP (its host candidates), and the firewall dropped it.
        assert net.udpDropped() > 0
        assert ":alice" in turn.log()
        assert CLIENT_ADDRESS in turn.log()
    finally:
        for peer in (publisher, player):
            if peer is not None:
                await peer.close()
        if bob is not None:
            await bob.close()


async def test_the_sdks_firewall_traversal_example_page(firewalled, firewalledBrowser):
    """
    The SDK's own firewall-traversal-streaming page, unchanged: a person
    types the TURN URL and credentials (python -m wcs.turn prints them);
    with "Force relay" it publishes a stream and plays it back, both relayed.
    """
    net, server, turn, turnSettings = firewalled
    [ice] = TurnCredentials(Settings(turnSettings)).iceServers("visitor")
    console = []
    page = await newPage(firewalledBrowser, console)
    await page.goto(f"http://{SERVER_ADDRESS}:{server.ports['http']}{DEMOS}/"
                    "firewall-traversal-streaming/firewall-traversal-streaming.html")
    await page.fill("#urlServer", f"ws://{SERVER_ADDRESS}:{server.ports['ws']}")
    await page.fill("#urlTurnServer", ice["urls"][0])
    await page.fill("#usernameTurnServer", ice["username"])
    await page.fill("#credentialTurnServer", ice["credential"])
    assert await page.is_checked("#forceRelay")
    await page.click("#connectBtn")
    await waitFor(page, "document.getElementById('connectStatus').textContent === 'ESTABLISHED'",
                  console, turn, server)
    await page.click("#publishBtn")
    await waitFor(page, "document.getElementById('publishStatus').textContent === 'PUBLISHING'",
                  console, turn, server)
    await page.click("#playBtn")
    await waitFor(page, "document.getElementById('playStatus').textContent === 'PLAYING'",
                  console, turn, server)
    await waitForVideo(page, "#remoteVideo video", timeout_ms=30000)
    pairs = await relayedPairs(page, "visitor")
    assert len(pairs) == 2, pairs  # the publish and the play
