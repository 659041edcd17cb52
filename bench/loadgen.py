"""
A light WebRTC load generator: how many streams one wcs process forwards.

aiortc peers decode, jitter-buffer and run a task per track: a 2-core machine
cannot receive hundreds of streams with them. These peers do only what a
browser does on the wire. Each joins a room over the WebSocket signalling
(WebSDK messages, its own connection), offers, runs ICE (aioice, controlling)
and the DTLS-SRTP handshake (aiortc's, through wcs.media.internals), then:

- a publisher sends synthetic VP8 RTP at 30 fps and the given bitrate (a
  keyframe every second, the rest delta frames), SRTP-protected;
- a player counts the SRTP packets and bytes it gets without decrypting
  them. The RTP header is in clear: the highest sequence number less the
  packets counted is what was lost.

Peers are spread over several processes (--procs); the main process only
coordinates them (a pipe each) and reads the server's CPU and RSS from
/proc. Over the --seconds window it prints the server's CPU, the streams
received, the packets lost, and the generator's own CPU per packet.

    .venv/bin/python bench/loadgen.py --publishers 4 --players 100 --procs 3
        (starts its own server with the limits raised; or --url/--server-pid)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import random
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import websockets  # noqa: E402
from aiortc.rtcicetransport import candidate_to_aioice  # noqa: E402

from bench.sfu import cpuSeconds  # noqa: E402
from tests.support.server import residentBytes  # noqa: E402
from wcs.media.ice import PortRange  # noqa: E402
from wcs.media.internals import (  # noqa: E402
    DtlsTransport, IceAgent, RTCCertificate, RTCDtlsParameters, sdp)
from wcs.media.rtp import HEADER  # noqa: E402

FPS = 30
PAYLOAD_TYPE = 96
MTU_PAYLOAD = 1100
SIGNAL_TIMEOUT = 20.0
CONNECT_TIMEOUT = 30.0


def rss(pid: int) -> int:
    """Resident set size of C{pid}, bytes."""
    resident = residentBytes(pid)
    if resident is None:
        raise ValueError("no VmRSS")
    return resident


def udpErrors() -> dict:
    """The kernel's UDP drop counters (machine-wide: other work counts too)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
             if line.startswith("Udp:")]
    counters = dict(zip(lines[0][1:], map(int, lines[1][1:])))
    return {k: counters[k] for k in ("RcvbufErrors", "SndbufErrors")}


def raiseFileLimit() -> int:
    """As many descriptors as the hard limit allows (root: raise it too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(hard, 65536)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# Signalling ---------------------------------------------------------------

class Signalling:
    """One WebSocket session: connection, join, then publishStream/playStream."""

    def __init__(self, url: str, login: str, room: str):
        self.url, self.login, self.room = url, login, room
        self.ws = None
        self.pending: dict[str, asyncio.Future] = {}
        self.task = None
        self.closed = False

    async def open(self, join: bool = True) -> None:
        self.ws = await websockets.connect(self.url, max_size=None, ping_interval=None,
                                           open_timeout=SIGNAL_TIMEOUT)
        self.task = asyncio.create_task(self._read())
        await self.send("connection", {"appKey": "roomApp", "mediaProviders": ["WebRTC"],
                                       "clientVersion": "2.0", "custom": {"login": self.login}})
        if not join:
            return
        status = await self.call("sendData", "op", {"operationId": "op", "payload": {
            "command": "join", "options": {"name": self.room, "record": False}}})
        if status.get("status") != "ACCEPTED":
            raise RuntimeError(f"join refused: {status}")

    def send(self, message: str, data) -> "asyncio.Future":
        return self.ws.send(json.dumps({"message": message, "data": [data]}))

    async def call(self, message: str, key: str, data):
        future = self.pending[key] = asyncio.get_running_loop().create_future()
        await self.send(message, data)
        return await asyncio.wait_for(future, SIGNAL_TIMEOUT)

    async def _read(self) -> None:
        try:
            await self._dispatch()
        finally:
            self.closed = True

    async def _dispatch(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            data = message.get("data") or [None]
            kind = message.get("message")
            if kind == "ping":
                try:
                    await self.send("pong", None)
                except websockets.ConnectionClosed:
                    return
            elif kind == "setRemoteSDP":
                self._resolve(data[0], data[1])
            elif kind == "DataStatusEvent":
                self._resolve(data[0].get("operationId"), data[0])
            elif kind == "notifyStreamStatusEvent" and data[0].get("status") == "FAILED":
                self._resolve(data[0].get("mediaSessionId"),
                              RuntimeError(data[0].get("info", "FAILED")))

    def _resolve(self, key, value) -> None:
        future = self.pending.pop(key, None)
        if future is not None and not future.done():
            if isinstance(value, Exception):
                future.set_exception(value)
            else:
                future.set_result(value)

    async def negotiate(self, message: str, stream: str, offer: str, publish: bool) -> str:
        session = f"{message}-{self.login}"
        return await self.call(message, session, {
            "mediaSessionId": session, "name": stream, "hasVideo": True, "hasAudio": False,
            "record": False, "mediaProvider": "WebRTC", "sdp": offer,
            "custom": {"name": self.room}, "published": publish, "status": "NEW"})

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


# A browser's wire -----------------------------------------------------------

class ClientIce(IceAgent):
    """The browser's side of ICE: controlling, one host candidate on loopback."""

    def __init__(self):
        super().__init__(ice_controlling=True, use_ipv6=False)

    async def bindCandidates(self, component: int):
        return [await self.openSocket(PortRange(0, 0).bind("127.0.0.1"), component,
                                      "127.0.0.1")]


