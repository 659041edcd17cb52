"""ffmpeg as RTMP encoder and player, and ffprobe, for the tests."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

FFMPEG = shutil.which("ffmpeg")


def requireFFmpeg():
    if FFMPEG is None:
        pytest.skip("Debian's ffmpeg is not installed (make test installs it)")


def publish(url: str, seconds: float = 8, extra: list[str] = ()) -> subprocess.Popen:
    """An ffmpeg publishing generated H.264 (baseline) + AAC in real time."""
    requireFFmpeg()
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
         "-f", "lavfi", "-i", "testsrc=size=320x240:rate=15",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
         "-t", str(seconds), "-pix_fmt", "yuv420p", "-c:v", "libx264", "-profile:v", "baseline",
         "-tune", "zerolatency", "-g", "15", "-c:a", "aac", *extra, "-f", "flv", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def publishIntoRoom(url: str, room: str, login: str, watchers, seconds: float = 12,
                          extra: list[str] = ()) -> subprocess.Popen:
    """
    An encoder (L{publish}) that joins C{room} as C{login}: returned once
    each of C{watchers} (room members' clients) saw it join and publish
    C{ROOM-LOGIN}; stopped if one did not.
    """
    encoder = publish(url, seconds, extra)
    try:
        for client in watchers:
            assert (await client.roomEvent("JOINED", timeout=15))["info"] == login
            published = await client.roomEvent("PUBLISHED", timeout=15)
            assert published["info"] == {"login": login, "name": f"{room}-{login}"}
    except BaseException:
        stop(encoder)
        raise
    return encoder


def record(url: str, path: Path, seconds: float = 3, timeout: float = 30) -> subprocess.CompletedProcess:
    """An ffmpeg playing C{url} into C{path}, streams copied."""
    requireFFmpeg()
    return subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", url, "-t", str(seconds),
         "-c", "copy", str(path)], capture_output=True, text=True, timeout=timeout)


def probe(path: Path) -> dict[str, dict]:
    """codec_type -> stream facts, frames counted."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries",
         "stream=codec_type,codec_name,width,height,nb_read_frames", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=30)
    return {s["codec_type"]: s for s in json.loads(result.stdout or "{}").get("streams", [])}


def duration(path: Path) -> float:
    """Seconds of media in C{path}, as ffprobe reads its container."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=30)
    return float(json.loads(result.stdout or "{}").get("format", {}).get("duration", 0))


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
