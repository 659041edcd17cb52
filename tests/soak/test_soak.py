"""
Soak: every kind of client at once against one server for SOAK_SECONDS
(default 150; `make soak` runs 3600), healthy clients must all still be
there at the end, at full frame rate, with the server's memory flat.

In one room: alice publishes H.264 + Opus over WebRTC (recorded), bob and
carol play it and decode; an ffmpeg encoder joins by URL as `obs`; a Flash
room client and an idle WebSocket participant only answer pings. Beside it an
ffmpeg encoder publishes `live/NAME` to two ffmpeg players. The RTMP
encoders must be read under the low-water mark (wcs/transports/lowwater.py)
in every bucket (/metrics says).

In runs of IMPAIR_FROM seconds or more, carol's UDP loses 2% of the RTP it
receives and hands the rest on in bursts every 0.2 s (a link that
aggregates): she NACKs each loss as aiortc does, and NACKs again when a
burst shows two gaps at once, which after a few minutes makes the
player-leg reorder hold (wcs/media/reorder.py) act; the table counts the
NACKs it held. Her aiortc client then freezes now and then for seconds
(its jitter buffer), so she must have 90% of the source's frames over the
whole run, not in every bucket; her low buckets are listed.

SOAK_CLUSTER=1: a redis-server and two nodes (docs/cluster.md); the room
lives on the first (alice joins it first), bob and the idle participant join
through the second, and both nodes must stay registered, the room's owner
unchanged, for the whole run (heartbeats and TTLs, wcs/cluster/).

The table (fps per 10 s bucket of each source and player, server RSS and
CPU) is printed as the run goes (`-s` shows it) and written to
soak-table.txt in the test's tmp dir.

The host is told from the server: a probe process beside the run
(tests/soak/hostprobe.py) and the load average are in the table, and a
bucket under a per-bucket line (frame rates, low-water reads) where the
host starved (meters.STARVED_LATE) is the host's, reported apart; the run
fails on the others, and as host starved on more than meters.HOST_TOLERANCE
of the buckets explained by the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import urllib.request
import uuid

import pytest
import websockets

from tests.media import peers
from tests.rtmp import ffmpeg
from tests.rtmp.flashclient import FlashClient
from tests.soak import meters
from tests.support.bystanders import _Reader
from tests.support.cluster import runningCluster
from tests.support.redis import redisAvailable
from tests.support.rooms import MEDIA, negotiate, status, streamRequest
from tests.support.wsclient import Client

SOAK_SECONDS = int(os.environ.get("SOAK_SECONDS", "150"))
CLUSTER = os.environ.get("SOAK_CLUSTER") == "1"
THROUGH_SECOND = ("bob", "idle")  # who joins through the second node (SOAK_CLUSTER)
CAROL_LOSS, CAROL_BURST = 0.02, 0.2  # her UDP: received RTP lost, and held (s)
# s: the hold needs minutes of carol's link to start, and the 150 s CI slice
# keeps her link clean (and every bucket checked).
IMPAIR_FROM = int(os.environ.get("SOAK_IMPAIR_FROM", "600"))
IMPAIRED = SOAK_SECONDS >= IMPAIR_FROM
RATE = 15  # fps of every source: light enough for 2 cores shared with the server
MIN_SHARE = 0.9  # of the source's frames, in every bucket
SETTLE = 30.0  # s before the RSS baseline
RSS_GROWTH = 20 * 2**20
WAIT = 20.0  # s: the bound of each setup and check step
RECORD_SLACK = 1.0  # s of the source's media the recording may lack (frames in flight)
GONE = ("LEFT", "UNPUBLISHED")
ENDED = ("STOPPED", "FAILED", "UNPUBLISHED")


class PingCountingFlash(FlashClient):
    """The tests' Flash client, noting when it last answered a server ping."""

    lastPong: float | None = None

    def call(self, name, *args, streamId=0):
        if name == "pong":
            self.lastPong = time.monotonic()
        super().call(name, *args, streamId=streamId)


