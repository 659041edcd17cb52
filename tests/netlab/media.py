"""
A room on the lab's network: one aiortc publisher (stamped moving picture)
and N decoding aiortc players, through the server's WebSocket room protocol,
each client on its own address so that the impairer shapes its link.

Measured per player over a window: decoded frames per second, freezes (no
new frame for 500 ms) per minute, glass-to-glass delay (the stamp), frames
whose stamp came out damaged, keyframes decoded; per leg the bytes offered
to the link (the impairer's counters): the publisher's uplink, each
player's downlink; and what the publisher sent, counted in the client
(L{SentCounter}): its media and its retransmissions apart.

The clients offer RTX as browsers do (C{RoomRun.rtx}); without it
retransmissions go on the media SSRC.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import time
import uuid
from dataclasses import dataclass, field

import av
import numpy as np
import pylibsrtp
from aiortc.codecs import h264, vpx
from aiortc.mediastreams import MediaStreamError, VideoStreamTrack

from tests.media import peers
from tests.netlab import stamp
from tests.netlab.cpu import CpuMeter, residentMB
from tests.netlab.lab import hostAddress, playerAddress, publisherAddress
from tests.netlab.numbers import Unwrap
from tests.ops.test_metrics import scrape, value
from tests.support.rooms import negotiate, status, streamRequest
from tests.support.wsclient import Client

FREEZE = 0.5  # s without a new frame
# A damaged picture passes the stamp's 8-bit check once in 256; a delay
# beyond this bound is one of those, counted unreadable.
MAX_DELAY_MS = 60_000
# A folder: each player's own view of a run goes there (player*.json, read by
# bench/freezetrace.py with the server's media_trace_file).
PLAYER_TRACE = "NETLAB_PLAYER_TRACE"
# The publisher's encoder target, both codecs; REMB moves it (Janus: the room's
# bitrate; wcs: a cap, else media_remb_uncapped).
BITRATE = 1_000_000
CODECS = {"h264": "video/H264", "vp8": "video/VP8"}


def nowMs() -> int:
    return int(time.monotonic() * 1000)


class StampedVideo(VideoStreamTrack):
    """
    Moving bars, a moving box and noise (so that the encoder has something
    to spend ~1 Mbit/s on), from a loop of precomputed planes; each frame
    stamped with its number and the time it was made.
    """

    def __init__(self, width: int = 640, height: int = 480, loop: int = 30, seed: int = 1):
        super().__init__()
        rng = np.random.default_rng(seed)
        xs = np.arange(width)
        self.planes = []
        for i in range(loop):
            luma = np.empty((height, width), dtype=np.int16)
            luma[:] = 40 + ((xs + i * 8) % width) * 180 // width
            bx = int((width - 96) * (0.5 + 0.5 * math.sin(2 * math.pi * i / loop)))
            by = int((height - 96) * (0.5 + 0.5 * math.cos(2 * math.pi * i / loop)))
            luma[by:by + 96, bx:bx + 96] = 16 + (i * 7) % 220
            luma += rng.integers(-8, 9, size=luma.shape, dtype=np.int16)
            chroma = np.full((height // 2, width), 128, dtype=np.uint8)
            self.planes.append(np.concatenate([np.clip(luma, 0, 255).astype(np.uint8), chroma]))
        self.height = height
        self.count = 0

    async def recv(self):
        pts, timeBase = await self.next_timestamp()
        planes = self.planes[self.count % len(self.planes)].copy()
        stamp.paint(planes[:self.height], self.count, nowMs())
        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts, frame.time_base = pts, timeBase
        self.count += 1
        return frame


@dataclass
class Decoded:
    at: float  # monotonic s
    counter: int | None
    delayMs: int | None
    keyframe: bool
    pts: int | None = None  # the RTP timestamp less the first one's


class MeasuringPlayer(peers.Player):
    """A video-only aiortc player that keeps what it measures, not the frames."""

    def __init__(self, video: str, rtx: bool = True):
        super().__init__(video=video, audio=None, rtx=rtx)
        # aiortc's VP8 decoder does not mark the pictures it makes as keyframes.
        self.countsKeyframes = video == CODECS["h264"]
        self.decoded: list[Decoded] = []
        self.first = asyncio.Event()
        # The player's own view for freeze analysis (bench/freezetrace.py),
        # only when asked: each RTP packet as it came, its NACKs and PLIs.
        self.wire: list[tuple] | None = [] if os.environ.get(PLAYER_TRACE) else None
        if self.wire is not None:
            self._watchWire()

    def _watchWire(self) -> None:
        # aiortc's receiver methods, wrapped per instance (test client only).
        receiver = self.pc.getTransceivers()[0].receiver
        wire = self.wire
        handle, nack, pli = (receiver._handle_rtp_packet, receiver._send_rtcp_nack,
                             receiver._send_rtcp_pli)

        async def handleRtp(packet, arrival_time_ms):
            wire.append((time.monotonic(), "rtp", packet.ssrc, packet.sequence_number,
                         packet.timestamp, packet.payload_type,
                         int.from_bytes(packet.payload[:2], "big") if packet.payload else -1))
            dtls = receiver.transport
            if not isinstance(dtls._rx_srtp, _WatchedUnprotect):
                dtls._rx_srtp = _WatchedUnprotect(dtls._rx_srtp, wire)
            await handle(packet, arrival_time_ms)

        async def sendNack(ssrc, lost):
            wire.append((time.monotonic(), "nack", ssrc, list(lost)))
            await nack(ssrc, lost)

        async def sendPli(ssrc):
            wire.append((time.monotonic(), "pli", ssrc))
            await pli(ssrc)
        receiver._handle_rtp_packet = handleRtp
        receiver._send_rtcp_nack = sendNack
        receiver._send_rtcp_pli = sendPli

    async def _consume(self, track):
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                at = time.monotonic()
                if frame.format.name != "yuv420p":
                    frame = frame.reformat(format="yuv420p")
                luma = np.frombuffer(frame.planes[0], dtype=np.uint8).reshape(
                    frame.height, frame.planes[0].line_size)
                read = stamp.read(luma)
                delay = read and stamp.delayMs(read[1], int(at * 1000))
                if delay is not None and delay >= MAX_DELAY_MS:
                    read = delay = None
                self.decoded.append(Decoded(at, read and read[0], delay, bool(frame.key_frame),
                                            frame.pts))
                self.first.set()

    def figures(self, start: float, end: float) -> dict:
        window, repeats = newPictures(self.decoded, start, end)
        times = [start] + [d.at for d in window] + [end]
        gaps = [b - a for a, b in zip(times, times[1:])]
        freezes = [g for g in gaps if g > FREEZE]
        delays = sorted(d.delayMs for d in window if d.delayMs is not None)
        seconds = end - start
        return {
            "fps": round(len(window) / seconds, 1),
            "freezesPerMin": round(len(freezes) * 60 / seconds, 1),
            "frozenS": round(sum(freezes), 1),
            "longestFreezeS": round(max(gaps), 2),
            "delayP50": percentile(delays, 0.5), "delayP95": percentile(delays, 0.95),
            "unreadable": sum(d.counter is None for d in window),
            "repeats": repeats,
            "keyframes": sum(d.keyframe for d in window) if self.countsKeyframes else None,
        }


class _WatchedUnprotect:
    """
    A player's SRTP session that notes each packet it refuses (aiortc
    drops them with a debug line only): C{(at, "srtp", SSRC, SEQ, why)}
    in the wire trace, the header read in the clear.
    """

    def __init__(self, session, wire: list):
        self.session = session
        self.wire = wire

    def unprotect(self, data: bytes) -> bytes:
        try:
            return self.session.unprotect(data)
        except pylibsrtp.Error as e:
            seq, ssrc = (int.from_bytes(data[2:4], "big"), int.from_bytes(data[8:12], "big")) \
                if len(data) >= 12 else (-1, -1)
            self.wire.append((time.monotonic(), "srtp", ssrc, seq, str(e)))
            raise

    def unprotect_rtcp(self, data: bytes) -> bytes:
        return self.session.unprotect_rtcp(data)


def slices(players, start: float, end: float, length: float) -> list[dict]:
    """Each player's figures (L{MeasuringPlayer.figures}) per C{length} s of [start, end)."""
    out, at = [], start
    while at < end - length / 2:  # a last sliver shorter than half a slice joins none
        until = min(at + length, end)
        out.append({"from": round(at - start),
                    "perPlayer": [MeasuringPlayer.figures(p, at, until) for p in players]})
        at = until
    return out


