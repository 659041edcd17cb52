"""
Meters for the soak test: frames counted in 10 s buckets of wall-clock time,
the server process's CPU time from /proc, ffmpeg processes whose
`-progress` output is counted as it comes, and the table a person watches.

Everything is counted, nothing kept: an hour at 15 fps must not hold 54000
decoded pictures in the test process.
"""

from __future__ import annotations

import asyncio
import fractions
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aiortc.mediastreams import MediaStreamError

from tests.media import peers

BUCKET = 10.0  # s
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BucketCounter:
    """Frames per BUCKET seconds from C{start}; frames before it are not counted."""

    def __init__(self):
        self.start: float | None = None
        self.counts: dict[int, int] = {}
        self.total = 0

    def add(self, count: int = 1, when: float | None = None) -> None:
        self.total += count
        if self.start is None:
            return
        when = time.monotonic() if when is None else when
        if when >= self.start:
            index = int((when - self.start) // BUCKET)
            self.counts[index] = self.counts.get(index, 0) + count

    def fps(self, index: int) -> float:
        return self.counts.get(index, 0) / BUCKET


class CountingVideo(peers.PatternVideo):
    """The tests' moving pattern at C{rate} frames a second, counted as sent."""

    CLOCK = 90000

    def __init__(self, rate: int, width=320, height=240):
        super().__init__(width, height)
        self.rate = rate
        self.sent = BucketCounter()
        self.startedAt: float | None = None

    async def next_timestamp(self):
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self.startedAt is None:
            self.startedAt = now
        else:  # on an absolute schedule: a late frame does not delay the next
            await asyncio.sleep(max(0.0, self.startedAt + self.count / self.rate - now))
        self.sent.add()
        return self.count * self.CLOCK // self.rate, fractions.Fraction(1, self.CLOCK)


class CountingPlayer(peers.Player):
    """An aiortc player that decodes and counts frames instead of keeping them."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.decoded = {"video": BucketCounter(), "audio": BucketCounter()}
        self.lastFrame: float | None = None  # monotonic time of the last video frame
        self.longestFreeze = (0.0, 0.0)  # s without a video frame, and when it ended

    def freeze(self, now: float) -> tuple[float, float]:
        """The longest time without a video frame so far (one going on counts)."""
        if self.lastFrame is None:
            return self.longestFreeze
        return max(self.longestFreeze, (now - self.lastFrame, now))

    async def _consume(self, track):
        try:
            while True:
                await track.recv()
                if track.kind == "video":
                    now = time.monotonic()
                    if self.decoded["video"].start is not None and self.lastFrame is not None:
                        self.longestFreeze = max(self.longestFreeze,
                                                 (now - self.lastFrame, now))
                    self.lastFrame = now
                self.decoded[track.kind].add()
                self.arrived[track.kind].set()
        except MediaStreamError:
            pass


class FFmpeg:
    """
    An ffmpeg process (encoder or player) with `-progress` on its stdout: a
    thread adds each report's new frames to C{frames}. Its stderr goes to
    C{logPath}.
    """

    def __init__(self, args: list[str], logPath: Path):
        self.logPath = logPath
        self.frames = BucketCounter()
        self.outTime = 0.0  # s of media written, as ffmpeg reports it
        with open(logPath, "wb") as log:
            self.proc = subprocess.Popen(
                ["ffmpeg", "-hide_banner", "-loglevel", "warning", "-nostdin", "-nostats",
                 "-progress", "pipe:1", "-stats_period", "0.2", *args],
                stdout=subprocess.PIPE, stderr=log, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        last = 0
        for line in self.proc.stdout:
            key, _, value = line.strip().partition("=")
            if key == "frame" and value.isdigit():
                frame = int(value)
                if frame > last:
                    self.frames.add(frame - last)
                last = max(last, frame)
            elif key == "out_time_us" and value.isdigit():
                self.outTime = int(value) / 1e6

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.logPath.read_text(errors="replace")[-1500:]

    def stop(self) -> int | None:
        """SIGINT (ffmpeg finishes its output), then kill; bounded."""
        return stopProcess(self.proc, self.reader, signal.SIGINT)


def stopProcess(proc: subprocess.Popen, reader: threading.Thread, sig: int) -> int | None:
    """C{sig}, then kill after 5 s; the reader of its stdout joined; bounded."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    reader.join(5)
    return proc.returncode


def encoder(url: str, seconds: float, rate: int, logPath: Path) -> FFmpeg:
    """Generated 320x240 H.264 (baseline) + AAC at C{rate} fps, in real time."""
    return FFmpeg(["-re", "-f", "lavfi", "-i", f"testsrc=size=320x240:rate={rate}",
                   "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
                   "-t", str(seconds), "-pix_fmt", "yuv420p", "-c:v", "libx264",
                   "-profile:v", "baseline", "-tune", "zerolatency", "-g", str(rate),
                   "-c:a", "aac", "-f", "flv", url], logPath)


def player(url: str, out: Path, logPath: Path) -> FFmpeg:
    """Plays C{url} into C{out} (MPEG-TS, streams copied: readable however it ends)."""
    return FFmpeg(["-i", url, "-c", "copy", "-f", "mpegts", "-y", str(out)], logPath)


def duration(path: Path) -> float:
    """The container's duration by ffprobe, 0 when unreadable."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
         str(path)], capture_output=True, text=True, timeout=60)
    try:
        return float(result.stdout.strip())
    except ValueError:
        return 0.0


GAP = 0.2  # s between packets of a stream: a gap in the recording


def packets(path: Path) -> dict[str, dict]:
    """
    Per stream kind of a recording, from ffprobe's packets: first and last
    pts (s, the last with its duration), packets, and the gaps over L{GAP}
    between pts in presentation order, as (pts before, seconds).
    """
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "packet=codec_type,pts_time,duration_time",
         "-of", "csv=p=0", str(path)], capture_output=True, text=True, timeout=300)
    times: dict[str, list[tuple[float, float]]] = {}
    for line in result.stdout.splitlines():
        kind, pts, duration = (line.split(",") + ["", ""])[:3]
        try:
            pts = float(pts)
        except ValueError:
            continue
        try:
            duration = float(duration)
        except ValueError:
            duration = 0.0
        times.setdefault(kind, []).append((pts, duration))
    streams = {}
    for kind, each in times.items():
        each.sort()  # decoding order is not presentation order (B-frames)
        gaps = [(a, b - a) for (a, _), (b, _) in zip(each, each[1:]) if b - a > GAP]
        streams[kind] = {"first": each[0][0], "end": max(p + d for p, d in each),
                         "packets": len(each), "gaps": gaps}
    return streams


def cpuSeconds(pid: int) -> float:
    """CPU time (utime + stime) a process has used so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


# A bucket is the host's (starved) when more than STARVED_SHARE of its 10 ms
# slots were served by the host probe over STARVED_LATE late (its p99
# lateness is over 100 ms: in over 0.1 s of the 10 s, a process that asked
# for the CPU had waited 100 ms for it), or when the test's own aiortc source
# (which needs no server to keep time) fell under the line.
STARVED_LATE = 100  # ms
STARVED_SHARE = 0.01
# More buckets than this share (at least one) explained by the host: the run
# is reported as host starved, not passed.
HOST_TOLERANCE = 0.05


class HostProbe:
    """
    tests/soak/hostprobe.py beside the soak: per bucket, how late each of its
    10 ms slots was served (whole ms, counted), from its stdout as it comes.
    """

    def __init__(self, seconds: float):
        self.start: float | None = None
        self.late: dict[int, Counter] = {}  # bucket -> {lateness ms: slots}
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("hostprobe.py")), str(seconds)],
            stdout=subprocess.PIPE, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.add(line)

    def add(self, line: str) -> None:
        """One slot as the probe printed it: C{<monotonic s> <lateness ms>}."""
        slot, _, late = line.partition(" ")
        if self.start is None or float(slot) < self.start:
            return
        index = int((float(slot) - self.start) // BUCKET)
        self.late.setdefault(index, Counter())[int(float(late))] += 1

    def slots(self, index: int) -> int:
        return sum(self.late.get(index, Counter()).values())

    def percentile(self, index: int, share: float) -> int:
        """The lateness (ms) that all but C{share} of the bucket's slots kept to."""
        late = self.late.get(index, Counter())
        allowed = share * sum(late.values())
        over = 0
        for ms in sorted(late, reverse=True):
            over += late[ms]
            if over > allowed:
                return ms
        return 0

    def longest(self, index: int) -> int:
        return max(self.late.get(index, {0: 0}))

    def starved(self, index: int) -> bool:
        late = self.late.get(index, Counter())
        over = sum(n for ms, n in late.items() if ms > STARVED_LATE)
        return over > STARVED_SHARE * sum(late.values())

    def stop(self) -> None:
        stopProcess(self.proc, self.reader, signal.SIGTERM)


@dataclass
class Verdict:
    """Low frame-rate buckets, told apart: the server's, and the host's."""

    server: dict[str, list[int]] = field(default_factory=dict)  # check -> buckets
    host: dict[str, list[int]] = field(default_factory=dict)
    hostBuckets: list[int] = field(default_factory=list)  # host-explained, each once
    tolerated: int = 0

    @property
    def hostStarved(self) -> bool:
        return len(self.hostBuckets) > self.tolerated


def judge(low: dict[str, list[int]], starved: set[int], buckets: int,
          tolerance: float = HOST_TOLERANCE) -> Verdict:
    """
    Each check's low buckets go to the host when the host was starved in that
    bucket, to the server otherwise. The run fails on any of the server's,
    and as host starved on more than C{tolerance} of the buckets (at least
    one) explained by the host.

    @param low: check -> indices of its buckets under the line.
    @param starved: indices of the buckets where the host was starved.
    """
    verdict = Verdict(tolerated=max(1, int(tolerance * buckets)))
    for name, indices in low.items():
        for index in indices:
            side = verdict.host if index in starved else verdict.server
            side.setdefault(name, []).append(index)
    verdict.hostBuckets = sorted({i for indices in verdict.host.values() for i in indices})
    return verdict


def spans(indices: list[int]) -> str:
    """Bucket indices as seconds of the run: C{1320-1330 s, 2270-2290 s}."""
    out: list[list[int]] = []
    for index in sorted(indices):
        if out and out[-1][1] == index:
            out[-1][1] = index + 1
        else:
            out.append([index, index + 1])
    return ", ".join(f"{int(a * BUCKET)}-{int(b * BUCKET)} s" for a, b in out)


class Table:
    """One row per bucket: fps of each named counter, server RSS and CPU."""

    def __init__(self, counters: dict[str, BucketCounter], path: Path, echo=print,
                 extra: list[str] = ()):
        """@param extra: names of more columns, whose values L{row} is given."""
        self.counters = counters
        self.path = path
        self.echo = echo
        self.extra = list(extra)
        self.rows: list[str] = []
        names = "".join(f"{name:>9}" for name in counters)
        more = "".join(f"{name:>9}" for name in self.extra)
        self._line(f"{'t (s)':>7}{names}{'RSS MB':>9}{'CPU %':>7}{more}")

    def _line(self, text: str) -> None:
        self.rows.append(text)
        self.echo(text)
        with open(self.path, "a") as out:
            out.write(text + "\n")

    def row(self, index: int, rss: int, cpuSeconds: float, extra: dict[str, str] = {}) -> None:
        fps = "".join(f"{counter.fps(index):>9.1f}" for counter in self.counters.values())
        more = "".join(f"{extra.get(name, ''):>9}" for name in self.extra)
        self._line(f"{int((index + 1) * BUCKET):>7}{fps}{rss / 2**20:>9.1f}"
                   f"{100 * cpuSeconds / BUCKET:>7.1f}{more}")
