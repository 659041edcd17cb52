"""
Headless Chromium players in the network lab: the room's stream played by
the official SDK's Room API in Debian's `chromium`, the stamp of
tests/netlab/stamp.py read back from each frame the page's compositor
takes, measured like the aiortc players of tests/netlab/media.py.

Own address. The impairer tells links apart by address, and Chromium has
no switch to bind its WebRTC sockets to one: it gathers on every interface
it sees. So each Chromium player lives in a network namespace of its own,
joined to the lab's by a veth pair (`pcN` in the lab, `eth0` in the
player's), whose only IPv4 address is the player's, 127.0.2.(N+1)/32, with
127.0.0.0/8 routed to the lab (`route_localnet`: the kernel otherwise
drops 127/8 on a non-loopback interface). The lab routes that address
back into the veth. What the server sends to the player passes the lab's
OUTPUT chain (the impairer's queue, link `playerN.down`); what the player
sends arrives from the veth and passes INPUT, where a second rule queues
UDP from `pcN` (`playerN.up`): each packet is queued once.

Clock. The stamp carries the publisher's CLOCK_MONOTONIC (ms); the page's
frame times are `performance.now()`. The harness reads `performance.now()`
between two of its own monotonic readings, several times, and keeps the
tightest pair: offset = their midpoint - the page's time, within half that
round trip (C{clockErrorMs} in the result), checked again at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.netlab import stamp, webrtcfreeze
from tests.netlab.cpu import CpuMeter
from tests.netlab.firewall import Side
from tests.netlab.lab import enteredNamespace, playerAddress, publisherAddress
from tests.netlab.media import (CODECS, FREEZE, MAX_DELAY_MS, Decoded, MeasuringPlayer, RoomRun,
                                SentCounter, StampedVideo, percentile, slices)
from tests.media import peers
from tests.web.browser import FLAGS, requireChromium

HERE = Path(__file__).parent
PAGE = (HERE / "chromium-player.html").read_bytes()
PAGE_PATH = "/netlab/player.html"
# The pages' measuring half (stamps, getStats()), shared by the wcs and Janus pages.
MEASURE = (HERE / "chromium-measure.js").read_bytes()
MEASURE_PATH = "/netlab/measure.js"
SYNC_ROUNDS = 15
PLAY_TIMEOUT = 60.0
# The page is served by Playwright (no address of its own, so "public" to
# Chromium's Local Network Access checks, which would then block its
# WebSocket to the server on 127.0.0.1). Chromium takes the last
# --disable-features only: one list.
FEATURES = "--disable-features="
LAB_FLAGS = [f for f in FLAGS if not f.startswith(FEATURES)] + [
    FEATURES + ",".join([f[len(FEATURES):] for f in FLAGS if f.startswith(FEATURES)]
                        + ["LocalNetworkAccessChecks", "BlockInsecurePrivateNetworkRequests"])]
STATS_KEYS = ("framesDecoded", "framesDropped", "freezeCount", "totalFreezesDuration",
              "nackCount", "pliCount", "firCount", "keyFramesDecoded", "packetsLost",
              "packetsReceived", "bytesReceived", "retransmittedPacketsReceived",
              "jitterBufferDelay", "jitterBufferEmittedCount", "framesReceived",
              "totalInterFrameDelay", "totalSquaredInterFrameDelay",
              "jitterBufferTargetDelay", "jitterBufferMinimumDelay", "totalDecodeTime",
              "totalAssemblyTime", "framesAssembledFromMultiplePackets",
              "totalProcessingDelay")


def inLab(lab, *command: str) -> str:
    done = subprocess.run(["nsenter", f"--net={lab.nsPath}", *command],
                          capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")
    return done.stdout


class PlayerNamespace:
    """The network namespace of lab player C{index}, on its own veth to the lab."""

    def __init__(self, lab, index: int):
        self.lab, self.index = lab, index
        self.address = playerAddress(index)
        self.labSide = f"pc{index}"
        self.side = Side()
        try:
            self.side.waitForNamespace()
            self._plumb()
        except BaseException:
            self.close()
            raise

    def _plumb(self) -> None:
        lab, side, veth = self.lab, self.side, self.labSide
        add = ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0",
               "netns", str(side.proc.pid)]
        try:
            inLab(lab, *add)
        except RuntimeError:
            # The previous run's pcN: its namespace is gone, but the kernel
            # removes the veth later (it cleans namespaces up asynchronously).
            inLab(lab, "ip", "link", "del", veth)
            inLab(lab, *add)
        for run, iface in ((lambda *c: inLab(lab, *c), veth), (side.run, "eth0")):
            run("sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1",
                f"net.ipv4.conf.{iface}.route_localnet=1", "net.ipv4.conf.all.rp_filter=0",
                f"net.ipv4.conf.{iface}.rp_filter=0")
            run("ip", "link", "set", iface, "up")
        # The lab: this address is behind the veth (a /32 beats the lab's
        # local 127.0.0.0/8), and what comes from there is queued in INPUT.
        inLab(lab, "ip", "route", "add", f"{self.address}/32", "dev", veth, "table", "local")
        rule = ["INPUT", "-i", veth, "-p", "udp", "-j", "NFQUEUE", "--queue-num", "0"]
        with contextlib.suppress(RuntimeError):  # a rule left by an earlier player N
            inLab(lab, "iptables", "-D", *rule)
        inLab(lab, "iptables", "-A", *rule)
        # The player: its address only, no IPv6 (no candidate the lab cannot reach).
        side.run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        deadline = time.monotonic() + 10  # the holder brings lo up after unsharing
        while "127.0.0.1" not in side.run("ip", "-4", "addr", "show", "dev", "lo"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"player {self.index}: lo never came up")
            time.sleep(0.01)
        side.run("ip", "addr", "del", "127.0.0.1/8", "dev", "lo")
        side.run("ip", "addr", "add", f"{self.address}/32", "dev", "eth0")
        side.run("ip", "route", "add", "127.0.0.0/8", "dev", "eth0", "src", self.address)

    def entered(self):
        return enteredNamespace(self.side.nsPath)

    def close(self) -> None:
        self.side.close()  # the namespace, and the veth pair with it


def _served(url: str, body: bytes, kind: str):
    """Playwright's (matcher, handler) that serves C{body} at C{url}, whatever the query."""
    return (lambda address: address.split("?")[0] == url,
            lambda route: route.fulfill(body=body, content_type=kind))