def newPictures(decoded: list[Decoded], start: float, end: float) -> tuple[list[Decoded], int]:
    """
    The frames decoded in [start, end) that show a picture not shown
    before, and how many repeated one. A server that sends a frame's
    packets again after it was decoded (a resend that crossed the
    original) can make aiortc decode the same picture twice: that is no
    new picture for the viewer, so it neither counts as a frame nor ends
    a freeze. A frame whose stamp does not read counts as new.
    """
    shown: set[int] = set()
    unwrap = Unwrap()  # the painted counter wraps every 36 min at 30 fps
    window, repeats = [], 0
    for d in decoded:
        counter = None if d.counter is None else unwrap(d.counter)
        new = counter is None or counter not in shown
        if counter is not None:
            shown.add(counter)
        if start <= d.at < end:
            if new:
                window.append(d)
            else:
                repeats += 1
    return window, repeats


def percentile(ordered: list, q: float):
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


@contextlib.contextmanager
def encoderBitrate(bits: int):
    """Both codecs' encoders start at C{bits}/s (aiortc's VP8 would start at half)."""
    saved = h264.DEFAULT_BITRATE, vpx.DEFAULT_BITRATE
    h264.DEFAULT_BITRATE = vpx.DEFAULT_BITRATE = bits
    try:
        yield
    finally:
        h264.DEFAULT_BITRATE, vpx.DEFAULT_BITRATE = saved


