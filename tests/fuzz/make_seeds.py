"""
Write the seeds of the fuzz targets that are not RTMP captures
(capture_rtmp.py makes those), from real traffic:

  websocket   the SDK's frames (shared/docs/sdk-frames-sample.jsonl) and
              publishStream/playStream frames carrying the offers below;
  sdp         Chromium's offers (headless, fake devices) and aiortc's;
  rtp         RTP packets of aiortc's H.264, VP8 and Opus encoders, and
              the RTCP (SR, PLI, FIR, NACK) aiortc serializes;
  amf3        the AMF0 commands ffmpeg sent (corpus/amf0), in AMF3;
  properties  conf/flashphoner.properties.

    .venv/bin/python -m tests.fuzz.make_seeds   (after capture_rtmp)
"""

from __future__ import annotations

import asyncio
import fractions
import hashlib
import json
import shutil
import struct
import sys
from pathlib import Path

from tests.fuzz.runner import CORPUS, ROOT
from tests.fuzz.target_rtp import PACKET, RTCP, RTP, SUBSCRIBER_SSRC
from wcs.media.negotiate import stripCandidates
from wcs.rtmp import amf0

SDK_FRAMES = Path("/work/shared/docs/sdk-frames-sample.jsonl")
CHROMIUM_FLAGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def write(target: str, name: str, data: bytes) -> None:
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)
    print(f"{directory / name}: {len(data)} bytes")


def digest(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()[:12]


async def chromiumOffers() -> dict[str, str]:
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    script = """async (kinds) => {
        const pc = new RTCPeerConnection();
        // about:blank has no getUserMedia: transceivers make the same m-lines.
        const direction = kinds === "publish" ? "sendonly" : "recvonly";
        pc.addTransceiver("audio", {direction});
        pc.addTransceiver("video", {direction});
        const offer = await pc.createOffer();
        pc.close();
        return offer.sdp;
    }"""
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = await browser.new_page()
        offers = {f"chromium-{kind}": await page.evaluate(script, kind)
                  for kind in ("publish", "play")}
        await browser.close()
    return offers


async def aiortcOffers() -> dict[str, str]:
    from aiortc import RTCConfiguration, RTCPeerConnection
    from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

    offers = {}
    for kind in ("publish", "play"):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        if kind == "publish":
            pc.addTrack(AudioStreamTrack())
            pc.addTrack(VideoStreamTrack())
        else:
            pc.addTransceiver("audio", direction="recvonly")
            pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        offers[f"aiortc-{kind}"] = stripCandidates(pc.localDescription.sdp)
        await pc.close()
    return offers


def rtpPackets() -> dict[str, bytes]:
    """Per codec, a few packets as an aiortc publisher sends them, in target_rtp's format."""
    import av
    from aiortc.codecs import get_encoder
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters
    from aiortc.rtp import (
        RTCP_PSFB_FIR, RTCP_PSFB_PLI, RTCP_RTPFB_NACK, RtcpPsfbPacket, RtcpRtpfbPacket,
        RtcpSenderInfo, RtcpSrPacket, RtpPacket,
    )

    from tests.fuzz.target_rtp import PAYLOAD_TYPES

    publisherSsrc = 0x5EED0001
    feedback = [
        bytes(RtcpSrPacket(ssrc=publisherSsrc, sender_info=RtcpSenderInfo(
            ntp_timestamp=0xE9A1B2C3D4E5F607, rtp_timestamp=90000, packet_count=3,
            octet_count=3000))),
        bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=SUBSCRIBER_SSRC)),
        bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_FIR, ssrc=1, media_ssrc=0,
                             fci=struct.pack("!II", SUBSCRIBER_SSRC, 1 << 24))),
    ]
    nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=SUBSCRIBER_SSRC)
    nack.lost = [0, 1, 2, 5]
    feedback.append(bytes(nack))

    seeds = {}
    for codec, (kind, payloadType) in PAYLOAD_TYPES.items():
        if kind == "video":
            params = RTCRtpCodecParameters(mimeType=f"video/{codec}", clockRate=90000,
                                           payloadType=payloadType,
                                           parameters={"packetization-mode": "1"})
            frames = []
            for n in range(3):
                frame = av.VideoFrame(width=64, height=48, format="yuv420p")
                for plane in frame.planes:
                    plane.update(bytes([n * 40 + 16]) * plane.buffer_size)
                frame.pts, frame.time_base = n * 3000, fractions.Fraction(1, 90000)
                frames.append(frame)
        else:
            params = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2,
                                           payloadType=payloadType)
            frames = []
            for n in range(3):
                frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
                frame.planes[0].update(bytes(frame.planes[0].buffer_size))
                frame.pts, frame.sample_rate = n * 960, 48000
                frame.time_base = fractions.Fraction(1, 48000)
                frames.append(frame)
        encoder = get_encoder(params)
        packets, seq = [], 1000
        for n, frame in enumerate(frames):
            payloads, timestamp = encoder.encode(frame, force_keyframe=n == 0)
            for i, payload in enumerate(payloads):
                packet = RtpPacket(payload_type=payloadType, sequence_number=seq,
                                   timestamp=timestamp, ssrc=publisherSsrc,
                                   marker=int(i == len(payloads) - 1))
                packet.payload = payload
                packets.append(bytes(packet.serialize()))
                seq += 1
        # Keep the seed small: a keyframe's first packets, a lost one, feedback.
        chosen = packets[:4] + packets[5:8]
        seed = b"".join(PACKET.pack(RTP, len(p)) + p[:1200] for p in chosen)
        seed += b"".join(PACKET.pack(RTCP, len(p)) + p for p in feedback)
        seeds[f"aiortc-{codec}"] = seed
    return seeds


