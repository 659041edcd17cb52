"""
Per-stream recording.

A stream is recorded when its publisher asks (C{record: true} in
C{publishStream}, C{?record=true} on an RTMP publish) or when its room was
joined first with C{record: true}. Each recording is one file in the records
directory, C{stream-<uuid>-<streamName>.mp4}, the name the publisher gets as
C{recordName}. See L{wcs.recording.writer} for how it survives a crash.

Each recording's transcode (if any) and mux run in its own L{OffloadedSink}
worker, off the reactor thread; the file is finished there too, after the
frames already queued.
"""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path

from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.internet.threads import deferToThread

from wcs.config import Key, declare
from wcs.errors import StreamError
from wcs.logs import LogLimiter, Logger, clip
from wcs.offload import OffloadedSink
from wcs.recording import process
from wcs.recording.mixer import MixerSettings, Part, RoomMix, ffmpegAvailable, ffmpegCommand
from wcs.recording.transcoding import Transcoding, recordedTracks
from wcs.recording.writer import StreamWriter, containerFor, remuxToMP4, startsFile

log = Logger()
limited = LogLimiter(log)

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
    Key("record_min_free_mb", "int", 1024,
        "no new recording when the records directory's disk has less free (MB); 0: no check"),
    Key("record_max_duration", "int", 86400,
        "a recording ends (its file finished) after this many seconds; the stream "
        "goes on; 0: no limit"),
    Key("mix_timeout", "int", 7200,
        "a room mix's ffmpeg is killed after this many seconds; 0: no limit"),
    Key("hook_timeout", "int", 600,
        "the mix hook script is killed after this many seconds; 0: no limit"),
    Key("mix_max_concurrent", "int", 1,
        "room mixes (with their hook) running at once; more wait their turn"),
    Key("mix_queue_max", "int", 16,
        "room mixes waiting for a turn; one more is refused (its recordings stay)"),
)

# What the publisher is told (the info of a PUBLISHING status) when its
# stream goes on unrecorded.
RECORD_FAILED = "Recording failed: {error}"
RECORD_REFUSED = "Recording refused: less than {mb} MB free on the server"
RECORD_TOO_LONG = "Recording stopped: longer than {seconds} s"


# Frames a recording's worker may have queued (audio and video, about 3 s):
# a recording waits rather than drops through a slow moment (its encoder
# opening, a busy disk), but not for ever.
RECORD_QUEUE = 240

NAME_BYTES = 100  # of the stream name in a file name (file names are at most 255 bytes)


def fileName(streamName: str, extension: str = "mp4", suffix: str = "") -> str:
    """
    C{stream-<uuid>-<name><suffix>.<extension>}: the name's characters other
    than letters, digits, C{.} and C{-} become C{_}, and it is cut to
    L{NAME_BYTES} bytes of UTF-8, never inside a character.
    """
    safe = re.sub(r"[^\w.-]", "_", streamName)
    safe = safe.encode("utf-8", "replace")[:NAME_BYTES].decode("utf-8", "ignore") or "stream"
    return f"stream-{uuid.uuid4()}-{safe}{suffix}.{extension}"