def clients(players: int, publishers: int = 1) -> list[tuple[str, str]]:
    """The lab's clients, (name, address), as the profiles and the probe name them."""
    return ([(f"publisher{i}", publisherAddress(i)) for i in range(publishers)]
            + [(f"player{i}", playerAddress(i)) for i in range(players)])


class WcsRoom:
    """A room of wcs through its WebSocket room protocol, one connection per client."""

    MEDIA = {"hasAudio": False, "constraints": {"audio": False, "video": True}}

    def __init__(self, server):
        self.url = server.wsURL
        self.server = server  # its /metrics, when it has a REST port (bench/network.py)
        self.room = f"netlab-{uuid.uuid4().hex[:6]}"
        self.clients = []
        self.answering = []  # each client's pings answered once its stream runs
        self.stream = None

    async def keyframeRequests(self) -> int | None:
        """The keyframe requests (PLI) the server sent to publishers so far."""
        if not self.server.ports.get("rest"):
            return None
        samples = await asyncio.to_thread(scrape, self.server)
        return int(value(samples, "wcs_keyframe_requests_total"))

    async def _join(self, login):
        client = await Client.open(self.url, login)
        self.clients.append(client)
        await client.join(self.room)
        return client

    async def publish(self, pc, address: str) -> None:
        owner = await self._join("publisher")
        with hostAddress(address):
            publish = streamRequest(f"{self.room}-pub", self.room, await peers.offerOf(pc),
                                    True, **self.MEDIA)
        await negotiate(owner, pc, "publishStream", publish)
        await status(owner, publish["mediaSessionId"], "PUBLISHING", timeout=30)
        self.stream = publish["name"]
        self.answering.append(owner.answerPings())

    async def play(self, pc, address: str, index: int) -> None:
        viewer = await self._join(f"viewer{index}")
        with hostAddress(address):
            play = streamRequest(self.stream, self.room, await peers.offerOf(pc), False,
                                 **self.MEDIA)
        await negotiate(viewer, pc, "playStream", play)
        await status(viewer, play["mediaSessionId"], "PLAYING", timeout=30)
        self.answering.append(viewer.answerPings())

    async def close(self) -> None:
        for task in self.answering:
            task.cancel()
        await asyncio.gather(*self.answering, return_exceptions=True)
        for client in self.clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 5)


class SentCounter:
    """
    The RTP an aiortc peer sends, counted before the link: media (a sequence
    number of its SSRC sent for the first time) and retransmissions (one
    sent again, or anything on another SSRC: RTX). The SRTP header is in
    the clear.
    """

    def __init__(self, pc):
        # aiortc's private path to its aioice connection (test client only).
        ice = pc.getTransceivers()[0].sender.transport.transport._connection
        send = ice.sendto
        self.mediaSsrc = pc.getTransceivers()[0].sender._ssrc
        self.reset()

        async def sendto(data: bytes, component: int) -> None:
            if len(data) >= 12 and 128 <= data[0] <= 191 and not 192 <= data[1] <= 223:
                if int.from_bytes(data[8:12], "big") == self.mediaSsrc \
                        and self.firstTime(data[2] << 8 | data[3]):
                    self.media += len(data)
                else:
                    self.resent += len(data)
            await send(data, component)
        ice.sendto = sendto

    # Numbers kept as sent: far more than a retransmission reaches back,
    # far less than an hour's (the sequence number wraps every few minutes).
    KEPT = 1 << 14

    def firstTime(self, seq: int) -> bool:
        number = self.unwrap(seq)
        if number in self.seen:
            return False
        self.seen.add(number)
        if len(self.seen) > 2 * self.KEPT:
            oldest = self.unwrap.last - self.KEPT
            self.seen = {n for n in self.seen if n >= oldest}
        return True

    def reset(self) -> None:
        self.seen: set[int] = set()
        self.unwrap = Unwrap()
        self.media = self.resent = 0