class ChromiumPlayer:
    """One headless Chromium (its own Playwright driver) in its own namespace."""

    def __init__(self, lab, index: int):
        self.index = index
        self.net = PlayerNamespace(lab, index)
        self.playwright = self.browser = self.page = None
        self.console: list[str] = []
        self.clock: list[tuple[float, float]] = []  # (offset ms, error ms) per sync
        self.frames: list[tuple] = []  # the page's frames, times in harness s

    async def start(self) -> "ChromiumPlayer":
        from playwright.async_api import async_playwright

        # The driver, and so the Chromium it starts, is made in the namespace.
        with self.net.entered():
            self.playwright = await async_playwright().start()
        self.browser = await self.playwright.chromium.launch(
            executable_path=requireChromium(), args=LAB_FLAGS)
        self.page = await self.browser.new_page()
        self.page.on("console", lambda m: self.console.append(m.text))
        self.page.on("pageerror", lambda e: self.console.append(f"page error: {e}"))
        return self

    async def play(self, origin: str, page: bytes, query: str) -> None:
        """Open C{page} (served by Playwright at C{origin}, with the measuring script) and
        wait for its first stamped frame."""
        url = f"{origin}{PAGE_PATH}"
        for path, body, kind in ((PAGE_PATH, page, "text/html"),
                                 (MEASURE_PATH, MEASURE, "text/javascript")):
            await self.page.route(*_served(f"{origin}{path}", body, kind))
        await self.page.goto(f"{url}?{query}")
        try:
            await self.page.wait_for_function(
                "window.netlab && (netlab.state === 'failed' || netlab.frames.some(f => f[1] >= 0))",
                timeout=PLAY_TIMEOUT * 1000, polling=200)
        except Exception:
            raise AssertionError(f"chromium{self.index}: no stamped frame: "
                                 f"{await self._state()}") from None
        state = await self._state()
        if state["state"] == "failed":
            raise AssertionError(f"chromium{self.index}: {state}")

    async def _state(self) -> dict:
        return {**await self.page.evaluate(
            "window.netlab ? {state: netlab.state, error: netlab.error, frames: netlab.frames.length,"
            " connections: window.__pcs.map(p => p.iceConnectionState + '/' + p.connectionState)}"
            " : {state: 'no page', error: document.title, frames: 0}"),
            "console": self.console[-20:]}

    async def syncClock(self) -> tuple[float, float]:
        """(offset, error) in ms: harness monotonic ms = page ms + offset, within error."""
        best = None
        for _ in range(SYNC_ROUNDS):
            before = time.monotonic() * 1000
            page = await self.page.evaluate("performance.now()")
            after = time.monotonic() * 1000
            if best is None or after - before < 2 * best[1]:
                best = ((before + after) / 2 - page, (after - before) / 2)
        self.clock.append(best)
        return best

    async def stats(self) -> list[dict]:
        return await self.page.evaluate("netlab.stats()")

    def offsetMs(self) -> float:
        """Harness ms = page ms + this, from the tightest of the clock syncs."""
        return min(self.clock, key=lambda c: c[1])[0]

    async def decoded(self) -> list[Decoded]:
        """Every frame so far, on the harness's clock."""
        offset = self.offsetMs()
        self.frames = [(round((f[0] + offset) / 1000, 4), *f[1:])
                       for f in await self.page.evaluate("netlab.frames")]
        out = []
        for at, counter, sentMs, *_ in self.frames:
            delay = stamp.delayMs(sentMs, int(at * 1000)) if counter >= 0 else None
            if delay is not None and delay >= MAX_DELAY_MS:
                counter = delay = None
            out.append(Decoded(at, None if counter is None or counter < 0 else counter,
                               delay, False))
        return out

    def arrivalDelays(self, start: float, end: float) -> dict:
        """
        The painted frames' delay split at their arrival (after L{decoded}):
        C{arrivalP50/P95}, stamp to the frame's last packet received
        (C{receiveTime}: publisher, links, server), and C{browserP50/P95},
        from there to its paint (jitter buffer, decoder, compositor: whole
        display refreshes). It tells a server's share of a delay apart from
        the refresh a frame happened to be painted at.
        """
        offset = self.offsetMs()
        arrivals, browser = [], []
        for at, counter, sentMs, received, _ in self.frames:
            if not start <= at < end or counter < 0 or received < 0:
                continue
            receivedMs = received + offset
            delay = stamp.delayMs(sentMs, int(receivedMs))
            if delay < MAX_DELAY_MS:
                arrivals.append(delay)
                browser.append(round(at * 1000 - receivedMs))
        arrivals.sort()
        browser.sort()
        return {"arrivalP50": percentile(arrivals, 0.5), "arrivalP95": percentile(arrivals, 0.95),
                "browserP50": percentile(browser, 0.5), "browserP95": percentile(browser, 0.95)}

    def webrtcFreezes(self, start: float, end: float) -> int:
        """webrtc's freezes (its getStats() definition) in the painted frames of the window."""
        return len(webrtcfreeze.freezes([f[0] * 1000 for f in self.frames if start <= f[0] < end]))

    def freezeSpans(self, start: float, end: float) -> list[list[float]]:
        """[from, to] of each gap of more than FREEZE s between painted frames of the window."""
        times = [start] + [f[0] for f in self.frames if start <= f[0] < end] + [end]
        return [[a, b] for a, b in zip(times, times[1:]) if b - a > FREEZE]

    def presentedFps(self, start: float, end: float) -> float | None:
        """Frames the compositor presented in the window (after L{decoded}), callbacks or not."""
        window = [f[4] for f in self.frames if start <= f[0] < end]
        return round((window[-1] - window[0]) / (end - start), 1) if len(window) > 1 else None

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.browser is not None:
                await asyncio.wait_for(self.browser.close(), 10)
        with contextlib.suppress(Exception):
            if self.playwright is not None:
                await asyncio.wait_for(self.playwright.stop(), 10)
        self.net.close()


