"""The one line bench/network.py prints of what a server told a Chromium player."""

from tests.netlab.chromium import _statsDelta, sdpSummary

JANUS = "\r\n".join([
    "v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=rtpmap:111 opus/48000/2",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "m=video 33147 UDP/TLS/RTP/SAVPF 107 108",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=rtpmap:107 H264/90000", "a=rtcp-fb:107 nack", "a=rtcp-fb:107 transport-cc",
    "a=fmtp:107 packetization-mode=1;profile-level-id=42001f",
    "a=rtpmap:108 rtx/90000", "a=fmtp:108 apt=107", ""])


def test_summaryOfTheVideoSection():
    assert sdpSummary(JANUS) == (
        "H264/90000 packetization-mode=1;profile-level-id=42001f; rtcp-fb nack, transport-cc; "
        "rtx 108 apt=107; extensions abs-send-time, mid")


def test_noExtensionsNoRtx():
    plain = "\r\n".join(line for line in JANUS.split("\r\n")
                        if not line.startswith(("a=extmap", "a=fmtp:108", "a=rtpmap:108")))
    assert sdpSummary(plain).endswith("; rtx -; extensions -")
    assert sdpSummary(None) is None


def test_perFrameFiguresOfTheWindow():
    before = [{"framesDecoded": 10, "jitterBufferEmittedCount": 10, "jitterBufferDelay": 0.5,
               "jitterBufferTargetDelay": 0.3, "totalDecodeTime": 0.01}]
    after = [{"framesDecoded": 110, "jitterBufferEmittedCount": 110, "jitterBufferDelay": 6.5,
              "jitterBufferTargetDelay": 4.3, "totalDecodeTime": 0.21,
              "sdpFmtpLine": "packetization-mode=1", "remoteSdp": JANUS}]
    got = _statsDelta(before, after, 4.0)
    assert (got["jitterBufferMs"], got["targetDelayMs"], got["decodeMs"]) == (60, 40, 2.0)
    assert got["sdpFmtpLine"] == "packetization-mode=1" and got["remoteSdp"] == JANUS
