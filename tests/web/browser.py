"""
Headless Chromium (Debian's package) driven by Playwright, with fake camera,
microphone and screen, for end-to-end tests of the pages the server serves.
"""

from __future__ import annotations

import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

FLAGS = [
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--auto-select-desktop-capture-source=Entire screen",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]

WAIT_MS = 20000

# True once the <video> in `selector` shows decoded frames that keep coming.
VIDEO_ADVANCES = """
async (selector) => {
  const video = document.querySelector(selector);
  if (!video || video.videoWidth === 0) return false;
  const before = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality().totalVideoFrames : 0;
  const t0 = video.currentTime;
  await new Promise(r => setTimeout(r, 700));
  const after = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality().totalVideoFrames : 0;
  return video.videoWidth > 0 && video.currentTime > t0 && after > before;
}
"""


def requireChromium():
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    return CHROMIUM


async def waitForVideo(page, selector: str, timeout_ms: int = WAIT_MS) -> None:
    await page.wait_for_function(
        f"(async () => ({VIDEO_ADVANCES})({selector!r}))()", timeout=timeout_ms, polling=500)


async def text(page, selector: str) -> str:
    return (await page.text_content(selector)) or ""