@dataclass
class _Frames:
    """What L{MeasuringPlayer.figures} reads: the same figures for both kinds of player."""

    decoded: list
    countsKeyframes: bool = False


def _statsDelta(before: list[dict], after: list[dict], seconds: float) -> dict:
    """Window deltas of the video inbound-rtp counters (one played stream)."""
    if not after:
        return {}
    first = before[0] if before else {}
    last = after[0]
    delta = {key: round(last.get(key, 0) - first.get(key, 0), 3) for key in STATS_KEYS}
    emitted = delta["jitterBufferEmittedCount"]
    # Mean interval between decoded frames as webrtc saw them (its freeze's "mean").
    intervals = delta["framesDecoded"] - 1
    return {
        "interFrameMs": (round(delta["totalInterFrameDelay"] * 1000 / intervals, 1)
                         if intervals > 0 else None),
        "decodedFps": round(delta["framesDecoded"] / seconds, 1),
        "jitterBufferMs": round(delta["jitterBufferDelay"] * 1000 / emitted) if emitted else None,
        "localAddress": last.get("localAddress"),
        "ssrc": last.get("ssrc"),  # ours: the player's SSRC in wcs's media_trace_file
        # Per emitted frame: what webrtc aimed its jitter buffer at, and per
        # decoded frame the decoder's time (ms).
        "targetDelayMs": (round(delta["jitterBufferTargetDelay"] * 1000 / emitted)
                          if emitted else None),
        "decodeMs": (round(delta["totalDecodeTime"] * 1000 / delta["framesDecoded"], 1)
                     if delta["framesDecoded"] else None),
        "sdpFmtpLine": last.get("sdpFmtpLine"), "mimeType": last.get("mimeType"),
        "remoteSdp": last.get("remoteSdp"), "localSdp": last.get("localSdp"),
        **delta,
    }