@dataclass
class RoomRun:
    codec: str
    players: int
    seconds: float
    warmup: float = 3.0
    width: int = 640
    height: int = 480
    firstFrameTimeout: float = 30.0
    rtx: bool = True  # the clients offer RTX, as browsers do
    # Seconds: also each player's figures per slice of the window this
    # long (a long run's drift); 0: the whole window only.
    slice: float = 0.0
    result: dict = field(default_factory=dict)
    EMPTIED_AFTER = 3.0  # s after the last client left: the server's memory then

    async def run(self, room, lab) -> dict:
        """
        Publish and play in C{room} (a L{WcsRoom}, or any object with its
        publish/play/close), measure; the lab's counters are reset for the window.
        """
        pcs = []
        try:
            with encoderBitrate(BITRATE):
                return await self._run(room, lab, pcs)
        finally:
            for pc in pcs:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pc.close(), 5)
            await room.close()
            if self.result.get("serverMB"):
                # And once the room emptied: what the server gave back (a
                # rendition's codecs, their memory trimmed: docs/operations.md).
                await asyncio.sleep(self.EMPTIED_AFTER)
                megabytes = residentMB()
                if megabytes is not None:
                    self.result["serverMB"].append(("emptied", megabytes))

    async def _memoryOver(self, start: float) -> list[tuple[int, float]]:
        """
        Wait out the window; on a sliced run, read the server's resident
        memory at its start and after each slice: (s into the window, MB).
        """
        if not self.slice:
            await asyncio.sleep(self.seconds)
            return []
        points = []
        end = start + self.seconds
        while True:
            now = time.monotonic()
            megabytes = residentMB()
            if megabytes is not None:
                points.append((round(now - start), megabytes))
            if now >= end - 0.5:
                return points
            await asyncio.sleep(min(self.slice, end - now))

    async def _run(self, room, lab, pcs) -> dict:
        mime = CODECS[self.codec]
        publisher = peers.newPeer()
        pcs.append(publisher)
        video = StampedVideo(self.width, self.height)
        peers._prefer(publisher.addTransceiver(video, direction="sendonly"), mime, self.rtx)
        await room.publish(publisher, publisherAddress(0))
        sent = SentCounter(publisher)
        players = []
        for index in range(self.players):
            player = MeasuringPlayer(mime, self.rtx)
            pcs.append(player)
            players.append(player)
            await room.play(player.pc, playerAddress(index), index)
        try:
            await asyncio.wait_for(asyncio.gather(*(p.first.wait() for p in players)),
                                   self.firstFrameTimeout)
        except asyncio.TimeoutError:
            waiting = [i for i, p in enumerate(players) if not p.first.is_set()]
            raise asyncio.TimeoutError(f"players {waiting} of {len(players)} decoded no frame "
                                       f"within {self.firstFrameTimeout:g} s") from None
        await asyncio.sleep(self.warmup)
        asked = getattr(room, "keyframeRequests", None)
        askedBefore = await asked() if asked else None
        lab.reset()
        sent.reset()
        cpu = CpuMeter().start()
        start, made = time.monotonic(), video.count
        memory = await self._memoryOver(start)
        end, made = time.monotonic(), video.count - made
        askedInWindow = (await asked() - askedBefore) if askedBefore is not None else None
        cores = cpu.stop()
        counters = lab.stats()
        links = counters["links"]
        seconds = end - start

        def kbit(name):
            counters = links.get(name)
            return round(counters["bytes"] * 8 / seconds / 1000) if counters else None

        self.result = {
            "codec": self.codec, "players": self.players, "seconds": round(seconds, 1),
            # What the publisher made: on a loaded machine it may make fewer
            # than 30 frames a second, and no player can decode more.
            "publisherFps": round(made / seconds, 1),
            # Keyframes asked of the publisher in the window (wcs's /metrics):
            # the ones a server causes, apart from the encoder's own.
            "publisherKeyframeRequests": askedInWindow,
            "uplinkKbit": kbit("publisher0.up"),
            "rtx": self.rtx,
            # What the publisher sent: its media, and what it resent on NACKs.
            "publisherMediaKbit": round(sent.media * 8 / seconds / 1000),
            "publisherResentKbit": round(sent.resent * 8 / seconds / 1000),
            "cpuCores": cores,  # the lab's own CPU over the window (tests/netlab/cpu.py)
            # Datagrams the lab's kernel dropped at a socket since the lab began
            # (a full receive buffer), apart from the links' loss.
            "kernelUdp": counters.get("kernelUdp"),
            "perPlayer": [dict(p.figures(start, end), downlinkKbit=kbit(f"player{i}.down"),
                               tailDropped=links.get(f"player{i}.down", {}).get("tailDropped"))
                          for i, p in enumerate(players)],
        }
        if self.slice:
            self.result["slices"] = slices(players, start, end, self.slice)
        if memory:
            self.result["serverMB"] = memory
        folder = os.environ.get(PLAYER_TRACE)
        if folder:
            os.makedirs(folder, exist_ok=True)  # not lose an hour's trace to a missing folder
            for index, player in enumerate(players):
                with open(os.path.join(folder, f"player{index}.json"), "w") as out:
                    json.dump({"window": [start, end], "wire": player.wire,
                               "decoded": [(d.at, d.counter, d.pts) for d in player.decoded]},
                              out)
        return self.result