def amf3Seeds() -> dict[str, bytes]:
    from wcs.rtmp import amf3

    seeds = {}
    for path in sorted((CORPUS / "amf0").glob("ffmpeg-*")):
        values = amf0.decode(path.read_bytes())
        encoded = b"".join(amf3.encode(v) for v in values)
        seeds[f"ffmpeg-{digest(encoded)}"] = encoded
    return seeds


def _masked(payload: bytes, key: bytes = b"\x11\x22\x33\x44") -> bytes:
    size = len(payload)
    length = bytes((0x80 | size,)) if size < 126 else (
        b"\xfe" + struct.pack("!H", size) if size < 1 << 16 else b"\xff" + struct.pack("!Q", size))
    return b"\x81" + length + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def _twccPacket(seq: int, twoByte: bool = False) -> bytes:
    header = b"\x90\x60" + struct.pack("!HII", seq, seq * 3000, 0x1234)
    if twoByte:
        extension = b"\x10\x00\x00\x02" + b"\x01\x01\x00" + b"\x03\x02" + struct.pack("!H", seq) + b"\x00"
    else:
        extension = b"\xbe\xde\x00\x02" + b"\x10\xaa" + b"\x31" + struct.pack("!H", seq) + b"\x00\x00\x00"
    return header + extension + b"payload"


