"""
The REST methods, one L{Area} each: C{stream} and C{connection} as Web Call
Server has them (the shapes its REST client and scripts expect), C{room},
C{record} and C{server} of our own. docs/rest-api.md and docs/rest-api.yaml
describe them.
"""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import quote

from wcs.errors import StreamError
from wcs.interfaces import IAdmin, IMediaStats
from wcs.rest.site import ApiError, Area, field
from wcs.session import LOG_LEVELS
from wcs.streams import peerHost


def ms(seconds: float) -> int:
    return int(seconds * 1000)


class Records:
    """JSON records of the core's objects, as the REST API shows them."""

    def __init__(self, admin: IAdmin):
        self.admin = admin

    def stream(self, stream) -> dict[str, Any]:
        request, owner = stream.request, stream.owner
        media = stream.media
        source = stream.playing.media.source if stream.playing is not None and \
            stream.playing.media is not None else getattr(media, "source", None)
        tracks = getattr(source, "tracks", {}) or {}
        recording = self.admin.recordingOf(stream)
        stats = media.stats() if IMediaStats.providedBy(media) else None
        participant = stream.participant
        return {
            "appKey": owner.connection.appKey if owner.connection else None,
            "sessionId": owner.sessionId,
            "mediaSessionId": stream.mediaSessionId,
            "name": stream.name,
            "published": stream.published,
            "hasVideo": request.hasVideo,
            "hasAudio": request.hasAudio,
            "status": stream.status,
            "info": None,
            "record": bool(request.record or recording),
            "recordName": stream.recordName,
            "mediaProvider": request.mediaProvider,
            "audioCodec": tracks.get("audio"),
            "videoCodec": tracks.get("video"),
            "createDate": ms(stream.createdAt),
            "mediaType": "publish" if stream.published else "play",
            "login": owner.login,
            "room": participant.room.name if participant is not None else request.room,
            "metrics": stats,
        }

    def connection(self, session) -> dict[str, Any]:
        connection = session.connection
        peer = getattr(session.channel, "peer", None)
        return {
            "appKey": connection.appKey if connection else None,
            "sessionId": session.sessionId,
            "login": session.login,
            "clientVersion": connection.clientVersion if connection else None,
            "status": "ESTABLISHED" if connection else "NEW",
            "remoteAddress": peerHost(peer),
            "transport": transportOf(session.channel),
            "createDate": ms(session.createdAt),
            "logLevel": session.logLevel or "INFO",
            "rooms": sorted(session.participants),
            "streams": len(session.streams.active),
        }

    def roomSummary(self, room) -> dict[str, Any]:
        return {
            "name": room.name,
            "record": room.record,
            "createDate": ms(room.createdAt),
            "idle": room.idleCall is not None,
            "participants": list(room.participants),
        }

    def room(self, room) -> dict[str, Any]:
        record = self.roomSummary(room)
        record["participants"] = [{
            "login": participant.login,
            "sessionId": participant.member.sessionId,
            "streams": [self.stream(s) for s in self.admin.streamsOf(participant)],
        } for participant in room.participants.values()]
        return record

    @staticmethod
    def recording(path) -> dict[str, Any] | None:
        """The record of a recording file, or None if it is gone (a remux's TS)."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        return {"fileName": path.name, "size": stat.st_size,
                "modified": ms(stat.st_mtime), "url": "/records/" + quote(path.name)}


def transportOf(channel) -> str:
    """The transport of a channel: its module's name (websocket, rtmp, or a drop-in's)."""
    return type(channel).__module__.rpartition(".")[2]


# Filters of find: the fields a client may match on, and their types.
STREAM_FILTERS = {"mediaSessionId": str, "name": str, "published": bool, "status": str,
                  "sessionId": str, "mediaProvider": str, "appKey": str, "login": str,
                  "room": str}
CONNECTION_FILTERS = {"sessionId": str, "appKey": str, "login": str, "clientVersion": str,
                      "status": str, "remoteAddress": str, "transport": str}


def matching(records: list[dict], body: dict, filters: dict[str, type], what: str) -> list:
    """The records whose fields equal those of C{body} (others, like C{display}, ignored)."""
    wanted = {name: field(body, name, kind, required=False)
              for name, kind in filters.items() if body.get(name) is not None}
    found = [r for r in records if all(r.get(k) == v for k, v in wanted.items())]
    if not found:
        raise ApiError(404, f"{what} not found")
    return found


class AdminArea(Area):
    """An area acting through the core's L{IAdmin}, answering with L{Records}."""

    def __init__(self, admin: IAdmin, records: Records):
        super().__init__()
        self.admin, self.records = admin, records


