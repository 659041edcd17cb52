"""
WebRTC forwarding cost of wcs: 1 publisher -> N players on loopback.

The server runs in its own process (only its CPU is measured, from
/proc/PID/stat); the publisher and the players are aiortc peers in this
process. The publisher replays a pre-encoded 640x480@30 H.264 stream of about
1 Mbit/s (no encoding during the run); players count packets instead of
decoding them. For each N it prints the server's CPU in ms per second, the
cost per extra subscriber, packets lost and the forwarding delay (publisher's
send to player's receive of the same payload) at p50/p99. The same load then
goes through the naive design (aiortc decoding once and re-encoding per
player, with aiortc's MediaRelay) and the ratio of the per-player costs is
printed. No assertion: figures only (docs/performance.md keeps the latest).

    .venv/bin/python bench/sfu.py [--players 1,5,10,20] [--naive 1,3] [--seconds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import random
import sys
import time
from pathlib import Path

import aioice.ice
import av

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiortc import (  # noqa: E402
    RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack  # noqa: E402

from wcs.media.negotiate import stripCandidates  # noqa: E402
from wcs.media.rtp import payloadOffset  # noqa: E402

WIDTH, HEIGHT, FPS, BITRATE = 640, 480, 30, 1_000_000
WARMUP = 1.5
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Everything on loopback: aioice leaves 127.0.0.1 out of its host candidates.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def tickSeconds(pid: int) -> float:
    """User and system CPU of C{pid} as ps and psutil see it (10 ms ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpuSeconds(pid: int) -> float:
    """
    CPU time of every thread of C{pid}, user and system, from schedstat:
    nanoseconds, where /proc/PID/stat counts 10 ms ticks.
    """
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that just ended
    return total / 1e9


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# The stream ---------------------------------------------------------------

def encodeStream(seconds: int = 5) -> list[bytes]:
    """
    H.264 constrained baseline at about 1 Mbit/s: a scrolling texture with a
    block of fresh noise each frame (something to spend the bits on), one
    keyframe a second.
    """
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    codec.bit_rate = BITRATE
    codec.framerate = fractions.Fraction(FPS, 1)
    codec.time_base = fractions.Fraction(1, FPS)
    codec.profile = "Baseline"
    codec.options = {"tune": "zerolatency", "preset": "veryfast", "level": "31",
                     "x264-params": f"keyint={FPS}:min-keyint={FPS}:scenecut=0",
                     "maxrate": str(BITRATE), "bufsize": str(BITRATE // 2)}
    rng = random.Random(1)
    texture = bytes(rng.getrandbits(8) for _ in range(WIDTH * HEIGHT * 2))
    packets = []
    for i in range(seconds * FPS):
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        offset = (i * 7 * WIDTH + i * 3) % (WIDTH * HEIGHT)
        luma = bytearray(texture[offset:offset + WIDTH * HEIGHT])
        block = rng.randbytes(96)
        for row in range(96):
            start = (100 + row) * WIDTH + (i * 5) % (WIDTH - 96)
            luma[start:start + 96] = block
            block = block[1:] + block[:1]
        frame.planes[0].update(bytes(luma))
        frame.planes[1].update(bytes([128]) * frame.planes[1].buffer_size)
        frame.planes[2].update(bytes([128]) * frame.planes[2].buffer_size)
        frame.pts = i
        packets += [bytes(p) for p in codec.encode(frame)]
    packets += [bytes(p) for p in codec.encode(None)]
    return packets


class ReplayTrack(MediaStreamTrack):
    """Pre-encoded access units at 30 fps: aiortc's sender only packetizes them."""

    kind = "video"

    def __init__(self, units: list[bytes]):
        super().__init__()
        self.units = units
        self.index = 0
        self.start: float | None = None

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self.start is None:
            self.start = loop.time()
        await asyncio.sleep(max(0.0, self.start + self.index / FPS - loop.time()))
        packet = av.Packet(self.units[self.index % len(self.units)])
        packet.pts = self.index * (90000 // FPS)
        packet.time_base = fractions.Fraction(1, 90000)
        self.index += 1
        return packet


# The server process ---------------------------------------------------------

async def serve(mode: str) -> None:
    """Answer JSON commands on stdin: publish, play (offers), quit."""
    from wcs.config import Settings
    from wcs.media.engine import WebRTCEngine

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    engine = WebRTCEngine(Settings({"ice_public_ip": "127.0.0.1", "media_port_from": 0,
                                    "media_port_to": 0}))
    source = None
    published = None
    peers = []
    # --scrape: read the metrics counters as Prometheus would (docs/performance.md).
    scrape = float(os.environ.get("WCS_BENCH_SCRAPE", "0"))
    if scrape and hasattr(engine, "counters"):
        async def scraper():
            while True:
                await asyncio.sleep(scrape)
                engine.counters()
        peers.append(asyncio.ensure_future(scraper()))

    class Quiet:
        def mediaStarted(self):
            pass

        def mediaFailed(self, info):
            pass  # players closing at the end of a run

    class Request:
        def __init__(self, sdp):
            self.sdp, self.name, self.mediaSessionId = sdp, "bench", os.urandom(4).hex()
            self.hasAudio = self.hasVideo = True
            self.record, self.constraints = False, {}

    async def naiveAnswer(sdp: str, track=None) -> str:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        peers.append(pc)
        received = loop.create_future()
        pc.on("track", lambda t: received.done() or received.set_result(t))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        if track is not None:
            for transceiver in pc.getTransceivers():
                transceiver.sender.replaceTrack(track)
                transceiver.direction = "sendonly"
        await pc.setLocalDescription(await pc.createAnswer())
        pc.published = received
        return pc.localDescription.sdp

    while True:
        line = await reader.readline()
        if not line:
            break
        command = json.loads(line)
        if command["op"] == "quit":
            break
        if mode == "wcs":
            if command["op"] == "publish":
                session = engine.publish(Request(command["sdp"]), Quiet())
                source = session.source
            else:
                session = engine.play(Request(command["sdp"]), source, Quiet())
            answer = await session.answer.asFuture(loop)
        else:
            from aiortc.contrib.media import MediaRelay
            if command["op"] == "publish":
                answer = await naiveAnswer(command["sdp"])
                published = peers[-1].published
                relay = MediaRelay()
            else:
                track = await asyncio.wait_for(published, 10)
                answer = await naiveAnswer(command["sdp"], relay.subscribe(track))
        sys.stdout.write(json.dumps({"sdp": answer}) + "\n")
        sys.stdout.flush()
    await engine.close()
    for pc in peers:
        if isinstance(pc, asyncio.Future):
            pc.cancel()
        else:
            await pc.close()


class Server:
    def __init__(self, mode: str):
        self.mode = mode

    async def start(self):
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--serve", self.mode,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)

    async def ask(self, op: str, sdp: str) -> str:
        self.process.stdin.write((json.dumps({"op": op, "sdp": sdp}) + "\n").encode())
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), 30)
        return json.loads(line)["sdp"]

    def cpu(self) -> tuple[float, float]:
        return cpuSeconds(self.process.pid), tickSeconds(self.process.pid)

    async def stop(self):
        self.process.stdin.write(b'{"op": "quit"}\n')
        await self.process.stdin.drain()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except asyncio.TimeoutError:
            self.process.kill()
            await self.process.wait()


# The clients ------------------------------------------------------------------

def _h264Only(transceiver) -> None:
    transceiver.setCodecPreferences(
        [c for c in RTCRtpReceiver.getCapabilities("video").codecs
         if c.mimeType == "video/H264" and c.parameters.get("packetization-mode") == "1"])


async def connect(pc: RTCPeerConnection, server: Server, op: str) -> None:
    await pc.setLocalDescription(await pc.createOffer())
    answer = await server.ask(op, stripCandidates(pc.localDescription.sdp))
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))