@dataclass
class ChromiumRoomRun(RoomRun):
    """
    L{tests.netlab.media.RoomRun} with headless Chromium players: the same
    aiortc publisher (stamped picture, through C{room}.publish), then
    C{players} pages of the SDK in the room, measured over the window.
    C{httpURL}: the server's http port, which serves the SDK to the pages.
    """

    httpURL: str = ""

    def pageFor(self, room, index: int) -> tuple[str, bytes, str]:
        """(origin, page, query) of player C{index}: the SDK's page, on wcs's http port."""
        return self.httpURL, PAGE, f"server={room.url}&room={room.room}&login=chromium{index}"

    def newPlayer(self, lab, index: int) -> ChromiumPlayer:
        return ChromiumPlayer(lab, index)

    async def _run(self, room, lab, pcs) -> dict:
        players = []
        try:
            return await self._runPlayers(room, lab, pcs, players)
        finally:
            for player in players:
                await player.close()

    async def _runPlayers(self, room, lab, pcs, players) -> dict:
        publisher = peers.newPeer()
        pcs.append(publisher)
        video = StampedVideo(self.width, self.height)
        peers._prefer(publisher.addTransceiver(video, direction="sendonly"),
                      CODECS[self.codec], self.rtx)
        await room.publish(publisher, publisherAddress(0))
        sent = SentCounter(publisher)
        for index in range(self.players):
            players.append(await self.newPlayer(lab, index).start())
        await asyncio.gather(*(p.play(*self.pageFor(room, p.index)) for p in players))
        await asyncio.sleep(self.warmup)
        for player in players:
            await player.syncClock()
        before = [await p.stats() for p in players]
        lab.reset()
        sent.reset()
        cpu = CpuMeter().start()
        start, made = time.monotonic(), video.count
        memory = await self._memoryOver(start)
        end, made = time.monotonic(), video.count - made
        cores = cpu.stop()
        counters = lab.stats()
        links = counters["links"]
        after = [await p.stats() for p in players]
        seconds = end - start
        for player in players:
            await player.syncClock()

        def kbit(name):
            counters = links.get(name)
            return round(counters["bytes"] * 8 / seconds / 1000) if counters else None

        perPlayer, painted = [], []
        for i, player in enumerate(players):
            painted.append(_Frames(await player.decoded()))
            figures = MeasuringPlayer.figures(painted[-1], start, end)
            (first, firstError), (last, lastError) = player.clock[0], player.clock[-1]
            stats = _statsDelta(before[i], after[i], seconds)
            # fps: what Chromium decoded (issue 16's figure). After a hole in
            # the jitter buffer frames come out in a burst, and the page
            # paints only the last of those that arrive within one vsync:
            # paintedFps is what the viewer saw, freezes are gaps between paints.
            perPlayer.append(dict(
                figures, fps=stats.get("decodedFps"), paintedFps=figures["fps"],
                kind="chromium", downlinkKbit=kbit(f"player{i}.down"),
                uplinkKbit=kbit(f"player{i}.up"), presentedFps=player.presentedFps(start, end),
                paintedWebrtcFreezes=player.webrtcFreezes(start, end),
                **player.arrivalDelays(start, end),
                # On the monotonic clock, as the trace (bench/chromefreeze.py).
                freezeSpans=player.freezeSpans(start, end),
                tailDropped=links.get(f"player{i}.down", {}).get("tailDropped"),
                clockErrorMs=round(max(firstError, lastError), 2),
                clockDriftMs=round(last - first, 2),
                stats=stats))
        self.result = {
            "codec": self.codec, "players": self.players, "playerKind": "chromium",
            "seconds": round(seconds, 1), "publisherFps": round(made / seconds, 1),
            "windowStart": round(start, 4),
            "uplinkKbit": kbit("publisher0.up"), "rtx": self.rtx,
            "publisherMediaKbit": round(sent.media * 8 / seconds / 1000),
            "publisherResentKbit": round(sent.resent * 8 / seconds / 1000),
            # UDP of no client's link: none, when every client's traffic took its link.
            "unmatchedPackets": counters["unmatched"],
            "cpuCores": cores,  # the lab's own CPU over the window (tests/netlab/cpu.py)
            "perPlayer": perPlayer,
        }
        if self.slice:
            # Per slice, what the pages painted (fps there is painted frames).
            self.result["slices"] = slices(painted, start, end, self.slice)
        if memory:
            self.result["serverMB"] = memory
        return self.result


