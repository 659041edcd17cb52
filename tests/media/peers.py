"""
Real aiortc peers for the media engine's tests: a publisher sending
generated video and audio, players that decode what they receive.

Offers are stripped of their candidates, as the browser SDK sends them.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fractions
import functools
import math
import os
from dataclasses import dataclass, field

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, VideoStreamTrack
from av import AudioFrame, VideoFrame
from zope.interface import implementer

from wcs.config import Settings
from wcs.interfaces import IMediaSink, IStreamListener
from wcs.media.engine import WebRTCEngine
from wcs.media.negotiate import stripCandidates

WAIT = 10.0  # seconds: the bound of every wait that is not tighter


def asyncTest(timeout: float = 60.0):
    """Run a coroutine test in a fresh event loop, bounded in time."""

    def decorate(function):
        @functools.wraps(function)
        def run(*args, **kwargs):
            async def bounded():
                await asyncio.wait_for(function(*args, **kwargs), timeout)
            asyncio.run(bounded())
        return run
    return decorate


@dataclass
class Request:
    """What wcs.protocol.StreamRequest offers the engine."""

    name: str
    sdp: str
    mediaSessionId: str = field(default_factory=lambda: os.urandom(8).hex())
    hasAudio: bool = True
    hasVideo: bool = True
    record: bool = False
    constraints: dict = field(default_factory=dict)


@implementer(IStreamListener)
class Listener:
    def __init__(self):
        self.started = asyncio.Event()
        self.failed = asyncio.Event()
        self.events: list[tuple[str, str | None]] = []

    def mediaStarted(self):
        self.events.append(("started", None))
        self.started.set()

    def mediaFailed(self, info):
        self.events.append(("failed", info))
        self.failed.set()

    @property
    def failure(self) -> str | None:
        return next((info for kind, info in self.events if kind == "failed"), None)


@implementer(IMediaSink)
class FrameSink:
    def __init__(self):
        self.frames = []
        self.ended = asyncio.Event()
        self.gotKeyframe = asyncio.Event()

    def writeFrame(self, frame):
        self.frames.append(frame)
        if frame.kind == "video" and frame.keyframe:
            self.gotKeyframe.set()

    def sourceEnded(self):
        self.ended.set()


def makeEngine(**settings) -> WebRTCEngine:
    values = {"ice_public_ip": "127.0.0.1", "media_port_from": 0, "media_port_to": 0}
    values.update(settings)
    return WebRTCEngine(Settings(values))


class PatternVideo(VideoStreamTrack):
    """Frames whose brightness changes every frame, with a moving bar."""

    def __init__(self, width=320, height=240):
        super().__init__()
        self.width, self.height = width, height
        self.count = 0

    async def recv(self):
        pts, timeBase = await self.next_timestamp()
        frame = VideoFrame(width=self.width, height=self.height, format="yuv420p")
        luma = frame.planes[0]
        stride = luma.line_size
        level = 40 + (self.count * 7) % 180
        bar = (self.count * 8) % self.width
        row = bytes([level] * bar + [235] * min(16, self.width - bar)
                    + [level] * max(0, self.width - bar - 16)) + bytes(stride - self.width)
        luma.update(row * self.height)
        for plane in frame.planes[1:]:
            plane.update(bytes([128]) * plane.buffer_size)
        frame.pts, frame.time_base = pts, timeBase
        self.count += 1
        return frame


class ToneAudio(MediaStreamTrack):
    """A 440 Hz tone, 20 ms frames of 48 kHz mono."""

    kind = "audio"
    RATE = 48000
    SAMPLES = 960

    def __init__(self):
        super().__init__()
        self.pts = 0
        self.start = None

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self.start is None:
            self.start = loop.time()
        else:
            self.pts += self.SAMPLES
            await asyncio.sleep(max(0, self.start + self.pts / self.RATE - loop.time()))
        samples = array.array("h", (int(8000 * math.sin(2 * math.pi * 440 * (self.pts + i) / self.RATE))
                                    for i in range(self.SAMPLES)))
        frame = AudioFrame(format="s16", layout="mono", samples=self.SAMPLES)
        frame.planes[0].update(samples.tobytes())
        frame.pts, frame.sample_rate = self.pts, self.RATE
        frame.time_base = fractions.Fraction(1, self.RATE)
        return frame


def _prefer(transceiver, mimeType: str | None, rtx: bool = False):
    """Offer only C{mimeType}'s codecs, and with C{rtx} their RTX (as browsers do)."""
    if mimeType is None:
        return
    wanted = {mimeType.lower(), f"{transceiver.kind}/rtx"} if rtx else {mimeType.lower()}
    codecs = [c for c in RTCRtpReceiver.getCapabilities(transceiver.kind).codecs
              if c.mimeType.lower() in wanted]
    transceiver.setCodecPreferences(codecs)


def newPeer() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def offerOf(pc: RTCPeerConnection) -> str:
    await pc.setLocalDescription(await pc.createOffer())
    return stripCandidates(pc.localDescription.sdp)


async def accept(pc: RTCPeerConnection, session) -> str:
    answer = await asyncio.wait_for(
        session.answer.asFuture(asyncio.get_running_loop()), WAIT)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return answer


@contextlib.asynccontextmanager
async def forwarding(video: str = "video/H264", width: int = 640, height: int = 480,
                     **settings):
    """
    An engine forwarding a publisher of video alone to one player, whose
    first frame is decoded: yields (session, publisher, player); all are
    closed on the way out.
    """
    engine = makeEngine(**settings)
    publisher = Publisher(video=video, audio=None, width=width, height=height)
    player = Player(video=video, audio=None)
    try:
        session = await publisher.publish(engine)
        await player.play(engine, session.source)
        await player.waitFrames("video", 1)
        yield session, publisher, player
    finally:
        await player.close()
        await publisher.close()
        await engine.close()