class Streams(AdminArea):
    def __init__(self, admin: IAdmin, records: Records):
        super().__init__(admin, records)
        self.method("find_all", self.findAll, allowGet=True)
        self.method("find", self.find)
        self.method("terminate", self.terminate)
        self.method("startRecording", self.startRecording)
        self.method("stopRecording", self.stopRecording)

    def findAll(self, body: dict) -> list:
        return [self.records.stream(s) for s in self.admin.streams()]

    def find(self, body: dict) -> list:
        return matching(self.findAll(body), body, STREAM_FILTERS, "Stream")

    def terminate(self, body: dict) -> None:
        if not self.admin.endStream(field(body, "mediaSessionId")):
            raise ApiError(404, "Stream not found")

    def startRecording(self, body: dict) -> dict:
        return self._recording(body, self.admin.startRecording)

    def stopRecording(self, body: dict) -> dict:
        return self._recording(body, self.admin.stopRecording)

    @staticmethod
    def _recording(body: dict, act: Callable[[str], str]) -> dict:
        mediaSessionId = field(body, "mediaSessionId")
        try:
            name = act(mediaSessionId)
        except LookupError:
            raise ApiError(404, "Stream not found") from None
        except StreamError as e:
            raise ApiError(409, e.info) from None
        return {"mediaSessionId": mediaSessionId, "recordName": name}


class Connections(AdminArea):
    def __init__(self, admin: IAdmin, records: Records):
        super().__init__(admin, records)
        self.method("find_all", self.findAll, allowGet=True)
        self.method("find", self.find)
        self.method("terminate", self.terminate)
        self.method("set_log_level", self.setLogLevel)

    def findAll(self, body: dict) -> list:
        return [self.records.connection(s) for s in self.admin.connections()]

    def find(self, body: dict) -> list:
        return matching(self.findAll(body), body, CONNECTION_FILTERS, "Connection")

    def terminate(self, body: dict) -> None:
        if not self.admin.closeConnection(field(body, "sessionId")):
            raise ApiError(404, "Connection not found")

    def setLogLevel(self, body: dict) -> None:
        sessionId = field(body, "sessionId")
        level = field(body, "logLevel").upper()
        if level not in LOG_LEVELS:
            raise ApiError(400, f"logLevel must be one of {', '.join(LOG_LEVELS)}")
        if not self.admin.setLogLevel(sessionId, level):
            raise ApiError(404, "Connection not found")


class Rooms(AdminArea):
    def __init__(self, admin: IAdmin, records: Records):
        super().__init__(admin, records)
        self.method("find_all", self.findAll, allowGet=True)
        self.method("find", self.find)
        self.method("terminate", self.terminate)
        self.method("kick", self.kick)

    def findAll(self, body: dict) -> list:
        return [self.records.roomSummary(r) for r in self.admin.rooms()]

    def find(self, body: dict) -> dict:
        room = self.admin.room(field(body, "name"))
        if room is None:
            raise ApiError(404, "Room not found")
        return self.records.room(room)

    def terminate(self, body: dict) -> None:
        if not self.admin.endRoom(field(body, "name")):
            raise ApiError(404, "Room not found")

    def kick(self, body: dict) -> None:
        name, login = field(body, "name"), field(body, "login")
        if self.admin.room(name) is None:
            raise ApiError(404, "Room not found")
        if not self.admin.kick(name, login):
            raise ApiError(404, "Participant not found")


class Recordings(AdminArea):
    def __init__(self, admin: IAdmin, records: Records):
        super().__init__(admin, records)
        self.method("find_all", self.findAll, allowGet=True)
        self.method("delete", self.delete)

    def findAll(self, body: dict) -> list:
        try:
            records = [self.records.recording(p) for p in self.admin.recordings()]
        except StreamError as e:
            raise ApiError(409, e.info) from None
        # A file listed a moment ago may be gone now: the TS a finished remux deletes.
        return [r for r in records if r is not None]

    def delete(self, body: dict) -> None:
        try:
            self.admin.deleteRecording(field(body, "fileName"))
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        except LookupError:
            raise ApiError(404, "Recording not found") from None
        except (StreamError, OSError) as e:
            raise ApiError(409, getattr(e, "info", None) or str(e)) from None


class ServerArea(Area):
    """
    C{/rest-api/server/}: C{drain} runs L{drain} when something provides it
    (a callable taking the body, returning a JSON value or a Deferred of
    one); until then it answers 501.
    """

    drain: Callable[[dict], Any] | None = None

    def __init__(self):
        super().__init__()
        self.method("drain", self._drain)

    def _drain(self, body: dict):
        if self.drain is None:
            raise ApiError(501, "graceful drain is not available on this server")
        return self.drain(body)