def offerSdp(ice: ClientIce, certificate: RTCCertificate, publish: bool, ssrc: int) -> str:
    fingerprint = next(f for f in certificate.getFingerprints() if f.algorithm == "sha-256")
    lines = ["v=0", f"o=- {random.getrandbits(48)} 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
             "a=group:BUNDLE 0", f"m=video 9 UDP/TLS/RTP/SAVPF {PAYLOAD_TYPE}",
             "c=IN IP4 0.0.0.0", f"a=ice-ufrag:{ice.local_username}",
             f"a=ice-pwd:{ice.local_password}",
             f"a=fingerprint:sha-256 {fingerprint.value}", "a=setup:actpass", "a=mid:0",
             "a=sendonly" if publish else "a=recvonly", "a=rtcp-mux",
             f"a=rtpmap:{PAYLOAD_TYPE} VP8/90000", f"a=rtcp-fb:{PAYLOAD_TYPE} nack",
             f"a=rtcp-fb:{PAYLOAD_TYPE} nack pli"]
    if publish:
        lines.append(f"a=ssrc:{ssrc} cname:loadgen")
    return "\r\n".join(lines) + "\r\n"


class Peer:
    """One publisher or player: signalling, ICE and DTLS like a browser."""

    def __init__(self, url: str, room: str, stream: str, login: str,
                 certificate: RTCCertificate, publish: bool):
        self.signalling = Signalling(url, login, room)
        self.stream, self.publish = stream, publish
        self.certificate = certificate
        self.ice = ClientIce()
        self.transport = None
        self.ssrc = random.getrandbits(32)

    async def connect(self) -> None:
        await self.signalling.open()
        await self.ice.gather_candidates()
        offer = offerSdp(self.ice, self.certificate, self.publish, self.ssrc)
        answer = sdp.SessionDescription.parse(await self.signalling.negotiate(
            "publishStream" if self.publish else "playStream", self.stream, offer,
            self.publish))
        media = answer.media[0]
        self.ice.remote_username = media.ice.usernameFragment
        self.ice.remote_password = media.ice.password
        for candidate in media.ice_candidates:
            await self.ice.add_remote_candidate(candidate_to_aioice(candidate))
        await self.ice.add_remote_candidate(None)
        await self.ice.connect()
        self.transport = DtlsTransport(self.ice, self.certificate)
        role = "server" if media.dtls.role == "client" else "client"
        self.transport.setDtlsRole(role)
        await self.transport.start(RTCDtlsParameters(fingerprints=media.dtls.fingerprints,
                                                     role=role))
        if not self.transport.dtlsConnected:
            raise RuntimeError("DTLS failed")

    async def close(self) -> None:
        if self.transport is not None:
            await self.transport.stop()
        await self.ice.close()
        await self.signalling.close()


