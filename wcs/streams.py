"""
Published and played streams.

L{StreamRegistry} knows every published stream of the server by name (names
are unique server-wide: players ask for a stream by name alone).
L{StreamControl} handles one session's C{publishStream}, C{playStream},
C{unPublishStream} and C{stopStream}, hands the media to the
L{IMediaEngine} of the request's C{mediaProvider}, reports statuses with
C{notifyStreamStatusEvent} and tells the room when a stream goes live or
ends.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Any

from wcs.logs import Logger, LogLimiter
from zope.interface import implementer

from wcs import protocol
from wcs.errors import (
    IN_USE, INVALID, NOT_FOUND, SERVER_ERROR, TOO_MANY, ProtocolError, StreamError)
from wcs.interfaces import (  # the SDK's statuses and info strings
    FAILED, NAME_IN_USE, PENDING, PLAYING, PUBLISHING, SESSION_ID_IN_USE, STOPPED,
    STOPPED_BY_DISCONNECT, STOPPED_BY_PUBLISHER, STOPPED_BY_USER, STREAM_NOT_FOUND,
    UNPUBLISHED, IClientSession, IMediaSession, IStream, IStreamListener)
from wcs.messages import ServerMessage
from wcs.room.model import Participant

ENDED = frozenset({UNPUBLISHED, STOPPED, FAILED})


@implementer(IStream)
class Stream:
    """One publish or play of one session (a L{wcs.session.ClientSession})."""

    def __init__(self, request: protocol.StreamRequest, owner: IClientSession,
                 participant: Participant | None):
        self.request = request
        self.owner = owner
        self.participant = participant
        self.status = PENDING
        self.media = None
        self.recordName: str | None = None
        self.recordUrl: str | None = None  # a signed /records/ link (wcs.access.records)
        self.players: set[Stream] = set()
        self.playing: Stream | None = None  # for a player: what it plays
        self.createdAt = owner.server.clock.seconds()

    @property
    def name(self) -> str:
        return self.request.name

    @property
    def mediaSessionId(self) -> str:
        return self.request.mediaSessionId

    @property
    def published(self) -> bool:
        return self.request.published

    def statusMessage(self, info: str | None = None,
                      refusal: str | None = None) -> ServerMessage:
        request = self.request
        body: dict[str, Any] = {
            "mediaSessionId": request.mediaSessionId,
            "name": request.name,
            "published": request.published,
            "hasVideo": request.hasVideo,
            "hasAudio": request.hasAudio,
            "status": self.status,
            "record": request.record,
        }
        if info:
            body["info"] = info
        if self.recordName:
            body["recordName"] = self.recordName
            if self.recordUrl:
                body["recordUrl"] = self.recordUrl
        return ServerMessage("notifyStreamStatusEvent", body, refusal=refusal)

    def stop(self, info: str | None = None) -> None:
        self.owner.streams.end(self, UNPUBLISHED if self.published else STOPPED, info)

    def __repr__(self) -> str:
        kind = "publish" if self.published else "play"
        return f"<Stream {kind} {self.name!r} {self.status}>"


class StreamRegistry:
    """Every published stream of the server, by name."""

    def __init__(self) -> None:
        self.published: dict[str, Stream] = {}

    def reserve(self, stream: Stream) -> None:
        if stream.name in self.published:
            raise StreamError(NAME_IN_USE, code=IN_USE)
        self.published[stream.name] = stream

    def release(self, stream: Stream) -> None:
        if self.published.get(stream.name) is stream:
            del self.published[stream.name]

    def live(self, name: str) -> Stream | None:
        stream = self.published.get(name)
        if stream is None or stream.status != PUBLISHING:
            return None
        return stream


@implementer(IMediaSession)
class _SourceSession:
    """The media of a stream a transport publishes itself."""

    def __init__(self, source, onStop=None):
        self.source = source
        self.answer = None
        self._onStop = onStop

    def stop(self) -> None:
        onStop, self._onStop = self._onStop, None
        if onStop is not None:
            onStop()


def peerHost(peer) -> str | None:
    """The host of a channel's C{peer} (C{"tcp:1.2.3.4:5678"} -> C{"1.2.3.4"})."""
    if not isinstance(peer, str) or ":" not in peer:
        return None
    return peer.split(":", 1)[1].rpartition(":")[0] or None