def derivedSeeds() -> None:
    """Seeds of the targets whose input is made of the others' (no browser needed)."""
    frames = sorted((CORPUS / "websocket").iterdir())[:4]
    for path in frames:
        frame = path.read_bytes()[:70000]
        write("wsframes", f"frame-{path.name}", b"\xff\xf0" + _masked(frame) + _masked(b"{}"))
    write("wsframes", "two-frames", b"\x10\x00" + _masked(b'{"message":"ping"}') * 2)
    stream = b"".join(bytes((20,)) + struct.pack("!H", len(p)) + p for p in (
        *(_twccPacket(s) for s in (1, 2, 3, 5, 4, 9, 65535, 0, 1)), _twccPacket(7, True)))
    write("twcc", "arrivals", stream)
    for path in sorted((CORPUS / "sdp").iterdir()):
        write("rtx", f"offer-{path.name}", path.read_bytes())
    write("rtx", "packet", b"\0" + b"\x80\x61" + struct.pack("!HII", 7, 9000, 0x5678)
          + struct.pack("!H", 1234) + b"payload")
    write("rtx", "padding", b"\0" + b"\xa0\x61" + struct.pack("!HII", 8, 9000, 0x5678)
          + bytes(20) + b"\x15")
    for path in sorted((CORPUS / "amf0").iterdir()):
        write("rtmp_arguments", path.name, path.read_bytes())
    write("rtmp_arguments", "connect-token", amf0.encodeAll(
        "connect", 1.0, {"app": "live?token=abc.def.ghi&record=true", "tcUrl": "rtmp://h/live"},
        {"room": "demo", "login": "alice", "token": "t"}))
    write("rtmp_arguments", "connect-flash", amf0.encodeAll(
        "connect", 1.0, {"app": "room"}, {"appKey": "flashRoomApp", "login": "bob", "token": "t"}))
    write("rtmp_arguments", "publish-token", amf0.encodeAll(
        "publish", 5.0, None, "alice?token=abc&record=true", "live"))
    answers = {
        "length": b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n{\"login\":\"alice\"}",
        "chunked": b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"5;x=1\r\n{\"rea\r\nc\r\nson\":\"no\"}  \r\n0\r\n\r\n",
        "close": b"HTTP/1.0 500 Oops\r\nConnection: close\r\n\r\nbroken",
        "no-content": b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
    }
    for name, answer in answers.items():
        write("http", name, b"\x07" + answer)
    lines = [
        {"op": "join", "from": "a", "inc": "1", "id": "a/1", "session": "s2", "room": "here",
         "login": "zed", "record": True, "appKey": "roomApp",
         "claims": {"login": "zed", "room": "*", "grants": ["join"], "expires": 1}},
        {"op": "chat", "from": "a", "inc": "1", "session": "s1", "room": "here", "to": "zed",
         "text": "hi"},
        {"op": "announce", "from": "a", "inc": "1", "session": "s1", "room": "here",
         "stream": "here-eve"},
        {"op": "stream", "from": "a", "inc": "1", "session": "s1", "name": "publishStream",
         "args": [{"mediaSessionId": "m1", "name": "here-eve", "sdp": "v=0",
                   "custom": {"name": "here"}}]},
        {"op": "withdraw", "from": "a", "inc": "1", "session": "s1", "room": "here",
         "stream": "here-eve", "failed": False},
        {"op": "joined", "from": "a", "inc": "1", "id": "b/0", "session": "x", "room": "there",
         "state": ["carol", {"login": "dave", "name": "there-dave"}]},
        {"op": "deliver", "from": "a", "inc": "1", "to": ["x"], "name": "OnDataEvent",
         "args": [{"payload": {"roomName": "there", "name": "JOINED", "info": "erin"}}]},
        {"op": "removed", "from": "a", "inc": "1", "session": "x", "room": "there",
         "info": "kicked"},
        {"op": "close", "from": "a", "inc": "1", "session": "x", "reason": "bye"},
        {"op": "leave", "from": "a", "inc": "1", "session": "s1", "room": "here"},
        {"op": "disconnect", "from": "a", "inc": "2", "session": "s2"},
        # The resync (wcs.cluster.resync): a's listing of its members here, a's
        # fresh state of its room "there".
        {"op": "members", "from": "a", "inc": "2", "ask": True, "sessions": ["s3"],
         "joining": [["s4", "here"]], "rooms": {"here": [
             {"session": "s5", "login": "fay", "streams": ["here-fay"], "appKey": "roomApp",
              "claims": None}]}},
        {"op": "state", "from": "a", "inc": "2", "room": "there",
         "state": ["carol", {"login": "erin", "name": "there-erin"}]},
    ]
    envelopes = []
    for line in lines:
        sender = {"from": line.pop("from"), "inc": line.pop("inc")}
        envelopes.append(json.dumps({**sender, "m": [line]}).encode())
    write("cluster", "relay", b"\n".join(envelopes))


async def main() -> None:
    offers = {**await chromiumOffers(), **await aiortcOffers()}
    for name, offer in offers.items():
        write("sdp", name, offer.encode())
    for line in SDK_FRAMES.read_text().splitlines():
        record = json.loads(line)
        if record["dir"] == "c2s":
            frame = json.dumps(record["frame"]).encode()
            write("websocket", f"sdk-{digest(frame)}", frame)
    for name, offer in offers.items():
        message = "publishStream" if name.endswith("publish") else "playStream"
        frame = json.dumps({"message": message, "data": [{
            "mediaSessionId": "7d0c4f2e", "name": "room-alice", "published": True,
            "hasVideo": True, "hasAudio": True, "sdp": offer, "mediaProvider": "WebRTC",
            "custom": {"name": "room"}, "constraints": {"audio": True, "video": True}}]})
        write("websocket", f"{message}-{name}", frame.encode())
    for name, data in rtpPackets().items():
        write("rtp", name, data)
    for name, data in amf3Seeds().items():
        write("amf3", name, data)
        write("amf_reencode", f"amf3-{name}", b"\x01" + data)
    write("properties", "flashphoner.properties",
          (ROOT / "conf" / "flashphoner.properties").read_bytes())


if __name__ == "__main__":
    if "--derived" in sys.argv:
        derivedSeeds()
    else:
        asyncio.run(main())
        derivedSeeds()
