// The measuring half of the network lab's Chromium player pages
// (tests/netlab/chromium.py): loaded first, before any signalling code.
// Every <video> in #display is watched: for each frame the compositor
// takes (requestVideoFrameCallback) the stamp of tests/netlab/stamp.py is
// read back from a canvas. The harness pulls window.netlab.frames and
// window.netlab.stats() with Playwright. The page sets netlab.state
// ("playing", "failed" with netlab.error).
"use strict";
// Every RTCPeerConnection the page makes, for getStats(). Not a subclass:
// the SDK's webrtc-adapter would take the page for one without WebRTC.
window.__pcs = [];
(() => {
  for (const name of ["createOffer", "createAnswer"]) {
    const original = RTCPeerConnection.prototype[name];
    RTCPeerConnection.prototype[name] = function (...args) {
      if (!window.__pcs.includes(this)) window.__pcs.push(this);
      return original.apply(this, args);
    };
  }
})();
// Per frame: [presentationTime, counter, stamp ms, receiveTime,
// presentedFrames], times in performance.now() ms; counter and stamp -1
// when the stamp is damaged. A callback may cover several presented frames.
window.netlab = {state: "loading", error: null, frames: []};
netlab.fail = (text) => {
  netlab.state = "failed";
  netlab.error = text;
};
window.addEventListener("DOMContentLoaded", () => {
  const BLOCK = 16, COLUMNS = 16, ROWS = 3;
  const canvas = document.getElementById("stamp");
  const context = canvas.getContext("2d", {willReadFrequently: true});
  const display = document.getElementById("display");

  // The same check as tests/netlab/stamp.py.
  function check(counter, ms) {
    return ((counter + (counter >> 8) + ms + (ms >> 8) + (ms >> 16)) & 0xFF) ^ 0xA5;
  }

  // [counter, ms] from the top left of the video's picture, or null.
  function readStamp(video) {
    if (video.videoWidth < BLOCK * COLUMNS || video.videoHeight < BLOCK * ROWS) return null;
    context.drawImage(video, 0, 0, canvas.width, canvas.height, 0, 0, canvas.width, canvas.height);
    const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
    const bits = [];
    for (let row = 0; row < ROWS; row++) {
      for (let column = 0; column < COLUMNS; column++) {
        let sum = 0;  // luma of the block's centre 8x8, as stamp.read
        for (let y = row * BLOCK + 4; y < row * BLOCK + 12; y++) {
          for (let x = column * BLOCK + 4; x < column * BLOCK + 12; x++) {
            const i = (y * canvas.width + x) * 4;
            sum += 0.299 * pixels[i] + 0.587 * pixels[i + 1] + 0.114 * pixels[i + 2];
          }
        }
        bits.push(sum / 64 > 128 ? 1 : 0);
      }
    }
    const field = (from, count) => bits.slice(from, from + count).reduce((v, b) => v * 2 + b, 0);
    const counter = field(0, 16), ms = field(16, 24), sum = field(40, 8);
    return sum === check(counter, ms) ? [counter, ms] : null;
  }

  function watch(video) {
    if (video.__netlab) return;
    video.__netlab = true;
    const onFrame = (now, meta) => {
      const stamp = readStamp(video);
      netlab.frames.push([meta.presentationTime, stamp ? stamp[0] : -1, stamp ? stamp[1] : -1,
                          meta.receiveTime === undefined ? -1 : meta.receiveTime,
                          meta.presentedFrames]);
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  }

  // The signalling code makes the <video> inside the display; hook each one.
  setInterval(() => display.querySelectorAll("video").forEach(watch), 100);
});

// The video inbound-rtp counters of every connection, and the local
// address of the selected candidate pair (the player's link).
netlab.stats = async () => {
  const out = [];
  for (const pc of window.__pcs) {
    const stats = await pc.getStats();
    const byId = new Map();
    stats.forEach((s) => byId.set(s.id, s));
    let inbound = null, local = null;
    stats.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") inbound = s;
      if (s.type === "transport" && s.selectedCandidatePairId) {
        const pair = byId.get(s.selectedCandidatePairId);
        const candidate = pair && byId.get(pair.localCandidateId);
        local = candidate && (candidate.address || candidate.ip);
      }
    });
    // The codec the stream was negotiated with (H.264: profile-level-id,
    // packetization-mode) and both descriptions, to compare servers.
    const codec = inbound && byId.get(inbound.codecId);
    if (inbound) out.push({localAddress: local, ...inbound,
                           mimeType: codec && codec.mimeType,
                           sdpFmtpLine: codec && codec.sdpFmtpLine,
                           remoteSdp: pc.remoteDescription && pc.remoteDescription.sdp,
                           localSdp: pc.localDescription && pc.localDescription.sdp});
  }
  return out;
};
