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

from twisted.internet.threads import deferToThread

from wcs.logs import Logger
from wcs.recording.writer import StreamWriter, remuxToMP4

log = Logger()


def fileName(streamName: str) -> str:
    safe = re.sub(r"[^\w.-]", "_", streamName)[:100] or "stream"
    return f"stream-{uuid.uuid4()}-{safe}.mp4"


class Recorder:
    """A stream observer of the room server (C{RoomServer.streamObservers})."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.writers: dict[int, tuple[StreamWriter, Path]] = {}
        self.finishing: set = set()

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
        name = fileName(stream.name)
        target = self.directory / name
        writer = StreamWriter(target.with_suffix(".ts"), source.tracks)
        source.attach(writer)
        source.requestKeyframe()
        self.writers[id(stream)] = (writer, target)
        stream.recordName = name
        log.info("recording {stream!r} to {name}", stream=stream.name, name=name)

    def streamEnded(self, stream) -> None:
        entry = self.writers.pop(id(stream), None)
        if entry is None:
            return
        writer, target = entry
        if stream.media is not None and stream.media.source is not None:
            stream.media.source.detach(writer)
        self._finish(writer, target)

    def _finish(self, writer: StreamWriter, target: Path):
        writer.close()
        if writer.frames == 0:
            writer.path.unlink(missing_ok=True)
            log.warn("recording {name} is empty: nothing came", name=target.name)
            return None
        return self._remux(writer.path, target)

    def _remux(self, ts: Path, target: Path):
        finishing = deferToThread(remuxToMP4, ts, target)
        self.finishing.add(finishing)

        def finished(_):
            log.info("recording {name} finished", name=target.name)

        def failed(failure):
            # The TS stays: nothing recorded is ever deleted on a failure.
            log.failure("recording {name} kept as {ts}: remux failed", failure,
                        name=target.name, ts=ts.name)

        finishing.addCallbacks(finished, failed)
        finishing.addBoth(lambda _: self.finishing.discard(finishing))
        return finishing

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
        from twisted.internet.defer import DeferredList

        for key, (writer, target) in list(self.writers.items()):
            self._finish(writer, target)
        self.writers.clear()
        return DeferredList(list(self.finishing), consumeErrors=True)