class Counter:
    """A player's receive path: count, never decrypt (RTP header in clear)."""

    __slots__ = ("packets", "octets", "high")

    def __init__(self):
        self.packets = self.octets = 0
        self.high = -1  # highest extended sequence number seen

    def datagram(self, data: bytes) -> None:
        if 191 < data[1] < 209:
            return  # SRTCP: sender reports
        self.packets += 1
        self.octets += len(data)
        high = self.high
        seq = (data[2] << 8) | data[3]
        if high < 0:
            self.high = seq
            return
        extended = (high & ~0xFFFF) | seq
        if extended < high - 0x8000:
            extended += 0x10000
        elif extended > high + 0x8000:
            extended -= 0x10000
        if extended > high:
            self.high = extended


def frames(bitrate: int, ssrc: int):
    """Endless synthetic VP8 frames as lists of RTP packets (keyframe each second)."""
    size = bitrate // 8 // FPS
    count = max(1, math.ceil(size / MTU_PAYLOAD))
    body = os.urandom(size // count)
    keyHeader = b"\x10\x00\x00\x9d\x01\x2a" + (640).to_bytes(2, "little") + \
        (480).to_bytes(2, "little")
    seq, timestamp, index = random.getrandbits(16), random.getrandbits(32), 0
    while True:
        key = index % FPS == 0
        packets = []
        for i in range(count):
            if i == 0:  # VP8 descriptor: S set, partition 0; then the frame tag
                payload = b"\x10" + (keyHeader if key else b"\x11\x00\x00") + body
            else:
                payload = b"\x00" + body
            marker = 0x80 if i == count - 1 else 0
            packets.append(HEADER.pack(0x80, marker | PAYLOAD_TYPE, seq, timestamp, ssrc)
                           + payload)
            seq = (seq + 1) & 0xFFFF
        yield packets
        timestamp = (timestamp + 90000 // FPS) & 0xFFFFFFFF
        index += 1


async def publish(peer: Peer, bitrate: int, stats: dict, own: dict) -> None:
    loop = asyncio.get_running_loop()
    source = frames(bitrate, peer.ssrc)
    due = loop.time() + random.random() / FPS
    while True:
        due += 1 / FPS
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -1.0:
            stats["late"] += 1  # a second behind: skip rather than burst
            due = loop.time()
        for packet in next(source):
            protected = peer.transport.protectRtp(packet)
            if protected is not None and peer.ice.sendNow(protected):
                stats["sent"] += 1
                own["sent"] += 1
                stats["octets"] += len(protected)


# Worker processes -------------------------------------------------------------

async def work(pipe, url: str, role: str, streams: list, first: int, bitrate: int,
               parallel: int) -> None:
    """
    Peers of one C{role} for C{streams}: names (the room is the stream's
    name, on C{url}) or (url, room, stream) triples. Commands on the pipe:
    "snap" (counters), {"add": streams, "first": n} (more peers), "stop".
    """
    certificate = RTCCertificate.generateCertificate()
    peers, counters, tasks, failed = [], [], [], []
    published, played = [], []  # (stream, its stats) per publisher; stream per counter
    stats = {"sent": 0, "octets": 0, "late": 0}
    gate = asyncio.Semaphore(parallel)

    async def start(index: int, item) -> None:
        where, room, stream = (url, item, item) if isinstance(item, str) else item
        if role == "idle":  # a WebSocket session and nothing else
            session = Signalling(where, f"idle{index}", stream)
            async with gate:
                try:
                    await asyncio.wait_for(session.open(join=False), CONNECT_TIMEOUT)
                except Exception as e:
                    failed.append(f"{type(e).__name__}: {e}"[:200])
                    return
            peers.append(session)
            return
        publishing = role == "publish"
        peer = Peer(where, room, stream, f"{role[:3]}{index}", certificate, publishing)
        async with gate:
            try:
                await asyncio.wait_for(peer.connect(), CONNECT_TIMEOUT)
            except Exception as e:  # counted and reported: the run goes on
                failed.append(f"{type(e).__name__}: {e}"[:200])
                return
        peers.append(peer)
        if publishing:
            own = {"sent": 0}
            published.append((stream, own))
            tasks.append(asyncio.create_task(publish(peer, bitrate, stats, own)))
        else:
            counter = Counter()
            counters.append(counter)
            played.append(stream)
            peer.ice.receiveSrtp(counter.datagram)

    async def add(items: list, base: int) -> None:
        before, failures = len(peers), len(failed)
        await asyncio.gather(*(start(base + i, s) for i, s in enumerate(items)))
        pipe.send({"ready": len(peers) - before, "failed": failed[failures:][:5],
                   "failures": len(failed) - failures})

    await add(streams, first)
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue = asyncio.Queue()
    loop.add_reader(pipe.fileno(), lambda: commands.put_nowait(pipe.recv()))
    while (command := await commands.get()) != "stop":
        if isinstance(command, dict):
            await add(command["add"], command["first"])
            continue
        pipe.send({"cpu": time.process_time(), "at": time.monotonic(), "stats": dict(stats),
                   "open": sum(not getattr(p, "signalling", p).closed for p in peers),
                   "players": [(c.packets, c.octets, c.high) for c in counters],
                   "played": played,
                   "published": [(stream, own["sent"]) for stream, own in published]})
    loop.remove_reader(pipe.fileno())
    for task in tasks:
        task.cancel()
    await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)


def worker(pipe, *args) -> None:
    raiseFileLimit()
    asyncio.run(work(pipe, *args))


class Workers:
    """The generator processes and their pipes."""

    def __init__(self):
        self.pipes, self.processes = [], []
        self.context = multiprocessing.get_context("spawn")

    def start(self, *args) -> None:
        mine, theirs = self.context.Pipe()
        process = self.context.Process(target=worker, args=(theirs,) + args, daemon=True)
        process.start()
        self.pipes.append(mine)
        self.processes.append(process)

    def collect(self, timeout: float, pipes=None) -> list[dict]:
        answers = []
        for pipe in pipes or self.pipes:
            if not pipe.poll(timeout):
                raise RuntimeError("a generator process did not answer")
            answers.append(pipe.recv())
        return answers

    def snapshot(self) -> list[dict]:
        for pipe in self.pipes:
            pipe.send("snap")
        return self.collect(30)

    def stop(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send("stop")
            except OSError:
                pass
        for process in self.processes:
            process.join(30)
            if process.is_alive():
                process.kill()


# The server -------------------------------------------------------------------

def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The limits a load run raises (every client is on 127.0.0.1).
RAISED = {"ice_public_ip": "127.0.0.1", "media_port_from": 0, "media_port_to": 0,
          "ws_max_connections_per_address": 0, "ws_max_connections": 0,
          "room_max_participants": 0, "room_max_count": 0,
          "media_max_sessions": 100000, "media_max_sessions_per_address": 100000}


def startServer(settings: dict, log: str) -> tuple[subprocess.Popen, str]:
    """twistd wcs on loopback, its limits raised for a load run."""
    port = freePort()
    command = [str(ROOT / ".venv/bin/twistd"), "-n", "--pidfile=", "wcs",
               "--listen", "127.0.0.1", "--ws-port", str(port), "--wss-port", "0",
               "--http-port", "0", "--https-port", "0", "--rtmp-port", "0"]
    for key, value in {**RAISED, "rest_api_port": 0, "rest_api_https_port": 0,
                       **settings}.items():
        command += ["--set", f"{key}={value}"]
    server = subprocess.Popen(command, cwd=ROOT, preexec_fn=raiseFileLimit,
                              stdout=open(log, "w"), stderr=subprocess.STDOUT)
    for _ in range(200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return server, f"ws://127.0.0.1:{port}/"
        if server.poll() is not None:
            raise RuntimeError(f"the server exited; see {log}")
        time.sleep(0.1)
    server.kill()
    raise RuntimeError("the server did not listen within 20 s")


def split(items: list, parts: int) -> list[list]:
    return [items[i::parts] for i in range(parts) if items[i::parts]]


def run(args) -> dict:
    raiseFileLimit()
    server = None
    url, pid = args.url, args.server_pid
    if not url:
        server, url = startServer(dict(s.split("=", 1) for s in args.set), args.server_log)
        pid = server.pid
    workers = Workers()
    try:
        streams = [f"lg{i}" for i in range(args.publishers)]
        workers.start(url, "publish", streams, 0, args.bitrate, args.parallel)
        [ready] = workers.collect(60)
        if ready["ready"] != args.publishers:
            raise RuntimeError(f"publishers failed: {ready}")
        plays = [streams[i % len(streams)] for i in range(args.players * args.publishers)]
        chunks = split(plays, args.procs)
        first = 0
        for chunk in chunks:
            workers.start(url, "play", chunk, first, args.bitrate, args.parallel)
            first += len(chunk)
        readies = workers.collect(60 + 2 * len(plays), workers.pipes[1:])
        players = sum(r["ready"] for r in readies)
        failures = [f for r in readies for f in r["failed"]]
        time.sleep(args.warmup)
        udp0, t0, cpu0, before = udpErrors(), time.monotonic(), cpuSeconds(pid), \
            workers.snapshot()
        time.sleep(args.seconds)
        t1, cpu1, after = time.monotonic(), cpuSeconds(pid), workers.snapshot()
        result = summarize(args, t1 - t0, cpu1 - cpu0, rss(pid), before, after, players,
                           failures, len(plays))
        result["udp_drops_machine_wide"] = {k: v - udp0[k] for k, v in udpErrors().items()}
        return result
    finally:
        workers.stop()
        if server is not None:
            server.terminate()  # it drains its rooms first: not for long
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def summarize(args, seconds, serverCpu, serverRss, before, after, players, failures,
              wanted) -> dict:
    sent = after[0]["stats"]["sent"] - before[0]["stats"]["sent"]
    # The server renumbers a player's packets when it drops them (it waits for
    # a keyframe: no gap shows), so loss is counted against what was
    # published; sequence gaps are the drops after the server.
    received = lost = extra = starved = 0
    rates = []
    for b, a in zip(before[1:], after[1:]):
        for (p0, _, h0), (p1, _, h1) in zip(b["players"], a["players"]):
            received += p1 - p0
            lost += max(0, (h1 - h0) - (p1 - p0))
            extra += max(0, (p1 - p0) - (h1 - h0))  # duplicates, or late from before
            starved += p1 == p0
            rates.append((p1 - p0) / seconds)
    playerCpu = sum(a["cpu"] - b["cpu"] for b, a in zip(before[1:], after[1:]))
    publisherCpu = after[0]["cpu"] - before[0]["cpu"]
    expected = sent / args.publishers * players if args.publishers else 0
    return {
        "publishers": args.publishers, "players": players, "players_wanted": wanted,
        "connect_failures": failures[:3], "seconds": round(seconds, 2),
        "server_cpu_ms_per_s": round(serverCpu * 1000 / seconds, 1),
        "server_cpu_us_per_forwarded_packet": round(serverCpu * 1e6 / received, 2)
        if received else None,
        "server_rss_mb": round(serverRss / 2**20, 1),
        "published_pps": round(sent / seconds), "forwarded_pps": round(received / seconds),
        "received_of_expected": round(received / expected, 4) if expected else None,
        "sequence_gaps": lost, "extra_packets": extra, "players_starved": starved,
        "player_pps_min_max": [round(min(rates or [0])), round(max(rates or [0]))],
        "late_frames": after[0]["stats"]["late"],
        "generator_us_per_received_packet": round(playerCpu * 1e6 / received, 2)
        if received else None,
        "generator_us_per_sent_packet": round(publisherCpu * 1e6 / sent, 2) if sent else None,
        "load_average": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--players", type=int, default=100, help="per publisher")
    parser.add_argument("--procs", type=int, default=2, help="player processes")
    parser.add_argument("--bitrate", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--parallel", type=int, default=8,
                        help="handshakes at once per process")
    parser.add_argument("--url", help="signalling URL of a running server")
    parser.add_argument("--server-pid", type=int, help="its PID (with --url)")
    parser.add_argument("--set", action="append", default=[],
                        help="KEY=VALUE for the server started here")
    parser.add_argument("--server-log", default="/tmp/loadgen-server.log")
    args = parser.parse_args()
    if args.url and not args.server_pid:
        parser.error("--url needs --server-pid")
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
