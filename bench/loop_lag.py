"""
Event loop lag of the server while it transcodes: an aiortc publisher sends
VP8 + Opus over WebRTC, recorded with record_vp8=h264 and
record_audio_codec=aac (VP8 decoded, H.264 and AAC encoded, muxed), while an
ffmpeg RTMP player plays it (VP8 to H.264 and Opus to AAC again, for FLV).
The server's own lag probe (loop_lag_report, wcs/lag.py: a 20 ms timer,
how late it fires) reports every --report seconds; the reports that come
during the --seconds of measurement are printed with their summary:
p50 is the median of the intervals' p50, p99 the largest interval p99 (an
upper bound of the whole window's), max the largest delay seen. The same
figures for the server idle, over --idle seconds first, tell what the
machine's own load costs.

    .venv/bin/python bench/loop_lag.py [--seconds 30] [--idle 10] [--report 5] [--size 640x480]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.media import peers  # noqa: E402
from tests.rtmp import ffmpeg  # noqa: E402
from tests.support.rooms import MEDIA, negotiate, status, streamRequest  # noqa: E402
from tests.support.server import startServer  # noqa: E402
from tests.support.wsclient import Client  # noqa: E402

REPORT = re.compile(r"event loop lag over ([\d.]+)s: p50 ([\d.]+) ms, p99 ([\d.]+) ms, "
                    r"max ([\d.]+) ms \((\d+) samples\)")


def reports(text: str) -> list[tuple[float, ...]]:
    return [tuple(float(g) for g in m.groups()) for m in REPORT.finditer(text)]


async def window(server, seconds: float) -> list[tuple[float, ...]]:
    """The lag reports the server writes in the next C{seconds}."""
    before = len(reports(server.log()))
    await asyncio.sleep(seconds)
    return reports(server.log())[before:]


async def measure(server, seconds: float, idle: float, width: int, height: int) -> dict:
    idleReports = await window(server, idle)
    room = f"room-{uuid.uuid4().hex[:6]}"
    alice = await Client.open(server.wsURL, "alice")
    await alice.join(room)
    publisher = peers.Publisher(video="video/VP8", audio="audio/opus", width=width,
                                height=height)
    name = f"{room}-alice"
    request = streamRequest(name, room, await peers.offerOf(publisher.pc), True, record=True)
    await negotiate(alice, publisher.pc, "publishStream", request)
    recordName = (await status(alice, request["mediaSessionId"], "PUBLISHING"))["recordName"]
    played = server.workdir / "played.flv"
    player = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-i", f"rtmp://127.0.0.1:{server.ports['rtmp']}/live/{name}", "-c", "copy",
         str(played)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        await asyncio.sleep(5)  # the player started, the transcoders warm
        loadBefore = os.getloadavg()[0]
        during = await window(server, seconds)
        alive = player.poll() is None
    finally:
        ffmpeg.stop(player)
    complaint = player.stderr.read().decode(errors="replace")[-1500:]
    await alice.send("unPublishStream", {"mediaSessionId": request["mediaSessionId"],
                                         "name": name})
    await status(alice, request["mediaSessionId"], "UNPUBLISHED")
    await publisher.close()
    await alice.close()
    record = server.workdir / "state" / "records" / recordName
    deadline = time.monotonic() + 30
    while not record.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return {"reports": during, "idle": idleReports, "player alive": alive, "load": loadBefore,
            "player said": complaint, "played": ffmpeg.probe(played),
            "recorded": ffmpeg.probe(record) if record.exists() else {}}


def summary(rows: list[tuple[float, ...]]) -> str:
    return (f"p50 {statistics.median(r[1] for r in rows):.2f} ms, "
            f"p99 {max(r[2] for r in rows):.2f} ms, max {max(r[3] for r in rows):.1f} ms")


def frames(streams: dict, kind: str) -> str:
    stream = streams.get(kind)
    if not stream:
        return "none"
    return f"{stream['codec_name']} {stream.get('nb_read_frames', '?')} frames"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--report", type=int, default=5)
    parser.add_argument("--size", default="640x480")
    args = parser.parse_args()
    width, height = (int(x) for x in args.size.split("x"))
    work = Path(tempfile.mkdtemp())
    server = startServer(work / "server", enable=("ws", "rtmp"), settings=dict(
        MEDIA, media_video_codecs="VP8", record_vp8="h264", record_audio_codec="aac",
        loop_lag_report=str(args.report)))
    try:
        result = asyncio.run(measure(server, args.seconds, args.idle, width, height))
    finally:
        server.stop()
    rows = result["reports"]
    if not rows:
        sys.exit(f"no lag reports in the server log ({server.logPath})")
    print(f"VP8 {args.size} publisher, recorded to H.264 + AAC, played over RTMP; "
          f"{len(rows)} reports of {args.report} s; load average {result['load']:.1f} "
          f"before, {os.getloadavg()[0]:.1f} after")
    print("interval  p50 ms  p99 ms  max ms  samples")
    for seconds, p50, p99, top, samples in rows:
        print(f"{seconds:8.1f}  {p50:6.2f}  {p99:6.2f}  {top:6.1f}  {int(samples):7d}")
    print(f"loop lag: {summary(rows)}")
    if result["idle"]:
        print(f"idle server, before: {summary(result['idle'])}")
    print(f"RTMP player: {'playing' if result['player alive'] else 'EXITED'}, "
          f"{frames(result['played'], 'video')}, {frames(result['played'], 'audio')}")
    print(f"recording: {frames(result['recorded'], 'video')}, "
          f"{frames(result['recorded'], 'audio')}")
    # Without both tracks played and recorded the figures measure less work
    # than they claim: the run fails.
    missing = [f"{what} {kind}" for what in ("played", "recorded") for kind in ("video", "audio")
               if not result[what].get(kind)]
    if missing or not result["player alive"]:
        sys.exit(f"incomplete run, no {', '.join(missing) or 'player'}; "
                 f"the player said: {result['player said'] or 'nothing'}")


if __name__ == "__main__":
    main()