class Publisher:
    def __init__(self, units: list[bytes]):
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.sent: dict[bytes, float] = {}
        self.count = 0
        transceiver = self.pc.addTransceiver(ReplayTrack(units), direction="sendonly")
        _h264Only(transceiver)
        self.sender = transceiver.sender

    async def start(self, server: Server) -> None:
        await connect(self.pc, server, "publish")
        transport = self.sender.transport
        send = transport._send_rtp

        async def timed(data: bytes) -> None:
            # The time each payload leaves, to match it at the players.
            if 127 < data[1] < 192 or len(data) < 40:  # RTCP
                return await send(data)
            offset = payloadOffset(data)
            self.sent[data[offset:offset + 24]] = time.perf_counter()
            self.count += 1
            await send(data)
        transport._send_rtp = timed


class Player:
    def __init__(self, publisher: Publisher):
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        _h264Only(self.pc.addTransceiver("video", direction="recvonly"))
        self.publisher = publisher
        self.reset()

    def reset(self):
        self.received = 0
        self.seqs: set[int] = set()
        self.delays: list[float] = []

    async def start(self, server: Server) -> None:
        await connect(self.pc, server, "play")
        receiver = self.pc.getReceivers()[0]

        async def counted(packet, arrival_time_ms: int) -> None:
            # Count, time, and do not decode: the client must not be the bottleneck.
            now = time.perf_counter()
            self.received += 1
            self.seqs.add(packet.sequence_number)
            sent = self.publisher.sent.get(packet.payload[:24])
            if sent is not None:
                self.delays.append(now - sent)
        receiver._handle_rtp_packet = counted

    def lost(self) -> int:
        if not self.seqs:
            return 0
        ordered = sorted(self.seqs)
        # The window's sequence numbers, unwrapped around a possible wrap.
        span = max((b - a) & 0xFFFF for a, b in zip(ordered, ordered[1:] + ordered[:1]))
        expected = 0x10000 - span + 1 if len(ordered) > 1 else 1
        return max(0, expected - len(self.seqs))


