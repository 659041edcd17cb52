"""
One WHIP publish or WHEP play: a core client session driven as the SDK
would drive it, whose replies come back on this object as its
L{ISignallingChannel}.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable

from twisted.internet.defer import Deferred
from zope.interface import implementer

from wcs.interfaces import (
    FAILED, STOPPED, UNPUBLISHED, IClientSession, IRoomServer, ISignallingChannel)
from wcs import errors
from wcs.logs import Logger, clip
from wcs.messages import ServerMessage

# Stream statuses after which a session is over.
ENDED = frozenset({FAILED, STOPPED, UNPUBLISHED})


class Refused(Exception):
    """
    The core refused the session: C{info} is its text for the client,
    C{code} why (one of L{wcs.errors}' refusal codes, or None).
    """

    def __init__(self, info: str, code: str | None = None):
        super().__init__(info)
        self.code = code

    @property
    def info(self) -> str:
        return str(self.args[0])


@implementer(ISignallingChannel)
class HTTPMediaSession:
    """
    The core's view of one WHIP/WHEP resource.

    @ivar answer: a Deferred firing with the answer SDP, or failing with
        L{Refused} before any answer.
    @ivar token: the C{Authorization: Bearer} token of the POST, or None;
        kept for access control.
    @ivar onEnd: called once with this session when it ends, whatever ends
        it (DELETE, media failure, the publisher stopping, shutdown).
    """

    log = Logger()

    def __init__(self, server: IRoomServer, peer: str, path: bytes, token: str | None,
                 onEnd: Callable[["HTTPMediaSession"], None]):
        self.server = server
        self.peer = peer
        self.path = path
        self.token = token
        self.onEnd = onEnd
        self.id = uuid.uuid4().hex  # unguessable: the resource URL is its capability
        self.mediaSessionId = str(uuid.uuid4())
        self.answer: Deferred = Deferred()
        self.core: IClientSession | None = None
        self.room: str | None = None
        self.name: str | None = None
        self.published = False
        self.ended = False
        self._refusal: tuple[str, str | None] | None = None  # (info, code)
        self._inDrive = False  # within a client message to the core

    def __repr__(self) -> str:
        kind = "publish" if self.published else "play"
        return f"<HTTP {kind} {clip(self.name, 60)} from {self.peer}>"

    # Driving the core

    def publish(self, room: str, login: str, offer: str) -> Deferred:
        """WHIP: join C{room} as C{login} and publish C{offer} as ROOM-LOGIN."""
        self.room, self.name, self.published = room, f"{room}-{login}", True
        self._connect(login)
        self._drive("sendData", {"operationId": "join",
                                 "payload": {"command": "join", "options": {"name": room}}})
        self._drive("publishStream", self._stream(offer, custom={"name": room}))
        return self.answer

    def play(self, name: str, offer: str) -> Deferred:
        """WHEP: play the live stream C{name}."""
        self.name = name
        self._connect(None)
        self._drive("playStream", self._stream(offer))
        return self.answer

    def stop(self, reason: str) -> None:
        """
        End at the client's request (DELETE): unpublish or stop the stream,
        leave the room, close the session, as an SDK client would.
        """
        if self.ended:
            return
        core = self.core
        self._end()
        if core is None:
            return
        request = {"mediaSessionId": self.mediaSessionId, "name": self.name}
        core.messageReceived("unPublishStream" if self.published else "stopStream",
                             [request])
        if self.room is not None:
            core.messageReceived("sendData", [{
                "operationId": "leave",
                "payload": {"command": "leave", "options": {"name": self.room}}}])
        self._closeCore(core, reason)

    def _connect(self, login: str | None) -> None:
        self.core = self.server.openSession(self)
        custom = {"login": login} if login is not None else {}
        self._drive("connection", {"appKey": "whip" if self.published else "whep",
                                   "custom": custom})

    def _stream(self, offer: str, **extra: Any) -> dict[str, Any]:
        kinds = {line.split()[0][2:] for line in offer.splitlines()
                 if line.startswith("m=") and len(line.split()) > 1}
        request = {"mediaSessionId": self.mediaSessionId, "name": self.name,
                   "published": self.published, "hasAudio": "audio" in kinds,
                   "hasVideo": "video" in kinds, "mediaProvider": "WebRTC", "sdp": offer,
                   "constraints": {"audio": "audio" in kinds, "video": "video" in kinds}}
        request.update(extra)
        return request

    def _drive(self, name: str, arg: dict[str, Any]) -> None:
        """One client message, unless an earlier one was refused."""
        if self.ended or self.answer.called:
            return
        self._inDrive = True
        try:
            self.core.messageReceived(name, [arg])
        finally:
            self._inDrive = False
        if self._refusal is not None:
            self._fail(*self._refusal)

    def _fail(self, info: str, code: str | None = None) -> None:
        """Refused before any answer: the POST gets the reason; all is freed."""
        core = self.core
        self._end()
        if not self.answer.called:
            self.answer.errback(Refused(info, code))
        self._closeCore(core, f"refused: {info}")

    def _over(self, reason: str) -> None:
        """Ended after the answer (media failed, stream gone, shutdown)."""
        core = self.core
        self._end()
        self.log.info("{session} ended: {reason}", session=self, reason=reason)
        self._closeCore(core, reason)

    @staticmethod
    def _closeCore(core: IClientSession | None, reason: str) -> None:
        # The core frees the stream and the room membership (LEFT).
        if core is not None:
            core.connectionLost(reason)

    def _end(self) -> None:
        if self.ended:
            return
        self.ended = True
        onEnd, self.onEnd = self.onEnd, None
        if onEnd is not None:
            onEnd(self)

    # ISignallingChannel

    def send(self, message: ServerMessage) -> None:
        if self.ended:
            return
        handler = getattr(self, f"_on_{message.name}", None)
        if handler is not None:
            handler(message.refusal, *message.args)

    def close(self, reason: str) -> None:
        """The core closes us (shutdown, silence): the session is over."""
        if self.ended:
            return
        if self.answer.called:
            self._over(reason)
        else:
            self._fail(reason, errors.UNAVAILABLE)

    # The server's messages we act on; the rest (room events, STATE) are
    # for SDK clients.

    # Each gets the message's refusal code first, then its arguments.

    def _on_fail(self, code: str | None, body: dict[str, Any], *rest: Any) -> None:
        self._refuse(str(body.get("info", "refused")), code)

    def _on_DataStatusEvent(self, code: str | None, body: dict[str, Any], *rest: Any) -> None:
        if body.get("status") == FAILED:
            self._refuse(str(body.get("info", "refused")), code)

    def _on_setRemoteSDP(self, code: str | None, mediaSessionId: str, sdp: str,
                         *rest: Any) -> None:
        if mediaSessionId == self.mediaSessionId and not self.answer.called:
            self.answer.callback(sdp)

    def _on_notifyStreamStatusEvent(self, code: str | None, body: dict[str, Any],
                                    *rest: Any) -> None:
        if body.get("mediaSessionId") != self.mediaSessionId:
            return
        status = body.get("status")
        if status not in ENDED:
            return
        info = str(body.get("info") or status)
        if not self.answer.called:
            self._refuse(info, code)
        else:
            # Media failed, or the stream played ended: the resource is gone.
            self._over(info)

    def _on_ping(self, code: str | None, *args: Any) -> None:
        # No signalling heartbeat over HTTP: the media engine watches the
        # peer (ICE consent, RTP activity) and ends the stream when it goes.
        self.core.peerActive()

    def _refuse(self, info: str, code: str | None) -> None:
        if self._refusal is None:
            self._refusal = (info, code)
        # Asynchronous refusals (the offer, once negotiated) end it at once;
        # synchronous ones are seen by _drive after messageReceived returns.
        if not self._inDrive:
            self._fail(info, code)
