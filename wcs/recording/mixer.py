"""
The mixed room recording: when a recorded room ends, its participants'
recordings become one file, a grid of their video (each tile shown while
that participant published) over their mixed audio, made by an ffmpeg
process so that live rooms never wait for it.
"""

from __future__ import annotations

import json
import math
import shutil
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from wcs.logs import Logger

log = Logger()

FONTS = ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
         "/usr/share/fonts/dejavu/DejaVuSans.ttf"]


@dataclass
class MixerSettings:
    """C{conf/offline_mixer.json}."""

    hasVideo: bool = True
    hasAudio: bool = True
    mixerDisplayStreamName: bool = False
    width: int = 640
    height: int = 480
    frameRate: int = 25

    @classmethod
    def load(cls, path: Path) -> "MixerSettings":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
            settings = cls(**known)
            for name, kind in (("width", int), ("height", int), ("frameRate", int)):
                if not isinstance(getattr(settings, name), kind) or getattr(settings, name) <= 0:
                    raise ValueError(f"{name} must be a positive whole number")
            return settings
        except FileNotFoundError:
            log.warn("mixer settings {path} not found: defaults used", path=str(path))
        except (OSError, ValueError, TypeError) as e:
            log.warn("mixer settings {path} unusable ({error}): defaults used",
                     path=str(path), error=e)
        return cls()


@dataclass
class Part:
    """One recorded stream of a room: who, which file, when (seconds from the room's start)."""

    login: str
    path: Path
    start: float
    end: float | None = None


@dataclass
class RoomMix:
    room: str
    parts: list[Part] = field(default_factory=list)

    def duration(self) -> float:
        return max((p.end or p.start) for p in self.parts) if self.parts else 0.0


LABEL_MAX = 40  # characters of a login shown on its tile


def label(login: str) -> str:
    """
    What a tile shows of a login: control and format characters (newlines,
    bidi overrides) as spaces, at most L{LABEL_MAX} characters.
    """
    shown = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") else c
                    for c in login)
    return shown if len(shown) <= LABEL_MAX else shown[:LABEL_MAX - 1] + "\u2026"


def _backslashed(text: str, special: str) -> str:
    return "".join("\\" + c if c in special else c for c in text)


def filterValue(text: str) -> str:
    """
    C{text} as one option value in a filter graph, read back by ffmpeg as
    exactly C{text}. Two levels unescape it: the filter's options (C{:}
    separates them, white space at either end is trimmed) and then the
    graph (C{[ ] , ;} end a filter); both treat C{\\} and C{'} as escapes.
    drawtext itself must get C{expansion=none}, or C{%{...}} in the text is
    evaluated (C{%{e:while(1,0)}} never ends).
    """
    return _backslashed(_backslashed(text, "\\':\t\n\r "), "\\'[],;")


def onGrid(part: Part, rate: int, duration: float) -> tuple[int, float]:
    """
    Where C{part} goes on the mix's frame grid: the tick its first frame is
    shown at, and when it ends, moved by as much as its start was.

    A start between two ticks would leave each frame to ffmpeg's rounding
    to the nearest tick: half-way between, two neighbouring frames could
    round to one tick and a frame was lost (a start of 0.1 s at 15 fps);
    and the first frame, rounded down before the tile is enabled, was
    never shown. On a tick, a recording at the mix's rate shows every
    frame; at another rate the frames are as close as ticks allow.
    """
    tick = round(part.start * rate)
    end = part.end if part.end is not None else duration
    return tick, end + (tick / rate - part.start)


def ffmpegCommand(mix: RoomMix, output: Path, settings: MixerSettings,
                  loglevel: str = "error") -> list[str]:
    """The ffmpeg command that mixes C{mix} into C{output}."""
    parts = [p for p in mix.parts if p.path.exists()]
    rate, whole = settings.frameRate, mix.duration()
    placed = [onGrid(p, rate, whole) for p in parts]
    duration = max(0.1, whole, *(end for _, end in placed))
    logins = list(dict.fromkeys(p.login for p in parts))
    columns = max(1, math.ceil(math.sqrt(len(logins))))
    rows = max(1, math.ceil(len(logins) / columns))
    tileW, tileH = settings.width // columns // 2 * 2, settings.height // rows // 2 * 2
    font = next((f for f in FONTS if Path(f).exists()), None)
    args = ["ffmpeg", "-hide_banner", "-loglevel", loglevel, "-y"]
    for part in parts:
        args += ["-i", str(part.path)]
    graph = [f"color=c=black:s={settings.width}x{settings.height}:r={rate}"
             f":d={duration:.3f}[base0]"]
    audio = []
    half = 0.5 / rate  # the enable window's margin: ticks are not exact in decimals
    for i, (part, (tick, end)) in enumerate(zip(parts, placed)):
        tile = logins.index(part.login)
        x, y = (tile % columns) * tileW, (tile // columns) * tileH
        tag = ""
        if settings.mixerDisplayStreamName and font:
            text = filterValue(label(part.login))
            tag = (f",drawtext=fontfile={filterValue(font)}:expansion=none:text={text}"
                   f":x=8:y=h-th-8:fontsize={max(12, tileH // 12)}:fontcolor=white"
                   ":box=1:boxcolor=black@0.6")
        graph.append(f"[{i}:v]setpts=PTS-STARTPTS+{tick}/{rate}/TB,"
                     f"scale={tileW}:{tileH}:force_original_aspect_ratio=decrease,"
                     f"pad={tileW}:{tileH}:(ow-iw)/2:(oh-ih)/2{tag}[v{i}]")
        graph.append(f"[base{i}][v{i}]overlay={x}:{y}:eof_action=pass"
                     f":enable='between(t,{tick / rate - half:.4f},{end + half:.4f})'"
                     f"[base{i + 1}]")
        delay = int(tick * 1000 / rate)  # the audio stays with its video
        # Recordings' Opus may carry no named layout: name it, or AAC refuses.
        audio.append(f"[{i}:a]aresample=48000,aformat=channel_layouts=stereo,"
                     f"adelay={delay}|{delay}[a{i}]")
    maps = []
    if settings.hasVideo:
        maps += ["-map", f"[base{len(parts)}]"]
    else:
        graph = graph[:1]
    if settings.hasAudio and parts:
        graph += audio
        graph.append("".join(f"[a{i}]" for i in range(len(parts)))
                     + f"amix=inputs={len(parts)}:normalize=0:duration=longest,"
                     "aformat=channel_layouts=stereo[aout]")
        maps += ["-map", "[aout]"]
    args += ["-filter_complex", ";".join(graph), *maps, "-t", f"{duration:.3f}"]
    if settings.hasVideo:
        args += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
    if settings.hasAudio:
        args += ["-c:a", "aac"]
    return args + ["-movflags", "+faststart", str(output)]


def ffmpegAvailable() -> str | None:
    return shutil.which("ffmpeg")