async def run(mode: str, players: int, seconds: float, units: list[bytes]) -> dict:
    server = Server(mode)
    await server.start()
    publisher = Publisher(units)
    clients = [Player(publisher) for _ in range(players)]
    try:
        await publisher.start(server)
        for client in clients:
            await client.start(server)
        await asyncio.sleep(WARMUP)
        for client in clients:
            client.reset()
        publisher.sent.clear()
        sentBefore = publisher.count
        cpu, began = server.cpu(), time.perf_counter()
        await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - began
        cpuUsed, ticksUsed = (after - before for after, before in zip(server.cpu(), cpu))
        delays = [d for c in clients for d in c.delays]
        received = sum(c.received for c in clients)
        if len(delays) < received / 2:
            delays = []  # re-encoded payloads cannot be matched to the publisher's
        return {
            "cpu": cpuUsed * 1000 / elapsed,
            "ticks": ticksUsed * 1000 / elapsed,
            "pps": (publisher.count - sentBefore) / elapsed,
            "received": received / max(1, players) / elapsed,
            "lost": sum(c.lost() for c in clients),
            "p50": percentile(delays, 50) * 1000,
            "p99": percentile(delays, 99) * 1000,
            "matched": len(delays),
        }
    finally:
        for client in clients:
            await client.pc.close()
        await publisher.pc.close()
        await server.stop()


def perPlayer(results: dict[int, dict], key: str = "cpu") -> float:
    """Least-squares slope of CPU against players: the cost of one more."""
    xs, ys = list(results), [r[key] for r in results.values()]
    if len(xs) < 2:
        return float("nan")
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


async def main(args) -> None:
    began = time.perf_counter()
    units = encodeStream()
    bits = sum(len(u) for u in units) * 8 / (len(units) / FPS)
    print(f"stream: {WIDTH}x{HEIGHT}@{FPS} H.264, {bits / 1e6:.2f} Mbit/s "
          f"(encoded in {time.perf_counter() - began:.1f} s)")
    results = {}
    for mode, sizes in (("wcs", args.players), ("naive", args.naive)):
        results[mode] = {}
        print(f"\n{mode}: {'players':>7} {'CPU ms/s':>9} {'(ticks)':>8} {'pkt/s in':>8} {'pkt/s out':>9} "
              f"{'lost':>5} {'delay p50':>9} {'p99':>7}")
        for n in sizes:
            r = results[mode][n] = await run(mode, n, args.seconds, units)
            delay = f"{r['p50']:>7.2f}ms {r['p99']:>5.2f}ms" if r["p50"] == r["p50"] else \
                f"{'n/a':>9} {'n/a':>7}"
            print(f"{'':>{len(mode) + 1}} {n:>7} {r['cpu']:>9.1f} {r['ticks']:>8.1f} {r['pps']:>8.0f} "
                  f"{r['received']:>9.0f} {r['lost']:>5} {delay}")
    wcs, naive = perPlayer(results["wcs"]), perPlayer(results["naive"])
    ratio = f"ratio {naive / wcs:.0f}x" if naive == naive else "(two --naive sizes give a ratio)"
    print(f"\nper extra player: wcs {wcs:.2f} ms/s "
          f"({perPlayer(results['wcs'], 'ticks'):.2f} by ticks), "
          f"naive decode+re-encode {naive:.1f} ms/s, {ratio}")
    ppsIn = results["wcs"][args.players[-1]]["pps"]
    print(f"per forwarded packet (wcs): {wcs / ppsIn * 1000:.1f} us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--players", default="1,5,10,20")
    parser.add_argument("--naive", default="1,3")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--scrape", type=float, default=0,
                        help="the server reads its metrics counters every SCRAPE s")
    args = parser.parse_args()
    if args.scrape:
        os.environ["WCS_BENCH_SCRAPE"] = str(args.scrape)
    if args.serve:
        asyncio.run(serve(args.serve))
    else:
        args.players = [int(n) for n in args.players.split(",")]
        args.naive = [int(n) for n in args.naive.split(",") if n]
        asyncio.run(main(args))