class Publisher:
    """An aiortc publisher of generated video and/or audio."""

    def __init__(self, video: str | None = "video/H264", audio: str | None = "audio/opus",
                 width=320, height=240, rtx: bool = False):
        self.pc = newPeer()
        self.videoTrack = PatternVideo(width, height) if video else None
        self.audioTrack = ToneAudio() if audio else None
        if video:
            _prefer(self.pc.addTransceiver(self.videoTrack, direction="sendonly"), video, rtx)
        if audio:
            _prefer(self.pc.addTransceiver(self.audioTrack, direction="sendonly"), audio)

    async def publish(self, engine, name="stream", listener=None):
        self.listener = listener or Listener()
        self.session = engine.publish(Request(name, await offerOf(self.pc)), self.listener)
        await accept(self.pc, self.session)
        return self.session

    async def close(self):
        await self.pc.close()


class Player:
    """An aiortc player: receive-only offer, frames decoded by aiortc."""

    def __init__(self, video: str | None = "video/H264", audio: str | None = "audio/opus",
                 videoCodecs: str | None = None, rtx: bool = False):
        self.pc = newPeer()
        self.frames = {"video": [], "audio": []}
        self.arrivals = {"video": [], "audio": []}  # loop time of each frame
        self.arrived = {"video": asyncio.Event(), "audio": asyncio.Event()}
        self.tasks = []
        if video:
            _prefer(self.pc.addTransceiver("video", direction="recvonly"), video, rtx)
        if audio:
            _prefer(self.pc.addTransceiver("audio", direction="recvonly"), audio)

        @self.pc.on("track")
        def onTrack(track):
            self.tasks.append(asyncio.ensure_future(self._consume(track)))

    async def _consume(self, track):
        try:
            while True:
                frame = await track.recv()
                self.frames[track.kind].append(frame)
                self.arrivals[track.kind].append(asyncio.get_running_loop().time())
                self.arrived[track.kind].set()
        except MediaStreamError:
            pass

    async def play(self, engine, source, listener=None, name="stream"):
        self.listener = listener or Listener()
        self.session = engine.play(Request(name, await offerOf(self.pc)), source, self.listener)
        await accept(self.pc, self.session)
        return self.session

    async def waitFrames(self, kind: str, count: int, timeout: float = WAIT):
        async def enough():
            while len(self.frames[kind]) < count:
                self.arrived[kind].clear()
                await self.arrived[kind].wait()
        await asyncio.wait_for(enough(), timeout)
        return self.frames[kind]

    async def close(self):
        await self.pc.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def lumaSignature(frame: VideoFrame) -> bytes:
    """A coarse fingerprint of a decoded picture: every 97th luma sample."""
    plane = frame.reformat(format="yuv420p").planes[0]
    return bytes(plane)[::97]


class Impairment:
    """
    Test-only loss on an aiortc peer's UDP, in the client: RTP datagrams it
    sends (C{sendLoss}) or receives (C{receiveLoss}) are dropped at random,
    with a fixed seed; STUN, DTLS and RTCP pass. What it sends may also be
    delayed (C{sendDelay} seconds), for a round trip longer than loopback's.
    RTP received may be held and handed on in bursts every C{receiveBurst}
    seconds (a link that aggregates, as Wi-Fi does): several frames' gaps
    then show at once, so aiortc NACKs again before a repair can come.
    The SRTP header is in the
    clear, so what was sent is counted by sequence number: a number sent
    again is a retransmission.
    """

    def __init__(self, pc: RTCPeerConnection, sendLoss: float = 0.0,
                 receiveLoss: float = 0.0, seed: int = 1, sendDelay: float = 0.0,
                 receiveBurst: float = 0.0):
        import random
        self.random = random.Random(seed)
        self.sendLoss, self.receiveLoss = sendLoss, receiveLoss
        self.sentSeqs: set[tuple[bytes, int]] = set()
        self.mediaBytes = self.retransmittedBytes = 0
        self.dropped = 0
        # aiortc's private path to its aioice connection (test client only).
        ice = pc.getTransceivers()[0].sender.transport.transport._connection
        send, receive = ice.sendto, ice.data_received

        async def sendto(data: bytes, component: int) -> None:
            if _isRtp(data):
                key = (data[8:12], data[2] << 8 | data[3])
                if key in self.sentSeqs:
                    self.retransmittedBytes += len(data)
                else:
                    self.sentSeqs.add(key)
                    self.mediaBytes += len(data)
                if self.random.random() < self.sendLoss:
                    self.dropped += 1
                    return
            if sendDelay:
                loop = asyncio.get_running_loop()
                loop.call_later(sendDelay, lambda: asyncio.ensure_future(send(data, component)))
            else:
                await send(data, component)

        burst: list[tuple[bytes, int]] = []

        def release() -> None:
            held = burst[:]
            burst.clear()
            for item in held:
                receive(*item)

        def dataReceived(data: bytes, component: int) -> None:
            if _isRtp(data) and self.random.random() < self.receiveLoss:
                self.dropped += 1
                return
            if receiveBurst and _isRtp(data):
                if not burst:
                    asyncio.get_running_loop().call_later(receiveBurst, release)
                burst.append((data, component))
                return
            receive(data, component)

        ice.sendto, ice.data_received = sendto, dataReceived


def _isRtp(data: bytes) -> bool:
    # RFC 5764: 128..191 is RTP or RTCP; RFC 5761: RTCP packet types 192..223.
    return len(data) >= 12 and 128 <= data[0] <= 191 and not 192 <= data[1] <= 223
