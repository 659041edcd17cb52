"""
What an RTMP encoder's C{publish}, media and metadata do
(L{wcs.rtmp.application.RTMPApplication}'s publishing side): the access
steps of a publish (identify, join the room of a room URL, authorize), the
publication started, announced to the core once its media can be played,
and ended.
"""

from __future__ import annotations

from wcs.errors import WcsError
from wcs.interfaces import NAME_IN_USE
from wcs.logs import Logger, clip
from wcs.rtmp import amf0
from wcs.rtmp.arguments import BadArgument
from wcs.rtmp.chunks import AUDIO, VIDEO
from wcs.rtmp.connection import Command, Data, Media
from wcs.rtmp.netstream import Publication
from wcs.rtmp.relay import RTMPSource

log = Logger()


class Publishing:
    """
    The publishing commands of L{RTMPApplication}, whose state they use
    (C{conn}, C{session}, C{publishing}, C{waiting}, C{args}...).
    """

    def cmd_publish(self, command: Command) -> None:
        streamId = command.streamId
        parsed = self._streamName(command, "publish", "NetStream.Publish.BadName")
        if parsed is None or not self._streamFree(streamId, "publish"):
            return
        name, query = parsed
        record = query.get("record") == "true"
        try:
            token = self.args.token(query.get("token"))
        except BadArgument as e:
            self._refusePublish(streamId, name, str(e))
            return
        room, login = self._roomOf(name)
        if room is not None:
            name = f"{room}-{login}"

        def refused(info: str) -> None:
            self._refusePublish(streamId, name, info)

        # Each step asks the core's access policy; a refusal ends the publish.
        def identified(_) -> None:
            if room is None:
                joined(None)
            elif self.session.login != login:
                refused(f"this connection is {self.session.login!r}, not {login!r}")
            else:
                self.waiting.after(self.session.requestJoin(room), joined, refused)

        def joined(_) -> None:
            if self.server.streamNameInUse(name):
                refused(NAME_IN_USE)
            else:
                self.waiting.after(self.session.authorizePublish(name, room, record), start, refused)

        def start(record: bool) -> None:
            if self.server.streamNameInUse(name):  # taken while the backend was asked
                refused(NAME_IN_USE)
                return
            # Announced (PUBLISHED, playable by name) once the media can be
            # played: see _media.
            self.publishing[streamId] = Publication(RTMPSource(name), record)
            self.conn.streamBegin(streamId)
            self.conn.onStatus(streamId, "NetStream.Publish.Start",
                               f"{name} is now published.", details=name)
            log.info("{peer} publishes {name}", peer=self.peer, name=clip(name))

        self._identified(login if room is not None else None, token, identified, refused)

    def _refusePublish(self, streamId: int, name: str, info: str) -> None:
        self.warn("publish", "publish of {name} refused: {info}", name=clip(name), info=info)
        self.conn.onStatus(streamId, "NetStream.Publish.BadName", info, level="error")
        self.flush()
        self.close(f"publish refused: {info}")

    def _announce(self, streamId: int, publication: Publication) -> None:
        source = publication.source
        try:
            publication.stream = self.session.publish(
                source.name, source, "RTMP", record=publication.record,
                onStop=lambda: self._publishStopped(streamId))
        except WcsError as e:
            self.publishing.pop(streamId, None)
            self._refusePublish(streamId, source.name, e.info)

    def _roomOf(self, name: str) -> tuple[str | None, str | None]:
        """The room and login an encoder publishes as, if any."""
        parts = self.app.split("/")
        if len(parts) >= 2 and parts[0] == "room":
            return "/".join(parts[1:]), name
        return self.argsRoom or (None, None)

    def _publishStopped(self, streamId: int) -> None:
        publication = self.publishing.pop(streamId, None)
        if publication is not None:
            publication.source.end()

    def _unpublish(self, streamId: int) -> None:
        publication = self.publishing.pop(streamId, None)
        if publication is None:
            return
        self._endPublish(publication)
        if not self.closed:
            self.conn.onStatus(streamId, "NetStream.Unpublish.Success", "Stopped publishing.")

    def _endPublish(self, publication: Publication) -> None:
        publication.source.end()
        if publication.stream is not None:
            publication.stream.stop()

    def _media(self, media: Media) -> None:
        publication = self.publishing.get(media.streamId)
        if publication is None:
            return
        source = publication.source
        if media.type == VIDEO:
            source.video(media.timestamp, media.payload)
        elif media.type == AUDIO:
            source.audio(media.timestamp, media.payload)
        if publication.stream is None and source.playable():
            self._announce(media.streamId, publication)

    def _data(self, data: Data) -> None:
        publication = self.publishing.get(data.streamId)
        if publication is None:
            return
        values = data.values
        if data.name == "@setDataFrame" and values and values[0] == "onMetaData":
            skip = 2
        elif data.name == "onMetaData":
            skip = 1
        else:
            return
        # The publisher's own bytes after the names go to players: a decoded
        # client value is never encoded again (see docs/security.md).
        reader = amf0.Reader(data.payload)
        for _ in range(skip):
            reader.value()
        publication.source.setMetadata(bytes(data.payload[reader.offset:]))
