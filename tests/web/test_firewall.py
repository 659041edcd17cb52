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

from tests.media import peers
from tests.netlab.firewall import CLIENT_ADDRESS, SERVER_ADDRESS, Coturn, Firewall, unavailable
from tests.support.rooms import negotiate, status, streamRequest
from tests.support.server import freePort, startServer
from tests.support.wsclient import Client
from tests.web.browser import FLAGS, WAIT_MS, requireChromium, waitForVideo

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
            turn = Coturn(workdir / "turn", SERVER_ADDRESS, turnPort, secret)
            try:
                server = startServer(workdir / "wcs", enable=("ws", "http"), settings={
                    "media_port_from": "0", "media_port_to": "0",
                    "ice_public_ip": SERVER_ADDRESS,
                    "turn_urls": f"turn:{SERVER_ADDRESS}:{turnPort}?transport=tcp",
                    "turn_secret": secret, "turn_ttl": "600",
                }, extraArgs=["--listen", "0.0.0.0"])
            except BaseException:
                turn.stop()
                raise
        try:
            yield net, server, turn
        finally:
            server.stop()
            turn.stop()


async def test_udp_blocked_browser_joins_a_room_through_turn_over_tcp(firewalled):
    net, server, turn = firewalled
    room = f"room-{uuid.uuid4().hex[:6]}"
    from playwright.async_api import async_playwright

    # Chromium (started by Playwright's driver) lives behind the firewall.
    with net.entered(net.client):
        playwright = await async_playwright().start()
    try:
        with net.entered(net.server):
            await _joinAndExchangeVideo(net, server, turn, playwright, room)
    finally:
        await playwright.stop()


async def _joinAndExchangeVideo(net, server, turn, playwright, room):
    base = f"http://{SERVER_ADDRESS}:{server.ports['http']}"
    # Not loopback, so plain http is not a secure context and the page would
    # have no getUserMedia; a deployment serves the pages over https.
    browser = await playwright.chromium.launch(
        executable_path=requireChromium(),
        args=FLAGS + [f"--unsafely-treat-insecure-origin-as-secure={base}"])
    bob = publisher = player = None
    try:
        # bob: aiortc on the open side, plain UDP to the server; in the room first.
        bob = await Client.open(f"ws://127.0.0.1:{server.ports['ws']}", "bob")
        await bob.join(room)
        page = await browser.new_page()
        await page.add_init_script(RECORD_PEER_CONNECTIONS)
        console = []
        page.on("console", lambda m: console.append(m.text))
        page.on("pageerror", lambda e: console.append(f"page error: {e}"))
        await page.goto(f"{base}{DEMOS}/conference/?server=ws://{SERVER_ADDRESS}:"
                        f"{server.ports['ws']}&roomName={room}&login=alice")
        await page.click("#joinBtn")
        try:
            await page.wait_for_function(
                f"document.getElementById('status').textContent === 'joined {room}, publishing'",
                timeout=WAIT_MS)
        except Exception:
            print("STATUS", await page.text_content("#status"))
            print("\n".join(console[-40:]))
            print(turn.log()[-3000:])
            print(server.log()[-3000:])
            raise

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

        pairs = await page.evaluate(SELECTED)
        assert len(pairs) == 2, pairs  # alice's publish and her play of bob
        for pair in pairs:
            # The credentials came from the server and coturn took them.
            assert pair["iceServers"][0]["username"].endswith(":alice"), pair
            assert pair["localType"] == "relay" and pair["relayProtocol"] == "tcp", pair
            assert pair["localAddress"] == SERVER_ADDRESS, pair  # coturn's relay address
        assert sum(p["decoded"] for p in pairs) > 0 and sum(p["sent"] for p in pairs) > 0, pairs
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
        await browser.close()
