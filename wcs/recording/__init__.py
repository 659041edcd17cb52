"""
Per-stream recording.

A stream is recorded when its publisher asks (C{record: true} in
C{publishStream}, C{?record=true} on an RTMP publish) or when its room was
joined first with C{record: true}. Each recording is one file in the records
directory, C{stream-<uuid>-<streamName>.mp4}, the name the publisher gets as
C{recordName}. See L{wcs.recording.writer} for how it survives a crash.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import os

from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.internet.utils import getProcessOutputAndValue

from wcs.config import Key, declare
from wcs.logs import Logger
from wcs.recording.mixer import MixerSettings, Part, RoomMix, ffmpegAvailable, ffmpegCommand
from wcs.recording.transcoding import Transcoding, recordedTracks
from wcs.recording.writer import StreamWriter, containerFor, remuxToMP4

log = Logger()

declare(
    Key("offline_mixer_config", "str", "conf/offline_mixer.json",
        "settings of the mixed room recording (JSON)"),
    Key("on_multiple_record_hook_script", "str", "conf/on_multiple_record_hook.sh",
        "run when a room's mixed recording is done: ROOM MIXED_FILE SOURCE_FILE..."),
    Key("record_audio_codec", "str", "opus",
        "audio of recordings: opus (as it came) or aac (transcoded, for old players)"),
    Key("record_vp8", "str", "webm",
        "VP8 streams: webm (as they came) or h264 (transcoded, into MP4)"),
    Key("enable_empty_shift_writer", "bool", False,
        "align a room's recordings: each starts at the room's first stream, "
        "padded with black and silence"),
)


def fileName(streamName: str, extension: str = "mp4") -> str:
    safe = re.sub(r"[^\w.-]", "_", streamName)[:100] or "stream"
    return f"stream-{uuid.uuid4()}-{safe}.{extension}"


class Recorder:
    """
    A stream observer of the room server (C{RoomServer.streamObservers}) and a
    room observer (C{Rooms.observers}): records streams, and mixes a recorded
    room's streams when the room ends.
    """

    def __init__(self, directory: Path, clock=None, settings=None):
        self.directory = directory
        self.clock = clock
        self.settings = settings
        self.writers: dict[int, tuple[StreamWriter, Path]] = {}
        self.finishing: set = set()
        self.remuxes: dict[Path, object] = {}
        self.mixes: dict[int, RoomMix] = {}
        self.parts: dict[int, Part] = {}
        self.mixing: set = set()
        self.firstStreams: dict[int, float] = {}  # room -> time its first stream started
        self.shifts: dict[Path, float] = {}

    @staticmethod
    def wanted(stream) -> bool:
        if stream.request.record:
            return True
        participant = stream.participant
        return participant is not None and participant.room.record

    def streamStarted(self, stream) -> None:
        source = stream.media.source if stream.media is not None else None
        if source is None or not self.wanted(stream):
            return
        tracks = recordedTracks(source.tracks, self._setting("record_audio_codec", "opus"),
                                self._setting("record_vp8", "webm"))
        webm = containerFor(tracks) == "webm"
        name = fileName(stream.name, "webm" if webm else "mp4")
        target = self.directory / name
        # WebM is written in place; the rest goes through TS, then MP4.
        writer = StreamWriter(target if webm else target.with_suffix(".ts"), tracks)
        sink = writer if tracks == source.tracks else Transcoding(writer, source.tracks, tracks)
        source.attach(sink)
        source.requestKeyframe()
        self.writers[id(stream)] = (sink, target)
        stream.recordName = name
        log.info("recording {stream!r} to {name}", stream=stream.name, name=name)
        room = stream.participant.room if stream.participant is not None else None
        if room is not None and self.clock is not None and self._aligned():
            now = self.clock.seconds()
            first = self.firstStreams.setdefault(id(room), now)
            self.shifts[target] = now - first
        if room is not None and room.record and self.clock is not None:
            part = Part(stream.participant.login, target, self.clock.seconds() - room.createdAt)
            self.mixes.setdefault(id(room), RoomMix(room.name)).parts.append(part)
            self.parts[id(stream)] = part

    def streamEnded(self, stream) -> None:
        entry = self.writers.pop(id(stream), None)
        if entry is None:
            return
        sink, target = entry
        if stream.media is not None and stream.media.source is not None:
            stream.media.source.detach(sink)
        writer = sink.sink if isinstance(sink, Transcoding) else sink
        part = self.parts.pop(id(stream), None)
        if part is not None:
            room = stream.participant.room
            part.end = self.clock.seconds() - room.createdAt
        self._finish(writer, target)

    def _finish(self, writer: StreamWriter, target: Path):
        writer.close()
        if writer.frames == 0:
            writer.path.unlink(missing_ok=True)
            log.warn("recording {name} is empty: nothing came", name=target.name)
            return None
        shift = self.shifts.pop(target, 0.0)
        if writer.path == target:
            log.info("recording {name} finished", name=target.name)
            return None
        return self._remux(writer.path, target, shift)

    def _setting(self, name: str, default):
        return getattr(self.settings, name, default) if self.settings is not None else default

    def _aligned(self) -> bool:
        return bool(self.settings is not None and self.settings.enable_empty_shift_writer)

    def _remux(self, ts: Path, target: Path, shift: float = 0.0):
        finishing = deferToThread(remuxToMP4, ts, target, shift)
        self.finishing.add(finishing)

        def finished(_):
            log.info("recording {name} finished", name=target.name)

        def failed(failure):
            # The TS stays: nothing recorded is ever deleted on a failure.
            log.failure("recording {name} kept as {ts}: remux failed", failure,
                        name=target.name, ts=ts.name)

        finishing.addCallbacks(finished, failed)
        finishing.addBoth(lambda _: self.finishing.discard(finishing))
        self.remuxes[target] = finishing
        return finishing

    # Rooms

    def roomStarted(self, room) -> None:
        pass

    def roomEnded(self, room) -> None:
        self.firstStreams.pop(id(room), None)
        mix = self.mixes.pop(id(room), None)
        if mix is None or not room.record or not mix.parts:
            return
        for part in mix.parts:  # streams still live when the room ended
            if part.end is None:
                part.end = self.clock.seconds() - room.createdAt
        mixing = self._mix(mix)
        self.mixing.add(mixing)
        mixing.addBoth(lambda _: self.mixing.discard(mixing))

    @inlineCallbacks
    def _mix(self, mix: RoomMix):
        # The sources must be MP4s first.
        yield DeferredList([d for p in mix.parts if (d := self.remuxes.get(p.path)) is not None])
        ffmpeg = ffmpegAvailable()
        if ffmpeg is None:
            log.warn("room {room}: not mixed, ffmpeg is not installed", room=mix.room)
            return
        settings = MixerSettings.load(Path(self.settings.offline_mixer_config))
        output = self.directory / fileName(f"{mix.room}-mixed")
        sources = [p.path for p in mix.parts if p.path.exists()]
        log.info("room {room}: mixing {count} recordings into {name}",
                 room=mix.room, count=len(sources), name=output.name)
        started = self.clock.seconds()
        command = ffmpegCommand(mix, output, settings)
        out, err, code = yield getProcessOutputAndValue(ffmpeg, command[1:], env=os.environ)
        if code != 0:
            log.error("room {room}: mixing failed (ffmpeg exit {code}): {error}",
                      room=mix.room, code=code, error=err.decode("utf-8", "replace")[-500:])
            return
        log.info("room {room}: mixed in {seconds:.1f}s into {name}", room=mix.room,
                 seconds=self.clock.seconds() - started, name=output.name)
        yield self._runHook(mix.room, output, sources)

    @inlineCallbacks
    def _runHook(self, room: str, output: Path, sources: list[Path]):
        script = Path(self.settings.on_multiple_record_hook_script)
        if not script.is_file():
            log.warn("room {room}: hook {script} not found, not run", room=room,
                     script=str(script))
            return
        args = [room, str(output), *map(str, sources)]
        out, err, code = yield getProcessOutputAndValue(str(script), args, env=os.environ)
        if code != 0:
            # A failing hook is reported; nothing it was given is deleted.
            log.error("room {room}: hook {script} failed (exit {code}): {error}", room=room,
                      script=str(script), code=code,
                      error=err.decode("utf-8", "replace")[-500:])
        else:
            log.info("room {room}: hook {script} done", room=room, script=str(script))

    def recover(self):
        """Finish recordings a crash left as TS (at start-up)."""
        if not self.directory.is_dir():
            return []
        pending = []
        for ts in sorted(self.directory.glob("stream-*.ts")):
            target = ts.with_suffix(".mp4")
            if not target.exists():
                log.info("finishing {ts}, left by an earlier run", ts=ts.name)
                pending.append(self._remux(ts, target))
        return pending

    def close(self):
        """Shut down: finish every recording; the Deferred fires when all are files."""
        for sink, target in list(self.writers.values()):
            self._finish(sink.sink if isinstance(sink, Transcoding) else sink, target)
        self.writers.clear()
        return DeferredList(list(self.finishing), consumeErrors=True)