STATS_COLUMNS = ("server", "profile", "codec", "player", "address", "painted fps",
                 "presented fps", "decoded fps", "received frames",
                 "freezeCount", "webrtc freezes in paints", "freezes s", "inter-frame ms", "nackCount", "pliCount", "retransmitted",
                 "packetsLost", "jitter buffer ms", "target ms", "decode ms", "keyframes",
                 "framesDropped", "arrival p50 / p95 ms", "browser p50 / p95 ms", "clock error ms")


def sdpSummary(sdp: str | None) -> str | None:
    """
    What a server's description told the player about its video: the codec
    and its fmtp, the rtcp-fb lines, RTX and the header extensions (the
    last part of each URI), to compare servers in one line.
    """
    if not sdp:
        return None
    video = sdp.split("m=video", 1)[-1].split("\nm=", 1)[0]
    lines = [line.strip() for line in video.splitlines()]
    # " PORT PROTO PT ...": the first format is the codec the server sends.
    fields = video.split("\n", 1)[0].split()
    payloadType = fields[2] if len(fields) > 2 else ""

    def values(prefix):
        return [line[len(prefix):] for line in lines if line.startswith(prefix)]

    codec = " ".join(values(f"a=rtpmap:{payloadType} ") + values(f"a=fmtp:{payloadType} "))
    feedback = ", ".join(values(f"a=rtcp-fb:{payloadType} "))
    rtx = " ".join(f for f in values("a=fmtp:")
                   if f.split(" ", 1)[-1].startswith(f"apt={payloadType}"))
    extensions = ", ".join(e.split()[-1].rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
                           for e in values("a=extmap:"))
    return (f"{codec}; rtcp-fb {feedback or '-'}; rtx {rtx or '-'}; "
            f"extensions {extensions or '-'}")


def statsRows(results: list[dict]):
    """bench/network.py's second table: each Chromium player's getStats() over the window."""
    for result in results:
        for index, player in enumerate(result["perPlayer"]):
            stats = player.get("stats")
            if stats is None:
                continue
            yield (result["server"], result["profile"], result["codec"], index,
                   stats.get("localAddress"), player["paintedFps"], player["presentedFps"],
                   stats.get("decodedFps"), stats.get("framesReceived"),
                   stats.get("freezeCount"), player.get("paintedWebrtcFreezes"),
                   stats.get("totalFreezesDuration"), stats.get("interFrameMs"),
                   stats.get("nackCount"), stats.get("pliCount"),
                   stats.get("retransmittedPacketsReceived"), stats.get("packetsLost"),
                   stats.get("jitterBufferMs"), stats.get("targetDelayMs"), stats.get("decodeMs"),
                   stats.get("keyFramesDecoded"), stats.get("framesDropped"),
                   f"{player.get('arrivalP50')} / {player.get('arrivalP95')}",
                   f"{player.get('browserP50')} / {player.get('browserP95')}",
                   player["clockErrorMs"])