@implementer(IStreamListener)
class _Listener:
    def __init__(self, control: "StreamControl", stream: Stream):
        self.control = control
        self.stream = stream
        # Who the media is for, for the engine's per-client limits.
        self.connection = control.session
        self.address = peerHost(getattr(control.session.channel, "peer", None))

    def mediaStarted(self) -> None:
        self.control.started(self.stream)

    def mediaFailed(self, info: str) -> None:
        self.control.end(self.stream, FAILED, info, SERVER_ERROR)


class StreamControl:
    log = Logger()
    # Failures (a refused offer, say) that a client may repeat at will: one
    # line per client address and reason every 10 s, the rest counted.
    failures = LogLimiter(log)

    # mediaSessionIds of streams that ended recently: a stop for one of them
    # is the client catching up (the SDK stops its streams after a leave
    # that already stopped them), not a mistake.
    RECENT = 64

    def __init__(self, session: IClientSession):
        # The core's own session (wcs.session.ClientSession), which owns this.
        self.session = session
        self.server = session.server
        self.active: dict[str, Stream] = {}
        self.recent: deque[str] = deque(maxlen=self.RECENT)
        # mediaSessionId -> the stream of another node a play was found in
        # (a cluster's edge play), between the access decision and the start.
        self.located: dict[str, Any] = {}

    # Client messages

    def open(self, message: str, args: list[Any]) -> None:
        """C{publishStream} or C{playStream}: both carry an offer."""
        self._open(message, args, needSdp=True)

    def stop(self, message: str, args: list[Any]) -> None:
        request = protocol.parseStream(message, args, self.session.limits, needSdp=False)
        stream = self.active.get(request.mediaSessionId)
        if stream is None:
            if request.mediaSessionId not in self.recent:
                self.session.refuse(
                    message, f"no stream with mediaSessionId {request.mediaSessionId!r}")
            return
        self.end(stream, UNPUBLISHED if stream.published else STOPPED)

    # Media engine callbacks

    def started(self, stream: Stream) -> None:
        if stream.status in ENDED:
            return
        if stream.published:
            stream.status = PUBLISHING
            # Observers (the recorder) see the stream first: a recording's
            # name goes out with PUBLISHING.
            self.server.streamStarted(stream)
            self._notify(stream)
            if stream.participant is not None:
                stream.participant.home.announceStream(stream.participant, stream.name)
        else:
            stream.status = PLAYING
            self._notify(stream)
        self.log.info("{session}: {stream}", session=self.session, stream=stream)

    def end(self, stream: Stream, status: str, info: str | None = None,
            refusal: str | None = None) -> None:
        """
        End a stream once: free its media, tell its client and the room.
        C{refusal}: why it failed (L{wcs.errors}'s codes), when it did.
        """
        if stream.status in ENDED:
            return
        wasLive = stream.status == PUBLISHING
        stream.status = status
        if self.active.get(stream.mediaSessionId) is stream:
            del self.active[stream.mediaSessionId]
            self.recent.append(stream.mediaSessionId)
        if stream.media is not None:
            stream.media.stop()
        if stream.published:
            self.server.streams.release(stream)
            if wasLive:
                self.server.streamEnded(stream)
            for player in list(stream.players):
                player.owner.streams.end(player, STOPPED, STOPPED_BY_PUBLISHER)
            if wasLive and stream.participant is not None:
                stream.participant.home.withdrawStream(stream.participant, stream.name,
                                                       failed=status == FAILED)
        elif stream.playing is not None:
            stream.playing.players.discard(stream)
        self._notify(stream, info, refusal)
        if status == FAILED:
            peer = peerHost(getattr(self.session.channel, "peer", None))
            self.failures.warn((peer, info), "{session}: {stream} {info}",
                               session=self.session, stream=stream, info=info or "")
        else:
            self.log.info("{session}: {stream} {info}", session=self.session, stream=stream,
                          info=info or "")

    def publishSource(self, name: str, source, *, provider: str,
                      room: str | None = None, record: bool = False,
                      onStop=None) -> Stream:
        """
        Publish media that a transport brings itself (an RTMP encoder or
        Flash client): live at once, with no offer to answer.

        The room is C{room}, or else the joined room whose C{ROOM-LOGIN}
        prefix the name carries (how Flash clients name their streams).

        @param source: the L{IMediaSource} of the stream.
        @param onStop: called once when the stream ends, whatever ends it.
        @raise StreamError: the name is in use, or C{room} is not joined.
        """
        request = self.sourceRequest(name, provider, room=room, record=record,
                                     tracks=source.tracks)
        participant = self.session.participantFor(request.room) \
            if request.room is not None else None
        stream = Stream(request, self.session, participant)
        self.server.streams.reserve(stream)
        stream.media = _SourceSession(source, onStop)
        self.active[request.mediaSessionId] = stream
        self.started(stream)
        return stream

    def sourceRequest(self, name: str, provider: str, *, published: bool = True,
                      room: str | None = None, record: bool = False,
                      tracks=()) -> protocol.StreamRequest:
        """
        The request of a stream a transport publishes or plays itself (no
        SDK message, no offer). A published one's room is C{room}, or else
        the joined room whose C{ROOM-LOGIN} prefix the name carries (how
        Flash clients name their streams).
        """
        if published and room is None:
            room = self._roomOfName(name)
        return protocol.StreamRequest(
            mediaSessionId=f"{provider.lower()}-{self.server.newSessionId()}", name=name,
            published=published, room=room, sdp=None, hasAudio="audio" in tracks,
            hasVideo="video" in tracks, record=record, mediaProvider=provider,
            constraints={}, raw={})

    def _roomOfName(self, name: str) -> str | None:
        login = self.session.login
        for room in self.session.participants:
            if name == f"{room}-{login}" or name.startswith(f"{room}-{login}-"):
                return room
        return None

    def stopRoom(self, participant: Participant, info: str = STOPPED_BY_USER) -> None:
        """The participant leaves: its streams in that room end."""
        for stream in list(self.active.values()):
            if stream.published and stream.participant is participant:
                self.end(stream, UNPUBLISHED, info)

    def stopAll(self, disconnected: bool = False) -> None:
        info = STOPPED_BY_DISCONNECT if disconnected else STOPPED_BY_USER
        for stream in list(self.active.values()):
            self.end(stream, UNPUBLISHED if stream.published else STOPPED, info)

    # Internals

    def _open(self, message: str, args: list[Any], needSdp: bool) -> None:
        mediaSessionId = protocol.streamSessionId(args)
        try:
            request = protocol.parseStream(message, args, self.session.limits,
                                           needSdp=needSdp)
        except ProtocolError as e:
            if mediaSessionId is None:
                raise  # nothing to address a stream status to: a plain fail
            self._refuse(message, mediaSessionId, args, e.info, e.code)
            return
        if request.mediaSessionId in self.active:
            # Not FAILED for that id: it would end the stream already using it.
            self._refuse(message, None, args, SESSION_ID_IN_USE)
            return
        limit = self.server.settings.session_max_streams
        if limit and len(self.active) >= limit:
            self._refuse(message, request.mediaSessionId, args,
                         f"too many streams on this connection: at most {limit}", TOO_MANY)
            return
        self.session.gate.after(self._locateThenAsk(request),
                                lambda decision: self._decided(message, request, args, decision))

    def _locateThenAsk(self, request: protocol.StreamRequest):
        """
        A play of a stream not live here: in a cluster, first look for it in
        a room of another node, to be played here from this node's one pull
        of it (docs/cluster.md, "Edge fan-out"); then ask the access policy.
        """
        placement = self.server.placement
        if request.published or placement is None \
                or self.server.streams.live(request.name) is not None:
            return self.ask(request)

        def located(stream):
            if stream is not None:
                self.located[request.mediaSessionId] = stream
            return self.ask(request)

        def failed(failure):
            stream = self.located.pop(request.mediaSessionId, None)
            if stream is not None:
                stream.release()
            return failure
        return placement.locateStream(request.name).addCallback(located).addErrback(failed)

    def ask(self, request: protocol.StreamRequest):
        """The access policy's decision on C{request} (a Deferred)."""
        access = self.server.access
        if request.published:
            return access.publish(self.session, request,
                                  lambda room: self.server.rooms.get(room) is not None)
        source = self.server.streams.live(request.name)
        if source is not None:
            participant = source.participant
            room = participant.room.name if participant is not None else None
        else:  # a stream of another node's room, or none
            located = self.located.get(request.mediaSessionId)
            room = located.room if located is not None else None
        return access.play(self.session, request, room)

    def _decided(self, message: str, request: protocol.StreamRequest, args: list[Any],
                 decision) -> None:
        located = self.located.pop(request.mediaSessionId, None)
        if self.session.closed or not decision.allowed:
            if located is not None:
                located.release()  # its pull stops unless others play it
            if not self.session.closed:
                self._refuse(message, request.mediaSessionId, args, decision.reason)
            return
        if decision.record is not None and decision.record != request.record:
            request = dataclasses.replace(request, record=decision.record)
        if located is not None and (located.status != PUBLISHING or
                                    self.server.streams.live(request.name) is not None):
            located.release()  # ended there, or live here meanwhile
            located = None
        try:
            self._start(request, located)
        except StreamError as e:
            if located is not None and request.mediaSessionId not in self.active:
                located.release()  # refused before it could play it
            self._refuse(message, request.mediaSessionId, args, e.info, e.code)

    def _start(self, request: protocol.StreamRequest, located=None) -> None:
        participant = None
        if request.published and request.room is not None:
            participant = self.session.participantFor(request.room)
        engine = self.server.mediaEngine(request.mediaProvider)
        stream = Stream(request, self.session, participant)
        if request.published:
            self.server.streams.reserve(stream)
        else:
            source = self.server.streams.live(request.name) or located
            if source is None:
                raise StreamError(STREAM_NOT_FOUND, code=NOT_FOUND)
            stream.playing = source
        self.active[request.mediaSessionId] = stream
        listener = _Listener(self, stream)
        try:
            if request.published:
                stream.media = engine.publish(request, listener)
            else:
                stream.media = engine.play(request, stream.playing.media.source, listener)
                stream.playing.players.add(stream)
        except StreamError as e:
            self.end(stream, FAILED, e.info, e.code)
            return
        except Exception:
            self.log.failure("{session}: media engine failed on {stream}",
                             session=self.session, stream=stream)
            self.end(stream, FAILED, "Failed by error", SERVER_ERROR)
            return
        stream.media.answer.addCallbacks(
            lambda sdp: self._answer(stream, sdp),
            lambda failure: self._answerFailed(stream, failure))

    def _answer(self, stream: Stream, sdp: str) -> None:
        if stream.status in ENDED:
            return
        self.session.send(ServerMessage("setRemoteSDP", stream.mediaSessionId, sdp))

    def _answerFailed(self, stream: Stream, failure) -> None:
        if failure.check(StreamError):
            info, code = failure.value.info, failure.value.code
        else:
            self.log.failure("{session}: negotiation of {stream} failed",
                             failure, session=self.session, stream=stream)
            info, code = "Failed by error", SERVER_ERROR
        self.end(stream, FAILED, info, code)

    def _notify(self, stream: Stream, info: str | None = None,
                refusal: str | None = None) -> None:
        self.session.send(stream.statusMessage(info, refusal))

    def _refuse(self, message: str, mediaSessionId: str | None, args: list[Any],
                info: str, code: str = INVALID) -> None:
        """
        A stream that cannot start: FAILED for that stream when it can be
        named (the SDK then releases it), else a plain C{fail}.
        """
        self.log.warn("{session}: {message} refused: {info}",
                      session=self.session, message=message, info=info)
        if mediaSessionId is None:
            self.session.send(ServerMessage("fail", {"apiMethod": message, "info": info},
                                            refusal=code))
            return
        obj = args[0] if args and isinstance(args[0], dict) else {}
        name = obj.get("name") if isinstance(obj.get("name"), str) else ""
        self.session.send(ServerMessage("notifyStreamStatusEvent", {
            "mediaSessionId": mediaSessionId,
            "name": name,
            "published": message == "publishStream",
            "status": FAILED,
            "info": info,
        }, refusal=code))
