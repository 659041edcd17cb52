"""
The engine against a real browser: headless Chromium publishes its fake
camera and microphone the way the SDK does (bundlePolicy max-compat, offer
sent without candidates), an aiortc player decodes it, and Chromium plays
the same stream back and decodes it. Skipped where Chromium is missing.
"""

import asyncio
import json
import os
import shutil
import signal
import tempfile

import pytest

from tests.media.peers import WAIT, Listener, Player, Request, asyncTest, lumaSignature, makeEngine
from wcs.media.negotiate import stripCandidates

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium")

PAGE = """<!doctype html><html><body><script>
async function post(path, body) {
  return await (await fetch(path, {method: "POST", body: body})).text();
}
async function negotiate(pc, path) {
  await pc.setLocalDescription(await pc.createOffer());
  // Like the SDK: the offer goes right away, candidates or not.
  const answer = await post(path, pc.localDescription.sdp);
  await pc.setRemoteDescription({type: "answer", sdp: answer});
}
async function main() {
  const media = await navigator.mediaDevices.getUserMedia(
      {video: {width: 320, height: 240}, audio: true});
  const publisher = new RTCPeerConnection({bundlePolicy: "max-compat"});
  for (const track of media.getTracks())
    publisher.addTransceiver(track, {direction: "sendonly"});
  await negotiate(publisher, "/publish");
  await post("/published", "");
  const player = new RTCPeerConnection({bundlePolicy: "max-compat"});
  player.addTransceiver("video", {direction: "recvonly"});
  player.addTransceiver("audio", {direction: "recvonly"});
  await negotiate(player, "/play");
  // ?frames=N: decode that many before reporting (20 by default).
  const frames = Number(new URLSearchParams(location.search).get("frames") || 20);
  for (let i = 0; i < frames * 5; i++) {
    await new Promise(r => setTimeout(r, 100));
    const seen = {video: 0, audio: 0};
    (await player.getStats()).forEach(s => {
      if (s.type === "inbound-rtp") seen[s.kind] = s.kind === "video"
          ? s.framesDecoded : s.packetsReceived;
      if (s.type === "inbound-rtp" && s.kind === "video")
        seen.player = {nackCount: s.nackCount, rtxSsrc: s.rtxSsrc,
                       retransmittedPacketsReceived: s.retransmittedPacketsReceived};
    });
    if (seen.video >= frames && seen.audio >= 20 || i === frames * 5 - 1) {
      (await publisher.getStats()).forEach(s => {
        if (s.type === "outbound-rtp" && s.kind === "video")
          seen.publisher = {nackCount: s.nackCount, rtxSsrc: s.rtxSsrc,
                            retransmittedPacketsSent: s.retransmittedPacketsSent};
      });
      await post("/result", JSON.stringify(seen));
      return;
    }
  }
}
main().catch(e => post("/result", JSON.stringify({error: String(e)})));
</script></body></html>"""


class Page:
    """A minimal HTTP server: the page, and the engine behind its POSTs."""

    def __init__(self, engine, onSession=None):
        self.engine = engine
        self.onSession = onSession  # called with each session as it is made
        self.publisher = Listener()
        self.player = Listener()
        self.session = None
        self.published = asyncio.Event()
        self.result = asyncio.get_running_loop().create_future()
        self.offers = {}

    async def handle(self, reader, writer):
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            method, path, _ = request.split(b"\r\n", 1)[0].decode().split(" ", 2)
            length = 0
            for line in request.decode().split("\r\n")[1:]:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            body = (await reader.readexactly(length)).decode() if length else ""
            reply = await self.route(method, path, body)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: "
                         + str(len(reply)).encode() + b"\r\nConnection: close\r\n\r\n" + reply)
            await writer.drain()
        finally:
            writer.close()

    async def route(self, method, path, body) -> bytes:
        loop = asyncio.get_running_loop()
        if path in ("/publish", "/play"):
            offer = self.offers[path] = body
            if path == "/publish":
                self.session = self.engine.publish(Request("chrome", stripCandidates(offer)),
                                                   self.publisher)
                session = self.session
            else:
                session = self.engine.play(Request("chrome", stripCandidates(offer)),
                                           self.session.source, self.player)
            if self.onSession is not None:
                self.onSession(session)
            return (await session.answer.asFuture(loop)).encode()
        if path == "/published":
            self.published.set()
        elif path == "/result" and not self.result.done():
            self.result.set_result(json.loads(body))
        elif method == "GET":
            return PAGE.encode()
        return b""


async def startChromium(url: str):
    """Headless Chromium with fake devices at C{url}: its process and profile directory."""
    # Chromium's helpers (zygote, renderers, crashpad) may still write to the
    # profile after the browser exits: a straggler's file must not fail the test.
    profile = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
    browser = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
        "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
        "--allow-loopback-in-peer-connection",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        f"--user-data-dir={profile.name}", url,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True)
    return browser, profile


async def stopChromium(browser, profile) -> None:
    """Kill the browser and every helper process it started (its session's group)."""
    try:
        os.killpg(browser.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    await browser.wait()
    profile.cleanup()


@pytest.mark.parametrize("codec", ["H264", "VP8"])
def test_chromiumPublishesAndPlays(codec):
    asyncTest(timeout=90)(_chromium)(codec)


async def _chromium(codec):
    engine = makeEngine(media_video_codecs=codec)
    page = Page(engine)
    server = await asyncio.start_server(page.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    browser, profile = await startChromium(f"http://127.0.0.1:{port}/")
    player = Player(video=f"video/{codec}", audio="audio/opus")
    try:
        await asyncio.wait_for(page.published.wait(), 30)
        await asyncio.wait_for(page.publisher.started.wait(), WAIT)
        assert "a=candidate" not in stripCandidates(page.offers["/publish"])
        assert page.session.source.tracks == {"video": codec, "audio": "opus"}
        learned = [c for t in page.session.transports.values() for c in t.ice.remote_candidates]
        assert learned and all(c.type == "prflx" for c in learned)

        # An aiortc player decodes Chromium's camera, forwarded.
        await player.play(engine, page.session.source, name="chrome")
        frames = await player.waitFrames("video", 20)
        assert len({lumaSignature(f) for f in frames}) > 3
        await player.waitFrames("audio", 10)

        # Chromium decodes what the engine forwards to it.
        result = await asyncio.wait_for(page.result, 30)
        assert "error" not in result, result
        assert result["video"] >= 20 and result["audio"] >= 20, result
        assert page.player.started.is_set() and not page.player.failed.is_set()
    finally:
        await stopChromium(browser, profile)
        await player.close()
        server.close()
        await engine.close()
