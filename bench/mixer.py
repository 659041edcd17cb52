"""
Mixing speed of the room recording: N participants' recordings (H.264 +
AAC, 320x240, 10 s each, starting 1 s apart) mixed into one 640x480 grid
with labels by the same ffmpeg command the server runs. Prints the speed as
a multiple of real time for N = 2, 4, 9.

    .venv/bin/python bench/mixer.py [--counts 2,4,9] [--seconds 10]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wcs.recording.mixer import MixerSettings, Part, RoomMix, ffmpegCommand  # noqa: E402


def makeClip(path: Path, seconds: float, hue: int) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=25,hue=h={hue}",
         "-f", "lavfi", "-i", f"sine=frequency={300 + hue}:sample_rate=48000",
         "-t", str(seconds), "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "veryfast",
         "-c:a", "aac", str(path)], check=True, timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--counts", type=lambda s: [int(x) for x in s.split(",")],
                        default=[2, 4, 9])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    clips = []
    for i in range(max(args.counts)):
        clip = work / f"p{i}.mp4"
        makeClip(clip, args.seconds, 40 * i)
        clips.append(clip)
    settings = MixerSettings(mixerDisplayStreamName=True)
    print("streams  mixed duration s  wall s  speed x real time")
    for count in args.counts:
        mix = RoomMix("bench", [Part(f"user{i}", clips[i], float(i), float(i) + args.seconds)
                                for i in range(count)])
        output = work / f"mixed{count}.mp4"
        started = time.monotonic()
        subprocess.run(ffmpegCommand(mix, output, settings), check=True, timeout=600)
        wall = time.monotonic() - started
        print(f"{count:7d}  {mix.duration():16.1f}  {wall:6.1f}  {mix.duration() / wall:17.2f}")


if __name__ == "__main__":
    main()
