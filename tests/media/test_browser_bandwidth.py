"""
Bandwidth with a real browser: headless Chromium publishes its fake camera
to the engine; we read its own bandwidth estimate (getStats'
availableOutgoingBitrate) and what it sends. Skipped where Chromium is
missing.

- With transport-cc negotiated, the estimate rises from Chromium's start
  (300 kbit/s) within seconds: its probes are answered by our feedback.
- With a cap (room_max_bitrate), the estimate and what it sends stay at it.
"""

import asyncio

import pytest

from tests.media.peers import WAIT, asyncTest, makeEngine
from tests.media.test_browser import CHROMIUM, Page, startChromium, stopChromium
from wcs.media.twcc import URI as TWCC_URI

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium")

SECONDS = 8

PAGE = """<!doctype html><html><body><script>
async function post(path, body) {
  return await (await fetch(path, {method: "POST", body: body})).text();
}
async function main() {
  const media = await navigator.mediaDevices.getUserMedia(
      {video: {width: 640, height: 480}, audio: false});
  const publisher = new RTCPeerConnection({bundlePolicy: "max-compat"});
  for (const track of media.getTracks())
    publisher.addTransceiver(track, {direction: "sendonly"});
  await publisher.setLocalDescription(await publisher.createOffer());
  const answer = await post("/publish", publisher.localDescription.sdp);
  await publisher.setRemoteDescription({type: "answer", sdp: answer});
  await post("/published", "");
  const samples = [];
  for (let i = 0; i < SAMPLES; i++) {
    await new Promise(r => setTimeout(r, 500));
    let available = 0, sent = 0;
    (await publisher.getStats()).forEach(s => {
      if (s.type === "candidate-pair" && s.availableOutgoingBitrate)
        available = Math.max(available, s.availableOutgoingBitrate);
      if (s.type === "outbound-rtp" && s.kind === "video") sent = s.bytesSent;
    });
    samples.push({t: performance.now(), available: available, sent: sent});
  }
  await post("/result", JSON.stringify(samples));
}
main().catch(e => post("/result", JSON.stringify({error: String(e)})));
</script></body></html>""".replace("SAMPLES", str(SECONDS * 2))


class PublishPage(Page):
    async def route(self, method, path, body) -> bytes:
        if method == "GET":
            return PAGE.encode()
        return await super().route(method, path, body)


async def chromiumPublishes(**settings):
    engine = makeEngine(media_video_codecs="VP8", **settings)
    page = PublishPage(engine)
    server = await asyncio.start_server(page.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    browser, profile = await startChromium(f"http://127.0.0.1:{port}/")
    try:
        await asyncio.wait_for(page.published.wait(), 30)
        await asyncio.wait_for(page.publisher.started.wait(), WAIT)
        samples = await asyncio.wait_for(page.result, SECONDS + 30)
        assert "error" not in samples, samples
        return page, samples
    finally:
        await stopChromium(browser, profile)
        server.close()
        await engine.close()


def summary(samples):
    """Chromium's last estimate and what it sent in the second half, kbit/s."""
    half = samples[len(samples) // 2:]
    seconds = (half[-1]["t"] - half[0]["t"]) / 1000
    sent = (half[-1]["sent"] - half[0]["sent"]) * 8 / seconds / 1000
    return samples[-1]["available"] / 1000, max(s["available"] for s in samples) / 1000, sent


@asyncTest(timeout=150)
async def test_chromiumEstimateRisesWithTransportCc():
    """
    Chromium's estimate with our transport-wide feedback against the same
    run without transport-cc (then only our receiver reports' loss drive
    it, up from its start at 300 kbit/s by ~8% a second): its probes are
    answered, so it rises far faster.
    """
    page, samples = await chromiumPublishes()
    feedback = page.session.bandwidth.feedback
    last, peak, sent = summary(samples)
    print(f"transport-cc: estimate {last:.0f} kbit/s (peak {peak:.0f}), sent {sent:.0f} kbit/s, "
          f"feedback packets {sum(f.feedbackSent for f in feedback)}")
    assert TWCC_URI in page.offers["/publish"]
    assert len(feedback) == 1 and feedback[0].feedbackSent >= SECONDS * 10
    assert all(s.extensions for s in page.session.sections if s.active)

    # The control's loss alone: no transport-cc, and none of the REMB that
    # REMB-only publishers get without a cap (media_remb_uncapped).
    control, samples = await chromiumPublishes(media_transport_cc=False, media_remb_uncapped=0)
    _, controlPeak, controlSent = summary(samples)
    print(f"no transport-cc: estimate peak {controlPeak:.0f} kbit/s, sent {controlSent:.0f}")
    assert not control.session.bandwidth.feedback
    assert not any(s.extensions for s in control.session.sections)
    assert peak >= 700 and peak >= 1.3 * controlPeak, (peak, controlPeak)


@asyncTest(timeout=120)
async def test_chromiumFollowsCap():
    """room_max_bitrate 250: b=AS and REMB hold Chromium's estimate and its video at 250."""
    page, samples = await chromiumPublishes(room_max_bitrate=250)
    last, peak, sent = summary(samples)
    print(f"cap 250: estimate {last:.0f} kbit/s (peak {peak:.0f}), sent {sent:.0f} kbit/s, "
          f"REMB sent {page.session.bandwidth.rembSent}")
    assert page.session.bandwidth.rembSent >= SECONDS - 2
    assert 0 < last <= 250 * 1.05 and sent <= 250 * 1.3, (last, sent)