class StartWatchingSink(OffloadedSink):
    """
    An L{OffloadedSink} to a L{StreamWriter} that calls C{onStart()} once, on
    the reactor, when the frame the file starts at comes: the first video
    keyframe, or the first frame of a stream without video.
    """

    def __init__(self, name: str, sink, video: bool, onStart, **workerOptions):
        super().__init__(name, sink, **workerOptions)
        self.video = video
        self.onStart = onStart

    def writeFrame(self, frame) -> None:
        if self.onStart is not None and startsFile(self.video, frame):
            onStart, self.onStart = self.onStart, None
            onStart()
        super().writeFrame(frame)


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
        self.writers: dict[int, tuple[OffloadedSink, StreamWriter, Path]] = {}
        self.finishing: set = set()
        self.remuxes: dict[Path, object] = {}
        self.mixes: dict[int, RoomMix] = {}
        self.parts: dict[int, Part] = {}
        self.mixing: set = set()
        self.firstStreams: dict[int, float] = {}  # room -> time its first file started
        self.shifts: dict[Path, float] = {}
        self.timers: dict[int, object] = {}  # stream -> its record_max_duration call
        self.queue = process.JobQueue(self._setting("mix_max_concurrent", 1),
                                      self._setting("mix_queue_max", 16))
        # Told recordingFinished(info), mixFinished(info), hookFinished(room,
        # seconds, code) when they have a method of that name (webhooks, metrics).
        self.observers: list = []
        self.started: dict[Path, dict] = {}  # target -> what recordingFinished reports

    def _tellObservers(self, event: str, *args) -> None:
        for observer in self.observers:
            method = getattr(observer, event, None)
            if method is None:
                continue
            try:
                method(*args)
            except Exception:
                log.failure("recorder observer failed on {event}", event=event)

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
        self._start(stream, source)

    def record(self, stream) -> str:
        """
        Record a live stream now (an operator asked): its file name.

        @raise StreamError: not live, already recorded, or too little disk.
        """
        source = stream.media.source if stream.media is not None else None
        if not stream.published or stream.status != "PUBLISHING" or source is None:
            raise StreamError(f"stream {stream.name!r} is not a live published stream")
        if id(stream) in self.writers:
            raise StreamError(f"stream {stream.name!r} is already being recorded")
        name = self._start(stream, source)
        if name is None:
            raise StreamError(RECORD_REFUSED.format(mb=self._setting("record_min_free_mb", 0)))
        return name

    def stopRecording(self, stream) -> str:
        """
        End the recording of C{stream}, which goes on: the file name.

        @raise StreamError: the stream is not being recorded.
        """
        entry = self.writers.get(id(stream))
        if entry is None:
            raise StreamError(f"stream {stream.name!r} is not being recorded")
        self._stop(stream)
        return entry[2].name

    def recordingOf(self, stream) -> str | None:
        """The file C{stream} is being recorded to now, or None."""
        entry = self.writers.get(id(stream))
        return entry[2].name if entry is not None else None

    def files(self) -> list[Path]:
        """Recordings in the records directory, finished or not, by name."""
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir()
                      if p.is_file() and not p.name.startswith("."))

    def delete(self, name: str) -> None:
        """
        Delete the recording C{name}, a plain file name in the directory.

        @raise ValueError: not a plain file name.
        @raise LookupError: no such file.
        @raise StreamError: it is still being written or finished.
        """
        if not name or name.startswith(".") or any(c in name for c in "/\\\0"):
            raise ValueError(f"{clip(name)} is not a file name of the records directory")
        path = self.directory / name
        if not path.is_file():
            raise LookupError(f"no recording {name!r}")
        if path in self._busy():
            raise StreamError(f"recording {name!r} is still being written")
        path.unlink()
        log.info("recording {name} deleted", name=name)

    def _busy(self) -> set[Path]:
        busy = set()
        for _sink, _writer, target in self.writers.values():
            busy.update((target, target.with_suffix(".ts")))
        for target, remux in self.remuxes.items():
            if not remux.called:
                busy.update((target, target.with_suffix(".ts")))
        return busy

    def _start(self, stream, source) -> str | None:
        minFree = self._setting("record_min_free_mb", 0)
        if minFree and freeMB(self.directory) < minFree:
            limited.warn(("low disk", str(self.directory)),
                         "not recording {stream}: less than {mb} MB free in {directory}",
                         stream=clip(stream.name), mb=minFree, directory=str(self.directory))
            self._tell(stream, RECORD_REFUSED.format(mb=minFree))
            return None
        tracks = recordedTracks(source.tracks, self._setting("record_audio_codec", "opus"),
                                self._setting("record_vp8", "webm"))
        webm = containerFor(tracks) == "webm"
        name = fileName(stream.name, "webm" if webm else "mp4")
        target = self.directory / name
        # WebM is written in place; the rest goes through TS, then MP4.
        # The writer fails in the worker's thread: the recorder hears of it on its own.
        writer = StreamWriter(target if webm else target.with_suffix(".ts"), tracks,
                              onFailure=lambda error: sink.worker.callFromThread(
                                  self._failed, stream, error))
        chain = writer if tracks == source.tracks else Transcoding(writer, source.tracks, tracks)
        sink = StartWatchingSink(f"recording {name}", chain, "video" in tracks,
                                 onStart=lambda: self._fileStarted(stream, target),
                                 limit=RECORD_QUEUE, onDrop=source.requestKeyframe)
        source.attach(sink)
        source.requestKeyframe()
        self.writers[id(stream)] = (sink, writer, target)
        stream.recordName = name
        room = stream.participant.room if stream.participant is not None else None
        self.started[target] = {"stream": stream.name, "mediaSessionId": stream.mediaSessionId,
                                "room": room.name if room is not None else None,
                                "startedAt": self.clock.seconds() if self.clock else None}
        log.info("recording {stream} to {name}", stream=clip(stream.name), name=name)
        maxDuration = self._setting("record_max_duration", 0)
        if maxDuration and self.clock is not None:
            self.timers[id(stream)] = self.clock.callLater(maxDuration, self._tooLong, stream)
        room = stream.participant.room if stream.participant is not None else None
        if room is not None and room.record and self.clock is not None:
            part = Part(stream.participant.login, target, self.clock.seconds() - room.createdAt)
            self.mixes.setdefault(id(room), RoomMix(room.name)).parts.append(part)
            self.parts[id(stream)] = part
        return name

    def _fileStarted(self, stream, target: Path) -> None:
        """
        The frame the file of C{target} starts at came: aligned recordings
        and a room's mix line up on this moment, not on when the recording
        began. The first keyframe may come a PLI's round trip or a connection
        set-up after that, and not as late for every stream.
        """
        room = stream.participant.room if stream.participant is not None else None
        if room is None or self.clock is None:
            return
        now = self.clock.seconds()
        if self._aligned():
            # The room's first file to start: the others are padded to it.
            first = self.firstStreams.setdefault(id(room), now)
            self.shifts[target] = now - first
        part = self.parts.get(id(stream))
        if part is not None and part.path == target:
            part.start = now - room.createdAt

    def streamEnded(self, stream) -> None:
        self._stop(stream)

    def _stop(self, stream):
        """The recording of C{stream} ends (the stream may go on): finish its file."""
        entry = self.writers.pop(id(stream), None)
        timer = self.timers.pop(id(stream), None)
        if timer is not None and timer.active():
            timer.cancel()
        if entry is None:
            return None
        sink, writer, target = entry
        if stream.media is not None and stream.media.source is not None:
            stream.media.source.detach(sink)
        part = self.parts.pop(id(stream), None)
        if part is not None:
            room = stream.participant.room
            part.end = self.clock.seconds() - room.createdAt
        return self._finish(sink, writer, target)

    def _tooLong(self, stream) -> None:
        self.timers.pop(id(stream), None)
        seconds = self._setting("record_max_duration", 0)
        log.info("recording of {stream} ended after {seconds}s (record_max_duration)",
                 stream=clip(stream.name), seconds=seconds)
        self._stop(stream)
        self._tell(stream, RECORD_TOO_LONG.format(seconds=seconds))

    def _failed(self, stream, error: Exception) -> None:
        """The file cannot be written: the stream goes on unrecorded, its publisher told."""
        limited.warn(("write failed", str(self.directory)),
                     "recording of {stream} stopped: {error}", stream=clip(stream.name),
                     error=error)
        self._stop(stream)
        reason = getattr(error, "strerror", None) or type(error).__name__
        self._tell(stream, RECORD_FAILED.format(error=reason))

    def _tell(self, stream, info: str) -> None:
        """
        A PUBLISHING status again, with C{info} (the SDK keeps the last info
        it got and shows it). For a stream just starting it goes out after
        the core's own PUBLISHING, which is sent when the observers return.
        """
        clock = self.clock
        if clock is None:
            from twisted.internet import reactor as clock

        def send():
            if stream.status == "PUBLISHING":
                stream.owner.send(stream.statusMessage(info))
        clock.callLater(0, send)

    def _finish(self, sink: OffloadedSink, writer: StreamWriter, target: Path):
        """
        The frames queued for C{sink} are written and its file closed (in its
        worker), then the TS becomes the MP4. The Deferred fires when all is
        done; a room mix waits for it (L{remuxes}), and so does L{close}.
        """
        started = self.started.pop(target, {})
        if started.get("startedAt") is not None:
            started["duration"] = self.clock.seconds() - started.pop("startedAt")
        finishing = sink.close()
        finishing.addCallback(lambda _: self._closed(writer, target, started))
        finishing.addErrback(lambda failure: log.failure("recording {name} not finished",
                                                         failure, name=target.name))
        self.finishing.add(finishing)
        finishing.addBoth(lambda _: self.finishing.discard(finishing))
        self.remuxes[target] = finishing
        return finishing

    def _closed(self, writer: StreamWriter, target: Path, started: dict):
        """The file of a recording is closed: remove it if empty, remux a TS."""
        if writer.frames == 0:
            try:
                writer.path.unlink(missing_ok=True)
            except OSError:
                pass  # it could not be made either: said when that failed
            if not writer.failed:
                log.warn("recording {name} is empty: nothing came", name=target.name)
            return None
        shift = self.shifts.pop(target, 0.0)
        if writer.path == target:
            log.info("recording {name} finished", name=target.name)
            self._recorded(target, started)
            return None
        return self._remux(writer.path, target, shift, started)

    def _recorded(self, target: Path, started: dict) -> None:
        try:
            size = target.stat().st_size
        except OSError:
            return
        started.pop("startedAt", None)
        self._tellObservers("recordingFinished",
                            dict(started, file=target.name, size=size))

    def _setting(self, name: str, default):
        return getattr(self.settings, name, default) if self.settings is not None else default

    def _aligned(self) -> bool:
        return bool(self.settings is not None and self.settings.enable_empty_shift_writer)

    def _remux(self, ts: Path, target: Path, shift: float = 0.0, started: dict | None = None):
        finishing = deferToThread(remuxToMP4, ts, target, shift)
        self.finishing.add(finishing)

        def finished(_):
            log.info("recording {name} finished", name=target.name)
            self._recorded(target, started or {})

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
        queued = self.queue.submit(self._mixAndHook, mix)
        if queued is None:
            log.warn("room {room}: not mixed, {waiting} mixes already wait (mix_queue_max); "
                     "its recordings stay: {files}", room=clip(mix.room),
                     waiting=self.queue.waiting, files=" ".join(p.path.name for p in mix.parts))
            return
        yield queued

    @inlineCallbacks
    def _mixAndHook(self, mix: RoomMix):
        ffmpeg = ffmpegAvailable()
        if ffmpeg is None:
            log.warn("room {room}: not mixed, ffmpeg is not installed", room=clip(mix.room))
            return
        settings = MixerSettings.load(Path(self.settings.offline_mixer_config))
        output = self.directory / fileName(mix.room, suffix="-mixed")
        sources = [p.path for p in mix.parts if p.path.exists()]
        log.info("room {room}: mixing {count} recordings into {name}",
                 room=clip(mix.room), count=len(sources), name=output.name)
        command = ffmpegCommand(mix, output, settings)
        done = yield process.run(f"room {clip(mix.room)}: mix", ffmpeg, command[1:],
                                 timeout=self._setting("mix_timeout", 0), clock=self.clock,
                                 nice=True)
        if done.code != 0:
            log.error("room {room}: mixing failed ({how}): {error}", room=clip(mix.room),
                      how="killed" if done.timedOut else f"ffmpeg exit {done.code}",
                      error=done.err.decode("utf-8", "replace")[-500:])
            return
        log.info("room {room}: mixed in {seconds:.1f}s into {name}", room=clip(mix.room),
                 seconds=done.seconds, name=output.name)
        size = output.stat().st_size if output.exists() else 0
        self._tellObservers("mixFinished", {
            "room": mix.room, "file": output.name, "size": size, "seconds": done.seconds,
            "sources": [p.name for p in sources]})
        yield self._runHook(mix.room, output, sources)

    @inlineCallbacks
    def _runHook(self, room: str, output: Path, sources: list[Path]):
        script = Path(self.settings.on_multiple_record_hook_script)
        if not script.is_file():
            log.warn("room {room}: hook {script} not found, not run", room=clip(room),
                     script=str(script))
            return
        # A room name is any text: one argument, valid UTF-8.
        args = [room.encode("utf-8", "replace").decode("utf-8"), str(output),
                *map(str, sources)]
        done = yield process.run(f"room {clip(room)}: hook {script}", str(script), args,
                                 timeout=self._setting("hook_timeout", 0), clock=self.clock)
        self._tellObservers("hookFinished", room, done.seconds, done.code)
        if done.code != 0:
            # A failing hook is reported; nothing it was given is deleted.
            log.error("room {room}: hook {script} failed ({how}): {error}", room=clip(room),
                      script=str(script),
                      how="killed" if done.timedOut else f"exit {done.code}",
                      error=done.err.decode("utf-8", "replace")[-500:])
        else:
            log.info("room {room}: hook {script} done", room=clip(room), script=str(script))

    def writing(self, name: str) -> bool:
        """Whether the file C{name} is still being written or remuxed."""
        if any(target.name == name for _sink, _writer, target in self.writers.values()):
            return True
        finishing = self.remuxes.get(self.directory / name)
        return finishing is not None and not finishing.called

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
        for sink, writer, target in list(self.writers.values()):
            self._finish(sink, writer, target)
        self.writers.clear()
        for timer in self.timers.values():
            if timer.active():
                timer.cancel()
        self.timers.clear()
        return DeferredList(list(self.finishing), consumeErrors=True)


def freeMB(directory: Path) -> float:
    """Free space (MB) on the disk of C{directory}, or of its nearest existing parent."""
    for path in (directory, *directory.absolute().parents):
        try:
            return shutil.disk_usage(path).free / 2**20
        except OSError:
            continue
    return float("inf")