async def waitUntil(predicate, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def metrics(server) -> dict[str, float]:
    """The unlabelled samples of the server's /metrics."""
    with urllib.request.urlopen(server.restURL + "/metrics", timeout=WAIT) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if line and not line.startswith("#") and "{" not in name:
            samples[name] = float(value)
    return samples


class Soak:
    def __init__(self, server, tmp, second=None, redis=None):
        """
        @param second: the cluster's other node (SOAK_CLUSTER), or None.
        @param redis: the cluster's L{RunningRedis}, or None.
        """
        self.server, self.tmp = server, tmp
        self.second, self.redis = second, redis
        self.room = f"soak-{uuid.uuid4().hex[:6]}"
        self.live = f"soaklive{uuid.uuid4().hex[:4]}"
        self.clients: dict[str, Client] = {}
        self.readers: dict[str, _Reader] = {}
        self.players: dict[str, meters.CountingPlayer] = {}
        self.encoders: dict[str, meters.FFmpeg] = {}
        self.rtmpPlayers: dict[str, meters.FFmpeg] = {}
        self.publisher = self.flash = self.impairment = self.probe = None
        self.rss: list[tuple[float, int]] = []  # (s since start, bytes)
        self.buckets = max(1, SOAK_SECONDS // int(meters.BUCKET))
        self.facts: list[str] = []  # printed under the table
        self.lowWater: list[tuple[float, float]] = []  # per bucket: (sockets, reads)
        self.readsBefore = 0.0  # low-water reads when the metering began
        self.cluster: list[str] = []  # problems seen by the per-bucket cluster check

    def rtmpURL(self, path: str) -> str:
        return f"rtmp://127.0.0.1:{self.server.ports['rtmp']}/{path}"

    async def start(self) -> None:
        for login in ("alice", "bob", "carol", "idle"):
            node = self.second if self.second and login in THROUGH_SECOND else self.server
            self.clients[login] = await Client.open(node.wsURL, login)
            await self.clients[login].join(self.room)
        self.flash = await PingCountingFlash.connect(self.server.ports["rtmp"], "flash")
        assert (await self.flash.command("join", {"name": self.room}))["status"] == "ACCEPTED"

        alice = self.clients["alice"]
        self.publisher = peers.Publisher(video="video/H264", audio="audio/opus")
        self.video = meters.CountingVideo(RATE)
        self.publisher.pc.getTransceivers()[0].sender.replaceTrack(self.video)
        self.publishRequest = streamRequest(f"{self.room}-alice", self.room,
                                            await peers.offerOf(self.publisher.pc), True,
                                            record=True)
        await negotiate(alice, self.publisher.pc, "publishStream", self.publishRequest)
        self.recordName = (await status(alice, self.publishRequest["mediaSessionId"],
                                        "PUBLISHING"))["recordName"]
        self.publishedAt = time.monotonic()
        for login in ("bob", "carol"):
            player = self.players[login] = meters.CountingPlayer(video="video/H264",
                                                                 audio="audio/opus")
            if login == "carol" and IMPAIRED:
                self.impairment = peers.Impairment(player.pc, receiveLoss=CAROL_LOSS,
                                                   receiveBurst=CAROL_BURST)
            play = streamRequest(self.publishRequest["name"], self.room,
                                 await peers.offerOf(player.pc), False)
            await negotiate(self.clients[login], player.pc, "playStream", play)
            await status(self.clients[login], play["mediaSessionId"], "PLAYING")
        # From here on every WebSocket client only reads and answers pings.
        self.readers = {login: _Reader(client) for login, client in self.clients.items()}

        seconds = SOAK_SECONDS + 300  # a bound in case this process dies without teardown
        self.encoders["live"] = meters.encoder(self.rtmpURL(f"live/{self.live}"), seconds, RATE,
                                               self.tmp / "encoder-live.log")
        self.encoders["obs"] = meters.encoder(self.rtmpURL(f"room/{self.room}/obs"), seconds,
                                              RATE, self.tmp / "encoder-obs.log")
        await waitUntil(lambda: f"'{self.live}' PUBLISHING>" in self.server.log(),
                        f"live/{self.live} to be published")
        for index in (1, 2):
            self.rtmpPlayers[f"rtmp-{index}"] = meters.player(
                self.rtmpURL(f"live/{self.live}"), self.tmp / f"player-{index}.ts",
                self.tmp / f"player-{index}.log")
        await waitUntil(lambda: any(
            f["message"] == "OnDataEvent" and f["data"][0]["payload"].get("name") == "PUBLISHED"
            and f["data"][0]["payload"]["info"].get("login") == "obs"
            for _, f in self.readers["idle"].frames), "obs to be published in the room")
        for name, player in self.players.items():
            await waitUntil(lambda: player.decoded["video"].total > 0, f"{name} to decode")
        for name, player in self.rtmpPlayers.items():
            await waitUntil(lambda: player.frames.total > 0, f"{name} to receive")
        self.probe = meters.HostProbe(seconds)

    def counters(self) -> dict[str, meters.BucketCounter]:
        counters = {"rtc-src": self.video.sent}
        counters.update({name: p.decoded["video"] for name, p in self.players.items()})
        counters.update({"rtmp-src": self.encoders["live"].frames})
        counters.update({name: p.frames for name, p in self.rtmpPlayers.items()})
        counters["obs-src"] = self.encoders["obs"].frames
        return counters

    def sample(self) -> dict[str, str]:
        """The per-bucket checks beside the fps: low-water marks, the cluster."""
        values = metrics(self.server)
        reads = values.get("wcs_rtmp_low_water_reads_total", 0.0)
        last = self.lowWater[-1][1] if self.lowWater else self.readsBefore
        self.lowWater.append((values.get("wcs_rtmp_low_water_sockets", 0.0), reads))
        extra = {"LW socks": f"{self.lowWater[-1][0]:.0f}",
                 "LW rd/s": f"{(reads - last) / meters.BUCKET:.0f}",
                 "held": f"{values.get('wcs_player_nacks_held_total', 0.0):.0f}",
                 "stalls": f"{values.get('wcs_player_stalls_total', 0.0):.0f}"}
        if self.second is not None:
            db = self.redis.client()
            nodes = set(db.zrange("wcs:nodes", 0, -1))
            owner = db.get(f"wcs:room:{self.room}")
            if nodes != {"a", "b"} or owner != "a":
                self.cluster.append(f"at {len(self.lowWater) * 10} s: nodes {sorted(nodes)}, "
                                    f"room on {owner!r}")
            extra["RSS b"] = f"{self.second.rss() / 2**20:.1f}"
        return extra

    def host(self, index: int) -> dict[str, str]:
        """
        The host's columns: 1-minute load, the probe's p99 and longest slot
        lateness (ms), and how far the test's own source is behind real time
        (s; its frames are owed, sent back to back once it runs again).
        """
        behind = time.monotonic() - self.video.startedAt - self.video.count / RATE
        return {"load": f"{os.getloadavg()[0]:.1f}",
                "late p99": f"{self.probe.percentile(index, 0.01)}",
                "late max": f"{self.probe.longest(index)}",
                "src lag": f"{max(0.0, behind):.2f}"}

    async def run(self) -> None:
        """SOAK_SECONDS of nothing but media and pings, metered."""
        self.t0 = time.monotonic()
        for counter in self.counters().values():
            counter.start = self.t0
        self.probe.start = self.t0
        table = meters.Table(self.counters(), self.tmp / "soak-table.txt",
                             extra=list((await asyncio.to_thread(self.sample)).keys())
                             + list(self.host(0)) + ["loop max"])
        self.readsBefore = self.lowWater[-1][1]
        self.lowWater.clear()
        self.cluster.clear()
        pid = self.server.proc.pid
        cpu = meters.cpuSeconds(pid)
        for index in range(self.buckets):
            end = self.t0 + (index + 1) * meters.BUCKET
            lag = 0.0  # the longest this process's event loop (its sources') woke late
            while (left := end - time.monotonic()) > 0:
                asked = time.monotonic() + min(1.0, left)
                await asyncio.sleep(min(1.0, left))
                lag = max(lag, time.monotonic() - asked)
                for node in filter(None, (self.server, self.second)):
                    if node.proc.poll() is not None:
                        raise AssertionError(f"a server exited with {node.proc.returncode}:"
                                             f"\n{node.log()[-3000:]}")
                self.rss.append((time.monotonic() - self.t0, self.server.rss()))
            before, cpu = cpu, meters.cpuSeconds(pid)
            asked = time.monotonic() + 0.3
            await asyncio.sleep(0.3)  # the last reports of the bucket
            lag = max(lag, time.monotonic() - asked)
            extra = await asyncio.to_thread(self.sample)
            table.row(index, self.rss[-1][1], cpu - before,
                      {**extra, **self.host(index), "loop max": f"{1000 * lag:.0f}"})
        self.ran = time.monotonic() - self.t0

    def starved(self) -> set[int]:
        """The buckets the host starved (meters.STARVED_LATE): the probe, or rtc-src."""
        source = self.video.sent
        return {i for i in range(self.buckets)
                if self.probe.starved(i) or source.fps(i) < MIN_SHARE * RATE}

    def lowBuckets(self) -> tuple[dict[str, list[int]], dict[tuple[str, int], str]]:
        """Each per-bucket check's buckets under its line, and what each measured."""
        c = self.counters()
        # Each player against its source; an encoder held up by the server
        # (not read, or cut) falls behind real time.
        pairs = [("bob", "rtc-src"), ("carol", "rtc-src"),
                 ("rtmp-1", "rtmp-src"), ("rtmp-2", "rtmp-src"),
                 ("rtmp-src", None), ("obs-src", None)]
        low: dict[str, list[int]] = {}
        said: dict[tuple[str, int], str] = {}  # (check, bucket) -> what it measured
        for name, source in pairs:
            for index in range(self.buckets):
                wanted = RATE if source is None else c[source].fps(index)
                if c[name].fps(index) < MIN_SHARE * wanted:
                    low.setdefault(name, []).append(index)
                    said[name, index] = f"{c[name].fps(index):.1f} of {wanted:.1f}"
        # An encoder starved of CPU sends less, so it is read less often:
        # the reads of the low-water check are judged as frame rates are.
        reads = [self.readsBefore] + [r for _, r in self.lowWater]
        for index in range(len(self.lowWater)):
            if reads[index + 1] - reads[index] < meters.BUCKET * RATE:
                low.setdefault("low-water reads", []).append(index)
                said["low-water reads", index] = (f"{reads[index + 1] - reads[index]:.0f} of "
                                                  f"at least {meters.BUCKET * RATE:.0f}")
        return low, said

    def frameRates(self) -> list[str]:
        c = self.counters()
        problems = []
        low, said = self.lowBuckets()
        if self.impairment is not None and "carol" in low:
            # Her lossy link: the whole run counts, her low buckets are facts.
            self.facts.append(f"carol (impaired) below {MIN_SHARE:.0%} of the source's fps in "
                              f"{len(low['carol'])} of {self.buckets} buckets: "
                              + meters.spans(low.pop("carol")))
            got, sent = (sum(c[n].counts.values()) for n in ("carol", "rtc-src"))
            if got < MIN_SHARE * sent:
                problems.append(f"carol (impaired) got {got} of {sent} frames in the run")

        def lows(name, indices):
            line = f"at least {RATE} a second" if name == "low-water reads" \
                else f"{MIN_SHARE:.0%} of the source's fps"
            return (f"{name} below {line} in {len(indices)} of {self.buckets} buckets: "
                    + "; ".join(f"{i * 10}-{i * 10 + 10} s: {said[name, i]}"
                                for i in indices[:6]))
        starved = self.starved()
        verdict = meters.judge(low, starved, self.buckets)
        problems += [lows(name, indices) for name, indices in verdict.server.items()]
        self.facts.append(f"host starved (probe p99 over {meters.STARVED_LATE} ms, or rtc-src "
                          f"under the line) in {len(starved)} of {self.buckets} buckets"
                          + (f": {meters.spans(sorted(starved))}" if starved else ""))
        self.facts += [f"host-explained: {lows(name, indices)}"
                       for name, indices in verdict.host.items()]
        if verdict.hostStarved:
            problems.append(f"HOST STARVED: {len(verdict.hostBuckets)} of {self.buckets} buckets "
                            f"low where the host starved (at most {verdict.tolerated} "
                            f"tolerated): {meters.spans(verdict.hostBuckets)}")
        return problems

    def mechanisms(self) -> list[str]:
        """The low-water marks held the encoders' sockets all along; the cluster held."""
        problems = list(self.cluster)
        encoders = len(self.encoders)
        short = [f"{i * 10}-{i * 10 + 10} s: {s:.0f} sockets"
                 for i, (s, _) in enumerate(self.lowWater) if s < encoders]
        if short:
            problems.append(f"low-water mark not on the {encoders} encoders' sockets in "
                            f"{len(short)} of {len(self.lowWater)} buckets: "
                            + "; ".join(short[:6]))
        held = metrics(self.server).get("wcs_player_nacks_held_total", 0.0)
        now = time.monotonic()
        for name, player in self.players.items():
            freeze, at = player.freeze(now)
            self.facts.append(f"{name}: longest freeze (no decoded video frame) {freeze:.2f} s, "
                              f"ended at {at - self.t0:.0f} s")
        if self.impairment is not None:
            self.facts.append(f"carol: {self.impairment.dropped} RTP packets dropped on her "
                              f"side; player NACKs held for reordering: {held:.0f}")
        return problems

    async def connections(self) -> list[str]:
        problems = []
        gone: dict[str, list[str]] = {}  # room event -> who got it
        for login, reader in self.readers.items():
            for when, frame in reader.frames:
                payload = frame["data"][0].get("payload", {}) if frame["data"] else {}
                if frame["message"] == "OnDataEvent" and payload.get("name") in GONE:
                    event = f"{payload['name']} {payload.get('info')} at {when - self.t0:.0f} s"
                    gone.setdefault(event, []).append(login)
                elif frame["message"] == "notifyStreamStatusEvent" \
                        and frame["data"][0].get("status") in ENDED:
                    problems.append(f"{login} got {frame['data'][0].get('status')} "
                                    f"{frame['data'][0].get('info')!r} at {when - self.t0:.0f} s")
            if reader.task.done():
                problems.append(f"{login} was disconnected")
                continue
            pong = asyncio.ensure_future(reader.waitFor(lambda f: f["message"] == "pong", WAIT))
            try:
                await reader.client.send("ping")
                await pong
            except (asyncio.TimeoutError, websockets.ConnectionClosed) as e:
                pong.cancel()
                problems.append(f"{login} got no pong: {e!r}")
        while not self.flash.calls.empty():
            name, args = self.flash.calls.get_nowait()
            if name == "OnDataEvent" and args[0]["payload"].get("name") in GONE:
                payload = args[0]["payload"]
                gone.setdefault(f"{payload['name']} {payload.get('info')} (flash)", []).append(
                    "flash")
        problems += [f"{', '.join(logins)} got {event}" for event, logins in gone.items()]
        if self.flash.task.done():
            problems.append("flash was disconnected")
        elif self.flash.lastPong is None or time.monotonic() - self.flash.lastPong > 15:
            problems.append("flash has not been pinged for 15 s")
        for name, player in self.players.items():
            if player.pc.connectionState != "connected":
                problems.append(f"{name}'s peer connection is {player.pc.connectionState}")
        for name, proc in {**self.encoders, **self.rtmpPlayers}.items():
            if not proc.running:
                problems.append(f"ffmpeg {name} exited with {proc.proc.returncode}: {proc.log()}")
        return problems

    async def outputs(self) -> list[str]:
        """Ends the recorded stream and the players: their files' durations."""
        problems = []
        await self.clients["alice"].send("unPublishStream", {
            "mediaSessionId": self.publishRequest["mediaSessionId"],
            "name": self.publishRequest["name"]})
        problems += await self.recording(time.monotonic())
        for name, player in self.rtmpPlayers.items():
            await asyncio.to_thread(player.stop)
            lasted = await asyncio.to_thread(meters.duration, player.logPath.with_suffix(".ts"))
            self.facts.append(f"{name}: output of {lasted:.1f} s in a {self.ran:.0f} s run")
            if lasted < self.ran - 10:
                problems.append(f"{name}'s output lasts {lasted:.1f} s of a {self.ran:.0f} s run")
        return problems

    async def recording(self, unpublished: float) -> list[str]:
        """
        The recording against what the source had sent when it was unpublished
        (its media clock: frames counted from its first), not against wall
        time: a source the host starved at the end is behind real time, and
        the server cannot record what was not sent yet (docs/performance.md,
        "The soak tells the host from the server").
        """
        problems = []
        sent, frames = self.video.count / RATE, self.video.count
        behind = unpublished - self.video.startedAt - sent
        tone = self.publisher.audioTrack
        self.facts.append(
            f"publish: the source's first video frame {self.publishedAt - self.video.startedAt:.2f}"
            f" s before PUBLISHING; by the unpublish it had sent {sent:.2f} s of video, "
            f"{max(0.0, behind):.2f} s behind real time (the host's), and "
            f"{tone.pts / tone.RATE:.2f} s of audio; published "
            f"{unpublished - self.publishedAt:.3f} s")
        mp4 = self.server.workdir / "state" / "records" / self.recordName
        try:
            await waitUntil(mp4.exists, f"{mp4.name}", timeout=60)
        except AssertionError as e:
            return [str(e)]
        recorded = await asyncio.to_thread(meters.duration, mp4)
        streams = await asyncio.to_thread(meters.packets, mp4)
        self.facts.append(f"recording: {recorded:.3f} s of the source's {sent:.3f} s")
        for kind, p in streams.items():
            gaps = ", ".join(f"{gap:.2f} s at {at:.1f} s" for at, gap in p["gaps"][:10])
            self.facts.append(f"recording {kind}: {p['first']:.3f}-{p['end']:.3f} s, "
                              f"{p['packets']} packets, {len(p['gaps'])} gaps over "
                              f"{meters.GAP} s" + (f": {gaps}" if gaps else ""))
        if recorded < sent - RECORD_SLACK:
            problems.append(f"recording lasts {recorded:.1f} s, the source sent {sent:.1f} s")
        elif recorded > sent + behind + RECORD_SLACK:  # longer than the source has been on
            problems.append(f"recording lasts {recorded:.1f} s, the source ran "
                            f"{sent + behind:.1f} s")
        got = streams.get("video", {}).get("packets", 0)
        if got < frames - RECORD_SLACK * RATE:  # lost in the middle: no shorter, but gaps
            problems.append(f"recording holds {got} of the source's {frames} video frames")
        # The file lasts as its longer track: the audio is judged on its own.
        audio = streams.get("audio", {}).get("end", 0.0)
        if audio < tone.pts / tone.RATE - RECORD_SLACK:
            problems.append(f"recording's audio ends at {audio:.1f} s, the source sent "
                            f"{tone.pts / tone.RATE:.1f} s")
        return problems

    def memory(self) -> list[str]:
        settled = [rss for when, rss in self.rss if when >= SETTLE]
        if len(settled) < 2:
            return []
        growth = max(settled) - settled[0]
        self.facts.append(f"server RSS: {settled[0] / 2**20:.1f} MB at {SETTLE:.0f} s, "
                          f"at most {max(settled) / 2**20:.1f} MB after")
        if growth >= RSS_GROWTH:
            return [f"server RSS grew {growth / 2**20:.1f} MB after {SETTLE:.0f} s "
                    f"({settled[0] / 2**20:.1f} -> {max(settled) / 2**20:.1f} MB)"]
        return []

    async def check(self) -> list[str]:
        problems = self.frameRates() + await asyncio.to_thread(self.mechanisms)
        problems += await self.connections()
        problems += await self.outputs()
        problems += self.memory()
        for node in filter(None, (self.server, self.second)):
            if "Traceback" in node.log():
                problems.append(f"the server log of {node.workdir.name} has a traceback")
        return problems

    async def close(self) -> None:
        if self.probe is not None:
            await asyncio.to_thread(self.probe.stop)
        for proc in (*self.rtmpPlayers.values(), *self.encoders.values()):
            await asyncio.to_thread(proc.stop)
        for reader in self.readers.values():
            await reader.stop()
        for peer in (self.publisher, *self.players.values()):
            if peer is not None:
                await peer.close()
        for client in self.clients.values():
            await asyncio.wait_for(client.close(), WAIT)
        if self.flash is not None:
            self.flash.close()


@contextlib.contextmanager
def servers(serverFactory, tmp_path):
    """(room server, second node or None, redis or None)."""
    enable = ("ws", "rtmp", "rest")
    if not CLUSTER:
        yield serverFactory(enable=enable, settings=MEDIA), None, None
        return
    if not redisAvailable():
        pytest.skip("SOAK_CLUSTER=1 needs redis-server")
    with runningCluster(tmp_path, {"a": MEDIA, "b": MEDIA}, enable=enable) as (redis, nodes):
        yield nodes["a"], nodes["b"], redis


async def test_healthy_clients_of_every_kind_stay_for_the_whole_run(serverFactory, tmp_path):
    ffmpeg.requireFFmpeg()
    with servers(serverFactory, tmp_path) as (server, second, redis):
        await soakWith(server, second, redis, tmp_path)


async def soakWith(server, second, redis, tmp_path):
    soak = Soak(server, tmp_path, second, redis)
    try:
        await asyncio.wait_for(soak.start(), 120)
        await asyncio.wait_for(soak.run(), SOAK_SECONDS + 60)
        problems = await asyncio.wait_for(soak.check(), 240)
    finally:
        await asyncio.wait_for(soak.close(), 120)
    print("\n".join(soak.facts + [f"table: {tmp_path / 'soak-table.txt'}"]))
    if problems:
        pytest.fail("\n".join(problems) + "\n\nend of the server log:\n" + server.log()[-3000:],
                    pytrace=False)
